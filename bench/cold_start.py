"""Cold start against a fair floor: each function, by each of its triggers, imported and invoked once
in a fresh Python process, against a floor that does what any function built on the same libraries
must do for the same request, in a fresh process too (children/floor.py): import boto3, pydantic,
requests and Powertools' Logger and Metrics, create the same clients and make the same AWS and
provider calls, with plain boto3 and requests.

The calls are the function's own: a recording run (untimed) writes what its first invocation asked
of AWS and of its provider (children/recorder.py), and the floor asks exactly that, for a person of
its own each run. Function and floor runs alternate, so that the load of the machine weighs on both.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import CHILDREN
from bench.events import differences, first_request, sample_event, with_fresh_ids
from bench.import_rate import COLUMNS
from bench.providers import BATCH_PROVIDER, READS_A_PERSON, ColdStartCase, cold_start_cases
from bench.report import Report
from bench.s3import import put_event
from bench.stack import LocalStack
from provisioner_cli.local import aws_client

CHILD_TIMEOUT_S = 60
COUNT_TIMEOUT_S = 900  # a child under valgrind runs some 20-50 times slower
INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")
RESULT_MARK = "BENCH_RESULT "
GOAL = 1.15  # a cold start at most this many times its floor


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    runs = 3 if quick else 7
    secret = _webhook_secret(stack)
    counting = shutil.which("valgrind") is not None
    rows, judged, skipped = [], {}, []
    with tempfile.TemporaryDirectory() as bytecode:
        for case in cold_start_cases(stack.template):
            condition = stack.template.of_type("AWS::Serverless::Function")[case.function].get("Condition")
            if condition and not stack.state.conditions.get(condition, True):
                skipped.append(f"{case.function} ({condition} is false on the local stack)")
                continue
            if not case.event_file:
                skipped.append(f"{case.function} by {case.trigger} (no sample first request for it)")
                continue
            row, ratio = _row(stack, report, case, runs, secret, bytecode, counting)
            rows.append(row)
            judged[f"{case.function} {case.trigger}"] = ratio
    measure = "executed instructions" if counting else "time"
    if judged:
        worst = max(judged, key=lambda label: judged[label])
        met = sum(ratio <= GOAL for ratio in judged.values())
        report.goal(
            f"cold start <= {GOAL}x the fair floor ({measure}), every function and trigger",
            f"{met} of {len(judged)} rows; highest {worst} {judged[worst]:.3f}x",
            met == len(judged),
        )
    report.table(
        f"Cold start against a fair floor (median of {runs} fresh processes each; zero-latency sandbox)",
        [
            "function",
            "trigger",
            "calls (AWS + provider)",
            "floor",
            "handler import",
            "first invocation",
            "cold start",
            "time vs floor",
            "CPU: cold start / floor (vs floor)",
            "instructions: cold start / floor",
            "instructions vs floor",
            f"goal <= {GOAL}x",
            "peak memory (floor)",
        ],
        rows,
        "Cold start is the handler's import and its first invocation; a time ratio is the median of each "
        "run's against the floor run beside it. The floor, in a fresh process too, "
        "imports boto3, pydantic (and defines a model), requests and Powertools' Logger and Metrics, "
        "creates the clients the function created and makes the AWS and provider calls its first "
        "invocation made (recorded in a run of its own), with plain boto3 and requests, for a person "
        "of its own; function and floor runs alternate. Both start from compiled bytecode (written "
        "by untimed runs) and from the same interpreter (bench/children/prelude.py). CPU is the "
        "process's own (user + system, every thread). Instructions are those the timed part executed "
        "(one more run of each under valgrind's cachegrind, less a run that stops where the clock "
        "starts): unlike time on a shared machine, they come out the same run after run, so the goal "
        f"is judged on them{'' if counting else ' (valgrind is not installed here: judged on time)'}."
        + (f" Not measured: {'; '.join(skipped)}." if skipped else ""),
    )


def _row(
    stack: LocalStack,
    report: Report,
    case: ColdStartCase,
    runs: int,
    secret: str,
    bytecode: str,
    counting: bool,
) -> tuple[list[Any], float]:
    """The row of ``case`` and the ratio its goal is judged on (instructions when ``counting``)."""
    function = stack.template.function(case.function)
    env = _with_bytecode(stack.functions.process_environment(case.function), bytecode)
    paths = [str(p) for p in function.layers] + [str(function.code_uri)]
    app = str(function.code_uri / "app.py")
    label = f"{case.function} {case.trigger}"
    measured: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)

        def request(what: str) -> Any:
            if case.trigger == "S3":
                return import_request(stack, _person(stack, case, what))
            return first_request(case.folder, case.event_file, _person(stack, case, what), secret)

        recorded_event = request("record")
        calls = str(folder / "calls.pickle")
        recording = _child(
            "cold_start.py",
            env,
            "--record",
            calls,
            _written(folder / "record.json", recorded_event),
            app,
            *paths,
        )
        if not recording["ok"]:
            raise RuntimeError(f"{label}: the first invocation failed ({recording['status']})")
        _child("floor.py", env, calls, _written(folder / "ids.json", {}))  # its bytecode, untimed
        for n in range(runs):
            event = _written(folder / f"event-{n}.json", request(str(n)))
            ids = _written(folder / f"ids-{n}.json", differences(recorded_event, request(f"floor-{n}")))
            # Alternately first: what the machine's load does to the one it does to the other.
            for program in ("floor", "function") if n % 2 else ("function", "floor"):
                if program == "function":
                    measured.append(_child("cold_start.py", env, event, app, *paths))
                else:
                    floors.append(_child("floor.py", env, calls, ids))
        counted = None
        if counting:
            event = _written(folder / "event-count.json", request("count"))
            ids = _written(folder / "ids-count.json", differences(recorded_event, request("floor-count")))
            counted = (
                _count(label, "cold_start.py", env, event, app, *paths),
                _count(label, "floor.py", env, calls, ids),
            )
    failed = [m["status"] for m in measured if not m["ok"]]
    if failed:
        raise RuntimeError(f"{label}: a first invocation failed ({failed})")
    deviations = sorted({d for f in floors for d in f["deviations"]})
    if deviations:
        raise RuntimeError(f"{label}: the floor's calls were answered otherwise: {deviations}")
    imp = statistics.median(m["import"] for m in measured)
    inv = statistics.median(m["invoke"] for m in measured)
    cold = statistics.median(m["import"] + m["invoke"] for m in measured)
    floor = statistics.median(f["floor"] for f in floors)
    # The ratio of each pair (run n of the function and of the floor, one just after the other), the
    # median of them: a drift of the machine's load between pairs cancels out.
    pairs = list(zip(measured, floors, strict=True))
    ratio = statistics.median((m["import"] + m["invoke"]) / f["floor"] for m, f in pairs)
    cpu = statistics.median(m["cpu"] for m in measured)
    floor_cpu = statistics.median(f["cpu"] for f in floors)
    cpu_ratio = statistics.median(m["cpu"] / f["cpu"] for m, f in pairs)
    judged = counted[0] / counted[1] if counted else ratio
    return [
        case.function,
        case.trigger,
        f"{floors[0]['aws_calls']} + {floors[0]['http_calls']}",
        f"{floor * 1000:.0f} ms",
        f"{imp * 1000:.0f} ms",
        f"{inv * 1000:.0f} ms",
        f"{cold * 1000:.0f} ms",
        f"{ratio:.2f}x",
        f"{cpu * 1000:.0f} / {floor_cpu * 1000:.0f} ms: {cpu_ratio:.2f}x",
        f"{counted[0] / 1e6:,.0f}M / {counted[1] / 1e6:,.0f}M" if counted else "not counted",
        f"{judged:.3f}x" if counted else "",
        report.check(judged <= GOAL, f"{label} cold start <= {GOAL}x its floor"),
        f"{statistics.median(m['rss_kb'] for m in measured) / 1024:.0f} MB "
        f"({statistics.median(f['rss_kb'] for f in floors) / 1024:.0f} MB)",
    ], judged


def _count(label: str, program: str, env: dict[str, str], *args: str) -> int:
    """The instructions ``bench/children/<program>`` executes in its timed part: a run under
    valgrind's cachegrind to its end, less one that stops where its clock would start (both end
    with ``os._exit``: no interpreter teardown is counted)."""
    counts = {}
    for until in ("full", "pre"):
        # A fixed hash seed: set and dict orders, and so the count, are the same run after run.
        run_env = {**env, "BENCH_COUNT": until, "BENCH_DEADLINE_S": str(COUNT_TIMEOUT_S)}
        run_env["PYTHONHASHSEED"] = "0"
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            str(CHILDREN / program),
            *args,
        ]
        out = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=COUNT_TIMEOUT_S)
        results = [line for line in out.stdout.splitlines() if line.startswith(RESULT_MARK)]
        found = INSTRUCTIONS.findall(out.stderr)
        if out.returncode or not results or not found:
            failure = f"exit {out.returncode}: {out.stderr[-2000:]}"
            raise RuntimeError(f"{label}: counting {program} failed ({failure})")
        result = json.loads(results[-1].removeprefix(RESULT_MARK))
        if not result.get("ok", True) or result.get("deviations"):
            raise RuntimeError(f"{label}: the counted run of {program} went otherwise: {result}")
        counts[until] = int(found[-1].replace(",", ""))
    return counts["full"] - counts["pre"]


def _with_bytecode(env: dict[str, str], bytecode: str) -> dict[str, str]:
    """The environment of a run whose modules are compiled once, by the untimed runs, into
    ``bytecode``: a cold start measured as a package that ships its bytecode starts (Lambda cannot
    write one: /var/task is read-only)."""
    env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": bytecode}


def _written(path: Path, content: Any) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def _person(stack: LocalStack, case: ColdStartCase, what: str) -> str:
    """A person of the run's own; created first when the function's request reads one."""
    person = f"cold-{uuid.uuid4().hex[:8]}-{what}"
    if case.function in READS_A_PERSON:
        create = BATCH_PROVIDER.create
        event = with_fresh_ids(sample_event(create.folder, "api.json"), person)
        answer = stack.functions.load(create.function)(event)
        if answer["statusCode"] >= 300:
            raise RuntimeError(f"{create.function} did not create {person}: {answer}")
    return person


def import_request(stack: LocalStack, person: str) -> dict[str, Any]:
    """An S3 import's first request: a CSV of one person (for every provider) put in the stack's
    ImportBucket under a key of its own, and the object-created event S3 sends for it."""
    bucket, key = stack.state.refs["ImportBucket"], f"imports/{person}.csv"
    body = (
        ",".join(COLUMNS) + f"\r\n{person},{person}@example.test,Ana,Perez,+5215512345678,1990-04-01,MX,\r\n"
    ).encode()
    answer = aws_client(stack.state, "s3").put_object(Bucket=bucket, Key=key, Body=body)
    return put_event(bucket, key, answer["ETag"].strip('"'), len(body), answer.get("VersionId"))


def _webhook_secret(stack: LocalStack) -> str:
    """The signing secret of the signed-webhook function, as the local stack created it."""
    client = stack.state.harness_session().client("secretsmanager", endpoint_url=stack.state.aws_endpoint)
    value = client.get_secret_value(SecretId=stack.state.parameters["SignupWebhookSecretId"])
    return str(json.loads(value["SecretString"])["secrets"][0])


def _child(program: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Runs ``bench/children/<program>`` in a fresh Python process with ``env``; its result."""
    command = [sys.executable, str(CHILDREN / program), *args]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    results = [line for line in out.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if out.returncode or not results:
        raise RuntimeError(f"{program} failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(results[-1].removeprefix(RESULT_MARK)))
