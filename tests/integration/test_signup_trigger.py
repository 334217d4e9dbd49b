"""SignupTriggerFunction, as a Cognito user pool's PostConfirmation trigger, on the IAM-enforced local
stack: a confirmed signup becomes a UserSignedUp event on the bus, the signup rules route it to the
providers' queues and the create functions link the person; it never fails nor delays the signup
(the bus unavailable: the person waits in SignupFallbackQueue, which the same function drains);
what cannot be mapped lands in SignupFallbackDLQ with its reason; nothing personal is logged."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import drain_queue
from provisioning.providers import PROVIDERS
from tests.conftest import EVENTS, dead_letters
from tests.integration.conftest import queue_depth
from tests.logs import texts

FUNCTION = "SignupTriggerFunction"
SIGN_UP = json.loads((EVENTS / "signup_trigger" / "confirm_sign_up.json").read_text())
SIGN_UP_PROVIDERS = json.loads((EVENTS / "signup_trigger" / "confirm_sign_up_providers.json").read_text())
FORGOT_PASSWORD = json.loads((EVENTS / "signup_trigger" / "confirm_forgot_password.json").read_text())
QUEUES = {p.name: (p.create.queue, p.create.function) for p in PROVIDERS}
PERSONAL = ("email", "given_name", "family_name", "phone_number", "birthdate")


def _sub(event: dict[str, Any]) -> str:
    return str(event["request"]["userAttributes"]["sub"])


def _with(event: dict[str, Any], **attributes: str | None) -> dict[str, Any]:
    """A copy of ``event`` with these user attributes set (None: removed)."""
    changed = copy.deepcopy(event)
    for name, value in attributes.items():
        name = name.replace("__", ":")
        if value is None:
            changed["request"]["userAttributes"].pop(name, None)
        else:
            changed["request"]["userAttributes"][name] = value
    return changed


def _routed(sqs: Any, stack: Any) -> dict[str, list[dict[str, Any]]]:
    """The UserSignedUp events in each provider's queue, by provider (received, then left to return)."""
    routed: dict[str, list[dict[str, Any]]] = {}
    for provider, (queue, _) in QUEUES.items():
        messages = sqs.receive_message(
            QueueUrl=stack.refs[queue], MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        routed[provider] = [json.loads(m["Body"]) for m in messages]
    return routed


def _drain_providers(sqs: Any, stack: Any, load_function: Any) -> None:
    for queue, function in QUEUES.values():
        drain_queue(sqs, stack.refs[queue], load_function(function))


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """An address that takes connections and never answers (an AWS endpoint that hangs)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


@pytest.fixture
def refusing_endpoint() -> str:
    """An address where nothing listens (an AWS endpoint that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- a confirmed signup, end to end ----------------------------------------------------------------
def test_a_confirmed_signup_is_published_and_linked_at_every_provider(
    invoke, stack, aws, load_function, store, sandbox
):
    answer = invoke(SIGN_UP)

    assert answer == SIGN_UP, "Cognito gets its event back unchanged"
    sqs = aws("sqs")
    routed = _routed(sqs, stack)
    assert {provider: len(events) for provider, events in routed.items()} == dict.fromkeys(QUEUES, 1)
    event = routed["validic_inform"][0]
    assert (event["source"], event["detail-type"]) == ("provisioner.signups", "UserSignedUp")
    assert event["detail"] == {
        "external_id": _sub(SIGN_UP),
        "email": "lucia.romero@example.test",
        "first_name": "Lucia",
        "last_name": "Romero",
        "phone": "+5215587654321",
        "date_of_birth": "1991-07-15",
        "gender": "female",
        "timezone": "America/Mexico_City",
    }

    _drain_providers(sqs, stack, load_function)

    linked = {link.provider for link in store.links_of(_sub(SIGN_UP)) if link.provider_user_id}
    assert linked == set(QUEUES)
    assert len(sandbox.emulators["trust"].users_with_email("lucia.romero@example.test")) == 1
    assert queue_depth(sqs, stack.refs["SignupFallbackQueue"]) == 0


def test_a_confirmed_password_reset_publishes_nothing_and_returns_the_event(invoke, stack, aws):
    answer = invoke(FORGOT_PASSWORD)

    assert answer == FORGOT_PASSWORD
    sqs = aws("sqs")
    assert _routed(sqs, stack) == {provider: [] for provider in QUEUES}
    assert queue_depth(sqs, stack.refs["SignupFallbackQueue"]) == 0
    assert queue_depth(sqs, stack.refs["SignupFallbackDLQ"]) == 0


# -- where to provision, and who the person is ------------------------------------------------------
def test_the_providers_attribute_overrides_the_providers_parameter(invoke, stack, aws, monkeypatch):
    monkeypatch.setenv("SIGNUP_PROVIDERS", "palm,trust")

    invoke(SIGN_UP_PROVIDERS)  # custom:providers = palenca,validic_inform
    invoke(SIGN_UP)  # no attribute: the parameter's

    routed = _routed(aws("sqs"), stack)
    ids = {
        provider: sorted(e["detail"]["external_id"] for e in events) for provider, events in routed.items()
    }
    assert ids == {
        "palenca": [_sub(SIGN_UP_PROVIDERS)],
        "validic_inform": [_sub(SIGN_UP_PROVIDERS)],
        "palm": [_sub(SIGN_UP)],
        "trust": [_sub(SIGN_UP)],
        "validic": [],
    }
    attributed = routed["palenca"][0]["detail"]
    assert attributed["providers"] == ["palenca", "validic_inform"]
    # Cognito's birthdate without a year (0000-03-09) is no date of birth: left out, the rest kept.
    assert "date_of_birth" not in attributed
    assert attributed["timezone"] == "America/Monterrey"
    assert routed["palm"][0]["detail"]["providers"] == ["palm", "trust"]


def test_the_external_id_can_come_from_a_custom_attribute(
    invoke, stack, aws, monkeypatch, load_function, store
):
    monkeypatch.setenv("SIGNUP_EXTERNAL_ID_ATTRIBUTE", "custom:user_id")
    monkeypatch.setenv("SIGNUP_PROVIDERS", "palenca")

    event = _with(SIGN_UP, custom__user_id="u-9001")
    assert invoke(event) == event

    sqs = aws("sqs")
    drain_queue(sqs, stack.refs["PalencaCreateUserQueue"], load_function("PalencaCreateUserFunction"))
    assert [link.provider for link in store.links_of("u-9001") if link.provider_user_id] == ["palenca"]
    assert store.links_of(_sub(SIGN_UP)) == []


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"custom__user_id": None}, "custom:user_id: is required"),
        ({"custom__user_id": "lucia.romero@example.test"}, "custom:user_id: looks like it holds an e-mail"),
        ({"custom__user_id": "u-9002", "custom__providers": "palenca,acme"}, "custom:providers"),
    ],
)
def test_a_user_that_cannot_be_mapped_waits_in_the_dlq_with_the_reason(
    invoke, stack, aws, monkeypatch, attributes, reason
):
    monkeypatch.setenv("SIGNUP_EXTERNAL_ID_ATTRIBUTE", "custom:user_id")
    event = _with(SIGN_UP, **attributes)

    assert invoke(event) == event

    sqs = aws("sqs")
    (dead,) = dead_letters(sqs, stack.refs["SignupFallbackDLQ"])
    assert json.loads(dead["body"]) == event, "the whole trigger event is kept, for a redrive"
    assert dead["failure"]["code"] == "validation_error"
    assert reason in dead["failure"]["message"]
    assert "lucia" not in json.dumps(dead["failure"]), "the reason names the attribute, never its value"
    assert _routed(sqs, stack) == {provider: [] for provider in QUEUES}


