"""One simulated SnapStart snapshot and restore, in the fresh Python process this program runs in:
imports a function's handler (Lambda's init), runs the before-snapshot hooks its module registered
(``snapshot_restore_py``) while recording every AWS call and socket connection, then the
after-restore hooks and the first invocation, and prints what happened and how long each took.

    python snapstart.py EVENT_FILE APP_FILE PATH...

The function's environment is this process's; PATHs (its layers, then its code folder) go first on
``sys.path``. Prints ``BENCH_RESULT`` and a JSON object on its last line. The memory snapshot itself
is Lambda's and is not simulated: the after-restore figures are the hooks and the invocation.
"""

import json
import socket
import sys
import time
import uuid
from typing import Any


class Context:  # what the Lambda runtime passes
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench:live"
    aws_request_id = str(uuid.uuid4())

    def __init__(self) -> None:
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


event_file, app, *paths = sys.argv[1:]
with open(event_file) as handle:
    event = json.load(handle)
sys.path[:0] = paths

import importlib.util  # noqa: E402

import botocore.client  # noqa: E402
import snapshot_restore_py  # noqa: E402

aws_calls: list[str] = []
connects: list[str] = []
_make_api_call = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _api_call(client: Any, operation: str, params: Any) -> Any:
    aws_calls.append(f"{client.meta.service_model.service_name}.{operation}")
    return _make_api_call(client, operation, params)


def _connecting(sock: socket.socket, address: Any) -> None:
    connects.append(str(address))
    _connect(sock, address)


def _connecting_ex(sock: socket.socket, address: Any) -> int:
    connects.append(str(address))
    return _connect_ex(sock, address)


setattr(botocore.client.BaseClient, "_make_api_call", _api_call)  # noqa: B010 - private
setattr(socket.socket, "connect", _connecting)  # noqa: B010 - recorded
setattr(socket.socket, "connect_ex", _connecting_ex)  # noqa: B010 - recorded

started = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", app)
assert spec is not None, app
assert spec.loader is not None, app
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
before = snapshot_restore_py.get_before_snapshot()
for func, args, kwargs in before:
    func(*args, **kwargs)
primed = time.perf_counter()
calls_before, connects_before = list(aws_calls), list(connects)

restoring = time.perf_counter()
after = snapshot_restore_py.get_after_restore()
for func, args, kwargs in after:
    func(*args, **kwargs)
restored = time.perf_counter()
loaded = set(sys.modules)
answer = module.handler(event, Context())
done = time.perf_counter()
imported_late = sorted(set(sys.modules) - loaded)  # what the hooks did not load

status = answer.get("statusCode", 200) if isinstance(answer, dict) else 200
failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
result = {
    "hooks": [len(before), len(after)],
    "import": imported - started,
    "prime": primed - imported,
    "restore_hooks": restored - restoring,
    "invoke": done - restored,
    "calls_before": calls_before,
    "connects_before": connects_before,
    "secret_after": "secretsmanager.GetSecretValue" in aws_calls[len(calls_before) :],
    "imported_late": imported_late,
    "ok": status < 500 and not failures,
    "status": status,
}
print("BENCH_RESULT " + json.dumps(result))
