"""What the Lambda service provides around a handler, for running handlers without Docker:
a context object, loading a handler from its code folder, and an SQS event source mapping."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
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


def load_handler(code_uri: Path, handler: str, layers: list[Path] | None = None) -> Handler:
    """Import ``module.attr`` from a function's code folder (a fresh module per call)."""
    module_name, attr = handler.rsplit(".", 1)
    for path in [*(layers or []), code_uri]:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    unique = f"_fn_{uuid.uuid4().hex}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, code_uri / f"{module_name.replace('.', '/')}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {handler} from {code_uri}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)  # type: ignore[no-any-return]


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
        failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        report.failed += len(messages) - len(done)
        report.acknowledged += len(done)
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
    return report
