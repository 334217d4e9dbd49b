"""The fair cold-start floor, in the fresh Python process this program runs in: what any function
built on the same libraries must do for the same first request, and no code of ours.

    python floor.py CALLS_FILE SUBSTITUTIONS_FILE

Imports boto3, pydantic (and defines a first model class, which loads the rest of it), requests and
Powertools' Logger and Metrics (and creates one of each); creates the clients the function created;
and makes the calls its first invocation made (CALLS_FILE, written by recorder.py in a recording
run): the same AWS operations with the same parameters through plain boto3 clients, the same HTTP
requests through a plain requests session, each thread's calls on a thread of its own as the
function made them. SUBSTITUTIONS_FILE (JSON) maps the recording's ids to this run's fresh ones, so
that conditional writes meet a fresh key; so are hex digests in the recorded parameters (digests of
the recorded person's data), and ids a provider answered with, as the answers come.

Prints ``BENCH_RESULT`` and a JSON object (seconds, CPU seconds, peak memory, calls made, and calls
answered otherwise than in the recording) on its last line. Reads its files before the clock starts.
``BENCH_COUNT`` (``pre`` or ``full``) ends it with ``os._exit`` where the clock would start or after
the calls, as in cold_start.py.
"""

import json
import os
import pickle
import re
import secrets
import sys
import threading
import time
from typing import Any

import prelude  # type: ignore[import-not-found]  # noqa: F401 - bench/children/, first on the path

DIGEST = re.compile(r"(?<![0-9a-f])[0-9a-f]{32,}(?![0-9a-f])")


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def substituted(value: Any, table: dict[str, str]) -> Any:
    """``value`` with every recorded id replaced by this run's, in strings, bytes and containers."""
    if isinstance(value, str):
        for old, new in table.items():
            if old in value:
                value = value.replace(old, new)
        return value
    if isinstance(value, bytes):
        for old, new in table.items():
            if old.encode() in value:
                value = value.replace(old.encode(), new.encode())
        return value
    if isinstance(value, dict):
        return {k: substituted(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [substituted(v, table) for v in value]
    if isinstance(value, set):
        return {substituted(v, table) for v in value}
    return value


def learn(recorded: Any, answered: Any, table: dict[str, str]) -> None:
    """Maps each string of a recorded answer to the one in the same place of this run's answer."""
    if isinstance(recorded, bool) or isinstance(answered, bool):
        return
    if isinstance(recorded, str | int) and isinstance(answered, str | int) and recorded != answered:
        if len(str(recorded)) >= 4:  # an id (a provider's may be a number), not a flag or a count
            table[str(recorded)] = str(answered)
    elif isinstance(recorded, dict) and isinstance(answered, dict):
        for key in recorded.keys() & answered.keys():
            learn(recorded[key], answered[key], table)
    elif isinstance(recorded, list) and isinstance(answered, list):
        for old, new in zip(recorded, answered, strict=False):
            learn(old, new, table)


def digests(value: Any, table: dict[str, str]) -> None:
    """Maps each hex digest (32 digits or more) in ``value`` to a fresh one: a digest of the recorded
    person's data (an idempotency key, a fingerprint) is, for a person of this run, another digest."""
    if isinstance(value, str):
        for digest in DIGEST.findall(value):
            table.setdefault(digest, secrets.token_hex(len(digest) // 2 + 1)[: len(digest)])
    elif isinstance(value, dict):
        for item in value.values():
            digests(item, table)
    elif isinstance(value, list):
        for item in value:
            digests(item, table)


def as_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


calls_file, substitutions_file = sys.argv[1:3]
with open(calls_file, "rb") as calls_handle:
    recording = pickle.load(calls_handle)  # noqa: S301 - written by this bench's own recording run
with open(substitutions_file) as ids_handle:
    table: dict[str, str] = json.load(ids_handle)
# In three phases, as the function made them: the first thread's calls until another thread's first
# call, then every other thread's calls at once (and the first thread's made meanwhile), then the rest.
calls = recording["calls"]
for recorded_call in calls:
    if recorded_call["kind"] == "aws":
        digests(recorded_call["params"], table)
first = calls[0]["thread"] if calls else 0
others = [n for n, c in enumerate(calls) if c["thread"] != first]
split = (others[0], others[-1] + 1) if others else (len(calls), len(calls))
before, during, after = calls[: split[0]], calls[split[0] : split[1]], calls[split[1] :]
threads: dict[int, list[dict[str, Any]]] = {}
for recorded_call in during:
    threads.setdefault(recorded_call["thread"], []).append(recorded_call)
deviations: list[str] = []

COUNT = os.environ.get("BENCH_COUNT")
if COUNT == "pre":
    print("BENCH_RESULT " + json.dumps({"deviations": []}), flush=True)
    os._exit(0)
started, cpu_started = time.perf_counter(), time.process_time()
import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402
import requests  # noqa: E402
from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from botocore import xform_name  # noqa: E402
from pydantic import BaseModel  # noqa: E402


class Request(BaseModel):  # the first model class loads the rest of pydantic
    external_id: str


logger, metrics = Logger(), Metrics()
clients: dict[str, Any] = {}
for service in recording["clients"]:
    client = boto3.client(service)
    clients.setdefault(service, client)
http = requests.Session()


def replay(group: list[dict[str, Any]]) -> None:
    for call in group:
        if call["kind"] == "aws":
            params = substituted(call["params"], table)
            method = getattr(clients[call["service"]], xform_name(call["operation"]))
            try:
                method(**params)
                error = None
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {}).get("Code")
            if error != call["error"]:
                what = json.dumps(params, default=str)[:400]
                deviations.append(f"{call['service']}:{call['operation']} {call['error']} -> {error}: {what}")
        else:
            answer = http.request(
                call["method"],
                substituted(call["url"], table),
                # Its length is the substituted body's (requests sets it).
                headers={
                    k: v for k, v in substituted(call["headers"], table).items() if k != "Content-Length"
                },
                data=substituted(call["body"], table),
                timeout=10,
                allow_redirects=False,
            )
            learn(as_json(call["answer"]), as_json(answer.content), table)
            if answer.status_code != call["status"]:
                deviations.append(f"{call['method']} {call['url']} {call['status']} -> {answer.status_code}")


replay(before)
workers = [threading.Thread(target=replay, args=(group,)) for group in threads.values()]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
replay(after)
floor, cpu = time.perf_counter() - started, time.process_time() - cpu_started

aws_calls = sum(1 for c in calls if c["kind"] == "aws")
result = {
    "floor": floor,
    "cpu": cpu,
    "rss_kb": peak_kb(),
    "aws_calls": aws_calls,
    "http_calls": len(calls) - aws_calls,
    "deviations": deviations,
}
print("BENCH_RESULT " + json.dumps(result), flush=True)
if COUNT:
    os._exit(0)
