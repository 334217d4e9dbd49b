"""A request budget shared by every container and function that calls one provider.

A budget is ``limit`` requests in each fixed window of ``window_s`` seconds: Palenca allows 120 a
minute for the whole account, Validic Inform 2,000 an hour per organization token (each provider's
``Budget`` in its registry entry). Each request takes a slot of the current window in DynamoDB
before it is sent (one conditional ``UpdateItem``: atomic across containers), so no window ever
holds more requests than the budget.
A request sent in the last ``GUARD_S`` of a window may reach the provider in the next one, on the
provider's clock: it takes a slot in both windows, so it fits whichever counts it.

A queued record that finds the window full is not a failure: it *books* a slot of a later window and
comes back when that window opens. A booking is a slot taken ahead, in the same counter: no request
of anyone else can take it, so a window holds at most ``limit`` requests, sent directly or booked, and
a record that comes back in its window sends without taking anything more. Bookings spread a backlog
over the windows ahead, ``limit`` records to a window, so each record is received about twice: once to
book, once to be sent. Imports (``bulk``) book at most ``limit - headroom`` of a window (a
twentieth of the budget is left to signups), so a signup arriving behind a 100,000-row import books a
window or two ahead, not the end of the import.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, Literal

from provisioning.errors import RateLimited
from provisioning.values import Value

WINDOW_S = 60  # the default window (Palenca's minute)
GUARD_S = 1.0  # no slot in a window's last second: the request would arrive in the next one
MAX_BOOKING_TRIES = 50  # windows tried past the booking frontier before giving up for now

Priority = Literal["interactive", "bulk"]
COME_BACK_AFTER_S = (0.5, 3.0)  # a booked record comes back this long after its window opens (spread)


class _Held(Value):
    """A slot taken ahead for the next request of the record being handled (in this thread)."""

    __slots__ = ("limiter", "used", "windows")
    limiter: SharedRateLimiter
    windows: tuple[int, ...]  # the window it was taken in (and the next, when taken in the guard)
    used: bool

    def __init__(self, limiter: SharedRateLimiter, windows: tuple[int, ...], used: bool = False) -> None:
        self.limiter = limiter
        self.windows = windows
        self.used = used


_held: ContextVar[_Held | None] = ContextVar("held_rate_limit_slot", default=None)


class SharedRateLimiter:
    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        provider: str,
        limit: int,
        clock: Callable[[], float] = time.time,
        window_s: int = WINDOW_S,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_s < 2 * GUARD_S:
            raise ValueError("window_s must be longer than two guard intervals")
        self._dynamodb = dynamodb
        self._table = table_name
        self.provider = provider
        self.limit = limit  # requests in each window
        self.window_s = window_s
        self._clock = clock

    # -- keys ------------------------------------------------------------------------------------
    @property
    def key(self) -> tuple[str, str]:
        """Which budget this is: limiters of one container with the same key share held slots."""
        return (self._table, self.provider)

    def _window_key(self, window: int) -> dict[str, Any]:
        return {"id": {"S": f"ratelimit#{self.provider}#{window}"}}

    def _frontier_key(self, priority: Priority) -> dict[str, Any]:
        return {"id": {"S": f"ratelimit#{self.provider}#frontier#{priority}"}}

    def window_of(self, moment: float) -> int:
        return int(moment // self.window_s)

    def _full(self, now: float) -> RateLimited:
        window = self.window_of(now)
        return RateLimited(
            f"{self.provider} request budget of {self.limit} per {self.window_s} s is used up",
            provider=self.provider,
            retry_after=(window + 1) * self.window_s + GUARD_S - now,
            sent=False,
        )

    # -- slots: taken when a request is sent -----------------------------------------------------
    @property
    def headroom(self) -> int:
        """Slots of each window imports may not book ahead: left to signups."""
        return self.limit // 20

    def try_take(self, now: float | None = None) -> tuple[int, ...] | None:
        """Take one slot of the current window (in its last ``GUARD_S``, of the next one too: the
        request may be counted in either); the windows taken, or None when one is full."""
        now = self._clock() if now is None else now
        window = self.window_of(now)
        if self._take(window, self.limit) is None:
            return None
        if now < (window + 1) * self.window_s - GUARD_S:
            return (window,)
        if self._take(window + 1, self.limit) is None:
            self._give_back(window)
            return None
        return (window, window + 1)

    def _take(self, window: int, cap: int) -> int | None:
        """One slot of ``window`` while fewer than ``cap`` are taken: how many are taken now."""
        if cap < 1:
            return None
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._window_key(window),
                UpdateExpression="ADD #used :one SET #expiration = if_not_exists(#expiration, :expires)",
                ConditionExpression="attribute_not_exists(#used) OR #used < :cap",
                ExpressionAttributeNames={"#used": "used", "#expiration": "expiration"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":cap": {"N": str(cap)},
                    ":expires": {"N": str((window + 2) * self.window_s)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return None
        return int(answer["Attributes"]["used"]["N"])

    def acquire(self) -> None:
        """Before a request: use the slot held for it, or take one, or raise RateLimited (with
        ``sent=False``: nothing is sent)."""
        held = _held.get()
        now = self._clock()
        if held is not None and held.limiter.key == self.key and not held.used:
            held.used = True
            if self.window_of(now) in held.windows:
                return
            self.release(held.windows)  # held too long (a slow lookup): give it back, take a fresh one
        if self.try_take(now) is None:
            raise self._full(now)

    def release(self, windows: tuple[int, ...]) -> None:
        """Give back a slot taken but not used (e.g. the person was already linked)."""
        current = self.window_of(self._clock())
        for window in windows:
            if window >= current:  # a window that is over has nothing left to give
                self._give_back(window)

    def _give_back(self, window: int) -> None:
        with suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._window_key(window),
                UpdateExpression="ADD #used :minus_one",
                ConditionExpression="#used > :zero",
                ExpressionAttributeNames={"#used": "used"},
                ExpressionAttributeValues={":minus_one": {"N": "-1"}, ":zero": {"N": "0"}},
            )

    @contextmanager
    def holding(self, booked_window: int | None = None) -> Iterator[None]:
        """Hold a slot before a queued record touches the person: the one it booked, when it comes
        back in that window, else one taken now (raises RateLimited, nothing written, when the
        window is full). The record's first request uses it; a slot left unused is given back."""
        now = self._clock()
        if booked_window is not None and booked_window == self.window_of(now):
            windows: tuple[int, ...] | None = (booked_window,)
        else:
            windows = self.try_take(now)
        if windows is None:
            raise self._full(now)
        held = _Held(self, windows)
        token = _held.set(held)
        try:
            yield
        finally:
            _held.reset(token)
            if not held.used:
                self.release(windows)

    # -- bookings: when a waiting record comes back ----------------------------------------------
    def book(
        self, priority: Priority = "interactive", not_after: float | None = None
    ) -> tuple[float, int | None] | None:
        """Take a slot of the first window after the current one with room (for an import, room
        beyond the headroom left to signups); returns when to come back (a moment after that window
        opens) and the window booked (None: every window tried is taken, come back then and book
        further on), or None when that would be after ``not_after``."""
        now = self._clock()
        cap = self.limit if priority == "interactive" else self.limit - self.headroom
        hint = self._dynamodb.get_item(TableName=self._table, Key=self._frontier_key(priority)).get("Item")
        window = max(self.window_of(now) + 1, int(hint["window"]["N"]) if hint else 0)
        for _ in range(MAX_BOOKING_TRIES):
            if not_after is not None and window * self.window_s > not_after:
                return None
            taken = self._take(window, cap)
            if taken is None:
                window += 1
                continue
            frontier = window + 1 if taken >= cap else window
            if hint is None or int(hint["window"]["N"]) < frontier:
                self._advance_frontier(priority, frontier)
            return window * self.window_s + GUARD_S + random.uniform(*COME_BACK_AFTER_S), window
        self._advance_frontier(priority, window)
        if not_after is not None and window * self.window_s > not_after:
            return None
        return window * self.window_s, None

    def _advance_frontier(self, priority: Priority, window: int) -> None:
        with suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._frontier_key(priority),
                UpdateExpression="SET #window = :window, #expiration = :expires",
                ConditionExpression="attribute_not_exists(#window) OR #window < :window",
                ExpressionAttributeNames={"#window": "window", "#expiration": "expiration"},
                ExpressionAttributeValues={
                    ":window": {"N": str(window)},
                    ":expires": {"N": str((window + 2) * self.window_s)},
                },
            )

    # -- what an operator sees -------------------------------------------------------------------
    def used(self, now: float | None = None) -> int:
        """Slots taken (sent or booked) in the window of ``now``."""
        window = self.window_of(self._clock() if now is None else now)
        key = self._window_key(window)
        item = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item") or {}
        return int(item["used"]["N"]) if "used" in item else 0

    def booked_until(self) -> float | None:
        """When the last window booked so far (any priority) opens, or None when nothing is booked."""
        now = self._clock()
        latest = None
        for priority in ("interactive", "bulk"):
            item = self._dynamodb.get_item(
                TableName=self._table, Key=self._frontier_key(priority), ConsistentRead=True
            ).get("Item")
            if item and int(item["window"]["N"]) > self.window_of(now):
                window = int(item["window"]["N"])
                latest = window if latest is None else max(latest, window)
        return None if latest is None else latest * self.window_s


def windows_to_drain(backlog: int, limit: int) -> int:
    """The fewest whole windows in which ``backlog`` requests fit a budget of ``limit`` a window."""
    return math.ceil(backlog / limit) if backlog else 0
