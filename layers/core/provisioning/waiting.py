"""Waiting is not failing: a queued record that must wait for a request budget is sent back to its
queue with a delay, and the delivery it arrived in is acknowledged.

SQS counts every receive, and the queues' redrive policy moves a record to the dead-letter queue
after ``MAX_ATTEMPTS`` of them. A record handed back to wait (a visibility change) would spend those
receives on waiting. Instead it is sent back as a new message, ``DelaySeconds`` until its turn,
carrying in message attributes what must survive the hop:

- ``provisioner.attempts``: the real attempts so far (receives that failed, not waits);
- ``provisioner.waiting_since``: when it first waited (its wait is bounded);
- ``provisioner.come_back_at``: when its turn comes (a wait longer than SQS's 15-minute delay takes
  several hops; a copy received early is sent back again without touching anything).

Exactly once still holds: the copy is sent before the delivery is acknowledged, so at worst (the
invocation dies in between) the person arrives twice, and provisioning is idempotent per person.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from provisioning.errors import RateLimited, WaitedTooLong
from provisioning.observability import logger
from provisioning.values import FrozenValue

if TYPE_CHECKING:
    from provisioning.adapters import QueueRecord
    from provisioning.ratelimit import Priority, SharedRateLimiter

MAX_ATTEMPTS = 3  # real attempts before a transient failure is dead-lettered (the queues' maxReceiveCount)
MAX_DELAY_S = 900  # SQS's longest DelaySeconds: a longer wait takes several hops
DEFAULT_WAIT_S = 60.0  # a provider's 429 that does not say how long
MAX_MESSAGE_ATTRIBUTES = 10  # SQS's limit per message

ATTEMPTS = "provisioner.attempts"
WAITING_SINCE = "provisioner.waiting_since"
COME_BACK_AT = "provisioner.come_back_at"
BOOKED_WINDOW = "provisioner.booked_window"  # the rate-limit window whose slot the record booked
PRIORITY = "provisioner.priority"  # "bulk" for imports (set by `provisioner import`); else a signup
_OURS = (ATTEMPTS, WAITING_SINCE, COME_BACK_AT, BOOKED_WINDOW)


def _booked(record: QueueRecord) -> int | None:
    value = _number(record.attributes, BOOKED_WINDOW)
    return int(value) if value is not None else None


def _number(attributes: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(attributes[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


class Waiting(FrozenValue):
    """A record to send back: when it comes back, and what it carries."""

    __slots__ = ("attempts", "booked_window", "come_back_at", "record", "waiting_since")
    record: QueueRecord
    come_back_at: float
    waiting_since: float
    attempts: int
    booked_window: int | None  # the window whose slot it holds, when it booked one

    def __init__(
        self,
        record: QueueRecord,
        come_back_at: float,
        waiting_since: float,
        attempts: int,
        booked_window: int | None = None,
    ) -> None:
        object.__setattr__(self, "record", record)
        object.__setattr__(self, "come_back_at", come_back_at)
        object.__setattr__(self, "waiting_since", waiting_since)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "booked_window", booked_window)


class Pacing:
    """How a queue of one provider waits: its shared budget (if any), where records are sent back,
    and how long a record may wait in all."""

    def __init__(
        self,
        provider: str,
        limiter: SharedRateLimiter | None,
        sqs: Callable[[], Any],
        queue_url: Callable[[QueueRecord], str],
        max_wait: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.limiter = limiter
        self._sqs = sqs
        self._queue_url = queue_url
        self.max_wait = max_wait
        self._clock = clock

    # -- counting --------------------------------------------------------------------------------
    @staticmethod
    def attempts_before(record: QueueRecord) -> int:
        """Real attempts before this delivery: those carried by the copy, and this copy's earlier
        receives (each a failure: a record that waits leaves as a new copy)."""
        carried = _number(record.attributes, ATTEMPTS)
        return int(carried or 0) + max(0, record.receive_count - 1)

    @staticmethod
    def priority(record: QueueRecord) -> Priority:
        return "bulk" if record.attributes.get(PRIORITY) == "bulk" else "interactive"

    # -- deciding ----------------------------------------------------------------------------------
    def early(self, record: QueueRecord) -> Waiting | None:
        """A copy received before its turn (its wait was longer than one SQS delay): wait again."""
        come_back_at = _number(record.attributes, COME_BACK_AT)
        now = self._clock()
        if come_back_at is None or come_back_at <= now + 1:
            return None
        since = _number(record.attributes, WAITING_SINCE) or now
        return Waiting(record, come_back_at, since, self.attempts_before(record), _booked(record))

    @contextmanager
    def slot(self, record: QueueRecord) -> Iterator[None]:
        """Hold a request slot while the record is provisioned: the one it booked, or one taken
        before the person is touched, so a record that must wait has written nothing (and will not
        need a lookup later)."""
        with self.limiter.holding(_booked(record)) if self.limiter is not None else nullcontext():
            yield

    def wait(self, record: QueueRecord, error: RateLimited) -> Waiting:
        """When the record comes back: its booked turn under our own budget, else when the
        provider's 429 says (``DEFAULT_WAIT_S`` when it does not). Raises WaitedTooLong past the bound."""
        now = self._clock()
        since = _number(record.attributes, WAITING_SINCE) or now
        not_after = since + self.max_wait
        come_back_at: float | None
        booked: int | None = None
        if not error.sent and self.limiter is not None:
            booking = self.limiter.book(self.priority(record), not_after=not_after)
            come_back_at, booked = booking if booking is not None else (None, None)
        else:
            come_back_at = now + (error.retry_after if error.retry_after is not None else DEFAULT_WAIT_S)
        if come_back_at is None or come_back_at > not_after:
            raise WaitedTooLong(
                f"waited {round(now - since)} s for a {self.provider} request slot; the limit is "
                f"{round(self.max_wait)} s (RATE_LIMIT_MAX_WAIT_SECONDS)",
                provider=self.provider,
                waited_seconds=now - since,
            )
        return Waiting(record, max(come_back_at, now), since, self.attempts_before(record), booked)

    # -- sending back ------------------------------------------------------------------------------
    def send_back(self, waiting: list[Waiting]) -> list[Waiting]:
        """Send each waiting record back to its queue, delayed until its turn (at most
        ``MAX_DELAY_S``), ten to a call; returns those that could not be sent (the caller leaves
        them to the queue's visibility timeout)."""
        failed: list[Waiting] = []
        by_queue: dict[str, list[Waiting]] = {}
        for item in waiting:
            by_queue.setdefault(item.record.event_source_arn, []).append(item)
        for items in by_queue.values():
            for start in range(0, len(items), 10):
                failed += self._send_chunk(items[start : start + 10])
        return failed

    def _send_chunk(self, chunk: list[Waiting]) -> list[Waiting]:
        now = self._clock()
        entries = []
        for n, item in enumerate(chunk):
            delay = max(0, min(MAX_DELAY_S, math.ceil(item.come_back_at - now)))
            entries.append(
                {
                    "Id": str(n),
                    "MessageBody": item.record.body or "",
                    "DelaySeconds": delay,
                    "MessageAttributes": _attributes(item),
                }
            )
        try:
            answer = self._sqs().send_message_batch(
                QueueUrl=self._queue_url(chunk[0].record), Entries=entries
            )
        except Exception:
            logger.warning("could not send waiting records back; they return after the visibility timeout")
            return chunk
        failed_ids = {int(entry["Id"]) for entry in answer.get("Failed", [])}
        if failed_ids:
            logger.warning("some waiting records were not sent back", extra={"count": len(failed_ids)})
        return [chunk[n] for n in sorted(failed_ids)]


def _attributes(item: Waiting) -> dict[str, dict[str, str]]:
    """The record's own String and Number attributes, with ours (within SQS's ten)."""
    ours = {
        ATTEMPTS: {"DataType": "Number", "StringValue": str(item.attempts)},
        WAITING_SINCE: {"DataType": "Number", "StringValue": f"{item.waiting_since:.3f}"},
        COME_BACK_AT: {"DataType": "Number", "StringValue": f"{item.come_back_at:.3f}"},
    }
    if item.booked_window is not None:
        ours[BOOKED_WINDOW] = {"DataType": "Number", "StringValue": str(item.booked_window)}
    carried = {
        name: {"DataType": kind, "StringValue": value}
        for name, (kind, value) in item.record.typed_attributes.items()
        if name not in _OURS
    }
    kept = dict(list(carried.items())[: MAX_MESSAGE_ATTRIBUTES - len(ours)])
    return {**kept, **ours}
