"""Cold start: a function's handler import plus its first invocation in a fresh Python process,
against the floor of ``import boto3`` and the clients the function creates."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import CHILDREN
from bench.events import sample_event, with_fresh_ids
from bench.providers import ColdStartCase, aws_services, cold_start_cases
from bench.report import Report
from bench.stack import LocalStack

CHILD_TIMEOUT_S = 60
RESULT_MARK = "BENCH_RESULT "


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    runs = 3 if quick else 5
    rows = [_row(stack, report, case, runs) for case in cold_start_cases(stack.template)]
    report.table(
        f"Cold start (median of {runs} fresh processes; zero-latency sandbox)",
        [
            "function",
            "trigger",
            "floor: import boto3 + its clients",
            "handler import",
            "first invocation",
            "cold start",
            "vs floor",
            "<= 1.5x",
            "libraries floor (vs floor)",
            "vs libraries floor",
            "peak memory",
            "floor memory",
        ],
        rows,
        "The first invocation includes its AWS calls (moto's server on loopback) and provider calls; "
        "the floors make no call. The libraries floor adds to the floor the imports every function "
        "makes besides boto3 and before any code of ours runs: pydantic (with its first model class), "
        "requests, and Powertools' logger, metrics, parameters and idempotency.",
    )


def _row(stack: LocalStack, report: Report, case: ColdStartCase, runs: int) -> list[Any]:
    function = stack.template.function(case.function)
    env = stack.functions.process_environment(case.function)
    paths = [str(p) for p in function.layers] + [str(function.code_uri)]
    services = aws_services(function)
    measured, floors, library_floors = [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        for n in range(runs):
            event = with_fresh_ids(
                sample_event(case.folder, case.event_file), f"cold-{uuid.uuid4().hex[:8]}-{n}"
            )
            event_file = Path(workdir) / f"event-{n}.json"
            event_file.write_text(json.dumps(event))
            measured.append(
                _child("cold_start.py", env, str(event_file), str(function.code_uri / "app.py"), *paths)
            )
            floors.append(_child("floor.py", env, *services))
            library_floors.append(_child("floor.py", env, "--libraries", *services))
    if not all(m["ok"] for m in measured):
        raise RuntimeError(f"{case.function} {case.event_file}: first invocation failed")
    imp = statistics.median(m["import"] for m in measured)
    inv = statistics.median(m["invoke"] for m in measured)
    floor = statistics.median(f["floor"] for f in floors)
    library_floor = statistics.median(f["floor"] for f in library_floors)
    ratio = (imp + inv) / floor
    return [
        case.function,
        case.trigger,
        f"{floor * 1000:.0f} ms",
        f"{imp * 1000:.0f} ms",
        f"{inv * 1000:.0f} ms",
        f"{(imp + inv) * 1000:.0f} ms",
        f"{ratio:.2f}x",
        report.check(ratio <= 1.5, f"{case.function} {case.trigger} cold start <= 1.5x floor"),
        f"{library_floor * 1000:.0f} ms ({library_floor / floor:.2f}x)",
        f"{(imp + inv) / library_floor:.2f}x",
        f"{statistics.median(m['rss_kb'] for m in measured) / 1024:.0f} MB",
        f"{statistics.median(f['rss_kb'] for f in floors) / 1024:.0f} MB",
    ]


def _child(program: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Runs ``bench/children/<program>`` in a fresh Python process with ``env``; its result."""
    command = [sys.executable, str(CHILDREN / program), *args]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    results = [line for line in out.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if out.returncode or not results:
        raise RuntimeError(f"{program} failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(results[-1].removeprefix(RESULT_MARK)))
