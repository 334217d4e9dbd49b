"""Outcome events: the users table's stream, turned into ``PersonProvisioned`` and
``ProvisioningFailed`` events on the hub's bus (source ``provisioner``; schemas in docs/events.md).

Why the stream: a function that writes a link and then publishes loses the event when it dies in
between. Here the write is the publication: DynamoDB keeps every change of the table in its stream
for 24 hours, and Lambda's event source mapping hands each change to this function until it
succeeds (or its retries end and the batch's place in the stream goes to OutcomeEventsDLQ).

Delivery is at least once: a batch may be published again after a failure, so every event has a
deterministic ``event_id`` to dedupe by. Within a shard (one person and provider always map to one)
events are published in the order of the changes: a batch is published in order, a call never
holds two events of one person and provider, and publishing stops at the first entry that failed,
which is reported (``ReportBatchItemFailures``) so Lambda resumes from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from boto3.dynamodb.types import TypeDeserializer

from provisioning.dependencies import Dependencies
from provisioning.errors import ConfigurationError
from provisioning.handler import LambdaFunction
from provisioning.observability import logger, metrics
from provisioning.privacy import redact
from provisioning.providers import BY_NAME
from provisioning.sealing import KmsSealer
from provisioning.store import CLAIM_PREFIX, Link, LinkStatus
from provisioning.values import FrozenValue, Value

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SOURCE = "provisioner"
PERSON_PROVISIONED = "PersonProvisioned"
PROVISIONING_FAILED = "ProvisioningFailed"
MAX_ENTRIES = 10  # PutEvents takes at most ten entries a call

_deserializer = TypeDeserializer()
Unseal = Callable[[dict[str, str]], dict[str, str]]


class Outcome(FrozenValue):
    """One event to publish, and the stream record it comes from."""

    __slots__ = ("detail", "detail_type", "external_id", "provider", "sequence_number")
    sequence_number: str
    external_id: str
    provider: str
    detail_type: str
    detail: dict[str, Any]

    def __init__(
        self, sequence_number: str, external_id: str, provider: str, detail_type: str, detail: dict[str, Any]
    ) -> None:
        object.__setattr__(self, "sequence_number", sequence_number)
        object.__setattr__(self, "external_id", external_id)
        object.__setattr__(self, "provider", provider)
        object.__setattr__(self, "detail_type", detail_type)
        object.__setattr__(self, "detail", detail)

    def entry(self, bus_name: str) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":")),
            "EventBusName": bus_name,
        }


def event_id(*parts: str) -> str:
    """The same id for every publication of one change: consumers dedupe redeliveries by it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """DynamoDB numbers (Decimal) as int or float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _link(image: Mapping[str, Any] | None) -> Link | None:
    if not image or "status" not in image:
        return None  # absent, or a claim item (no status)
    return Link.model_validate(
        {key: _plain(_deserializer.deserialize(value)) for key, value in image.items()}
    )


def outcome_of(record: Mapping[str, Any], unseal: Unseal | None = None) -> Outcome | None:
    """The event a stream record stands for, or None: a person newly linked -> PersonProvisioned;
    a new dead-letter report on a person's item -> ProvisioningFailed. Claims, removals and every
    other change publish nothing. ``unseal``: decrypts the credentials a provider lets a client
    have next (only when the stack enables it)."""
    change = record.get("dynamodb") or {}
    if record.get("eventName") == "REMOVE":
        return None
    keys = change.get("Keys") or {}
    if str((keys.get("external_id") or {}).get("S", "")).startswith(CLAIM_PREFIX):
        return None
    new, old = _link(change.get("NewImage")), _link(change.get("OldImage"))
    if new is None:
        return None
    sequence = str(change.get("SequenceNumber", ""))
    if new.status == LinkStatus.LINKED and (old is None or old.status != LinkStatus.LINKED):
        return _provisioned(sequence, new, unseal)
    if new.status == LinkStatus.PENDING and new.failure and (old is None or old.failure != new.failure):
        return _failed(sequence, new)
    return None


def _provisioned(sequence: str, link: Link, unseal: Unseal | None) -> Outcome:
    info = BY_NAME.get(link.provider)
    details = {
        key: link.details[key]
        for key in sorted(info.published_details if info else ())
        if key in link.details
    }
    if unseal is not None and info is not None:
        sealed = {key: link.sealed[key] for key in info.published_credentials if key in link.sealed}
        if sealed:
            details.update(unseal(sealed))
    detail = {
        "event_id": event_id(link.external_id, link.provider, link.provider_user_id or "", link.updated_at),
        "external_id": link.external_id,
        "provider": link.provider,
        "provider_user_id": link.provider_user_id,
        "outcome": link.source.value if link.source else None,
        "linked_at": link.updated_at,
        "details": details,
    }
    return Outcome(sequence, link.external_id, link.provider, PERSON_PROVISIONED, detail)


def _failed(sequence: str, link: Link) -> Outcome:
    failure = link.failure or {}
    failed_at = str(failure.get("at") or link.updated_at)
    detail = {
        "event_id": event_id(link.external_id, link.provider, "failed", failed_at),
        "external_id": link.external_id,
        "provider": link.provider,
        "code": str(failure.get("code") or "failed"),
        "message": redact(str(failure.get("message") or "")),
        "attempts": int(failure.get("attempts") or 0),
        "failed_at": failed_at,
    }
    return Outcome(sequence, link.external_id, link.provider, PROVISIONING_FAILED, detail)


def calls(outcomes: list[Outcome]) -> list[list[Outcome]]:
    """The outcomes in order, in PutEvents calls of at most ten entries, none holding two events of
    one person and provider (EventBridge does not order the entries of one call)."""
    batches: list[list[Outcome]] = []
    current: list[Outcome] = []
    keys: set[tuple[str, str]] = set()
    for outcome in outcomes:
        key = (outcome.external_id, outcome.provider)
        if len(current) == MAX_ENTRIES or key in keys:
            batches.append(current)
            current, keys = [], set()
        current.append(outcome)
        keys.add(key)
    if current:
        batches.append(current)
    return batches


class Published(Value):
    __slots__ = ("events", "failed_at")
    events: int
    failed_at: str | None  # the sequence number Lambda must resume from

    def __init__(self, events: int = 0, failed_at: str | None = None) -> None:
        self.events = events
        self.failed_at = failed_at


class OutcomePublisher:
    """Publishes the outcomes of one batch of stream records, in order, stopping at the first
    failure (which it reports)."""

    def __init__(self, events: Any, bus_name: str, unseal: Unseal | None = None) -> None:
        self._events = events
        self._bus = bus_name
        self._unseal = unseal

    def publish(self, records: list[Mapping[str, Any]]) -> Published:
        outcomes: list[Outcome] = []
        stop: str | None = None
        for record in records:
            try:
                outcome = outcome_of(record, self._unseal)
            except Exception as exc:  # retried from here; after the retries, OnFailure keeps its place
                logger.error("stream record not turned into an event", extra={"error": type(exc).__name__})
                stop = str((record.get("dynamodb") or {}).get("SequenceNumber", ""))
                break
            if outcome is not None:
                outcomes.append(outcome)
        result = Published()
        for call in calls(outcomes):
            failed = self._put(call)
            result.events += len(call) if failed is None else failed
            if failed is not None:
                result.failed_at = call[failed].sequence_number
                return result
        result.failed_at = stop
        return result

    def _put(self, call: list[Outcome]) -> int | None:
        """Index of the first entry that failed, or None."""
        try:
            answer = self._events.put_events(Entries=[outcome.entry(self._bus) for outcome in call])
        except Exception as exc:
            logger.warning(
                "PutEvents failed; the batch is retried from its first event",
                extra={"error": type(exc).__name__},
            )
            return 0
        if not answer.get("FailedEntryCount"):
            return None
        for index, entry in enumerate(answer.get("Entries", [])):
            if entry.get("ErrorCode"):
                logger.warning(
                    "an event was not accepted; the batch is retried from it",
                    extra={"error": entry.get("ErrorCode"), "entry": index},
                )
                return index
        return 0  # failed entries without a code: retry the whole call


class OutcomeEventsFunction(LambdaFunction):
    """The Lambda handler of the users table's stream (ReportBatchItemFailures)."""

    provider = "all"

    def __init__(self, deps: Dependencies | None = None) -> None:
        self.deps = deps or Dependencies()

    @cached_property
    def publisher(self) -> OutcomePublisher:
        settings = self.deps.settings
        if not settings.signup_event_bus_name:
            raise ConfigurationError("SIGNUP_EVENT_BUS_NAME is not set: outcome events have no bus")
        unseal: Unseal | None = None
        if settings.outcome_events_include_marketplace_url:
            unseal = KmsSealer(self.deps.kms, settings.token_kms_key_id or "").unseal
        return OutcomePublisher(self.deps.client("events"), settings.signup_event_bus_name, unseal)

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        records = event.get("Records")
        if not isinstance(records, list):
            raise ValueError("expected a DynamoDB stream event")
        published = self.publisher.publish(records)
        metrics.add_metric(name="OutcomeEventsPublished", unit=MetricUnit.Count, value=published.events)
        logger.info(
            "outcome events published",
            extra={
                "records": len(records),
                "events": published.events,
                "retry": published.failed_at is not None,
            },
        )
        if published.failed_at is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": published.failed_at}]}


__all__ = ["OutcomeEventsFunction", "OutcomePublisher", "outcome_of"]
