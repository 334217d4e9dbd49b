"""SnapStart's hooks, run as Lambda runs them (those each function's init registers with
``snapshot_restore_py``, kept per container by the local runtime), for every function of the
template, on the local stack with each function's role enforced.

Before the "snapshot" nothing may call out: every AWS call (botocore), every socket connection and
every request the provider sandbox receives is recorded, and none may happen; the default boto3
session must not even have resolved credentials. After the "restore", the first invocation, with a
real event, must work and fetch its secret then."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.client
import pytest
from pydantic import BaseModel, ConfigDict

from provisioner_cli.lambda_runtime import Hook
from provisioner_cli.local import REGION
from provisioner_cli.template import Template
from provisioner_cli.webhook import api_event as webhook_event
from provisioner_cli.webhook import generic_payload, sign
from provisioner_sandbox.server import Sandbox
from provisioning import snapstart
from tests.conftest import EVENTS, ROOT


class AnySecret(BaseModel):
    model_config = ConfigDict(extra="allow")


@dataclass
class Calls:
    """Every AWS API call and socket connection made while recording."""

    aws: list[tuple[str, str]] = field(default_factory=list)
    connects: list[Any] = field(default_factory=list)

    def clear(self) -> None:
        self.aws.clear()
        self.connects.clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorded = Calls()
    make_api_call = botocore.client.BaseClient._make_api_call
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recorded.aws.append((client.meta.service_model.service_name, operation))
        return make_api_call(client, operation, params)

    def connecting(sock: socket.socket, address: Any) -> Any:
        recorded.connects.append(address)
        return connect(sock, address)

    def connecting_ex(sock: socket.socket, address: Any) -> Any:
        recorded.connects.append(address)
        return connect_ex(sock, address)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", api_call)
    monkeypatch.setattr(socket.socket, "connect", connecting)
    monkeypatch.setattr(socket.socket, "connect_ex", connecting_ex)
    return recorded


def _code_dir(template: Template, logical_id: str) -> str:
    return template.function(logical_id).code_uri.name


def _first_event(template: Template, stack: Any, aws: Any, logical_id: str) -> dict[str, Any]:
    """The function's first invocation after the restore: its latency-sensitive path where it has
    one (the API), a real event from events/."""
    folder = EVENTS / _code_dir(template, logical_id)
    if logical_id == "SignupWebhookFunction":
        secret = aws("secretsmanager").get_secret_value(SecretId=stack.parameters["SignupWebhookSecretId"])
        signing = json.loads(secret["SecretString"])["secrets"][0]
        return webhook_event(ROOT, sign(signing, json.dumps(generic_payload(ROOT, "u-snap-1"))))
    if logical_id == "ImportFunction":  # a file put in the import bucket (events/import_file/put.json)
        from tests.integration.test_s3_import import people_csv, put, put_event

        body = people_csv(2)
        return put_event(put(aws, stack.refs["ImportBucket"], "imports/snapstart.csv", body), len(body))
    for name in ("api.json", "confirm_sign_up.json", "stream.json"):
        if (folder / name).exists():
            return dict(json.loads((folder / name).read_text()))
    raise AssertionError(f"no first event for {logical_id} in {folder}")


def _answered(logical_id: str, result: Any) -> None:
    if isinstance(result, dict) and "statusCode" in result:
        assert 200 <= result["statusCode"] < 300, f"{logical_id}: {result}"
    elif isinstance(result, dict) and "batchItemFailures" in result:
        assert result["batchItemFailures"] == [], f"{logical_id}: {result}"
    else:
        assert result is not None, logical_id


def _our_models() -> list[type[BaseModel]]:
    """Every loaded pydantic model of the layer (their validators are built on first use)."""
    found, pending = [], [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            pending.append(model)
            if model.__module__.startswith("provisioning."):
                found.append(model)
    return found


def _run(hooks: list[Hook]) -> None:
    for func, args, kwargs in hooks:  # as Lambda's runtime does
        func(*args, **kwargs)


# Functions whose first invocation reads a secret (and which may read it only after the restore).
READS_A_SECRET = {
    "PalencaCreateUserFunction",
    "PalencaListUsersFunction",
    "TrustCreateUserFunction",
    "PalmCreateUserFunction",
    "ValidicProvisionUserFunction",
    "ValidicInformProvisionUserFunction",
    "SignupWebhookFunction",
}


def test_no_function_calls_out_before_the_snapshot_and_each_works_after_the_restore(
    template: Template, stack: Any, aws: Any, sandbox: Sandbox, load_function: Any, calls: Calls
):
    functions = [f for f in template.functions() if f != "ApiDocsFunction" or template.function(f)]
    assert len(functions) >= 10
    primed = []
    for logical_id in functions:
        event = _first_event(template, stack, aws, logical_id)
        invoke = load_function(logical_id)  # the init phase: the module is imported
        hooks_before, hooks_after = invoke.container.before_snapshot, invoke.container.after_restore
        assert len(hooks_before) == 1, f"{logical_id} registers its before-snapshot hook once"
        assert len(hooks_after) == 1, f"{logical_id} registers its after-restore hook once"

        # The snapshot: the container's default session, as fresh as in Lambda's init.
        session = boto3.Session(region_name=REGION)
        boto3.DEFAULT_SESSION = session
        served = len(sandbox.calls)
        calls.clear()
        _run(hooks_before)
        assert calls.aws == [], f"{logical_id} called AWS before the snapshot: {calls.aws}"
        assert calls.connects == [], f"{logical_id} connected before the snapshot: {calls.connects}"
        assert len(sandbox.calls) == served, f"{logical_id} called a provider before the snapshot"
        assert session._session._credentials is None, f"{logical_id} resolved credentials before the snapshot"
        handler = hooks_before[0][1][0]
        assert (
            "app" in vars(handler)
            or not hasattr(handler, "build_app")
            or logical_id in ("OutcomeEventsFunction", "ImportFunction")  # no API
        )
        unbuilt = [m.__qualname__ for m in _our_models() if not m.__pydantic_complete__]
        assert unbuilt == [], f"{logical_id}: priming left models to build after the restore: {unbuilt}"

        # The restore, then the first invocation.
        _run(hooks_after)
        result = invoke(event)
        _answered(logical_id, result)
        if logical_id in READS_A_SECRET:
            assert ("secretsmanager", "GetSecretValue") in calls.aws, (
                f"{logical_id} read no secret after the restore"
            )
        primed.append(logical_id)
    assert primed == functions


def test_a_hook_that_fetches_a_secret_before_the_snapshot_is_caught(
    stack: Any, load_function: Any, calls: Calls, monkeypatch: pytest.MonkeyPatch
):
    """The recorder catches what the hooks must never do (here: a secret fetched while priming)."""
    prime = snapstart.before_snapshot

    def fetching(handler: Any, *args: Any) -> None:
        prime(handler, *args)
        handler.deps.secrets.get(handler.deps.settings.secret_id(handler.provider), AnySecret)

    monkeypatch.setattr(snapstart, "before_snapshot", fetching)
    invoke = load_function("PalmCreateUserFunction")
    calls.clear()
    _run(invoke.container.before_snapshot)
    assert ("secretsmanager", "GetSecretValue") in calls.aws


def test_after_the_restore_no_pooled_connection_client_or_secret_is_left(
    stack: Any, sandbox: Sandbox, load_function: Any, calls: Calls
):
    """A restored environment opens its own connections and fetches its own secrets: what a
    container held at the snapshot (pooled connections, clients, cached secrets) is dropped."""
    invoke = load_function("PalmCreateUserFunction")
    event = json.loads((EVENTS / "palm_create_user" / "api.json").read_text())
    _answered("PalmCreateUserFunction", invoke(event))  # a warm container: connections, clients, secret
    (hook,) = invoke.container.after_restore
    handler = hook[1][0]
    deps = vars(handler.deps)
    old_session = deps["session"]
    pools = [adapter.poolmanager.pools for adapter in old_session.adapters.values()]
    assert any(len(pool) for pool in pools), "the invocation left a pooled connection"
    assert "secrets" in deps
    assert deps["_clients"]

    _run([hook])

    assert "session" not in deps
    assert "secrets" not in deps
    assert deps["_clients"] == {}
    assert all(len(pool) == 0 for pool in pools), "the pooled connections are closed"
    calls.clear()
    body = json.loads(event["body"])
    body["external_id"] = "u-snap-2"
    body["vault"]["identity.email"] = "another.person@example.com"
    _answered("PalmCreateUserFunction", invoke({**event, "body": json.dumps(body)}))
    assert ("secretsmanager", "GetSecretValue") in calls.aws, "the secret is fetched again after the restore"
    assert calls.connects, "a new connection is opened to the provider"


def test_every_restored_environment_draws_its_own_random_numbers():
    """Environments restored from one snapshot start with the same random state: the after-restore
    hook reseeds it (provider retries' jitter and booked windows must not fall in step)."""
    import random

    random.seed(1234)  # the state frozen in the snapshot
    snapshot = random.getstate()
    draws = []
    for _ in range(2):  # two environments restored from it
        random.setstate(snapshot)
        snapstart.after_restore(object())
        draws.append([random.random() for _ in range(4)])
    random.setstate(snapshot)
    assert draws[0] != draws[1]
    assert [random.random() for _ in range(4)] not in draws
