"""Adapters: turn a queued record into a typed request, and results or errors into batch
answers and dead letters; the helpers both adapters share (the REST adapter is ``rest``, imported
only by API Gateway invocations). Nothing else happens here."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from provisioning.errors import (
    ConfigurationError,
    FieldError,
    InvalidRequest,
    ProvisioningError,
    RateLimited,
    WaitedTooLong,
)
from provisioning.models import ProvisionResult, external_id_adapter
from provisioning.observability import logger
from provisioning.privacy import field_name
from provisioning.validation import field_errors
from provisioning.values import FrozenValue
from provisioning.waiting import MAX_ATTEMPTS, Pacing, Waiting

JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _NotJson(ValueError):
    """Raised inside the JSON parser for input Python would accept but JSON does not allow."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def parse_json(text: str) -> Any:
    """Strict JSON: every failure is a ``json.JSONDecodeError`` whose message starts with "is not
    valid JSON" — the NaN and Infinity literals Python would accept, integers over Python's digit
    limit (ValueError) and nesting deeper than the interpreter recurses (RecursionError) included.
    Used for API bodies (Powertools' deserializer), queued bodies and import rows."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise json.JSONDecodeError("is not valid JSON", exc.doc, exc.pos) from None
    except _NotJson as exc:
        raise json.JSONDecodeError(f"is not valid JSON: {exc}", text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError("is not valid JSON: it is nested too deeply", text, 0) from None
    except ValueError:  # e.g. an integer of more than 4,300 digits
        raise json.JSONDecodeError("is not valid JSON: a number is too long", text, 0) from None


def error_answer(error: ProvisioningError) -> dict[str, Any]:
    """An API Gateway proxy answer for an error found before the event reaches the resolver."""
    return {
        "statusCode": error.http_status,
        "headers": {"Content-Type": JSON, **error.headers()},
        "body": json.dumps(error.body()),
    }


def _headers(event: Mapping[str, Any], name: str) -> list[tuple[str, str, str]]:
    """Every value of header ``name`` (any case) as (map, key, value), in ``headers`` and
    ``multiValueHeaders``."""
    found = []
    for where in ("headers", "multiValueHeaders"):
        headers = event.get(where)
        if not isinstance(headers, Mapping):
            continue
        for key, value in headers.items():
            if str(key).lower() != name:
                continue
            for item in value if isinstance(value, list) else [value]:
                found.append((where, str(key), "" if item is None else str(item)))
    return found


def media_type(value: str) -> str:
    """The media type of a Content-Type value: lower case, without parameters."""
    return value.split(";", 1)[0].strip().lower()


def _body_size_error(event: Mapping[str, Any]) -> InvalidRequest | None:
    body = event.get("body") or ""
    if not isinstance(body, str):
        return InvalidRequest([FieldError("body", "must be text")], status=400)
    too_large = InvalidRequest([FieldError("body", f"is larger than {MAX_BODY_BYTES} bytes")], status=413)
    if not event.get("isBase64Encoded"):
        # UTF-8 takes 1 to 4 bytes a character: encode only when the length alone cannot decide.
        if len(body) > MAX_BODY_BYTES:
            return too_large
        if len(body) * 4 > MAX_BODY_BYTES and len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
            return too_large
        return None
    if not body:
        return None
    if len(body) > (MAX_BODY_BYTES + 2) // 3 * 4:  # the base64 length of MAX_BODY_BYTES bytes
        return too_large
    try:
        decoded = base64.b64decode(body.encode("ascii"), validate=True)
        decoded.decode("utf-8")
    except (ValueError, UnicodeError):
        return InvalidRequest([FieldError("body", "is not base64-encoded UTF-8 text")], status=400)
    return too_large if len(decoded) > MAX_BODY_BYTES else None


def _content_type_error(event: Mapping[str, Any]) -> InvalidRequest | None:
    method = str(event.get("httpMethod") or "").upper()
    if method not in _BODY_METHODS and not event.get("body"):
        return None
    for _, _, value in _headers(event, "content-type"):
        if value.strip() and media_type(value) != JSON:
            return InvalidRequest([FieldError("content-type", "must be application/json")], status=415)
    return None


def precheck(event: dict[str, Any]) -> dict[str, Any] | None:
    """The answer to a request whose body must not be parsed, else None: 413 for a body over
    MAX_BODY_BYTES (UTF-8 bytes; the decoded bytes of a base64 body), 400 for a base64 body that
    is not UTF-8 text, 415 for a body that is not JSON (multipart and form bodies included; a
    request without a Content-Type is read as JSON)."""
    error = _body_size_error(event) or _content_type_error(event)
    return error_answer(error) if error else None


def api_answer(status: int, body: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy answer, written as Powertools' REST resolver writes one."""
    multi = {"Content-Type": [JSON]}
    multi.update({key: [value] for key, value in (headers or {}).items()})
    return {"statusCode": status, "body": body, "isBase64Encoded": False, "multiValueHeaders": multi}


