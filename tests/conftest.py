"""Shared fixtures: fake AWS credentials, moto (mock_aws) provisioned from template.yaml, the
provider sandbox on loopback, and handlers loaded from their function folders."""

from __future__ import annotations

import base64
import copy
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from provisioner_cli import iam
from provisioner_cli.lambda_runtime import Container, LambdaContext, drain_queue, load_container
from provisioner_cli.local import FAKE_CREDENTIALS, REGION, StackState, provision_resources
from provisioner_cli.template import Template
from provisioner_sandbox.app import build_sandbox
from provisioner_sandbox.server import Sandbox
from provisioning.providers import PROVIDERS
from tests.logs import KeptRecords

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not items:  # an empty run must fail, not pass silently
        raise pytest.UsageError("no tests collected")
    # The least-privilege check compares the roles with every call the other tests made: last.
    items.sort(key=lambda item: item.get_closest_marker("least_privilege") is not None)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ProvisionerTests")
    parameters.clear_caches()


@pytest.fixture
def every_record(caplog: pytest.LogCaptureFixture) -> Iterator[KeptRecords]:
    """Every log record at DEBUG: the root logger's (botocore's and the HTTP stack's included) and the
    hub's own (which does not propagate); the levels are restored after the test."""
    caplog.set_level(logging.DEBUG)
    keep = KeptRecords()
    names = ["", "botocore", "urllib3", "urllib3.connectionpool", "requests", "provisioner"]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    handled = (loggers[0], loggers[-1])
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in handled:
        logger.addHandler(keep)
    try:
        yield keep
    finally:
        for logger in handled:
            logger.removeHandler(keep)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(ROOT / "template.yaml")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with build_sandbox() as server:
        yield server


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """template.yaml as SAM deploys it (aws-sam-translator)."""
    return iam.translate(ROOT / "template.yaml")