def test_dlq_show_gives_the_reason_of_an_unmappable_user_with_their_data_masked(
    invoke, stack, aws, admin_session, monkeypatch
):
    from click.testing import CliRunner

    from provisioner_cli.main import cli
    from provisioner_cli.stack import StackTarget

    target = StackTarget(dict(stack.refs), admin_session, description="test stack")
    monkeypatch.setattr("provisioner_cli.dlq.resolve_target", lambda **kw: target)
    monkeypatch.setenv("SIGNUP_EXTERNAL_ID_ATTRIBUTE", "custom:user_id")
    invoke(SIGN_UP)

    shown = CliRunner().invoke(cli, ["dlq", "show", "--provider", "cognito"])

    assert shown.exit_code == 0, shown.output
    assert "validation_error: custom:user_id: is required" in shown.output
    assert '"userAttributes": {' in shown.output  # the event's structure, its values masked
    for name in PERSONAL:
        assert SIGN_UP["request"]["userAttributes"][name] not in shown.output


# -- never failing the signup -------------------------------------------------------------------------
def test_with_the_bus_unavailable_the_signup_is_answered_at_once_and_published_later(
    invoke, stack, aws, monkeypatch, hanging_endpoint, load_function, store
):
    monkeypatch.setenv("SIGNUP_PROVIDERS", "palenca,palm")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", hanging_endpoint)

    started = time.monotonic()
    answer = invoke(SIGN_UP)
    elapsed = time.monotonic() - started

    assert answer == SIGN_UP
    assert elapsed < 2.5, f"answered Cognito after {elapsed:.1f} s"
    sqs = aws("sqs")
    assert _routed(sqs, stack) == {provider: [] for provider in QUEUES}
    fallback = stack.refs["SignupFallbackQueue"]
    assert queue_depth(sqs, fallback) == 1

    # Still unavailable: the record is a batch item failure, and stays for SQS to retry.
    report = drain_queue(sqs, fallback, invoke, max_batches=1, visibility_timeout=0)
    assert (report.failed, report.acknowledged) == (1, 0)

    monkeypatch.delenv("AWS_ENDPOINT_URL_EVENTBRIDGE")
    drained = drain_queue(sqs, fallback, load_function(FUNCTION))  # a new container, the bus back
    assert (drained.failed, drained.acknowledged) == (0, 1)
    assert queue_depth(sqs, stack.refs["SignupFallbackDLQ"]) == 0
    _drain_providers(sqs, stack, load_function)
    linked = {link.provider for link in store.links_of(_sub(SIGN_UP)) if link.provider_user_id}
    assert linked == {"palenca", "palm"}


