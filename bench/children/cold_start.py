"""One cold start, in the fresh Python process this program runs in: imports a function's handler
and invokes it once, as Lambda's runtime would, and prints how long each took.

    python cold_start.py [--record CALLS_FILE] EVENT_FILE APP_FILE PATH...

``--record`` (an untimed run) writes what the invocation asked of AWS and of its provider to
CALLS_FILE (recorder.py), for the floor to ask the same. The function's environment is this
process's. PATHs (its layers, then its code folder) go first on ``sys.path``, after the clock starts.
Prints ``BENCH_RESULT`` and a JSON object (seconds, CPU seconds, peak memory) on its last line.
With ``BENCH_COUNT`` set (a run whose executed instructions are counted, under valgrind), it ends
with ``os._exit`` so that no interpreter teardown is counted: at the point the clock would start
(``pre``) or after the invocation (``full``); ``BENCH_DEADLINE_S`` gives such a slow run the time
its first invocation needs (30 s otherwise, the Context's remaining time).
Before the clock starts it imports only ``prelude`` (what the floor's child imports before its own).
"""

import json
import os
import sys
import time
import uuid

import prelude  # type: ignore[import-not-found]  # noqa: F401 - bench/children/, first on the path


class Context:  # what the Lambda runtime passes; defined here so no import is timed with it
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = str(uuid.uuid4())

    def __init__(self) -> None:
        self._deadline = time.monotonic() + float(os.environ.get("BENCH_DEADLINE_S", "30"))

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


args = sys.argv[1:]
record = None
if args[0] == "--record":
    record, args = args[1], args[2:]
    import recorder  # type: ignore[import-not-found]  # bench/children/, first on the path

    recorder.install()
event_file, app, *paths = args
with open(event_file) as handle:
    event = json.load(handle)

COUNT = os.environ.get("BENCH_COUNT")


def end_count() -> None:
    print("BENCH_RESULT " + json.dumps({"ok": True}), flush=True)
    os._exit(0)


if COUNT == "pre":
    end_count()
started, cpu_started = time.perf_counter(), time.process_time()
sys.path[:0] = paths
import importlib.util  # noqa: E402 - loaded by prelude, as Lambda's runtime has it loaded

spec = importlib.util.spec_from_file_location("app", app)
assert spec is not None, app
assert spec.loader is not None, app
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
answer = module.handler(event, Context())
done, cpu = time.perf_counter(), time.process_time() - cpu_started

if record:
    recorder.save(record)
# A Cognito trigger answers with its event; an SQS or stream function with the records it failed.
status = answer.get("statusCode", 200) if isinstance(answer, dict) else 200
ok = status < 300 and not (isinstance(answer, dict) and answer.get("batchItemFailures"))
result = {
    "import": imported - started,
    "invoke": done - imported,
    "cpu": cpu,
    "ok": ok,
    "status": status,
    "rss_kb": peak_kb(),
}
print("BENCH_RESULT " + json.dumps(result), flush=True)
if COUNT:
    os._exit(0)
