"""PeopleFunction (GET /people/{external_id}) through real API Gateway events, under its own
enforced role, after the create functions linked the person; and ``provisioner person``."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from provisioner_cli.main import cli
from provisioner_cli.stack import StackTarget
from provisioning.providers import NAMES
from provisioning.store import Lease, LinkStore, now_ms
from tests.conftest import EVENTS, api_event, response_json

FUNCTION = "PeopleFunction"
PALM_VAULT = {"identity.email": "ana.perez@example.com", "identity.phone": "+15555550123"}
FAILURE = {
    "code": "validation_error",
    "message": "email: is required by trust",
    "attempts": 1,
    "at": "2026-11-26T10:00:00.000Z",
}


def get_person(external_id: str, *, encode: bool = True, method: str = "GET") -> dict[str, Any]:
    """A real API Gateway REST proxy event of GET /people/{external_id}: the path as the client
    sent it (percent-encoded), the path parameter decoded."""
    event: dict[str, Any] = json.loads((EVENTS / "people" / "api.json").read_text())
    raw = quote(external_id, safe="") if encode else external_id
    event["path"] = f"/people/{raw}"
    event["requestContext"]["path"] = f"/v1/people/{raw}"
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["pathParameters"] = {"external_id": external_id}
    return event


def dead_letter(aws: Any, table: str, provider: str, external_id: str) -> None:
    """A record of this person was dead-lettered: its pending item keeps the report."""
    aws("dynamodb").update_item(
        TableName=table,
        Key={"external_id": {"S": external_id}, "provider": {"S": provider}},
        UpdateExpression="SET #f = :f",
        ExpressionAttributeNames={"#f": "failure"},
        ExpressionAttributeValues={
            ":f": {
                "M": {
                    "code": {"S": FAILURE["code"]},
                    "message": {"S": FAILURE["message"]},
                    "attempts": {"N": str(FAILURE["attempts"])},
                    "at": {"S": FAILURE["at"]},
                }
            }
        },
    )


@pytest.fixture
def person(load_function, store: LinkStore, stack, aws) -> str:
    """u-people-1: created at Palenca and at Palm through their create functions; a Trust record
    of theirs dead-lettered; an attempt at Validic under way (holding its lease)."""
    external_id = "u-people-1"
    created = load_function("PalencaCreateUserFunction")(
        api_event("/palenca/users", {"external_id": external_id})
    )
    assert created["statusCode"] == 201
    body = {"external_id": external_id, "vault": PALM_VAULT}
    assert load_function("PalmCreateUserFunction")(api_event("/palm/users", body))["statusCode"] == 201
    store.mark_pending("trust", external_id)
    dead_letter(aws, stack.refs["UsersTable"], "trust", external_id)
    store.mark_pending("validic", external_id, Lease("attempt-1", now_ms() + 60_000, "9" * 64))
    return external_id


def test_answers_every_providers_state_for_a_person(invoke, person, store):
    response = invoke(get_person(person))

    assert response["statusCode"] == 200
    view = response_json(response)
    assert view["external_id"] == person
    assert list(view["providers"]) == list(NAMES)
    states = {name: shown["state"] for name, shown in view["providers"].items()}
    assert states == {
        **dict.fromkeys(NAMES, "not_requested"),
        "palenca": "linked",
        "palm": "linked",
        "trust": "dead_lettered",
        "validic": "pending",
    }
    palenca = view["providers"]["palenca"]
    assert palenca["provider_user_id"] == store.get("palenca", person).provider_user_id
    assert palenca["source"] == "created"
    assert palenca["details"]["widget_id"]
    assert view["providers"]["trust"]["failure"] == FAILURE
    assert view["pending"] == ["validic"]
    assert view["dead_lettered"] == ["trust"]


def test_never_shows_personal_data_fingerprints_or_sealed_tokens(invoke, person, store, capsys):
    response = invoke(get_person(person))

    palm = response_json(response)["providers"]["palm"]
    assert palm["details"] == {
        k: v for k, v in store.get("palm", person).details.items() if "fingerprint" not in k
    }
    assert "fingerprint" not in response["body"]
    assert "sealed" not in response["body"]
    # The claims' fields: the payload hash each link keeps, the lease of the attempt under way.
    assert store.get("palm", person).fingerprint not in response["body"]
    assert "9" * 64 not in response["body"]
    assert "lease" not in response["body"]
    assert "attempt-1" not in response["body"]
    out = capsys.readouterr().out
    for value in [*PALM_VAULT.values()]:
        assert value not in response["body"] + out


def test_a_sealed_token_stays_out_of_the_answer(invoke, load_function):
    created = load_function("ValidicProvisionUserFunction")(
        api_event("/validic/users", {"external_id": "u-people-2"})
    )
    assert created["statusCode"] == 201

    response = invoke(get_person("u-people-2"))

    assert response["statusCode"] == 200
    validic = response_json(response)["providers"]["validic"]
    assert validic["state"] == "linked"
    assert "access_token" not in response["body"]
    assert "sealed" not in response["body"]


@pytest.mark.parametrize("external_id", ["dTE+x=", "u:1@x=", "cust.00_1"])
def test_ids_with_characters_a_path_encodes_are_found(invoke, load_function, external_id):
    body = {"external_id": external_id}
    assert load_function("PalencaCreateUserFunction")(api_event("/palenca/users", body))["statusCode"] == 201

    response = invoke(get_person(external_id))

    assert response["statusCode"] == 200, response["body"]
    assert response_json(response)["external_id"] == external_id
    assert response_json(response)["providers"]["palenca"]["state"] == "linked"


@pytest.mark.parametrize(
    "raw",
    [
        "ana%40example.com",
        "a%2Fb",
        "%20",
        "-starts-with-a-hyphen",
        "x" * 129,
        "%E2%9C%93",
        "a%25b",
        "%2B5215512345678",
    ],
)
def test_an_invalid_id_is_a_400_naming_external_id_and_logs_no_value(invoke, raw, capsys):
    response = invoke(get_person(raw, encode=False))

    assert response["statusCode"] == 400, response["body"]
    error = response_json(response)["error"]
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["fields"]] == ["external_id"]
    out = capsys.readouterr().out
    for value in ("ana@example.com", "ana%40example.com", "5215512345678"):
        assert value not in response["body"] + out


def test_a_person_no_provider_knows_is_a_404(invoke):
    response = invoke(get_person("u-nobody"))

    assert response["statusCode"] == 404
    assert response_json(response)["error"]["code"] == "person_not_found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_another_method_is_a_405_with_allow(invoke, method):
    response = invoke(get_person("u-1", method=method))

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET"


def test_a_path_without_a_route_is_a_404_not_a_crash(invoke):
    event = get_person("u-1")
    event["path"] = "/people/u-1/extra"

    response = invoke(event)

    assert response["statusCode"] == 404
    assert response_json(response)["error"]["code"] == "not_found"


def test_an_event_that_is_not_an_api_call_is_refused_not_crashed(invoke):
    response = invoke({"Records": []})

    assert response["statusCode"] == 400


def test_the_ready_events_answer_for_people_the_create_function_linked(invoke, load_function):
    create = load_function("PalencaCreateUserFunction")
    for name in ("api.json", "api_encoded.json"):
        event = json.loads((EVENTS / "people" / name).read_text())
        external_id = event["pathParameters"]["external_id"]
        assert create(api_event("/palenca/users", {"external_id": external_id}))["statusCode"] == 201

        response = invoke(copy.deepcopy(event))

        assert response["statusCode"] == 200, (name, response["body"])
        assert response_json(response)["external_id"] == external_id


# -- provisioner person ---------------------------------------------------------------------------


@pytest.fixture
def use_target(monkeypatch, stack, admin_session) -> StackTarget:
    target = StackTarget(
        dict(stack.refs), admin_session, description="test stack", parameters=dict(stack.parameters)
    )
    monkeypatch.setattr("provisioner_cli.person.resolve_target", lambda **kw: target)
    return target


def test_person_command_prints_one_line_per_provider(use_target, person, store):
    result = CliRunner().invoke(cli, ["person", person])

    assert result.exit_code == 0, result.output
    lines = {
        line.split()[0]: line.split() for line in result.output.splitlines()[3:] if line.split()[0] in NAMES
    }
    assert set(lines) == set(NAMES)
    assert lines["palenca"][1:4] == ["linked", store.get("palenca", person).provider_user_id, "created"]
    assert lines["trust"][1] == "dead_lettered"
    assert lines["trust"][-1] == "validation_error"
    assert lines["validic"][1] == "pending"
    assert "dead-lettered: trust" in result.output
    assert "pending: validic" in result.output


def test_person_command_json_is_the_apis_answer(use_target, person, invoke):
    result = CliRunner().invoke(cli, ["person", person, "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == response_json(invoke(get_person(person)))


def test_person_command_refuses_an_invalid_id_and_reports_an_unknown_person(use_target):
    invalid = CliRunner().invoke(cli, ["person", "ana@example.com"])
    unknown = CliRunner().invoke(cli, ["person", "u-nobody"])

    assert invalid.exit_code == 2
    assert "EXTERNAL_ID" in invalid.output
    assert unknown.exit_code == 1
    assert "no provider holds anything for u-nobody" in unknown.output
