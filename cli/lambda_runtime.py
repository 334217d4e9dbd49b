"""What the Lambda service provides around a handler, for running handlers without Docker:
a context object, loading a handler from its code folder, and the SQS and DynamoDB stream event
source mappings."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from provisioner_cli.local import ACCOUNT, REGION

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    function_name: str
    timeout_s: float = 30.0
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self._started)) * 1000))


# A SnapStart hook as ``snapshot_restore_py`` registers it: (function, args, kwargs).
Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


@dataclass
class Container:
    """A function's execution environment after its init: the handler, and the SnapStart hooks its
    init registered (Lambda runs the before-snapshot ones when it publishes a version, the
    after-restore ones in each environment it restores)."""

    handler: Handler
    before_snapshot: list[Hook]
    after_restore: list[Hook]


@contextmanager
def _own_snapstart_hooks() -> Iterator[tuple[list[Hook], list[Hook]]]:
    """The hooks registered inside the block, taken out of ``snapshot_restore_py``'s registries.

    Lambda's runtime has one registry per execution environment, a process of its own. Here several
    environments share one process: left in the process-wide registries, each loaded handler (with
    its clients, its app and everything they hold) would stay alive for as long as the process."""
    before: list[Hook] = []
    after: list[Hook] = []
    try:
        import snapshot_restore_py
    except ImportError:  # nothing can register hooks
        yield before, after
        return
    registries = (snapshot_restore_py.get_before_snapshot(), snapshot_restore_py.get_after_restore())
    kept = [list(registry) for registry in registries]
    for registry in registries:
        registry.clear()
    try:
        yield before, after
    finally:
        for registry, own, others in zip(registries, (before, after), kept, strict=True):
            own.extend(registry)
            registry[:] = others


def load_container(code_uri: Path, handler: str, layers: list[Path] | None = None) -> Container:
    """Import ``module.attr`` from a function's code folder (a fresh module per call), as Lambda's
    init does: the handler, with the SnapStart hooks this init registered."""
    module_name, attr = handler.rsplit(".", 1)
    for path in [*(layers or []), code_uri]:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    unique = f"_fn_{uuid.uuid4().hex}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, code_uri / f"{module_name.replace('.', '/')}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {handler} from {code_uri}")
    module = importlib.util.module_from_spec(spec)
    with _own_snapstart_hooks() as (before, after):
        spec.loader.exec_module(module)
    return Container(getattr(module, attr), before, after)


def load_handler(code_uri: Path, handler: str, layers: list[Path] | None = None) -> Handler:
    """Import ``module.attr`` from a function's code folder (a fresh module per call)."""
    return load_container(code_uri, handler, layers).handler


@dataclass
class AsyncInvocation:
    """What Lambda did with one asynchronous invocation."""

    attempts: int
    result: Any = None
    error: Exception | None = None
    record: dict[str, Any] | None = None  # the OnFailure destination record, when it failed for good


def failure_record(event: Any, error: Exception, attempts: int, function_name: str) -> dict[str, Any]:
    """The record Lambda sends to an OnFailure destination when an asynchronous invocation's
    attempts all failed."""
    request_id = str(uuid.uuid4())
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": [],
        },
    }


