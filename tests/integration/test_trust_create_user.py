"""TrustCreateUserFunction through API Gateway and SQS events, against moto and the Trust sandbox."""

from __future__ import annotations

import json

import pytest

from provisioner_sandbox.server import Reply
from tests.conftest import api_event, dead_letters, response_json, send_and_drain

FUNCTION = "TrustCreateUserFunction"
ROUTE = "/trust/users"
PERSON = {
    "external_id": "t-1",
    "email": "alfa.beta@example.test",
    "name": "Alfa",
    "last_name": "Beta",
    "phone_number": "+56912345678",
    "dni": "12345678-9",
}


def test_post_creates_the_trust_user_and_stores_its_id(invoke, trust, store):
    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    created = trust.users_with_email(PERSON["email"])
    assert len(created) == 1
    assert response_json(response)["provider_user_id"] == str(created[0]["id"])
    link = store.get("trust", "t-1")
    assert link.provider_user_id == str(created[0]["id"])


def test_repeat_answers_200_without_a_second_create(invoke, sandbox):
    invoke(api_event(ROUTE, PERSON))
    second = invoke(api_event(ROUTE, PERSON))

    assert second["statusCode"] == 200
    assert sandbox.count("trust", "POST", "/trust/users/create") == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone_number": "56912345678"}, "phone_number"),
        ({"img": "robohash.org/1"}, "img"),
        ({"name": None}, "name"),
        ({"surname": "x"}, "surname"),
    ],
)
def test_invalid_fields_answer_422_naming_them_without_calling_trust(invoke, sandbox, change, field):
    body = {k: v for k, v in {**PERSON, **change}.items() if v is not None}

    response = invoke(api_event(ROUTE, body))

    assert response["statusCode"] == 422
    assert field in [f["field"] for f in response_json(response)["error"]["fields"]]
    assert sandbox.count("trust") == 0


def test_token_is_cached_across_invocations_of_a_container(invoke, trust):
    for n in range(3):
        body = {**PERSON, "external_id": f"t-{n}", "email": f"p{n}@example.test"}
        assert invoke(api_event(ROUTE, body))["statusCode"] == 201

    assert trust.token_requests == 1


def test_a_401_refreshes_the_token_once_and_replays(invoke, trust, sandbox):
    invoke(api_event(ROUTE, {**PERSON, "external_id": "t-a", "email": "a@example.test"}))
    trust.revoke_tokens()

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    assert trust.token_requests == 2
    assert sandbox.count("trust", "POST", "/trust/users/create") == 3  # 201, 401, 201


def test_known_email_links_the_existing_trust_user_when_it_is_the_same_person(invoke, trust):
    existing = trust.seed_user(PERSON["email"], name=PERSON["name"], last_name=PERSON["last_name"])

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    body = response_json(response)
    assert body["outcome"] == "linked_existing"
    assert body["provider_user_id"] == str(existing["id"])
    assert len(trust.users_with_email(PERSON["email"])) == 1


def test_a_known_email_held_by_a_person_with_other_names_is_a_conflict_not_a_link(invoke, trust, store):
    trust.seed_user(PERSON["email"], name="Otra", last_name="Persona")

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 409
    assert response_json(response)["error"]["code"] == "conflict"
    assert PERSON["email"] not in response["body"]
    assert "Otra" not in response["body"]
    assert store.get("trust", "t-1").status.value == "pending"


def test_invalid_queued_body_is_dead_lettered_naming_the_fields(invoke, stack, aws, sandbox):
    sqs = aws("sqs")

    report = send_and_drain(
        sqs, stack.refs["TrustCreateUserQueue"], invoke, [{"external_id": "t-x"}], max_batches=1
    )

    assert report.failed == 1
    failed = dead_letters(sqs, stack.refs["TrustCreateUserDLQ"])
    assert failed[0]["failure"]["code"] == "validation_error"
    assert {f["field"] for f in failed[0]["failure"]["fields"]} == {"email", "name", "last_name"}
    assert sandbox.count("trust") == 0


def test_trust_missing_params_is_final_and_dead_lettered_with_trusts_message(invoke, stack, aws, sandbox):
    sandbox.script("POST", "/trust/users/create", Reply(404, {"status": False, "message": "Missing params"}))
    sqs = aws("sqs")

    report = send_and_drain(sqs, stack.refs["TrustCreateUserQueue"], invoke, [PERSON], max_batches=1)

    assert report.failed == 1
    failed = dead_letters(sqs, stack.refs["TrustCreateUserDLQ"])
    assert len(failed) == 1
    reason = failed[0]["failure"]
    assert (reason["code"], reason["provider"], reason["provider_status"]) == (
        "provider_rejected",
        "trust",
        404,
    )
    assert "Missing params" in reason["message"]
    assert reason["attempts"] == 1
    assert sandbox.count("trust", "POST", "/trust/users/create") == 1  # not retried


def test_lost_answer_is_reconciled_without_a_second_trust_user(invoke, trust, sandbox):
    sandbox.set_faults("trust", lose_answer_rate=1.0)
    first = invoke(api_event(ROUTE, PERSON))
    sandbox.set_faults("trust")

    retried = first if first["statusCode"] == 201 else invoke(api_event(ROUTE, PERSON))

    assert retried["statusCode"] == 201
    assert response_json(retried)["outcome"] == "reconciled"
    assert len(trust.users_with_email(PERSON["email"])) == 1


def test_no_personal_data_or_credentials_in_logs_or_table(invoke, stack, aws, capsys, trust):
    invoke(api_event(ROUTE, PERSON))
    trust.revoke_tokens()
    invoke(api_event(ROUTE, {**PERSON, "external_id": "t-2", "email": "second@example.test"}))
    invoke(api_event(ROUTE, {**PERSON, "email": "bad"}))
    send_and_drain(aws("sqs"), stack.refs["TrustCreateUserQueue"], invoke, [{**PERSON, "external_id": "t-3"}])

    logs = capsys.readouterr().out
    items = json.dumps(aws("dynamodb").scan(TableName=stack.refs["UsersTable"])["Items"])
    tokens = list(trust.tokens)
    for secret in [
        PERSON["email"],
        "second@example.test",
        PERSON["name"],
        PERSON["last_name"],
        PERSON["dni"],
        PERSON["phone_number"],
        "sandbox-trust-secret",
        *tokens,
    ]:
        assert secret not in logs, secret
        assert secret not in items, secret
