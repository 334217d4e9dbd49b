"""ValidicProvisionUserFunction through API Gateway and SQS events, against moto and the Validic sandbox."""

from __future__ import annotations

import json

import pytest

from provisioning.sealing import KmsSealer, read_token
from tests.conftest import api_event, response_json, send_and_drain

FUNCTION = "ValidicProvisionUserFunction"
ROUTE = "/validic/users"
PERSON = {
    "external_id": "v-1001",
    "profile": {"gender": "F", "birth_year": 1976, "height": 167.5, "weight": 83.9},
}


def test_post_provisions_and_stores_the_id_and_the_token_encrypted(invoke, validic, store, stack, aws):
    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    user = validic.users["v-1001"]
    link = store.get("validic", "v-1001")
    assert link.provider_user_id == user["_id"]
    assert link.sealed["access_token"] != user["access_token"]
    sealer = KmsSealer(aws("kms"), stack.attrs["TokenEncryptionKey.Arn"])
    assert read_token(store, sealer, "validic", "v-1001") == user["access_token"]
    assert "birth_year" not in link.details
    assert user["profile"] == PERSON["profile"]


def test_repeat_answers_200_without_a_second_call(invoke, sandbox):
    invoke(api_event(ROUTE, PERSON))
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 200
    assert sandbox.count("validic", "POST") == 1


@pytest.mark.parametrize(
    ("external_id", "why"),
    [
        ("ana@example.com", "e-mail"),
        ("56-9-1234-5678", "phone"),
        ("555-123-4567", "phone"),
        ("John.Doe", "name"),
    ],
)
def test_identifying_external_id_is_refused_saying_why(invoke, sandbox, external_id, why):
    response = invoke(api_event(ROUTE, {"external_id": external_id}))

    assert response["statusCode"] == 422
    fields = response_json(response)["error"]["fields"]
    assert fields[0]["field"] == "external_id"
    assert why in fields[0]["message"]
    assert sandbox.count("validic") == 0


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        ({"height": 20}, "profile.height"),
        ({"weight": 900}, "profile.weight"),
        ({"birth_year": 1800}, "profile.birth_year"),
        ({"birth_year": 3000}, "profile.birth_year"),
        ({"eyes": "blue"}, "profile.eyes"),
    ],
)
def test_profile_out_of_range_names_the_field(invoke, profile, field):
    response = invoke(api_event(ROUTE, {"external_id": "v-2", "profile": profile}))

    assert response["statusCode"] == 422
    assert field in [f["field"] for f in response_json(response)["error"]["fields"]]


def test_uid_already_at_validic_is_linked_to_the_existing_user(invoke, validic, sandbox):
    existing = validic.seed_user("v-1001")

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    assert response_json(response)["outcome"] == "linked_existing"
    assert response_json(response)["provider_user_id"] == existing["_id"]
    assert len(validic.users) == 1


def test_lost_answer_is_reconciled_by_uid(invoke, validic, sandbox):
    sandbox.set_faults("validic", lose_answer_rate=1.0)
    first = invoke(api_event(ROUTE, PERSON))
    sandbox.set_faults("validic")
    final = first if first["statusCode"] < 300 else invoke(api_event(ROUTE, PERSON))

    assert final["statusCode"] == 201
    assert response_json(final)["outcome"] == "reconciled"
    assert len(validic.users) == 1


def test_no_token_in_logs_or_table(invoke, validic, stack, aws, capsys):
    invoke(api_event(ROUTE, PERSON))
    send_and_drain(aws("sqs"), stack.refs["ValidicProvisionUserQueue"], invoke, [{"external_id": "v-2002"}])

    logs = capsys.readouterr().out
    items = json.dumps(aws("dynamodb").scan(TableName=stack.refs["UsersTable"])["Items"])
    for secret in [*(u["access_token"] for u in validic.users.values()), "sandbox-validic-org-token"]:
        assert secret not in logs
        assert secret not in items
