"""Adapters: turn a queued record into a typed request, and results or errors into batch
answers and dead letters; the helpers both adapters share (the REST adapter is ``rest``, imported
only by API Gateway invocations). Nothing else happens here."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from provisioning.errors import FieldError, InvalidRequest, ProvisioningError, RateLimited
from provisioning.models import ProvisionResult
from provisioning.observability import logger

JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024


def _location(loc: tuple[Any, ...] | list[Any], skip_body: bool = True) -> str:
    parts = [str(p) for p in loc]
    if skip_body and parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def field_errors(errors: list[Any]) -> list[FieldError]:
    """Pydantic-style errors as field errors, without the offending values."""
    result = []
    for err in errors:
        if err.get("type") == "json_invalid":
            result.append(FieldError("body", "is not valid JSON"))
            continue
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        result.append(FieldError(_location(err.get("loc", ())), message))
    return result


def precheck(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 413 for a body over MAX_BODY_BYTES, a 400 for a base64 body that is not UTF-8 text;
    checked before anything parses the body."""
    body = event.get("body") or ""
    encoded = bool(event.get("isBase64Encoded"))
    error: InvalidRequest | None = None
    if len(body) > MAX_BODY_BYTES * (4 / 3 if encoded else 1):
        error = InvalidRequest([FieldError("body", f"is larger than {MAX_BODY_BYTES} bytes")], status=413)
    elif encoded and body:
        try:
            base64.b64decode(body.encode(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            error = InvalidRequest([FieldError("body", "is not base64-encoded UTF-8 text")], status=400)
    if error is None:
        return None
    return {
        "statusCode": error.http_status,
        "headers": {"Content-Type": JSON},
        "body": json.dumps(error.body()),
    }


def unsupported(event: dict[str, Any]) -> dict[str, Any]:
    """A 400 answer for an event this function does not take (never a crash)."""
    logger.error("unsupported event shape", extra={"keys": sorted(str(k) for k in event)[:10]})
    error = ProvisioningError("unsupported event: expected an API Gateway REST proxy, SQS or scheduled event")
    return {"statusCode": 400, "headers": {"Content-Type": JSON}, "body": json.dumps(error.body())}


def load_object(body: str | None) -> dict[str, Any]:
    """A queued message body as a JSON object, or InvalidRequest."""
    try:
        data = json.loads(body or "")
    except json.JSONDecodeError:
        raise InvalidRequest([FieldError("body", "is not valid JSON")], status=400) from None
    if not isinstance(data, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    return data


def validate_body[RequestT: BaseModel](data: dict[str, Any], model: type[RequestT]) -> RequestT:
    """A typed request, or InvalidRequest naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise InvalidRequest(field_errors([{"loc": e["loc"], "msg": e["msg"]} for e in errors])) from None


@dataclass(frozen=True)
class QueueRecord:
    """The fields of an SQS event record the queue adapter reads. (Powertools' ``SQSRecord`` has
    them too, but importing it loads every event data class: ~9 ms of each cold start.)"""

    message_id: str
    receipt_handle: str
    body: str | None
    event_source_arn: str
    receive_count: int

    @classmethod
    def from_event(cls, raw: Mapping[str, Any]) -> QueueRecord:
        attributes = raw.get("attributes") or {}
        return cls(
            message_id=str(raw.get("messageId", "")),
            receipt_handle=str(raw.get("receiptHandle", "")),
            body=raw.get("body"),
            event_source_arn=str(raw.get("eventSourceARN", "")),
            receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        )


class DeadLetters:
    """Moves a record that can never succeed to the dead-letter queue at once, with its reason.

    The copy carries the original body (so a redrive replays it) and a ``failure`` attribute
    (JSON: provider, code, status, message, attempts). The original is then deleted from its
    queue so SQS does not retry it; if anything here fails, the record is simply retried and
    SQS's own redrive policy still brings it to the DLQ.
    """

    def __init__(self, sqs: Callable[[], Any], dead_letter_queue_url: str | None) -> None:
        self._sqs_client = sqs  # created on first use: most invocations never dead-letter
        self._dlq_url = dead_letter_queue_url
        self._queue_urls: dict[str, str] = {}

    @property
    def _sqs(self) -> Any:
        return self._sqs_client()

    def _queue_url(self, arn: str) -> str:
        if arn not in self._queue_urls:
            _, _, _, _, account, name = arn.split(":", 5)
            self._queue_urls[arn] = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
        return self._queue_urls[arn]

    def delay(self, record: QueueRecord, seconds: float) -> None:
        """Make a failed record come back after ``seconds`` (e.g. when a rate-limit window reopens)."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url(record.event_source_arn),
                ReceiptHandle=record.receipt_handle,
                VisibilityTimeout=max(1, min(43200, int(seconds) + 1)),
            )
        except Exception:
            logger.warning("could not delay the record; it returns after the queue's visibility timeout")

    def send(self, record: QueueRecord, error: ProvisioningError) -> bool:
        if not self._dlq_url:
            return False
        report = error.report()
        report["attempts"] = record.receive_count
        report["source_message_id"] = record.message_id
        try:
            self._sqs.send_message(
                QueueUrl=self._dlq_url,
                MessageBody=record.body or "",
                MessageAttributes={"failure": {"DataType": "String", "StringValue": json.dumps(report)}},
            )
        except Exception:
            logger.exception("could not dead-letter record; it will be retried")
            return False
        try:
            self._sqs.delete_message(
                QueueUrl=self._queue_url(record.event_source_arn), ReceiptHandle=record.receipt_handle
            )
        except Exception:
            logger.warning("dead-lettered record could not be deleted from its queue; SQS will redeliver it")
        return True


def record_concurrency(environ: dict[str, str] | None = None) -> int:
    """How many records of one batch are provisioned at once: ``RECORD_CONCURRENCY``, or one per
    64 MB of function memory (512 MB -> 8), at most 10 (SQS's largest standard batch)."""
    env = os.environ if environ is None else environ
    configured = env.get("RECORD_CONCURRENCY")
    if configured:
        return max(1, int(configured))
    memory = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
    return max(1, min(10, memory // 64))


def process_concurrently(
    records: list[QueueRecord], handle: Callable[[QueueRecord], Any], workers: int
) -> list[str]:
    """Handle the records of one batch with a bounded thread pool (a batch then takes about one
    provider round trip per wave instead of the sum of them); return the ids of those that raised.

    Identical messages (the same person delivered twice) go to one worker, one after the other: the
    second is then answered from the first's idempotency record.
    """
    groups: dict[str, list[QueueRecord]] = {}
    for record in records:
        groups.setdefault(record.body or "", []).append(record)

    def handle_group(group: list[QueueRecord]) -> list[str]:
        failed = []
        for record in group:
            try:
                handle(record)
            except Exception:
                failed.append(record.message_id)
        return failed

    if workers <= 1 or len(groups) <= 1:
        failed = [message_id for group in groups.values() for message_id in handle_group(group)]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(groups))) as pool:
            failed = [message_id for ids in pool.map(handle_group, groups.values()) for message_id in ids]
    order = {record.message_id: n for n, record in enumerate(records)}
    return sorted(failed, key=order.__getitem__)


class RecordFailed(Exception):
    """Raised to report a record as a batch item failure (message without personal data)."""


def process_queue_batch[RequestT: BaseModel](
    event: dict[str, Any],
    parse: Callable[[str | None], RequestT | None],
    provision: Callable[[RequestT], ProvisionResult],
    dead_letters: DeadLetters,
    on_dead_letter: Callable[[ProvisioningError], None] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Provision every record; answer which ones failed, as Lambda's ``ReportBatchItemFailures``
    expects (the rest are acknowledged). ``parse`` turns a body into a request, or None for a
    record that is not for this operation (acknowledged without provisioning), or raises
    InvalidRequest.

    Powertools' batch utility is not used: whenever pydantic is loaded it imports every parser
    model (~110 ms on each cold start); this keeps its contract in a few lines."""

    def handle_record(record: QueueRecord) -> str:
        logger.thread_safe_append_keys(message_id=record.message_id)
        try:
            request = parse(record.body)
            if request is None:
                return "not_targeted"
            return provision(request).outcome
        except ProvisioningError as exc:
            if exc.transient:
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    dead_letters.delay(record, exc.retry_after)
                logger.warning("record failed; SQS will retry it", extra={"error": exc.report()})
            else:
                moved = dead_letters.send(record, exc)
                if moved and on_dead_letter is not None:
                    on_dead_letter(exc)
                logger.warning(
                    "record dead-lettered" if moved else "record failed", extra={"error": exc.report()}
                )
            raise RecordFailed(exc.code) from None
        except Exception:
            logger.exception("unexpected failure; SQS will retry the record")
            raise
        finally:
            logger.thread_safe_remove_keys(["message_id"])

    records = [QueueRecord.from_event(raw) for raw in event.get("Records", [])]
    failed = process_concurrently(records, handle_record, record_concurrency())
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