def test_a_queued_signup_the_bus_never_takes_ends_in_the_dlq(
    invoke, stack, aws, monkeypatch, refusing_endpoint
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", refusing_endpoint)
    sqs = aws("sqs")
    fallback = stack.refs["SignupFallbackQueue"]
    sqs.send_message(QueueUrl=fallback, MessageBody=json.dumps({"external_id": "u-9003"}))
    sqs.send_message(QueueUrl=fallback, MessageBody="not json")

    drain_queue(sqs, fallback, invoke, max_batches=10, visibility_timeout=0)

    assert queue_depth(sqs, fallback) == 0
    dead = dead_letters(sqs, stack.refs["SignupFallbackDLQ"])
    bodies = sorted(d["body"] for d in dead)
    assert bodies == ["not json", '{"external_id": "u-9003"}']
    reasons = {d["body"]: d["failure"] for d in dead}
    assert reasons["not json"]["code"] == "validation_error"  # at once, with the reason
    assert reasons['{"external_id": "u-9003"}'] is None  # after its receives, by SQS's redrive


def test_a_redriven_cognito_event_is_mapped_again_and_published(invoke, stack, aws, monkeypatch):
    monkeypatch.setenv("SIGNUP_PROVIDERS", "palenca")
    sqs = aws("sqs")
    fallback = stack.refs["SignupFallbackQueue"]
    sqs.send_message(QueueUrl=fallback, MessageBody=json.dumps(SIGN_UP))

    report = drain_queue(sqs, fallback, invoke)

    assert (report.failed, report.acknowledged) == (0, 1)
    routed = _routed(sqs, stack)
    assert [e["detail"]["external_id"] for e in routed["palenca"]] == [_sub(SIGN_UP)]


# -- no personal data in any log record -----------------------------------------------------------------
def test_no_personal_data_is_logged_at_any_level(
    invoke, stack, aws, monkeypatch, hanging_endpoint, every_record, capsys, load_function
):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    invoke = every_record.around(invoke)
    invoke(SIGN_UP)  # published
    invoke(SIGN_UP_PROVIDERS)  # published, its birthdate left out
    invoke(FORGOT_PASSWORD)  # nothing to do
    monkeypatch.setenv("SIGNUP_EXTERNAL_ID_ATTRIBUTE", "custom:user_id")
    invoke(_with(SIGN_UP, custom__user_id="lucia.romero@example.test"))  # dead-lettered
    monkeypatch.delenv("SIGNUP_EXTERNAL_ID_ATTRIBUTE")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", hanging_endpoint)
    unavailable = every_record.around(load_function(FUNCTION))
    unavailable(SIGN_UP)  # kept in the fallback queue
    drain_queue(aws("sqs"), stack.refs["SignupFallbackQueue"], unavailable, max_batches=1)

    messages = [r.getMessage() for r in every_record.records]
    assert any("invalid attributes left out" in m for m in messages)
    dropped = [getattr(r, "attributes", None) for r in every_record.records]
    assert ["birthdate"] in dropped, "the dropped attribute is named"
    assert any("PutEvents" in m for m in messages), "botocore's requests were logged at DEBUG"
    output = capsys.readouterr()
    values = [
        event["request"]["userAttributes"][name]
        for event in (SIGN_UP, SIGN_UP_PROVIDERS)
        for name in PERSONAL
    ]
    for value in values:
        for record in every_record.records:
            for text in texts(record):
                assert value not in text, (record.name, text[:200])
        assert value not in output.out + output.err
