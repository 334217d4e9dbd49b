"""SnapStart: each function's hooks run in a fresh process as Lambda runs them (before the snapshot,
after a restore), with every AWS call and connection before the snapshot counted (the goal: none),
and its first invocation after the simulated restore against its plain cold start."""

from __future__ import annotations

import json
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.cold_start import _child
from bench.events import sample_event, with_fresh_ids
from bench.report import Report
from bench.stack import LocalStack

# The first event of each function: its API where it has one (the latency SnapStart is for).
FIRST_EVENTS = ("api.json", "confirm_sign_up.json", "stream.json")


def _cases(stack: LocalStack) -> list[tuple[str, str, str]]:
    """(function, events/<folder>/, event file) for every function the local stack runs."""
    cases = []
    for function_id in stack.template.functions():
        folder = stack.template.function(function_id).code_uri
        events = stack.template.root / "events" / folder.name
        try:
            stack.functions.environment(function_id)
        except (KeyError, LookupError):  # not deployed with the default parameters (ApiDocsFunction)
            continue
        event_file = next((name for name in FIRST_EVENTS if (events / name).exists()), None)
        if event_file is not None:
            cases.append((function_id, folder.name, event_file))
    return cases


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    runs = 1 if quick else 3
    rows, total_calls, tested = [], 0, 0
    for function_id, folder, event_file in _cases(stack):
        function = stack.template.function(function_id)
        env = stack.functions.process_environment(function_id)
        paths = [str(p) for p in function.layers] + [str(function.code_uri)]
        snaps: list[dict[str, Any]] = []
        colds: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory() as workdir:
            for n in range(runs):
                for results, program in ((snaps, "snapstart.py"), (colds, "cold_start.py")):
                    event = sample_event(folder, event_file)
                    if "Records" not in event or "body" in event["Records"][0]:  # not a stream's
                        event = with_fresh_ids(event, f"snap-{uuid.uuid4().hex[:8]}-{n}")
                    path = Path(workdir) / f"event-{program}-{n}.json"
                    path.write_text(json.dumps(event))
                    results.append(_child(program, env, str(path), str(function.code_uri / "app.py"), *paths))
        calls = sum(len(s["calls_before"]) + len(s["connects_before"]) for s in snaps)
        total_calls += calls
        tested += 1
        first = statistics.median(s["restore_hooks"] + s["invoke"] for s in snaps)
        cold = statistics.median(c["import"] + c["invoke"] for c in colds)
        rows.append(
            [
                function_id,
                event_file.removesuffix(".json"),
                "/".join(str(n) for n in snaps[0]["hooks"]),
                str(calls),
                "yes" if all(s["secret_after"] for s in snaps) else "-",
                ", ".join(sorted({m for s in snaps for m in s["imported_late"]})) or "none",
                f"{statistics.median(s['prime'] for s in snaps) * 1000:.0f} ms",
                f"{first * 1000:.0f} ms",
                f"{cold * 1000:.0f} ms",
                f"{first / cold:.2f}x",
                f"{snaps[0]['status']}" if all(s["ok"] for s in snaps) else f"**no** ({snaps[0]['status']})",
            ]
        )
    headline = f"SnapStart hooks tested: {tested} functions, {total_calls} calls before snapshot"
    report.goal("SnapStart hooks: no AWS call or connection before the snapshot", headline, total_calls == 0)
    report.table(
        f"SnapStart hooks (fresh process each, median of {runs}; zero-latency sandbox)",
        [
            "function",
            "first event",
            "hooks before/after",
            "calls before snapshot",
            "secret read after restore",
            "modules imported by the first invocation",
            "priming (before snapshot)",
            "first invocation after restore",
            "plain cold start",
            "vs cold start",
            "answer",
        ],
        rows,
        f"{headline} (goal: 0; AWS API calls and socket connections). The first invocation after "
        "the restore is the after-restore hooks and the invocation, in the process the hooks primed "
        "(Lambda's restore of the memory snapshot itself is not simulated); the plain cold start is "
        "the handler's import and first invocation in a fresh process. The webhook's sample event is not "
        "signed for the local stack: its answer is the 401 of a signature checked against the secret "
        "read after the restore.",
    )