def invoke_async(
    invoke: Callable[[dict[str, Any]], Any],
    event: dict[str, Any],
    *,
    function_name: str,
    maximum_retry_attempts: int = 2,
    on_failure: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncInvocation:
    """Lambda's handling of an asynchronous invocation (an EventBridge rule's, InvocationType
    Event): the event runs again while it fails, ``maximum_retry_attempts`` more times at most
    (EventInvokeConfig; Lambda waits a minute, then two, between attempts: not here); the last
    failure's record goes to ``on_failure`` (the OnFailure destination)."""
    error: Exception | None = None
    for attempt in range(1, maximum_retry_attempts + 2):
        try:
            return AsyncInvocation(attempt, result=invoke(event))
        except Exception as exc:  # the function failed: Lambda retries
            error = exc
    assert error is not None
    record = failure_record(event, error, maximum_retry_attempts + 1, function_name)
    if on_failure is not None:
        on_failure(record)
    return AsyncInvocation(maximum_retry_attempts + 1, error=error, record=record)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS event record as Lambda's event source mapping builds it from a received message."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", ACCOUNT),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "dataType": value.get("DataType", "String"),
                "stringListValues": [],
                "binaryListValues": [],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


@dataclass
class DeliveryReport:
    batches: int = 0
    acknowledged: int = 0
    failed: int = 0
    responses: list[Any] = field(default_factory=list)


def drain_queue(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], Any],
    batch_size: int = 10,
    max_batches: int = 100,
    visibility_timeout: int | None = None,
) -> DeliveryReport:
    """Poll a queue like Lambda's SQS event source mapping with ReportBatchItemFailures: invoke
    with up to ``batch_size`` records, delete the records not reported as failed."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    report = DeliveryReport()
    for _ in range(max_batches):
        kw: dict[str, Any] = (
            {"VisibilityTimeout": visibility_timeout} if visibility_timeout is not None else {}
        )
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            **kw,
        ).get("Messages", [])
        if not messages:
            break
        event = {"Records": [sqs_record(m, arn) for m in messages]}
        response = invoke(event)
        report.batches += 1
        report.responses.append(response)
        done = acknowledge(sqs, queue_url, messages, failed_ids(response))
        report.failed += len(messages) - done
        report.acknowledged += done
    return report


def failed_ids(response: Any) -> set[str]:
    """The message ids an SQS handler reported in ``batchItemFailures``."""
    return {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}


def acknowledge(sqs: Any, queue_url: str, messages: list[dict[str, Any]], failed: set[str]) -> int:
    """Delete the received messages not in ``failed``, ten to a call, as the event source mapping
    does after an invocation; returns how many were deleted (the failed ones wait out their
    visibility timeout)."""
    done = [m for m in messages if m["MessageId"] not in failed]
    for start in range(0, len(done), 10):
        chunk = done[start : start + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
    return len(done)


@dataclass
class PollerStats:
    """What a queue's pollers did: SQS receives (messages received, each counting toward the
    redrive policy), invocations, and records acknowledged or reported failed."""

    receives: int = 0
    invocations: int = 0
    acknowledged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class EventSourceMapping:
    """Lambda's SQS event source mapping, for a queue on the local stack: ``concurrency`` pollers
    (``ScalingConfig.MaximumConcurrency``), each with its own container (``handlers``), receiving
    up to ``batch_size`` records, gathering for up to ``batching_window`` seconds, invoking the
    handler, then deleting the records not reported in ``batchItemFailures``
    (``ReportBatchItemFailures``). Failed records are left to the queue's visibility timeout, so
    the queue's redrive policy sees every receive, as in AWS. Runs until ``stop()``."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handlers: list[Callable[[dict[str, Any]], Any]],
        batch_size: int = 10,
        batching_window: float = 1.0,
        idle_sleep: float = 0.5,
    ) -> None:
        import threading

        self.sqs = sqs
        self.queue_url = queue_url
        self.handlers = handlers
        self.batch_size = batch_size
        self.batching_window = batching_window
        self.idle_sleep = idle_sleep
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._poll, args=(handler,), daemon=True, name=f"esm-{n}")
            for n, handler in enumerate(handlers)
        ]
        self._arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def start(self) -> EventSourceMapping:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _receive(self, count: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        return messages

    def _poll(self, handler: Callable[[dict[str, Any]], Any]) -> None:
        while not self._stop.is_set():
            messages = self._receive(self.batch_size)
            if not messages:
                self._stop.wait(self.idle_sleep)
                continue
            gather_until = time.monotonic() + self.batching_window
            while len(messages) < self.batch_size and time.monotonic() < gather_until:
                self._stop.wait(0.1)
                messages += self._receive(self.batch_size - len(messages))
            try:
                failed = failed_ids(handler({"Records": [sqs_record(m, self._arn) for m in messages]}))
            except Exception as exc:  # an invocation error: the whole batch returns to the queue
                with self._lock:
                    self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                failed = {m["MessageId"] for m in messages}
            done = acknowledge(self.sqs, self.queue_url, messages, failed)
            with self._lock:
                self.stats.receives += len(messages)
                self.stats.invocations += 1
                self.stats.acknowledged += done
                self.stats.failed += len(messages) - done


# ------------------------------------------------------------------------ DynamoDB stream sources
def _lambda_value(value: Any) -> Any:
    """An attribute value as Lambda's event carries it: binary values base64-encoded (boto3 hands
    them over as bytes)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {key: _lambda_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lambda_value(item) for item in value]
    return value


def stream_record(raw: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB stream event record as Lambda's event source mapping builds it from GetRecords."""
    change = dict(raw.get("dynamodb") or {})
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    change = {key: _lambda_value(value) for key, value in change.items()}
    return {
        "eventID": raw.get("eventID", uuid.uuid4().hex),
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion", REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


def sequence_of(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def stream_failure_record(
    batch: list[dict[str, Any]],
    shard_id: str,
    stream_arn: str,
    attempts: int,
    function_name: str,
    function_error: bool,
) -> dict[str, Any]:
    """The record Lambda sends to a stream event source's OnFailure destination when a batch's
    retries are exhausted: where the batch is in the stream, not its records (they stay in the
    stream for its retention, 24 hours, to be read again)."""

    def arrival(record: dict[str, Any]) -> str:
        seconds = record["dynamodb"].get("ApproximateCreationDateTime") or time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(float(seconds)))

    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error:
        response["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": sequence_of(batch[0]),
            "endSequenceNumber": sequence_of(batch[-1]),
            "approximateArrivalOfFirstRecord": arrival(batch[0]),
            "approximateArrivalOfLastRecord": arrival(batch[-1]),
            "batchSize": len(batch),
            "streamArn": stream_arn,
        },
    }


@dataclass
class StreamReport:
    """What a drain of a stream did: invocations, records passed (published or given up),
    retries, the OnFailure records sent, and the invocation errors seen."""

    invocations: int = 0
    records: int = 0
    filtered: int = 0  # passed over by the FilterCriteria
    retries: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)


