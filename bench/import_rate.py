"""``provisioner import`` at volume: the validation of a large CSV (time and peak memory, in a fresh
process) and the sending rate against a loopback SQS endpoint that answers instantly
(``bench.sqs_endpoint``), so that the figure is the command's own cost, not a server's.

    python -m bench.import_rate [--rows N] [--send-rows N] [--concurrency N] [--client batch|boto3]

``run(stack, report, quick)`` has the shape of the other benchmarks (the stack is not used)."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.report import Report
from bench.sqs_endpoint import instant_sqs_process

VALIDATE_S, VALIDATE_MB, SEND_RATE = 15.0, 100.0, 5000.0
COLUMNS = [
    "external_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "date_of_birth",
    "country",
    "providers",
]


def write_people(path: Path, rows: int) -> Path:
    """People with fresh ids, every fifth targeting Palenca and Palm only."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(1, rows + 1):
            writer.writerow(
                [
                    f"imp-{n}",
                    f"person{n}@example.test",
                    "Ana",
                    f"Perez{n}",
                    f"+52155{n:08d}",
                    "1990-04-01",
                    "MX",
                    "palenca|palm" if n % 5 == 0 else "",
                ]
            )
    return path


# The peak is the process's own (VmHWM): getrusage's ru_maxrss in a process started by fork or
# vfork then exec keeps the parent's peak when that is higher, and the bench's own process is.
_VALIDATE = """
import sys, time
from pathlib import Path
from provisioner_cli.bulk import validate_file
started, cpu = time.perf_counter(), time.process_time()
checked = validate_file(Path(sys.argv[1]), "csv", [sys.argv[2]], report=lambda line: None)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
assert checked.invalid == 0, checked
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(checked.rows, elapsed, cpu, peak_kb / 1024)
"""


@dataclass
class Validated:
    rows: int
    seconds: float  # wall
    cpu: float  # user+sys of the validating process
    peak_mb: float  # its peak RSS (the only process: the validation runs in one)


