"""A request budget shared by every container and function that calls one provider.

Palenca allows 120 requests per minute for the whole account, in fixed one-minute windows. Each
request takes a slot of the current window in DynamoDB before it is sent (one conditional
``UpdateItem``: atomic across containers), so no window ever holds more requests than the budget.
A request sent in the last ``GUARD_S`` of a window may reach the provider in the next one, on the
provider's clock: it takes a slot in both windows, so it fits whichever counts it.

A queued record that finds the window full is not a failure: it *books* a later window (a second
counter per window, per priority) and comes back when that window opens. Bookings spread a backlog
over the windows ahead, ``limit`` records to a window, so each record is received about twice: once
to book, once to be sent. Signups (``interactive``) book on their own counter and come back a
moment before imports (``bulk``) at the start of a window, so an import never makes a signup wait
more than a window or two; an import record that then finds its window taken books again.
A booking is a promise, not a slot: the slot is still taken when the request is sent.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from provisioning.errors import RateLimited

WINDOW_S = 60
GUARD_S = 1.0  # no slot in a window's last second: the request would arrive in the next one
MAX_BOOKING_TRIES = 50  # windows tried past the booking frontier before giving up for now

_COUNT_UP = "ADD #count :one SET #expiration = if_not_exists(#expiration, :expires)"

Priority = Literal["interactive", "bulk"]
# When, after a booked window opens, its records come back: signups first, then imports (spread).
_COME_BACK_AFTER: dict[str, tuple[float, float]] = {"interactive": (1.0, 1.0), "bulk": (3.0, 4.0)}


@dataclass
class _Held:
    """A slot taken ahead for the next request of the record being handled (in this thread)."""

    limiter: SharedRateLimiter
    windows: tuple[int, ...]  # the window it was taken in (and the next, when taken in the guard)
    used: bool = False


_held: ContextVar[_Held | None] = ContextVar("held_rate_limit_slot", default=None)


class SharedRateLimiter:
    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        provider: str,
        requests_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self._dynamodb = dynamodb
        self._table = table_name
        self.provider = provider
        self.limit = requests_per_minute
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

    @staticmethod
    def window_of(moment: float) -> int:
        return int(moment // WINDOW_S)

    def _full(self, now: float) -> RateLimited:
        window = self.window_of(now)
        return RateLimited(
            f"{self.provider} request budget of {self.limit}/min is used up",
            provider=self.provider,
            retry_after=(window + 1) * WINDOW_S + GUARD_S - now,
            sent=False,
        )

    # -- slots: taken when a request is sent -----------------------------------------------------
    def try_take(self, now: float | None = None) -> tuple[int, ...] | None:
        """Take one slot of the current window (in its last ``GUARD_S``, of the next one too: the
        request may be counted in either); the windows taken, or None when one is full."""
        now = self._clock() if now is None else now
        window = self.window_of(now)
        if not self._take(window):
            return None
        if now < (window + 1) * WINDOW_S - GUARD_S:
            return (window,)
        if not self._take(window + 1):
            self._give_back(window)
            return None
        return (window, window + 1)

    def _take(self, window: int) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._window_key(window),
                UpdateExpression=_COUNT_UP.replace("#count", "#used"),
                ConditionExpression="attribute_not_exists(#used) OR #used < :limit",
                ExpressionAttributeNames={"#used": "used", "#expiration": "expiration"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(self.limit)},
                    ":expires": {"N": str((window + 2) * WINDOW_S)},
                },
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

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
    def holding(self) -> Iterator[None]:
        """Take a slot before a queued record touches the person (raises RateLimited, nothing
        written, when the window is full); the record's first request uses it. A slot left unused
        is given back."""
        now = self._clock()
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
    def book(self, priority: Priority = "interactive", not_after: float | None = None) -> float | None:
        """Book a place in the first window after the current one that ``limit`` earlier records of
        this priority have not booked; returns when to come back (a moment after that window opens),
        or None when that would be after ``not_after``."""
        now = self._clock()
        hint = self._dynamodb.get_item(TableName=self._table, Key=self._frontier_key(priority)).get("Item")
        window = max(self.window_of(now) + 1, int(hint["window"]["N"]) if hint else 0)
        field = f"booked_{priority}"
        for _ in range(MAX_BOOKING_TRIES):
            if not_after is not None and window * WINDOW_S > not_after:
                return None
            try:
                answer = self._dynamodb.update_item(
                    TableName=self._table,
                    Key=self._window_key(window),
                    UpdateExpression=_COUNT_UP.replace("#count", "#booked"),
                    ConditionExpression="attribute_not_exists(#booked) OR #booked < :limit",
                    ExpressionAttributeNames={"#booked": field, "#expiration": "expiration"},
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":limit": {"N": str(self.limit)},
                        ":expires": {"N": str((window + 2) * WINDOW_S)},
                    },
                    ReturnValues="UPDATED_NEW",
                )
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                window += 1
                continue
            if int(answer["Attributes"][field]["N"]) >= self.limit:
                self._advance_frontier(priority, window + 1)
            elif hint is None or int(hint["window"]["N"]) < window:
                self._advance_frontier(priority, window)
            low, spread = _COME_BACK_AFTER[priority]
            return window * WINDOW_S + GUARD_S + low + random.uniform(0, spread)
        self._advance_frontier(priority, window)
        return window * WINDOW_S  # every window tried is booked: come back then and book further on

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
                    ":expires": {"N": str((window + 2) * WINDOW_S)},
                },
            )

    # -- what an operator sees -------------------------------------------------------------------
    def used(self, now: float | None = None) -> int:
        return self._counts(now)["used"]

    def _counts(self, now: float | None = None, window: int | None = None) -> dict[str, int]:
        if window is None:
            window = self.window_of(self._clock() if now is None else now)
        item = (
            self._dynamodb.get_item(
                TableName=self._table, Key=self._window_key(window), ConsistentRead=True
            ).get("Item")
            or {}
        )
        return {
            name: int(item[name]["N"]) if name in item else 0
            for name in ("used", "booked_interactive", "booked_bulk")
        }

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
        return None if latest is None else latest * WINDOW_S


def minutes_to_drain(backlog: int, requests_per_minute: int) -> int:
    """The fewest whole minutes in which ``backlog`` requests fit a per-minute budget."""
    return math.ceil(backlog / requests_per_minute) if backlog else 0
