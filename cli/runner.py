"""Runs one handler invocation in this (fresh) interpreter, like a Lambda container would.

Usage: python -m provisioner_cli.runner CODE_URI HANDLER TIMEOUT FUNCTION_NAME RESULT_FILE [LAYER...]
The event is read from standard input; the handler's answer is written to RESULT_FILE as JSON.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from provisioner_cli.lambda_runtime import LambdaContext, load_handler


def main(argv: list[str]) -> int:
    code_uri, handler_name, timeout, function_name, result_file, *layers = argv
    event = json.loads(sys.stdin.read())
    try:
        handler = load_handler(Path(code_uri), handler_name, [Path(p) for p in layers])
        result = handler(event, LambdaContext(function_name=function_name, timeout_s=float(timeout)))
        payload = {"ok": True, "result": result}
    except Exception as exc:
        traceback.print_exc()
        payload = {"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}
    Path(result_file).write_text(json.dumps(payload, default=str))
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
