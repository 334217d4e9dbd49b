"""PalmCreateUserFunction through API Gateway and SQS events, against moto and the Palm sandbox."""

from __future__ import annotations

import json

import pytest

from tests.conftest import api_event, response_json, send_and_drain

FUNCTION = "PalmCreateUserFunction"
ROUTE = "/palm/users"
VAULT = {
    "identity.first_name": "Johnny",
    "identity.last_name": "Doerr",
    "identity.email": "johnny.doerr@example.com",
    "identity.phone": "+15555550123",
    "identity.date_of_birth": "1990-01-15",
}
PERSON = {"external_id": "p-1", "display_name": "Johnny Doerr", "metadata": {"tier": "gold"}, "vault": VAULT}


def test_post_creates_the_palm_user_and_stores_id_status_and_fingerprints(invoke, palm, store):
    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    created = palm.users_with_email(VAULT["identity.email"])
    assert len(created) == 1
    link = store.get("palm", "p-1")
    assert link.provider_user_id == created[0]["id"]
    assert link.details["status"] == "active"
    assert link.details["email_fingerprint"] == created[0]["email_fingerprint"]
    assert link.details["phone_fingerprint"] == created[0]["phone_fingerprint"]
    assert palm.received[0]["metadata"] == {"tier": "gold", "external_id": "p-1"}


def test_repeat_answers_200_without_a_second_create(invoke, sandbox):
    invoke(api_event(ROUTE, PERSON))
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 200
    assert sandbox.count("palm", "POST", "/palm/v1/user") == 1


def test_a_person_palm_already_knows_by_email_is_linked_not_created(invoke, palm, sandbox):
    existing = palm.seed_user(email=VAULT["identity.email"], metadata={"external_id": "p-1"})

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    assert response_json(response)["outcome"] == "linked_existing"
    assert response_json(response)["provider_user_id"] == existing["id"]
    assert sandbox.count("palm", "POST", "/palm/v1/user") == 0


def test_a_palm_user_with_this_email_but_another_external_id_is_a_conflict_not_a_link(invoke, palm, sandbox):
    palm.seed_user(email=VAULT["identity.email"])  # created outside the hub: nothing says it is p-1

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 409
    assert response_json(response)["error"]["code"] == "conflict"
    assert VAULT["identity.email"] not in response["body"]
    assert sandbox.count("palm", "POST", "/palm/v1/user") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PERSON, "metadata": {f"k{n}": n for n in range(50)}}, "metadata"),
        ({**PERSON, "vault": {"identity.favourite_colour": "blue"}}, "vault.identity.favourite_colour"),
        ({**PERSON, "vault": {"identity.date_of_birth": "1990-02-30"}}, "vault.identity.date_of_birth"),
        ({**PERSON, "vault": {"identity.date_of_birth": "2999-01-01"}}, "vault.identity.date_of_birth"),
        ({**PERSON, "vault": {"identity.email": "nope"}}, "vault.identity.email"),
        ({**PERSON, "metadata": {"external_id": "someone-else"}}, "metadata"),
    ],
)
def test_invalid_bodies_answer_422_naming_the_field(invoke, sandbox, body, field):
    response = invoke(api_event(ROUTE, body))

    assert response["statusCode"] == 422
    assert field in [f["field"] for f in response_json(response)["error"]["fields"]]
    assert sandbox.count("palm") == 0


def test_a_key_that_is_not_sk_test_or_sk_live_is_a_clear_configuration_error(invoke, stack, aws):
    aws("secretsmanager").put_secret_value(
        SecretId=stack.parameters["PalmSecretId"], SecretString=json.dumps({"api_key": "pk_wrong_shape"})
    )

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 500
    error = response_json(response)["error"]
    assert error["code"] == "configuration_error"
    assert "api_key" in error["message"]
    assert "sk_test_" in error["message"]
    assert "pk_wrong_shape" not in response["body"]
    assert "Traceback" not in response["body"]


def test_lost_answer_is_reconciled_by_email_without_a_second_user(invoke, palm, sandbox):
    sandbox.set_faults("palm", lose_answer_rate=1.0)
    first = invoke(api_event(ROUTE, PERSON))
    sandbox.set_faults("palm")
    final = first if first["statusCode"] < 300 else invoke(api_event(ROUTE, PERSON))

    assert final["statusCode"] == 201
    assert response_json(final)["outcome"] == "reconciled"
    assert len(palm.users_with_email(VAULT["identity.email"])) == 1


def test_no_vault_value_email_or_key_in_logs_or_table(invoke, stack, aws, capsys):
    invoke(api_event(ROUTE, PERSON))
    invoke(api_event(ROUTE, {**PERSON, "external_id": "p-2", "vault": {**VAULT, "identity.email": "bad"}}))
    send_and_drain(
        aws("sqs"),
        stack.refs["PalmCreateUserQueue"],
        invoke,
        [{**PERSON, "external_id": "p-3", "vault": {**VAULT, "identity.email": "third@example.com"}}],
    )

    logs = capsys.readouterr().out
    items = json.dumps(aws("dynamodb").scan(TableName=stack.refs["UsersTable"])["Items"])
    for secret in [*VAULT.values(), "third@example.com", "Johnny Doerr", "sk_test_sandboxpalmkey"]:
        assert secret not in logs, secret
        assert secret not in items, secret
