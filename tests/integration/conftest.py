"""Fixtures and helpers the integration modules share (the stack, the sandbox and the function
loader are in ``tests/conftest.py``).

A module that tests one function names it in ``FUNCTION``; ``invoke`` is then that function's
handler, loaded as Lambda would. Each provider's emulator in the sandbox has a fixture of the
provider's name; ``store`` is the link store on the stack's users table."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from provisioner_cli.local import StackState
from provisioner_sandbox.server import Sandbox
from provisioning.ratelimit import WINDOW_S
from provisioning.store import LinkStore
from tests.conftest import Handler


@pytest.fixture
def invoke(request: pytest.FixtureRequest, load_function: Any) -> Handler:
    """The handler of the function the module names in ``FUNCTION``."""
    function = getattr(request.module, "FUNCTION", None)
    if function is None:
        pytest.fail(f"{request.module.__name__} names no FUNCTION for the invoke fixture")
    return load_function(function)  # type: ignore[no-any-return]


@pytest.fixture
def store(stack: StackState, aws: Any) -> LinkStore:
    """The link store on the stack's users table (read by the harness, an administrator)."""
    return LinkStore(aws("dynamodb"), stack.refs["UsersTable"])


@pytest.fixture
def palenca(sandbox: Sandbox) -> Any:
    return sandbox.emulators["palenca"]


@pytest.fixture
def palm(sandbox: Sandbox) -> Any:
    return sandbox.emulators["palm"]


@pytest.fixture
def trust(sandbox: Sandbox) -> Any:
    return sandbox.emulators["trust"]


@pytest.fixture
def validic(sandbox: Sandbox) -> Any:
    return sandbox.emulators["validic"]


def queue_depth(sqs: Any, url: str) -> int:
    """The messages of a queue visible now."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def drain_bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receives and deletes every message of a queue; their JSON bodies."""
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.extend(json.loads(m["Body"]) for m in messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return bodies


def well_inside_a_window(latest: float, after_turn: float) -> None:
    """Start a test that counts on one fixed rate-limit window lasting: when less than
    ``WINDOW_S - latest`` seconds of the current window remain, wait until ``after_turn`` seconds
    after it turns."""
    if time.time() % WINDOW_S > latest:
        time.sleep(WINDOW_S - time.time() % WINDOW_S + after_turn)
