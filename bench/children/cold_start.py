"""One cold start, in the fresh Python process this program runs in: imports a function's handler
and invokes it once, as Lambda's runtime would, and prints how long each took.

    python cold_start.py EVENT_FILE APP_FILE PATH...

The function's environment is this process's. PATHs (its layers, then its code folder) go first on
``sys.path``, after the clock starts. Prints ``BENCH_RESULT`` and a JSON object (seconds, peak memory)
on its last line. Imports only what Python itself has loaded before the clock starts.
"""

import json
import sys
import time
import uuid


class Context:  # what the Lambda runtime passes; defined here so no import is timed with it
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = str(uuid.uuid4())

    def __init__(self) -> None:
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


event_file, app, *paths = sys.argv[1:]
with open(event_file) as handle:
    event = json.load(handle)

started = time.perf_counter()
sys.path[:0] = paths
import importlib.util  # noqa: E402 - timed: the runtime imports the handler this way

spec = importlib.util.spec_from_file_location("app", app)
assert spec is not None, app
assert spec.loader is not None, app
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
answer = module.handler(event, Context())
done = time.perf_counter()

ok = answer.get("statusCode", 200) < 300 and not answer.get("batchItemFailures")
result = {"import": imported - started, "invoke": done - imported, "ok": ok, "rss_kb": peak_kb()}
print("BENCH_RESULT " + json.dumps(result))
