"""ValidicInformProvisionUserFunction through API Gateway and SQS events, against moto (its role
from template.yaml enforced) and the Validic Inform sandbox; and the organization token, which
travels in the query string, kept out of every log record, answer and dead-letter report."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from moto.sqs.models import sqs_backends

from provisioner_cli.lambda_runtime import drain_queue
from provisioner_cli.local import ACCOUNT, REGION
from provisioning.providers import provider
from provisioning.provision import fingerprint_of
from provisioning.sealing import KmsSealer, read_token
from provisioning.store import Lease, LinkStore, now_ms
from tests.conftest import EVENTS, api_event, dead_letters, response_json, send_and_drain
from tests.logs import texts

FUNCTION = "ValidicInformProvisionUserFunction"
QUEUE, DLQ = "ValidicInformProvisionUserQueue", "ValidicInformProvisionUserDLQ"
ROUTE = "/validic-inform/users"
PROVIDER = "validic_inform"
SAMPLES = EVENTS / "validic_inform_provision_user"
PERSON = {"external_id": "vi-1001", "location": {"timezone": "America/New_York", "country_code": "US"}}
SEALED = ("marketplace_token", "marketplace_url", "mobile_token")


@pytest.fixture
def inform(sandbox):
    return sandbox.emulators[PROVIDER]


@pytest.fixture
def inform_stack(stack, sandbox, aws, inform):
    """The test stack with Validic Inform's secret (the sandbox's credentials) and its base URL at
    the sandbox's Validic Inform path, whatever the local stack's tooling set up for it."""
    secrets = aws("secretsmanager")
    name = stack.parameters["ValidicInformSecretId"]
    try:
        secrets.create_secret(Name=name, SecretString=json.dumps(inform.credentials()))
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=name, SecretString=json.dumps(inform.credentials()))
    stack.parameters["ValidicInformBaseUrl"] = sandbox.base_url(PROVIDER)
    return stack


@pytest.fixture
def invoke(inform_stack, load_function):
    return load_function(FUNCTION)


def _sqs_bodies(sample: str) -> list[Any]:
    return [json.loads(r["body"]) for r in json.loads((SAMPLES / sample).read_text())["Records"]]


def _scan(aws, stack, *tables: str) -> str:
    return json.dumps([aws("dynamodb").scan(TableName=stack.refs[t])["Items"] for t in tables])


def _user_secrets(inform) -> list[str]:
    return [
        value
        for user in inform.users.values()
        for value in (user["marketplace"]["token"], user["marketplace"]["url"], user["mobile"]["token"])
    ]


# -- created, replayed, refused ---------------------------------------------------------------------
def test_post_provisions_and_stores_the_id_with_every_token_sealed(invoke, inform, store, stack, aws):
    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    answer = response_json(response)
    user = inform.users["vi-1001"]
    assert (answer["provider"], answer["outcome"]) == (PROVIDER, "created")
    assert answer["provider_user_id"] == user["id"]
    assert answer["details"] == {}
    assert user["location"] == PERSON["location"]
    link = store.get(PROVIDER, "vi-1001")
    assert link.provider_user_id == user["id"]
    assert sorted(link.sealed) == sorted(SEALED)
    sealer = KmsSealer(aws("kms"), stack.attrs["TokenEncryptionKey.Arn"])
    assert read_token(store, sealer, PROVIDER, "vi-1001", "marketplace_token") == user["marketplace"]["token"]
    assert read_token(store, sealer, PROVIDER, "vi-1001", "marketplace_url") == user["marketplace"]["url"]
    assert read_token(store, sealer, PROVIDER, "vi-1001", "mobile_token") == user["mobile"]["token"]
    stored = _scan(aws, stack, "UsersTable", "IdempotencyTable")
    for secret in [*_user_secrets(inform), inform.token]:
        assert secret not in stored
        assert secret not in response["body"]


def test_repeat_answers_200_without_a_second_call_and_another_payload_is_a_conflict(invoke, sandbox):
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 201
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 200
    other = invoke(api_event(ROUTE, {**PERSON, "location": {"country_code": "MX"}}))

    assert other["statusCode"] == 409
    assert response_json(other)["error"]["code"] == "conflict"
    assert sandbox.count(PROVIDER, "POST") == 1


def _item(aws, stack, external_id: str) -> dict[str, Any]:
    key = {"external_id": {"S": external_id}, "provider": {"S": PROVIDER}}
    return aws("dynamodb").get_item(TableName=stack.refs["UsersTable"], Key=key, ConsistentRead=True)["Item"]


def test_another_payload_is_a_conflict_whose_answer_names_no_personal_data(invoke, sandbox, aws, stack):
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 201
    other = {**PERSON, "location": {"timezone": "Europe/Madrid", "country_code": "ES"}}

    answer = invoke(api_event(ROUTE, other))

    assert answer["statusCode"] == 409
    error = response_json(answer)["error"]
    assert error["message"] == "this external_id was already requested with a different payload"
    for value in ("vi-1001", "Europe/Madrid", "America/New_York", "ES", '"US"'):
        assert value not in answer["body"]
    item = _item(aws, stack, "vi-1001")
    # The link keeps the payload's hash, never the payload; its lease went with the claim.
    request = provider(PROVIDER).create.load_spec().request_model.model_validate(PERSON)
    assert item["fingerprint"] == {"S": fingerprint_of(request)}
    assert not {"lease_owner", "lease_until"} & set(item)
    assert sandbox.count(PROVIDER, "POST") == 1


def test_a_delivery_while_a_crashed_attempt_holds_the_person_waits_then_takes_over_and_reconciles(
    invoke, inform, sandbox, aws, stack
):
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 201
    # What an invocation that died after its create reached Validic Inform leaves: the person
    # pending under its lease, no link, no claim.
    user_id = _item(aws, stack, "vi-1001")["provider_user_id"]["S"]
    table = stack.refs["UsersTable"]
    for key in ("vi-1001", f"#owner#{user_id}"):
        aws("dynamodb").delete_item(
            TableName=table, Key={"external_id": {"S": key}, "provider": {"S": PROVIDER}}
        )
    lease = Lease(owner="crashed", until=now_ms() + 1500, fingerprint="f" * 64)
    LinkStore(aws("dynamodb"), table).mark_pending(PROVIDER, "vi-1001", lease)
    posts = sandbox.count(PROVIDER, "POST")

    busy = invoke(api_event(ROUTE, PERSON))
    assert busy["statusCode"] == 409
    assert response_json(busy)["error"]["code"] == "in_progress"
    assert busy["multiValueHeaders"]["Retry-After"] == ["2"]
    assert sandbox.count(PROVIDER) == posts + sandbox.count(PROVIDER, "GET")  # no create meanwhile

    time.sleep(max(0.0, (lease.until - now_ms()) / 1000) + 0.1)  # the lease expires
    final = invoke(api_event(ROUTE, PERSON))

    assert final["statusCode"] == 201
    assert response_json(final)["outcome"] == "reconciled"
    assert response_json(final)["provider_user_id"] == user_id
    assert len(inform.users) == 1
    assert sandbox.count(PROVIDER, "POST") == posts


def test_a_failed_attempt_releases_its_lease_so_a_retry_goes_ahead_at_once(
    invoke, inform, sandbox, aws, stack
):
    sandbox.set_faults(PROVIDER, error_rate=1.0)
    failed = invoke(api_event(ROUTE, PERSON))
    sandbox.set_faults(PROVIDER)

    assert failed["statusCode"] == 502  # Validic Inform answered 503 to every try
    item = _item(aws, stack, "vi-1001")
    assert item["status"] == {"S": "pending"}
    assert not {"lease_owner", "lease_until"} & set(item)
    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 201
    assert len(inform.users) == 1


def test_the_sample_events_provision_api_base64_and_sqs(invoke, inform, stack, aws):
    api = json.loads((SAMPLES / "api.json").read_text())
    encoded = json.loads((SAMPLES / "api_base64.json").read_text())
    assert encoded["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(encoded["body"]))["external_id"] == "u-1002"

    assert invoke(api)["statusCode"] == 201
    assert invoke(encoded)["statusCode"] == 201
    report = send_and_drain(aws("sqs"), stack.refs[QUEUE], invoke, _sqs_bodies("sqs.json"))

    assert (report.acknowledged, report.failed) == (2, 0)
    assert sorted(inform.users) == ["u-1001", "u-1002", "u-1003", "u-1004"]
    assert inform.users["u-1002"]["location"] == {"country_code": "MX"}
    assert inform.users["u-1004"]["location"] == {"timezone": "Europe/Madrid", "country_code": "ES"}


@pytest.mark.parametrize(
    ("external_id", "why"),
    [
        ("ana@example.com", "e-mail"),
        ("555-123-4567", "phone"),
        ("John-Doe", "name"),
        ("u-1", "4 to 254"),
        ("u--1001", "single hyphens"),
        ("u_1001", "single hyphens"),
    ],
)
def test_an_id_validic_refuses_as_uid_is_refused_naming_external_id(invoke, sandbox, external_id, why):
    response = invoke(api_event(ROUTE, {"external_id": external_id}))

    assert response["statusCode"] == 422
    fields = response_json(response)["error"]["fields"]
    assert fields[0]["field"] == "external_id"
    assert why in fields[0]["message"]
    assert sandbox.count(PROVIDER) == 0


@pytest.mark.parametrize(
    ("location", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "location.timezone"),
        ({"country_code": "usa"}, "location.country_code"),
    ],
)
def test_a_bad_location_names_the_field(invoke, sandbox, location, field):
    response = invoke(api_event(ROUTE, {"external_id": "vi-2002", "location": location}))

    assert response["statusCode"] == 422
    assert field in [f["field"] for f in response_json(response)["error"]["fields"]]
    assert sandbox.count(PROVIDER) == 0


# -- reconciled -------------------------------------------------------------------------------------
def test_a_uid_validic_already_holds_answers_422_and_is_linked_to_the_user_found(
    invoke, inform, store, sandbox
):
    existing = inform.seed_user("vi-1001")

    response = invoke(api_event(ROUTE, PERSON))

    assert response["statusCode"] == 201
    assert response_json(response)["outcome"] == "linked_existing"
    assert response_json(response)["provider_user_id"] == existing["id"]
    assert sorted(store.get(PROVIDER, "vi-1001").sealed) == sorted(SEALED)
    assert sandbox.count(PROVIDER, "GET") == 1
    assert len(inform.users) == 1


def test_a_lost_answer_is_reconciled_by_uid_without_a_second_user(invoke, inform, sandbox):
    sandbox.set_faults(PROVIDER, lose_answer_rate=1.0)
    first = invoke(api_event(ROUTE, PERSON))
    sandbox.set_faults(PROVIDER)
    final = first if first["statusCode"] < 300 else invoke(api_event(ROUTE, PERSON))

    assert final["statusCode"] == 201
    assert response_json(final)["outcome"] == "reconciled"
    assert len(inform.users) == 1


# -- signup events ------------------------------------------------------------------------------------
def test_a_signup_event_maps_the_person_to_uid_and_country(invoke, inform, stack, aws):
    report = send_and_drain(aws("sqs"), stack.refs[QUEUE], invoke, _sqs_bodies("signup.json"))

    assert (report.acknowledged, report.failed) == (1, 0)
    assert inform.users["signup-1"]["location"] == {"country_code": "MX"}


def test_a_signup_event_for_other_providers_is_acknowledged_without_a_call(invoke, sandbox, stack, aws):
    (event,) = _sqs_bodies("signup.json")
    event["detail"]["providers"] = ["palenca", "validic"]

    report = send_and_drain(aws("sqs"), stack.refs[QUEUE], invoke, [event])

    assert (report.acknowledged, report.failed) == (1, 0)
    assert sandbox.count(PROVIDER) == 0


# -- the hourly budget, shared through RateLimitTable -------------------------------------------------
def _window_item(aws, stack) -> dict[str, Any] | None:
    window = int(time.time() // 3600)
    return (
        aws("dynamodb")
        .get_item(TableName=stack.refs["RateLimitTable"], Key={"id": {"S": f"ratelimit#{PROVIDER}#{window}"}})
        .get("Item")
    )


def _spend_the_hour(aws, stack) -> None:
    """Other containers used the whole hour's budget (2,000, the template's default)."""
    window = int(time.time() // 3600)
    aws("dynamodb").put_item(
        TableName=stack.refs["RateLimitTable"],
        Item={
            "id": {"S": f"ratelimit#{PROVIDER}#{window}"},
            "used": {"N": "2000"},
            "expiration": {"N": str((window + 2) * 3600)},
        },
    )


def test_every_request_takes_a_slot_of_the_hourly_budget(invoke, inform, aws, stack):
    inform.seed_user("vi-1001")  # a create (422) and a lookup: two requests

    assert invoke(api_event(ROUTE, PERSON))["statusCode"] == 201

    assert int(_window_item(aws, stack)["used"]["N"]) == 2 == inform.used_this_hour


def test_with_the_hour_spent_nothing_is_sent_an_api_call_is_429_and_a_record_waits(
    invoke, sandbox, aws, stack
):
    _spend_the_hour(aws, stack)

    response = invoke(api_event(ROUTE, PERSON))
    report = send_and_drain(aws("sqs"), stack.refs[QUEUE], invoke, [{"external_id": "vi-3003"}])

    assert response["statusCode"] == 429
    headers = response.get("headers") or {k: v[0] for k, v in response["multiValueHeaders"].items()}
    assert int(headers["Retry-After"]) > 0
    assert (report.acknowledged, report.failed) == (1, 0)  # sent back to wait, not failed
    (waiting,) = [m for m in sqs_backends[ACCOUNT][REGION].get_queue(QUEUE)._messages if m.delayed]
    assert json.loads(waiting.body) == {"external_id": "vi-3003"}
    assert sandbox.count(PROVIDER) == 0
    assert dead_letters(aws("sqs"), stack.refs[DLQ]) == []


# -- the organization token is never written anywhere ---------------------------------------------------
def test_the_organization_token_is_in_no_log_record_answer_or_dead_letter(
    invoke, inform, sandbox, stack, aws, every_record, capsys, monkeypatch
):
    token = inform.token
    monkeypatch.setenv("HTTP_CALL_TIMEOUT", "1")  # read once per container: before the first call
    path = f"/{PROVIDER}/organizations/{inform.organization_id}/users"
    answers = []

    answers.append(invoke(api_event(ROUTE, {"external_id": "tok-1001"})))  # a create
    inform.seed_user("tok-2002")
    answers.append(invoke(api_event(ROUTE, {"external_id": "tok-2002"})))  # a 422, then a lookup
    sandbox.script_fault(PROVIDER, "POST", path, "hang", hang_s=3)  # a timeout
    answers.append(invoke(api_event(ROUTE, {"external_id": "tok-3003"})))
    sandbox.script_fault(PROVIDER, "POST", path, "reset")  # a connection error
    answers.append(invoke(api_event(ROUTE, {"external_id": "tok-4004"})))
    sandbox.script_fault(PROVIDER, "POST", path, "redirect")  # a redirect, to another host
    answers.append(invoke(api_event(ROUTE, {"external_id": "tok-5005"})))
    inform.token = "rotated-token-the-hub-does-not-have"  # from here on: 401
    refused = invoke(api_event(ROUTE, {"external_id": "tok-6006"}))
    sqs = aws("sqs")
    sqs.send_message(QueueUrl=stack.refs[QUEUE], MessageBody=json.dumps({"external_id": "tok-7007"}))
    # Each failed receive comes back at once; the third is dead-lettered with its reason.
    report = drain_queue(sqs, stack.refs[QUEUE], invoke, max_batches=5, visibility_timeout=0)

    assert [a["statusCode"] for a in answers] == [201] * 5
    # The timeout, the reset and the redirect came before Validic did anything: looked up, then created.
    assert [response_json(a)["outcome"] for a in answers] == ["created", "linked_existing", *["created"] * 3]
    assert sandbox.count(PROVIDER, "GET") == 1 + 3
    assert refused["statusCode"] == 502
    assert response_json(refused)["error"]["code"] == "provider_auth_failed"
    assert report.failed >= 1
    (dead,) = dead_letters(aws("sqs"), stack.refs[DLQ])
    assert dead["failure"]["code"] == "provider_auth_failed"
    assert sandbox.thief.requests == []  # the redirect was not followed
    # The requests were logged (with their paths), so their absence below means something.
    logged = [r.getMessage() for r in every_record.records if r.name.startswith("urllib3")]
    assert any(f"{path}?token=" in line for line in logged), logged[:5]

    output = capsys.readouterr()
    for secret in (token, inform.token):
        for record in every_record.records:
            for text in texts(record):
                assert secret not in text, (record.name, text)
        for answer in [*answers, refused]:
            assert secret not in json.dumps(answer)
        assert secret not in json.dumps(dead)
        assert secret not in output.out + output.err
        assert secret not in _scan(aws, stack, "UsersTable", "IdempotencyTable")