def _error_answer(error: ProvisioningError) -> dict[str, Any]:
    return api_answer(error.http_status, json.dumps(error.body()), error.headers())


def request_object(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object in an API request's body (after ``precheck``), or InvalidRequest naming
    ``body`` in the words the REST resolver's validation uses: 400 for text that is not JSON, 422
    for no body (or ``null``) and for JSON that is not an object."""
    body = event.get("body")
    if body and event.get("isBase64Encoded"):
        body = base64.b64decode(body.encode()).decode()
    try:
        data = parse_json(body) if body else None
    except json.JSONDecodeError as exc:
        raise InvalidRequest([FieldError("body", exc.msg)], status=400) from None
    if data is None:
        raise InvalidRequest([FieldError("body", "Field required")])
    if not isinstance(data, dict):
        raise InvalidRequest(
            [FieldError("body", "Input should be a valid dictionary or object to extract fields from")]
        )
    return data


def create_answer[RequestT: BaseModel](
    event: dict[str, Any], model: type[RequestT], provision: Callable[[RequestT], ProvisionResult]
) -> dict[str, Any]:
    """The answer to a create operation's POST, without the REST resolver (whose import and first
    route cost a cold start tens of milliseconds): the same checks, validation and answers as
    ``rest.build_rest_app``'s route, which documents the operation and answers every other request."""
    refused = precheck(event)
    if refused is not None:
        return refused
    try:
        request = validate_body(request_object(event), model)
    except InvalidRequest as exc:  # bad input is answered, not logged (as the resolver's handler)
        return _error_answer(exc)
    try:
        result = provision(request)
    except Exception as exc:
        return _error_answer(failed(exc))
    return api_answer(result.http_status, result.model_dump_json())


def failed(exc: Exception) -> ProvisioningError:
    """What an API request whose handling raised ``exc`` answers, logged: a hub error as itself (its
    report, no personal data), anything else as an internal error (with its traceback: call it in
    the ``except`` block)."""
    if isinstance(exc, ProvisioningError):
        logger.warning("request failed", extra={"error": exc.report()})
        return exc
    logger.exception("unexpected failure")
    return ProvisioningError("internal error; the request was not completed")


def normalize_content_type(event: dict[str, Any]) -> dict[str, Any]:
    """The event with every JSON Content-Type value (any case, any parameters) written as
    ``application/json``, the only form Powertools recognises; ``event`` itself is not changed."""
    found = _headers(event, "content-type")
    if all(value == JSON for _, _, value in found):
        return event
    normalized = dict(event)
    for where in {where for where, _, _ in found}:
        headers = dict(event.get(where) or {})
        for key, value in headers.items():
            if str(key).lower() != "content-type":
                continue
            if isinstance(value, list):
                headers[key] = [JSON if media_type(str(item)) == JSON else item for item in value]
            elif isinstance(value, str) and media_type(value) == JSON:
                headers[key] = JSON
        normalized[where] = headers
    return normalized


def unsupported(event: dict[str, Any]) -> dict[str, Any]:
    """A 400 answer for an event this function does not take (never a crash)."""
    logger.error("unsupported event shape", extra={"keys": sorted(field_name(str(k)) for k in event)[:10]})
    error = ProvisioningError("unsupported event: expected an API Gateway REST proxy, SQS or scheduled event")
    return {"statusCode": 400, "headers": {"Content-Type": JSON}, "body": json.dumps(error.body())}


def is_signup_event(data: dict[str, Any]) -> bool:
    """Whether a queued body is an EventBridge event (a ``UserSignedUp`` one, ``person.signup_person``
    reads it) rather than an operation's request; decided without loading ``provisioning.person``."""
    return "detail-type" in data and "detail" in data


