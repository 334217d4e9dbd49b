"""The S3 import's cost per row (``provisioning.s3_import.import_object``: both passes, the object
streamed through ``GetObject``'s body), to size what one ImportFunction invocation can import.

The object is served from a local file as botocore's ``StreamingBody`` (S3's own transfer is not
measured: at Lambda's ~90 MB/s from S3 a 100 MB file takes about a second a pass), and the rows are
sent with ``BatchClient`` (as ImportFunction sends) to a loopback endpoint that answers
``SendMessageBatch`` instantly in a process of its own
(``bench.sqs_endpoint``). The CPU time (user+sys of this process, the sender's threads included) is
what a Lambda vCPU must do; the wall time on a shared machine is shown beside it.

    python -m bench.s3_import_rate [--rows N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.import_rate import write_people
from bench.sqs_endpoint import instant_sqs_process

LAMBDA_SECONDS = 900  # the longest invocation
MARGIN = 0.5  # plan on half: a Lambda vCPU's speed, SQS's latency and the deadline margin vary


class LocalObject:
    """``get_object`` of one object read from a local file (ETag and metadata as S3 gives them)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_object(self, **kw: Any) -> dict[str, Any]:
        from botocore.response import StreamingBody

        handle = self.path.open("rb")
        return {
            "Body": StreamingBody(handle, self.path.stat().st_size),
            "ETag": '"bench"',
            "Metadata": {"provider": "palenca"},
        }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(path: Path, rows: int, concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of importing ``path`` (``rows`` rows, one request each)."""
    import boto3

    from provisioning.imports import BatchClient
    from provisioning.s3_import import S3Object, import_object

    with instant_sqs_process() as (url, stats):
        session = boto3.Session(  # the endpoint checks no signature
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 (not a secret)
        )
        sqs = BatchClient(session, concurrency, endpoint_url=url)  # as ImportFunction sends
        obj = S3Object("bench", "imports/people.csv", "bench")
        cpu, started = cpu_seconds(), time.perf_counter()
        summary = import_object(
            LocalObject(path), sqs, obj, {"palenca": f"{url}/queue"}, concurrency=concurrency
        )
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        _, distinct, accepted = stats()
    assert summary.status == "done", summary.reason
    assert summary.sent == distinct == accepted == rows, (summary.sent, distinct, accepted)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.s3_import_rate")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_people(Path(tmp) / "people.csv", args.rows)
        size_mb = path.stat().st_size / 1e6
        wall, cpu = measure(path, args.rows, args.concurrency)
    per_row_us = cpu / args.rows * 1e6
    rows_per_cpu_s = args.rows / cpu
    budget = LAMBDA_SECONDS * MARGIN
    limit = int(rows_per_cpu_s * budget)
    print(
        f"{args.rows:,} rows ({size_mb:.1f} MB, one request each), both passes: "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU"
    )
    print(
        f"  {per_row_us:.0f} us of CPU a row; {rows_per_cpu_s:,.0f} rows per CPU-second; "
        f"{args.rows / wall:,.0f} rows/s wall"
    )
    print(
        f"  one invocation (1 vCPU, {LAMBDA_SECONDS} s, planned at {MARGIN:.0%}): about {limit:,} requests "
        f"(~{limit * size_mb / args.rows:.0f} MB of such rows)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