@dataclass
class Sent:
    rows: int
    seconds: float  # wall
    cpu: float  # user+sys of the sending process and its workers (the endpoint's process not counted)
    processes: int = 1

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def measure_validation(path: Path, provider: str = "palenca") -> Validated:
    """Validating ``path`` in a fresh process: wall and CPU seconds (imports not timed), its own peak
    RSS (imports included)."""
    out = subprocess.run(
        [sys.executable, "-c", _VALIDATE, str(path), provider],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    return Validated(int(out[0]), float(out[1]), float(out[2]), float(out[3]))


def measure_send_rate(
    path: Path,
    rows: int,
    concurrency: int = 8,
    provider: str = "palenca",
    client: str = "batch",
    processes: int | None = None,
) -> Sent:
    """``send_file`` (mapping, rendering and sending) to the instant endpoint in its own process, as
    ``provisioner import`` sends (``client="batch"``: ``BatchClient``, from as many processes as the
    command picks for ``rows`` unless ``processes`` is given) or with a boto3 client in one process
    (``client="boto3"``), for comparison."""
    import resource

    import boto3

    from provisioner_cli.bulk import BatchSender, send_file, sqs_client
    from provisioner_cli.import_workers import auto_processes, make_sender
    from provisioning.imports import BatchClient, Sender

    def cpu() -> float:  # this process and its reaped children (the workers; not the endpoint yet)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    with instant_sqs_process() as (url, stats):
        session = boto3.Session(  # the endpoint checks no signature
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 (not a secret)
        )
        queues = {provider: f"{url}/queue"}
        sender: Sender
        if client == "batch":
            processes = processes or auto_processes(rows)
            sender = make_sender(
                BatchClient(session, concurrency, endpoint_url=url), queues, concurrency, processes
            )
        else:
            processes = 1
            sender = BatchSender(
                sqs_client(session.client, concurrency, endpoint_url=url), queues, concurrency=concurrency
            )
        started, used = time.perf_counter(), cpu()
        result = send_file(path, "csv", [provider], sender)  # its workers stopped and reaped at the end
        elapsed, used = time.perf_counter() - started, cpu() - used
        calls, distinct, accepted = stats()
    assert result.sent[provider] == rows, result
    assert not result.failed, result
    assert distinct == accepted == rows, (distinct, accepted)
    assert calls == result.calls[provider], (calls, result.calls)
    return Sent(rows, elapsed, used, processes)


def run(stack: Any, report: Report, quick: bool) -> None:
    rows, send_rows = (100_000, 20_000) if quick else (1_000_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        checked = measure_validation(write_people(Path(tmp) / "people.csv", rows))
        sent = measure_send_rate(write_people(Path(tmp) / "send.csv", send_rows), send_rows)
    fast = checked.seconds <= VALIDATE_S
    small = checked.peak_mb <= VALIDATE_MB
    rate_met = sent.rate >= SEND_RATE
    if not quick:  # the time goal is for a million rows
        report.goal(
            f"import: {rows:,} rows validated in <= {VALIDATE_S:.0f} s",
            f"{checked.seconds:.1f} s ({checked.cpu:.1f} s CPU)",
            fast,
        )
    report.goal(
        f"import: peak memory validating {rows:,} rows <= {VALIDATE_MB:.0f} MB",
        f"{checked.peak_mb:.0f} MB",
        small,
    )
    report.goal(
        f"import: sending >= {SEND_RATE:,.0f} rows/s",
        f"{sent.rate:,.0f} rows/s ({sent.rows / sent.cpu:,.0f} per CPU-second)",
        rate_met,
    )

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    report.table(
        "provisioner import at volume",
        ["measure", "goal", "measured", "CPU (user+sys)", "met"],
        [
            [
                f"validate {checked.rows:,} rows (one pass)",
                f"<= {VALIDATE_S:.0f} s",
                f"{checked.seconds:.1f} s",
                f"{checked.cpu:.1f} s ({checked.rows / checked.cpu:,.0f} rows per CPU-second)",
                met(fast) if not quick else "(quick: not judged)",
            ],
            [
                "peak memory of that validation",
                f"<= {VALIDATE_MB:.0f} MB",
                f"{checked.peak_mb:.0f} MB",
                "",
                met(small),
            ],
            [
                f"send {sent.rows:,} rows, 8 calls in flight from {sent.processes} processes",
                f">= {SEND_RATE:,.0f} rows/s",
                f"{sent.rate:,.0f} rows/s ({sent.seconds:.1f} s)",
                f"{sent.cpu:.1f} s ({sent.rows / sent.cpu:,.0f} rows per CPU-second)",
                met(rate_met),
            ],
        ],
        "Validation in a fresh process, one process (peak RSS includes the imports). Sending with "
        "BatchClient, as the command sends (from one process per CPU for an import this large; "
        "`--processes`), against a loopback endpoint speaking SQS's JSON protocol "
        "that answers SendMessageBatch instantly, in a process of its own (its CPU not counted; it shares "
        "the machine's cores with the senders). "
        "Sending includes the second pass's reading, mapping and rendering. "
        "Re-measure: `python -m bench.import_rate` (add `--client boto3` for boto3's own client).",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_rate")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--send-rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--client", choices=["batch", "boto3"], default="batch")
    parser.add_argument("--processes", type=int, help="default: as provisioner import picks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.rows:
            checked = measure_validation(write_people(Path(tmp) / "people.csv", args.rows))
            print(
                f"validate {checked.rows} rows: {checked.seconds:.1f} s wall, {checked.cpu:.1f} s CPU "
                f"({checked.rows / checked.cpu:,.0f} rows/CPU-s), peak RSS {checked.peak_mb:.0f} MB"
            )
        if args.send_rows:
            path = write_people(Path(tmp) / "send.csv", args.send_rows)
            sent = measure_send_rate(
                path, args.send_rows, args.concurrency, client=args.client, processes=args.processes
            )
            print(
                f"send {sent.rows} rows with {args.client}, {args.concurrency} calls in flight, "
                f"{sent.processes} processes: "
                f"{sent.rate:,.0f} rows/s ({sent.seconds:.1f} s wall), {sent.cpu:.1f} s CPU "
                f"({sent.rows / sent.cpu:,.0f} rows/CPU-s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