def load_object(body: str | None) -> dict[str, Any]:
    """A queued message body as a JSON object, or InvalidRequest (never retried: a body that
    cannot be read now never can)."""
    try:
        data = parse_json(body or "")
    except json.JSONDecodeError as exc:
        raise InvalidRequest([FieldError("body", exc.msg)], status=400) from None
    if not isinstance(data, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    return data


def validate_body[RequestT: BaseModel](data: dict[str, Any], model: type[RequestT]) -> RequestT:
    """A typed request, or InvalidRequest naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc)) from None


def external_id_of(body: str | None) -> str | None:
    """Best effort, for a record that could not be parsed: the body's ``external_id``, or a
    ``UserSignedUp`` event's ``detail.external_id``, when it is a valid ExternalId; else None."""
    try:
        data = parse_json(body or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    detail = data.get("detail")
    candidate = detail.get("external_id") if "detail-type" in data and isinstance(detail, dict) else None
    candidate = candidate if candidate is not None else data.get("external_id")
    try:
        return external_id_adapter().validate_python(candidate, strict=True)
    except ValidationError:
        return None


class QueueRecord(FrozenValue):
    """The fields of an SQS event record the queue adapter reads. (Powertools' ``SQSRecord`` has
    them too, but importing it loads every event data class: ~9 ms of each cold start.)"""

    __slots__ = (
        "body",
        "event_source_arn",
        "message_id",
        "receipt_handle",
        "receive_count",
        "typed_attributes",
    )
    message_id: str
    receipt_handle: str
    body: str | None
    event_source_arn: str
    receive_count: int
    # Message attributes with a text value: name -> (data type, value).
    typed_attributes: dict[str, tuple[str, str]]

    def __init__(
        self,
        message_id: str,
        receipt_handle: str,
        body: str | None,
        event_source_arn: str,
        receive_count: int,
        typed_attributes: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        object.__setattr__(self, "message_id", message_id)
        object.__setattr__(self, "receipt_handle", receipt_handle)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "event_source_arn", event_source_arn)
        object.__setattr__(self, "receive_count", receive_count)
        object.__setattr__(self, "typed_attributes", {} if typed_attributes is None else typed_attributes)

    @property
    def attributes(self) -> dict[str, str]:
        return {name: value for name, (_, value) in self.typed_attributes.items()}

    @classmethod
    def from_event(cls, raw: Mapping[str, Any]) -> QueueRecord:
        attributes = raw.get("attributes") or {}
        typed: dict[str, tuple[str, str]] = {}
        message_attributes = raw.get("messageAttributes")
        for name, value in (message_attributes if isinstance(message_attributes, Mapping) else {}).items():
            if not isinstance(value, Mapping):
                continue
            kind, text = str(value.get("dataType") or "String"), value.get("stringValue")
            if isinstance(text, str) and kind.split(".", 1)[0] in ("String", "Number"):
                typed[str(name)] = (kind, text)
        try:
            receive_count = max(1, int(attributes.get("ApproximateReceiveCount") or 1))
        except (TypeError, ValueError):
            receive_count = 1
        return cls(
            message_id=str(raw.get("messageId", "")),
            receipt_handle=str(raw.get("receiptHandle", "")),
            body=raw.get("body"),
            event_source_arn=str(raw.get("eventSourceARN", "")),
            receive_count=receive_count,
            typed_attributes=typed,
        )


class DeadLetters:
    """Moves a record that can never succeed to the dead-letter queue at once, with its reason.

    The copy carries the original body (so a redrive replays it) and a ``failure`` attribute
    (JSON: provider, code, status, message, attempts). The original is then deleted from its
    queue so SQS does not retry it; if anything here fails, the record is simply retried and
    SQS's own redrive policy still brings it to the DLQ.
    """

    def __init__(
        self, sqs: Callable[[], Any], dead_letter_queue_url: str | None, queue_url: str | None = None
    ) -> None:
        self._sqs_client = sqs  # created on first use: most invocations never dead-letter
        self._dlq_url = dead_letter_queue_url
        self._own_queue_url = queue_url  # QUEUE_URL: the function's queue, without a lookup

    @property
    def _sqs(self) -> Any:
        return self._sqs_client()

    def queue_url(self, record: QueueRecord) -> str:
        """The URL of the queue a record came from."""
        return self._queue_url(record.event_source_arn)

    def _queue_url(self, arn: str) -> str:
        """The function reads its own queue only (``QUEUE_URL``): no lookup, and no grant for one."""
        name = arn.rsplit(":", 1)[-1]
        if self._own_queue_url and name == self._own_queue_url.rstrip("/").rsplit("/", 1)[-1]:
            return self._own_queue_url
        raise ConfigurationError(f"records of queue {name!r} reached a function whose QUEUE_URL is another")

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

    @staticmethod
    def report(record: QueueRecord, error: ProvisioningError, attempts: int | None = None) -> dict[str, Any]:
        """The failure report a dead-lettered copy carries (no personal data)."""
        report = error.report()
        report["attempts"] = record.receive_count if attempts is None else attempts
        report["source_message_id"] = record.message_id
        return report

    def send(self, record: QueueRecord, error: ProvisioningError, attempts: int | None = None) -> bool:
        """Dead-letter ``record`` with ``error``'s report; ``attempts``: the real attempts it had
        (receives that failed, not waits; by default this copy's receives)."""
        if not self._dlq_url:
            return False
        report = self.report(record, error, attempts)
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


def process_concurrently(
    records: list[QueueRecord], handle: Callable[[QueueRecord], Any], workers: int
) -> list[str]:
    """Handle the records of one batch with a bounded thread pool (a batch then takes about one
    provider round trip per wave instead of the sum of them); return the ids of those that raised.

    Identical messages (the same person delivered twice) go to one worker, one after the other: the
    second is then answered from the first's link.
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
    pacing: Pacing | None = None,
    workers: int = 1,
    record_failure: Callable[[str, dict[str, Any]], Any] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Provision every record; answer which ones failed, as Lambda's ``ReportBatchItemFailures``
    expects (the rest are acknowledged). ``parse`` turns a body into a request, or None for a
    record that is not for this operation (acknowledged without provisioning), or raises
    InvalidRequest.

    A record that must wait for a request budget (``pacing``) is sent back to its queue, delayed
    until its turn, and acknowledged: waiting does not use up its attempts. A transient failure is
    retried by SQS until it has had ``MAX_ATTEMPTS`` real attempts, then dead-lettered with its
    reason; a permanent one is dead-lettered at once. The report of a record dead-lettered here
    is also given to ``record_failure`` with the person's external_id (the link store keeps it on
    the person's item, which publishes ``ProvisioningFailed``): the parsed request's, else the
    body's ``external_id`` or a ``UserSignedUp`` event's ``detail.external_id`` when it is a valid
    one; a record without a usable external_id cannot be attributed to anyone and is only
    dead-lettered. Failing to record the report never stops the dead-lettering.

    Powertools' batch utility is not used: whenever pydantic is loaded it imports every parser
    model (~110 ms on each cold start); this keeps its contract in a few lines."""
    waiting: list[Waiting] = []

    def dead_letter(
        record: QueueRecord, exc: ProvisioningError, attempts: int, request: RequestT | None
    ) -> NoReturn:
        moved = dead_letters.send(record, exc, attempts)
        if moved and on_dead_letter is not None:
            on_dead_letter(exc)
        if moved and record_failure is not None:
            external_id = getattr(request, "external_id", None) or external_id_of(record.body)
            if external_id:
                try:
                    record_failure(external_id, DeadLetters.report(record, exc, attempts))
                except Exception:
                    logger.warning("could not keep the dead-letter report on the person's link")
        logger.warning("record dead-lettered" if moved else "record failed", extra={"error": exc.report()})
        raise RecordFailed(exc.code) from None

    def handle_record(record: QueueRecord) -> str:
        logger.thread_safe_append_keys(message_id=record.message_id)
        attempts = Pacing.attempts_before(record) + 1
        request: RequestT | None = None
        try:
            if pacing is not None and (early := pacing.early(record)) is not None:
                waiting.append(early)
                return "waiting"
            request = parse(record.body)
            if request is None:
                return "not_targeted"
            with pacing.slot(record) if pacing is not None else nullcontext():
                return provision(request).outcome
        except RateLimited as exc:
            if pacing is None:
                logger.warning("record failed; SQS will retry it", extra={"error": exc.report()})
                raise RecordFailed(exc.code) from None
            try:
                waiting.append(pacing.wait(record, exc))
            except WaitedTooLong as too_long:
                dead_letter(record, too_long, attempts - 1, request)
            logger.info("record waits for its turn", extra={"code": exc.code, "sent": exc.sent})
            return "waiting"
        except ProvisioningError as exc:
            if exc.transient and attempts < MAX_ATTEMPTS:
                logger.warning("record failed; SQS will retry it", extra={"error": exc.report()})
                raise RecordFailed(exc.code) from None
            dead_letter(record, exc, attempts, request)
        except Exception:
            logger.exception("unexpected failure; SQS will retry the record")
            raise
        finally:
            logger.thread_safe_remove_keys(["message_id"])

    records = [QueueRecord.from_event(raw) for raw in event.get("Records", [])]
    failed = process_concurrently(records, handle_record, workers)
    if waiting and pacing is not None:
        for item in pacing.send_back(waiting):  # could not be sent back: wait in the queue instead
            dead_letters.delay(item.record, item.come_back_at - time.time())
            failed.append(item.record.message_id)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
