"""The S3 import path end to end on the local stack, and what one ImportFunction invocation can import.

1. A CSV of people is put in the stack's ``ImportBucket`` (moto's S3), and ``ImportFunction`` is invoked
   with the object-created event S3 sends (``events/import_file/put.json`` for that object): every row
   must be queued once for each provider it targets, and ``<key>.summary.json`` must say ``done``.
2. ``bench.s3_import_rate`` measures the import's CPU per row over both passes (the object streamed,
   the rows sent to an instant loopback SQS endpoint), and from it the size one 900-second invocation
   can import at half that budget."""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from bench import ROOT
from bench.import_rate import write_people
from bench.report import Report
from bench.s3_import_rate import LAMBDA_SECONDS, MARGIN, measure
from bench.stack import LocalStack
from provisioner_cli.local import aws_client
from provisioning.providers import PROVIDERS

PUT_EVENT = ROOT / "events" / "import_file" / "put.json"


def put_event(bucket: str, key: str, etag: str, size: int, version_id: str | None) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(json.loads(PUT_EVENT.read_text()))
    record = event["Records"][0]["s3"]
    record["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    record["object"].update(key=quote_plus(key, safe="/"), eTag=etag, size=size, versionId=version_id)
    return event


def import_queues(stack: LocalStack) -> dict[str, str]:
    """Each provider's create queue, as ImportFunction's environment names it."""
    env = stack.state.function_environment(stack.template, "ImportFunction")
    return {
        name.removesuffix("_IMPORT_QUEUE_URL").lower(): url
        for name, url in env.items()
        if name.endswith("_IMPORT_QUEUE_URL")
    }


def queued(sqs: Any, queues: dict[str, str]) -> dict[str, int]:
    """Messages waiting in each create queue (moto's count is exact)."""
    counts = {}
    for provider, url in queues.items():
        answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        counts[provider] = int(answer["Attributes"]["ApproximateNumberOfMessages"])
    return counts


def expected(rows: int) -> dict[str, int]:
    """What ``write_people``'s rows queue: every fifth person goes to Palenca and Palm only."""
    fifths = rows // 5
    return {info.name: rows if info.name in ("palenca", "palm") else rows - fifths for info in PROVIDERS}


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    rows, sized_rows = (1_000, 10_000) if quick else (2_000, 50_000)  # moto's server queues ~100 a second
    s3, sqs = aws_client(stack.state, "s3"), aws_client(stack.state, "sqs")
    queues = import_queues(stack)
    for url in queues.values():
        sqs.purge_queue(QueueUrl=url)
    bucket, key = stack.state.refs["ImportBucket"], "imports/bench/people.csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = write_people(Path(tmp) / "people.csv", rows)
        body = path.read_bytes()
        answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
        event = put_event(bucket, key, answer["ETag"].strip('"'), len(body), answer.get("VersionId"))
        invoke = stack.functions.load("ImportFunction")
        started = time.perf_counter()
        invoke(event)
        seconds = time.perf_counter() - started
        summary = json.loads(s3.get_object(Bucket=bucket, Key=f"{key}.summary.json")["Body"].read())
        counts = queued(sqs, queues)
        wall, cpu = measure(write_people(Path(tmp) / "sized.csv", sized_rows), sized_rows, 8)
    want = expected(rows)
    tested = summary.get("status") == "done" and counts == want
    report.goal(
        "S3 import path tested: a file put in ImportBucket (moto's S3) imported by ImportFunction",
        f"{rows:,} rows, {sum(counts.values()):,} of {sum(want.values()):,} messages queued, "
        f"summary '{summary.get('status')}'",
        tested,
    )
    per_row = cpu / sized_rows
    limit = int(LAMBDA_SECONDS * MARGIN / per_row)
    report.table(
        f"S3 import (ImportFunction on the local stack, {rows:,} rows; sizing from {sized_rows:,} rows)",
        ["measure", "measured"],
        [
            ["file put in ImportBucket, one invocation", f"{seconds:.1f} s wall (moto's S3 and SQS)"],
            ["summary status", str(summary.get("status"))],
            ["messages queued per provider", ", ".join(f"{p} {n:,}" for p, n in counts.items())],
            ["expected per provider", ", ".join(f"{p} {n:,}" for p, n in want.items())],
            [
                "both passes, CPU per request (instant SQS endpoint)",
                f"{per_row * 1e6:.0f} us ({wall:.1f} s wall)",
            ],
            [
                f"one invocation ({LAMBDA_SECONDS} s, 1 vCPU, planned at {MARGIN:.0%})",
                f"about {limit:,} requests (a request: one row for one provider)",
            ],
        ],
        "Beyond one invocation: a Step Functions distributed map over the object (docs/imports.md).",
    )
