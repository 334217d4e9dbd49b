"""The local stack (moto's server and the provider sandbox) in its own process, for one run."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

from bench import ROOT
from bench.functions import Functions
from provisioner_cli.local import StackState
from provisioner_cli.template import Template


class SandboxControl:
    """The sandbox of a stack running in another process, through its admin routes."""

    def __init__(self, url: str) -> None:
        self.url = url

    def set_faults(self, provider: str, **settings: Any) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json={provider: settings}, timeout=5).raise_for_status()

    @property
    def calls(self) -> list[SimpleNamespace]:
        answer = requests.get(f"{self.url}/_sandbox/calls", timeout=30).json()
        return [SimpleNamespace(**call) for call in answer["calls"]]


@dataclass
class LocalStack:
    """What a benchmark runs against: the template, the running stack, its sandbox, and the
    functions loaded in this process with the stack's environment."""

    template: Template
    state: StackState
    sandbox: SandboxControl
    functions: Functions


@contextmanager
def local_stack(template_path: Path = ROOT / "template.yaml") -> Iterator[LocalStack]:
    template = Template(template_path)
    with tempfile.TemporaryDirectory() as workdir, _stack_process(Path(workdir), template_path) as state:
        yield LocalStack(template, state, SandboxControl(state.sandbox_url), Functions(template, state))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _stack_process(workdir: Path, template_path: Path) -> Iterator[StackState]:
    """``provisioner local up`` in its own process, so moto's work does not share this process's
    interpreter lock with the functions being measured (as in AWS, where DynamoDB is elsewhere)."""
    state_file = workdir / ".local" / "stack.json"
    command = [
        str(Path(sys.executable).with_name("provisioner")),
        "local",
        "up",
        "--template",
        str(template_path),
        "--aws-port",
        str(free_port()),
        "--sandbox-port",
        str(free_port()),
        # The bench measures the hub's code: moto's policy evaluation is not what AWS costs (make
        # test runs every function under its enforced role).
        "--no-iam",
    ]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if state_file.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        if not state_file.exists():
            raise RuntimeError(f"the local stack did not start ({' '.join(command)}, exit {process.poll()})")
        yield StackState.load(state_file)
    finally:
        process.terminate()
        process.wait(timeout=10)
