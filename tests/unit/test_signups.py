"""Cognito's user attributes as a Person, the trigger's settings, the fallback drain's answer to a
partial PutEvents failure, and the last resort when neither the bus nor the queues take a signup."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import LambdaContext
from provisioning.errors import ConfigurationError, InvalidRequest
from provisioning.person import Person
from provisioning.settings import SignupSettings
from provisioning.signups import (
    CognitoMapping,
    SignupTriggerFunction,
    person_from_cognito,
    publish_signup,
    withhold_request_bodies,
)
from tests.conftest import EVENTS

SIGN_UP = json.loads((EVENTS / "signup_trigger" / "confirm_sign_up.json").read_text())
ATTRIBUTES = SIGN_UP["request"]["userAttributes"]
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:SignupFallbackQueue"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/SignupFallbackQueue"


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="SignupTriggerFunction", timeout_s=5)


def test_every_standard_attribute_maps_to_its_person_field():
    mapped = person_from_cognito(ATTRIBUTES, CognitoMapping())

    assert mapped.dropped == []
    assert mapped.person.model_dump(exclude_none=True) == {
        "external_id": ATTRIBUTES["sub"],
        "email": "lucia.romero@example.test",
        "first_name": "Lucia",
        "last_name": "Romero",
        "phone": "+5215587654321",
        "date_of_birth": "1991-07-15",
        "gender": "female",
        "timezone": "America/Mexico_City",
    }


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("birthdate", "0000-07-15"),  # OpenID Connect: the year withheld
        ("birthdate", "1991"),  # only the year
        ("zoneinfo", "Mars/Olympus_Mons"),
        ("phone_number", "5587654321"),  # not E.164
        ("email", "not-an-address"),
        ("gender", "x" * 40),
    ],
)
def test_an_invalid_optional_attribute_is_left_out_and_named(attribute, value):
    mapped = person_from_cognito({**ATTRIBUTES, attribute: value}, CognitoMapping())

    assert mapped.dropped == [attribute]
    assert mapped.person.external_id == ATTRIBUTES["sub"]
    assert mapped.person.first_name == "Lucia"


def test_the_providers_attribute_overrides_the_parameter_and_an_empty_one_does_not():
    mapping = CognitoMapping(providers=("palm",))
    listed = {**ATTRIBUTES, "custom:providers": " trust , palenca "}
    assert person_from_cognito(listed, mapping).person.providers == ["trust", "palenca"]
    assert person_from_cognito({**ATTRIBUTES, "custom:providers": " "}, mapping).person.providers == ["palm"]
    assert person_from_cognito(ATTRIBUTES, CognitoMapping()).person.providers is None
    ignored = CognitoMapping(providers=("palm",), providers_attribute=None)
    assert person_from_cognito(listed, ignored).person.providers == ["palm"]


@pytest.mark.parametrize(
    ("attributes", "field", "message"),
    [
        ({"sub": None}, "sub", "is required"),
        ({"custom:providers": "palenca,acme"}, "custom:providers", "Input should be"),
        ({"custom:providers": "palm,palm"}, "custom:providers", "must not repeat"),
    ],
)
def test_without_an_external_id_or_with_an_unknown_provider_nobody_is_guessed(attributes, field, message):
    data = {**ATTRIBUTES, **attributes}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidRequest) as refused:
        person_from_cognito(data, CognitoMapping())
    assert [e.field for e in refused.value.errors] == [field]
    assert message in refused.value.message
    assert "acme" not in refused.value.message
    assert "lucia" not in refused.value.message


def test_the_settings_read_the_parameters_as_the_template_passes_them():
    settings = SignupSettings.from_env(
        {
            "SIGNUP_EVENT_BUS_NAME": "hub-signups",
            "SIGNUP_EXTERNAL_ID_ATTRIBUTE": "",
            "SIGNUP_PROVIDERS": "",
            "SIGNUP_PROVIDERS_ATTRIBUTE": "custom:providers",
        }
    )
    assert CognitoMapping.from_settings(settings) == CognitoMapping("sub", None, "custom:providers")
    chosen = SignupSettings.from_env(
        {
            "SIGNUP_EVENT_BUS_NAME": "hub-signups",
            "SIGNUP_EXTERNAL_ID_ATTRIBUTE": "custom:user_id",
            "SIGNUP_PROVIDERS": "palenca,palm",
            "SIGNUP_PROVIDERS_ATTRIBUTE": "",  # no attribute: the parameter always decides
        }
    )
    assert CognitoMapping.from_settings(chosen) == CognitoMapping("custom:user_id", ("palenca", "palm"), None)
    with pytest.raises(ConfigurationError) as wrong:
        SignupSettings.from_env({"SIGNUP_EVENT_BUS_NAME": "b", "SIGNUP_PROVIDERS": "acme"})
    assert "SIGNUP_PROVIDERS" in str(wrong.value)


def test_botocore_request_bodies_are_withheld_from_its_debug_lines():
    params = {
        "url_path": "/",
        "body": json.dumps({"Entries": [{"Detail": '{"email": "a@b.test"}'}]}).encode(),
    }
    params["method"] = "POST"
    withheld = withhold_request_bodies(
        f"Making request for OperationModel(name=PutEvents) with params: {params}"
    )
    assert "a@b.test" not in withheld
    assert "'body': b'[withheld]'" in withheld
    assert "'method': 'POST'" in withheld


class _Events:
    """PutEvents answering with the given per-entry results, or raising."""

    def __init__(self, results: list[dict[str, str]] | None = None, error: Exception | None = None) -> None:
        self.results, self.error = results, error
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        if self.error:
            raise self.error
        results = self.results or [{"EventId": f"e-{n}"} for n in range(len(Entries))]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


class _Sqs:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        if self.error:
            raise self.error
        self.sent.append(kwargs)
        return {"MessageId": "m"}


def _function(events: _Events, sqs: _Sqs) -> SignupTriggerFunction:
    function = SignupTriggerFunction(
        SignupSettings(
            signup_event_bus_name="hub-signups",
            signup_fallback_queue_url=QUEUE_URL,
            signup_fallback_dlq_url=QUEUE_URL.replace("Queue", "DLQ"),
        )
    )
    function.__dict__["events"], function.__dict__["sqs"] = events, sqs
    return function


def _record(n: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": f"m-{n}",
        "receiptHandle": f"r-{n}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
    }


def test_publish_signup_raises_when_the_bus_refuses_the_entry():
    events = _Events([{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}])
    with pytest.raises(Exception, match="InternalFailure"):
        publish_signup(events, "hub-signups", Person(external_id="u-1"))
    (entry,) = events.entries
    assert (entry["Source"], entry["DetailType"], json.loads(entry["Detail"])) == (
        "provisioner.signups",
        "UserSignedUp",
        {"external_id": "u-1"},
    )


def test_a_failed_put_events_entry_is_reported_as_a_batch_item_failure(lambda_context):
    events = _Events([{"EventId": "e-0"}, {"ErrorCode": "ThrottlingException"}, {"EventId": "e-2"}])
    function = _function(events, _Sqs())
    event = {"Records": [_record(n, {"external_id": f"u-{n}"}) for n in range(3)]}

    answer = function(event, lambda_context)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert [json.loads(e["Detail"])["external_id"] for e in events.entries] == ["u-0", "u-1", "u-2"]


def test_when_neither_the_bus_nor_the_queue_takes_a_signup_it_is_counted_and_cognito_still_answered(
    lambda_context, capsys
):
    function = _function(_Events(error=TimeoutError()), _Sqs(error=TimeoutError()))
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("provisioner").addHandler(keep)
    try:
        answer = function(SIGN_UP, lambda_context)
    finally:
        logging.getLogger("provisioner").removeHandler(keep)

    assert answer is SIGN_UP
    assert '"SignupsLost":[1.0]' in capsys.readouterr().out
    (lost,) = [r for r in records if r.levelno == logging.ERROR]
    assert lost.getMessage() == "a confirmed signup was neither published nor kept"
    assert lost.error == "TimeoutError"  # type: ignore[attr-defined]
    texts = " ".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    for value in ("lucia", "Romero", "5587654321", "1991-07-15"):
        assert value not in texts


def test_a_broken_configuration_never_fails_the_signup(lambda_context, monkeypatch, capsys):
    monkeypatch.delenv("SIGNUP_EVENT_BUS_NAME", raising=False)
    function = SignupTriggerFunction()

    assert function(SIGN_UP, lambda_context) is SIGN_UP
    assert '"SignupsLost":[1.0]' in capsys.readouterr().out


def test_anything_but_a_cognito_event_is_returned_as_it_came(lambda_context):
    function = _function(_Events(), _Sqs())
    for event in ({}, {"triggerSource": "PostConfirmation_ConfirmSignUp"}, {"request": "x"}):
        assert function(event, lambda_context) is event


def test_the_ready_fallback_queue_event_is_published_to_the_bus(lambda_context):
    events = _Events()
    ready = json.loads((EVENTS / "signup_trigger" / "sqs.json").read_text())

    answer = _function(events, _Sqs())(ready, lambda_context)

    assert answer == {"batchItemFailures": []}
    (entry,) = events.entries
    assert entry["EventBusName"] == "hub-signups"
    assert json.loads(entry["Detail"]) == json.loads(ready["Records"][0]["body"])
