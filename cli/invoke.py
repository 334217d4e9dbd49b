"""Docker-free counterpart of ``sam local invoke``: handler, layers and environment come from
template.yaml; the handler runs in a fresh Python process against the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner_cli.local import StackState
from provisioner_cli.template import Template


@dataclass
class Invocation:
    ok: bool
    result: Any
    logs: str
    error: str | None = None


RUNNER = ("-m", "provisioner_cli.runner")


def run_handler(
    template: Template,
    state: StackState,
    logical_id: str,
    event: dict[str, Any],
    result_file: Path,
    *,
    environment: dict[str, str] | None = None,
    runner: Sequence[str] = RUNNER,
    python_path: Sequence[Path] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the function's handler once in a fresh Python process with its layers and code on the
    path (then ``python_path``): ``runner`` (``provisioner_cli.runner``'s arguments) reads the event
    on stdin and writes the result to ``result_file``. ``environment``: the function's variables,
    instead of the template's resolved for ``state``."""
    function = template.function(logical_id)
    if environment is None:
        environment = state.function_environment(template, logical_id)
    env = {**os.environ, **environment}
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(p) for p in function.layers), str(function.code_uri), *(str(p) for p in python_path)]
    )
    return subprocess.run(
        [
            sys.executable,
            *runner,
            str(function.code_uri),
            function.handler,
            str(function.timeout),
            logical_id,
            str(result_file),
            *(str(p) for p in function.layers),
        ],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        timeout=function.timeout + 30,
        check=False,
    )


def invoke_function(
    template: Template,
    state: StackState,
    logical_id: str,
    event: dict[str, Any],
    environment: dict[str, str] | None = None,
) -> Invocation:
    """``environment``: the function's variables, instead of the template's resolved for ``state``."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        completed = run_handler(template, state, logical_id, event, result_file, environment=environment)
        logs = completed.stdout + completed.stderr
        if not result_file.exists():
            return Invocation(False, None, logs, f"the handler process exited with {completed.returncode}")
        payload = json.loads(result_file.read_text())
    if payload["ok"]:
        return Invocation(True, payload["result"], logs)
    return Invocation(False, None, logs, f"{payload['errorType']}: {payload['errorMessage']}")