@pytest.fixture
def stack(
    template: Template, sandbox: Sandbox, translated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[StackState]:
    """moto in-process, with every table, queue and secret template.yaml declares, and each
    function's role as SAM deploys it, enforced: a call the template does not grant is denied.
    The harness (tests, CLI commands) acts as an administrator of the account."""
    with mock_aws():
        state = provision_resources(template, sandbox.url, aws_endpoint=None)
        iam.enforce_roles(state, translated)
        for key, value in state.admin.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        with iam.enforced():
            yield state


@pytest.fixture
def admin_session(stack: StackState) -> boto3.Session:
    """A session of the test harness itself (an administrator of the account, never a function)."""
    return boto3.Session(region_name=REGION, **{key.lower(): value for key, value in stack.admin.items()})


@pytest.fixture
def aws(stack: StackState) -> Callable[[str], Any]:
    """Clients of the test harness itself (an administrator of the account, never a function)."""
    admin = {key.lower(): value for key, value in stack.admin.items()}
    return lambda service: boto3.client(service, region_name=REGION, **admin)


Handler = Callable[[dict[str, Any]], Any]

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# Variables a test sets on purpose (e.g. a small request budget): not reset by an invocation.
OVERRIDDEN = {p.budget.setting for p in PROVIDERS if p.budget is not None}
OVERRIDDEN |= {"RECORD_CONCURRENCY", "RATE_LIMIT_MAX_WAIT_SECONDS"}
OVERRIDDEN |= {"SIGNUP_PROVIDERS", "SIGNUP_EXTERNAL_ID_ATTRIBUTE", "SIGNUP_PROVIDERS_ATTRIBUTE"}


def _waited_for_cpu() -> float:
    """Seconds the calling thread has spent runnable but not running (Linux's schedstat); 0
    where the kernel does not say, so the check is then on wall time alone."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _FullCollections:
    """Seconds the process has spent in full (oldest-generation) garbage collections. Their length
    follows the whole process's heap: here every test's stacks and modules, in Lambda the function's
    alone."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


FULL_COLLECTIONS = _FullCollections()


class Invoke:
    """invoke(event) of a loaded function, with its container (handler and SnapStart hooks)."""

    def __init__(self, container: Container, call: Handler) -> None:
        self.container = container
        self._call = call

    def __call__(self, event: dict[str, Any]) -> Any:
        return self._call(event)


@pytest.fixture
def load_function(
    template: Template, stack: StackState, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Invoke]:
    """Load a function's handler as Lambda would (fresh module = fresh container) with the
    environment template.yaml declares, resolved for the test stack. Returns invoke(event), which
    fails the test when an invocation runs past the function's timeout."""

    def load(logical_id: str) -> Invoke:
        env = stack.function_environment(template, logical_id)
        env.pop("AWS_ENDPOINT_URL", None)
        # The container's credentials are its role's: given through its own default boto3 session
        # (the process environment keeps the harness's, for the CLI commands tests run).
        role = {key.lower(): env.pop(key) for key in CREDENTIAL_VARIABLES if key in env}
        container_session = boto3.Session(region_name=REGION, **role)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        function = template.function(logical_id)
        container = load_container(function.code_uri, function.handler, function.layers)
        handler = container.handler

        def invoke(event: dict[str, Any]) -> Any:
            # One process hosts several "containers" here: give each invocation its function's
            # environment and credentials, as its own Lambda container would have (tests may
            # override values).
            for key, value in env.items():
                if key not in OVERRIDDEN and os.environ.get(key) != value:
                    monkeypatch.setenv(key, value)
            boto3.DEFAULT_SESSION = container_session
            started, waited, collected = time.monotonic(), _waited_for_cpu(), FULL_COLLECTIONS.seconds
            result = handler(
                copy.deepcopy(event), LambdaContext(function_name=logical_id, timeout_s=function.timeout)
            )
            elapsed = time.monotonic() - started
            starved = _waited_for_cpu() - waited
            collecting = FULL_COLLECTIONS.seconds - collected
            # Lambda would have killed this invocation (and, for SQS, its whole batch). Not the
            # function's: time this thread spent runnable but waiting for one of the machine's cores
            # (other test processes), as Lambda gives it its own share of CPU; and full garbage
            # collections of this test process's heap, which is many containers' and the harness's.
            assert elapsed - starved - collecting < function.timeout, (
                f"{logical_id} ran {elapsed:.1f} s ({starved:.1f} s of it waiting for a CPU, "
                f"{collecting:.1f} s collecting the test process's garbage), past its {function.timeout} s"
            )
            return result

        return Invoke(container, invoke)

    return load


def api_event(
    path: str, body: Any, *, base64_encoded: bool = False, raw: str | None = None
) -> dict[str, Any]:
    """A real API Gateway REST proxy event (from events/) with another body."""
    event = json.loads((EVENTS / "palenca_create_user" / "api.json").read_text())
    text = raw if raw is not None else json.dumps(body)
    event["path"] = event["resource"] = event["requestContext"]["resourcePath"] = path
    event["body"] = base64.b64encode(text.encode()).decode() if base64_encoded else text
    event["isBase64Encoded"] = base64_encoded
    return event


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def send_bodies(
    sqs: Any, queue_url: str, bodies: list[Any], attributes: dict[str, Any] | None = None
) -> None:
    """Send each body (text as is, anything else as JSON) to a queue, with ``attributes``."""
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        sqs.send_message(QueueUrl=queue_url, MessageBody=text, MessageAttributes=attributes or {})


def send_and_drain(
    sqs: Any, queue_url: str, invoke: Handler, bodies: list[Any], max_batches: int = 50
) -> Any:
    """Send bodies to a queue, then poll it like Lambda's event source mapping."""
    send_bodies(sqs, queue_url, bodies)
    return drain_queue(sqs, queue_url, invoke, max_batches=max_batches)


def dead_letters(sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    """Every message of a dead-letter queue with its decoded failure report."""
    found: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            attrs = message.get("MessageAttributes", {})
            failure = json.loads(attrs["failure"]["StringValue"]) if "failure" in attrs else None
            found.append({"body": message["Body"], "failure": failure})
