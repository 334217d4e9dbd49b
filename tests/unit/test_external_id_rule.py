"""One rule for personal data in ``external_id`` (the users table's partition key): by default an id
that holds an e-mail address or looks like a phone number or a person's name is refused on every
route, in signup events and in imports; with the stack parameter ``AllowIdentifyingExternalIds``
set to true every route but Validic (whose API forbids identifying uids) accepts it."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner_cli.main import cli
from provisioning.store import LinkStore
from tests.conftest import api_event, dead_letters, response_json, send_and_drain

Invoke = Callable[[dict[str, Any]], Any]

PERSON = {"email": "abeta@example.test", "name": "Alfa", "last_name": "Beta"}
CREATE = {
    "palenca": ("PalencaCreateUserFunction", "/palenca/users", {}),
    "trust": ("TrustCreateUserFunction", "/trust/users", PERSON),
    "palm": ("PalmCreateUserFunction", "/palm/users", {}),
    "validic": ("ValidicProvisionUserFunction", "/validic/users", {}),
}
NOT_VALIDIC = ["palenca", "trust", "palm"]
# Ids that reveal who the person is, including the shapes the first rule let through.
IDENTIFYING = {
    "e-mail address": "ana.perez@example.com",
    "e-mail address inside the id": "ana.perez@example.com:1",
    "phone number with its country code": "5215512345678",
    "international number inside the id": "u:+5215512345678",
    "punctuated phone number": "555-123-4567",
    "name": "Ana-Perez",
}
NEUTRAL = ["u-42", "1234567890", "cust-00001", "order:2024-0001", "team@dev", "USR_7", "a+b=c"]


def provider_calls(sandbox: Any) -> int:
    return sum(sandbox.count(provider) for provider in CREATE)


def post(invoke: Invoke, provider: str, external_id: str) -> dict[str, Any]:
    _, route, extra = CREATE[provider]
    if "email" in extra:  # one person per e-mail address at Trust
        extra = {**extra, "email": f"p{zlib.crc32(external_id.encode())}@example.test"}
    response: dict[str, Any] = invoke(api_event(route, {**extra, "external_id": external_id}))
    return response


@pytest.fixture
def allow_identifying(stack: Any) -> None:
    """The local stack deployed with AllowIdentifyingExternalIds=true."""
    stack.parameters["AllowIdentifyingExternalIds"] = "true"


@pytest.mark.parametrize("provider", NOT_VALIDIC)
@pytest.mark.parametrize("external_id", list(IDENTIFYING.values()), ids=list(IDENTIFYING))
def test_identifying_external_id_is_refused_on_every_route_by_default(
    load_function: Callable[[str], Invoke], sandbox: Any, provider: str, external_id: str
) -> None:
    invoke = load_function(CREATE[provider][0])

    response = post(invoke, provider, external_id)

    assert response["statusCode"] == 422, response["body"]
    error = response_json(response)["error"]
    assert [f["field"] for f in error["fields"]] == ["external_id"]
    assert "personal data" in error["fields"][0]["message"]
    assert external_id not in response["body"]
    assert provider_calls(sandbox) == 0


@pytest.mark.parametrize(
    ("external_id", "why"),
    [
        ("ana.perez@example.com:1", "e-mail"),
        ("5215512345678", "phone"),
        ("u:+5215512345678", "phone"),
    ],
)
def test_validic_refuses_ids_with_an_address_or_a_phone_number_inside(
    load_function: Callable[[str], Invoke], sandbox: Any, external_id: str, why: str
) -> None:
    response = post(load_function("ValidicProvisionUserFunction"), "validic", external_id)

    assert response["statusCode"] == 422, response["body"]
    (field,) = response_json(response)["error"]["fields"]
    assert field["field"] == "external_id"
    assert why in field["message"]
    assert "Validic" in field["message"]
    assert sandbox.count("validic") == 0


@pytest.mark.parametrize("provider", list(CREATE))
def test_neutral_ids_are_provisioned_while_identifying_ones_are_not(
    load_function: Callable[[str], Invoke], provider: str
) -> None:
    invoke = load_function(CREATE[provider][0])

    statuses = {external_id: post(invoke, provider, external_id)["statusCode"] for external_id in NEUTRAL}
    refused = post(invoke, provider, "ana.perez@example.com:1")["statusCode"]

    assert statuses == dict.fromkeys(NEUTRAL, 201)
    assert refused == 422


def test_signup_event_with_an_email_as_external_id_is_dead_lettered_after_one_receive(
    load_function: Callable[[str], Invoke], stack: Any, aws: Callable[[str], Any], sandbox: Any
) -> None:
    sqs = aws("sqs")
    event = {
        "version": "0",
        "id": "e-1",
        "detail-type": "UserSignedUp",
        "source": "app.signup",
        "detail": {"external_id": "ana.perez@example.com", "email": "ana.perez@example.com"},
    }

    send_and_drain(
        sqs, stack.refs["PalencaCreateUserQueue"], load_function("PalencaCreateUserFunction"), [event]
    )

    (failed,) = dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"])
    assert failed["failure"]["attempts"] == 1
    assert [f["field"] for f in failed["failure"]["fields"]] == ["detail.external_id"]
    assert "ana.perez" not in json.dumps(failed["failure"])
    assert sandbox.count("palenca") == 0
    users = aws("dynamodb").scan(TableName=stack.refs["UsersTable"])["Items"]
    assert users == []


def test_queued_body_with_an_email_as_external_id_is_dead_lettered_naming_the_field(
    load_function: Callable[[str], Invoke], stack: Any, aws: Callable[[str], Any]
) -> None:
    sqs = aws("sqs")
    body = {"external_id": "ana.perez@example.com", "vault": {"identity.email": "ana.perez@example.com"}}

    send_and_drain(sqs, stack.refs["PalmCreateUserQueue"], load_function("PalmCreateUserFunction"), [body])

    (failed,) = dead_letters(sqs, stack.refs["PalmCreateUserDLQ"])
    assert [f["field"] for f in failed["failure"]["fields"]] == ["external_id"]


@pytest.mark.usefixtures("allow_identifying")
@pytest.mark.parametrize("provider", NOT_VALIDIC)
def test_with_the_parameter_true_every_route_but_validic_accepts_an_email_as_external_id(
    load_function: Callable[[str], Invoke],
    template: Any,
    stack: Any,
    aws: Callable[[str], Any],
    provider: str,
) -> None:
    function = CREATE[provider][0]
    assert stack.function_environment(template, function)["ALLOW_IDENTIFYING_EXTERNAL_IDS"] == "true"
    invoke = load_function(function)

    response = post(invoke, provider, "ana.perez@example.com")

    assert response["statusCode"] == 201, response["body"]
    link = LinkStore(aws("dynamodb"), stack.refs["UsersTable"]).get(provider, "ana.perez@example.com")
    assert link is not None  # the id itself is then the table's key
    assert post(invoke, provider, "5215512345678")["statusCode"] == 201


@pytest.mark.usefixtures("allow_identifying")
def test_with_the_parameter_true_validic_still_refuses_identifying_ids(
    load_function: Callable[[str], Invoke], template: Any, stack: Any, sandbox: Any
) -> None:
    assert (
        stack.function_environment(template, "ValidicProvisionUserFunction")["ALLOW_IDENTIFYING_EXTERNAL_IDS"]
        == "true"
    )
    invoke = load_function("ValidicProvisionUserFunction")

    for external_id in IDENTIFYING.values():
        response = post(invoke, "validic", external_id)
        assert response["statusCode"] == 422, external_id
        assert "Validic forbids" in response_json(response)["error"]["fields"][0]["message"]
    assert sandbox.count("validic") == 0


def test_template_declares_the_parameter_off_by_default_for_every_function(template: Any) -> None:
    parameter = template.parameters["AllowIdentifyingExternalIds"]

    assert parameter["Default"] == "false"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"]
    assert template.globals["Environment"]["Variables"]["ALLOW_IDENTIFYING_EXTERNAL_IDS"] == {
        "Ref": "AllowIdentifyingExternalIds"
    }


def test_person_model_reads_the_rule_at_validation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioning.errors import InvalidRequest
    from provisioning.person import parse_person

    monkeypatch.delenv("ALLOW_IDENTIFYING_EXTERNAL_IDS", raising=False)
    with pytest.raises(InvalidRequest) as refused:
        parse_person({"external_id": "ana.perez@example.com"}, "detail")
    assert [e.field for e in refused.value.errors] == ["detail.external_id"]

    monkeypatch.setenv("ALLOW_IDENTIFYING_EXTERNAL_IDS", "true")
    assert parse_person({"external_id": "ana.perez@example.com"}).external_id == "ana.perez@example.com"


def test_identifying_reason_lives_in_validation_and_stays_importable_from_validic() -> None:
    from provisioning.providers.validic.client import identifying_reason as validic_reason
    from provisioning.validation import identifying_reason

    for external_id in IDENTIFYING.values():
        assert identifying_reason(external_id), external_id
        assert validic_reason(external_id), external_id
    for external_id in NEUTRAL:
        assert identifying_reason(external_id) is None, external_id
        assert validic_reason(external_id) is None, external_id


def test_import_refuses_identifying_ids_unless_allowed_and_validic_always(tmp_path: Path) -> None:
    rows = tmp_path / "people.jsonl"
    rows.write_text(
        json.dumps({"external_id": "ana.perez@example.com", "providers": ["palenca", "validic"]})
        + "\n"
        + json.dumps({"external_id": "u-2"})
        + "\n"
    )

    refused = CliRunner().invoke(cli, ["import", str(rows), "--provider", "palenca", "--dry-run"])
    allowed = CliRunner().invoke(
        cli,
        ["import", str(rows), "--provider", "all", "--dry-run", "--allow-identifying-ids", "--skip-invalid"],
    )

    assert refused.exit_code == 1
    assert "line 1: external_id:" in refused.output
    assert "ana.perez" not in refused.output
    assert allowed.exit_code == 0, allowed.output
    assert "line 1: external_id:" in allowed.output  # for validic
    assert "would send       2 to palenca" in allowed.output
    assert "would send       1 to validic" in allowed.output