def read_shard(streams: Any, stream_arn: str, shard_id: str, after: str | None) -> list[dict[str, Any]]:
    """Every record of a shard after sequence number ``after`` (all of them when None)."""
    kw: dict[str, Any] = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        if after
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **kw)["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator:
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not answer.get("Records"):
            break
        records.extend(stream_record(raw, stream_arn) for raw in answer["Records"])
        iterator = answer.get("NextShardIterator")
    return records


def drain_stream(
    streams: Any,
    stream_arn: str,
    invoke: Callable[[dict[str, Any]], Any],
    *,
    batch_size: int = 100,
    maximum_retry_attempts: int = 10,
    bisect: bool = True,
    on_failure: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: dict[str, str] | None = None,
    function_name: str = "function",
    max_invocations: int = 1000,
    filters: list[str] | None = None,
) -> StreamReport:
    """Read a DynamoDB stream like Lambda's event source mapping with ReportBatchItemFailures,
    from each shard's checkpoint (``checkpoints``: shard id -> last sequence number passed, kept
    by the caller across drains; absent: TRIM_HORIZON) to its end:

    - a batch of up to ``batch_size`` records is invoked; when it succeeds the checkpoint moves
      past it;
    - ``batchItemFailures``: the checkpoint moves to just before the lowest sequence number
      reported, and the records from there are retried (with ``bisect``, only the rest of that
      batch first);
    - an invocation error retries the batch (with ``bisect``, its first half);
    - after ``maximum_retry_attempts`` retries the batch is given up: its OnFailure record goes to
      ``on_failure`` (the destination) and the checkpoint moves past it.

    ``filters`` (FilterCriteria's patterns): only the records some pattern matches are invoked; the
    others are passed over, as Lambda drops them.

    An exception that is not an ``Exception`` (the poller itself dying) propagates with the
    checkpoint unmoved: the next drain reads the same records again, as Lambda does after a crash."""
    report = StreamReport()
    checkpoints = {} if checkpoints is None else checkpoints
    accepts = record_filter(filters)
    description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
    for shard in description.get("Shards", []):
        shard_id = shard["ShardId"]
        read = read_shard(streams, stream_arn, shard_id, checkpoints.get(shard_id))
        pending = [record for record in read if accepts(record)]
        report.filtered += len(read) - len(pending)
        attempts, limit = 0, batch_size
        while pending and report.invocations < max_invocations:
            batch = pending[:limit]
            report.invocations += 1
            failed_at: int | None = None
            error = False
            try:
                response = invoke({"Records": batch})
                report.responses.append(response)
                reported = [item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])]
                if reported:
                    sequences = [sequence_of(record) for record in batch]
                    lowest = min(reported, key=lambda s: int(s) if str(s).isdigit() else -1)
                    failed_at = sequences.index(lowest) if lowest in sequences else 0
            except Exception as exc:  # an invocation error: the whole batch failed
                report.errors.append(f"{type(exc).__name__}: {exc}")
                error, failed_at = True, 0
            if failed_at is None:
                checkpoints[shard_id] = sequence_of(batch[-1])
                report.records += len(batch)
                pending = pending[len(batch) :]
                attempts, limit = 0, batch_size
                continue
            if failed_at > 0:  # the records before the failed one are done
                checkpoints[shard_id] = sequence_of(batch[failed_at - 1])
                report.records += failed_at
                pending, batch = pending[failed_at:], batch[failed_at:]
                attempts = 0
            attempts += 1
            if attempts > maximum_retry_attempts:
                record = stream_failure_record(batch, shard_id, stream_arn, attempts, function_name, error)
                report.failures.append(record)
                if on_failure is not None:
                    on_failure(record)
                checkpoints[shard_id] = sequence_of(batch[-1])
                report.records += len(batch)
                pending = pending[len(batch) :]
                attempts, limit = 0, batch_size
                continue
            report.retries += 1
            if bisect:
                limit = max(1, (len(batch) + 1) // 2) if error else len(batch)
        if read and not pending:  # every record read was passed: the filtered ones too
            checkpoints[shard_id] = sequence_of(read[-1])
    return report


def record_filter(patterns: list[str] | None) -> Callable[[dict[str, Any]], bool]:
    """Whether a record passes an event source mapping's FilterCriteria (EventBridge's pattern
    syntax, matched by moto's implementation of it); no patterns: every record does."""
    if not patterns:
        return lambda record: True
    from moto.events.models import EventPattern, EventPatternParser

    compiled = [EventPattern(raw, EventPatternParser(raw).parse()) for raw in patterns]
    return lambda record: any(pattern.matches_event(record) for pattern in compiled)  # type: ignore[arg-type]


def stream_source(template: Any, state: Any, function_id: str) -> StreamSource:
    """A function's DynamoDB stream event source of template.yaml, on the local stack: the stream is
    read and OnFailure records are sent with the function's own role (as Lambda does), so the role
    must grant what Lambda needs."""
    found = template.stream_of(function_id)
    if found is None:
        raise KeyError(f"{function_id} has no DynamoDB stream event in {template.path.name}")
    table, properties = found
    on_failure = (properties.get("DestinationConfig") or {}).get("OnFailure") or {}
    destination = on_failure.get("Destination")
    queue = str(destination["Fn::GetAtt"][0]) if isinstance(destination, dict) else None
    return StreamSource(
        function_id=function_id,
        stream_arn=state.attrs[f"{table}.StreamArn"],
        batch_size=int(properties.get("BatchSize", 100)),
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
        bisect=bool(properties.get("BisectBatchOnFunctionError", False)),
        on_failure_queue_url=state.refs[queue] if queue else None,
        filters=[str(f["Pattern"]) for f in (properties.get("FilterCriteria") or {}).get("Filters", [])],
    )


@dataclass
class StreamSource:
    """One stream event source mapping: its settings, and each shard's checkpoint."""

    function_id: str
    stream_arn: str
    batch_size: int = 100
    maximum_retry_attempts: int = 10  # -1: until the record expires (here: 10,000 retries)
    bisect: bool = True
    on_failure_queue_url: str | None = None
    filters: list[str] = field(default_factory=list)  # FilterCriteria's patterns
    checkpoints: dict[str, str] = field(default_factory=dict)

    def drain(
        self, session: Any, invoke: Callable[[dict[str, Any]], Any], endpoint_url: str | None = None
    ) -> StreamReport:
        """Pass every new record of the stream to ``invoke``; ``session``: the function's role."""
        kw: dict[str, Any] = {"endpoint_url": endpoint_url} if endpoint_url else {}
        # botocore now addresses streams at <account>.streams-ddb.<region>, which moto's in-process
        # mock does not route: the regional endpoint answers the same API.
        streams = session.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=endpoint_url or f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        sqs = session.client("sqs", region_name=REGION, **kw)

        def send(record: dict[str, Any]) -> None:
            if self.on_failure_queue_url:
                sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(record))

        return drain_stream(
            streams,
            self.stream_arn,
            invoke,
            batch_size=self.batch_size,
            maximum_retry_attempts=self.maximum_retry_attempts
            if self.maximum_retry_attempts >= 0
            else 10_000,
            bisect=self.bisect,
            on_failure=send,
            checkpoints=self.checkpoints,
            function_name=self.function_id,
            filters=self.filters,
        )
