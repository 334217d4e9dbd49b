"""POST /signups/webhook (SignupWebhookFunction) through real API Gateway events, on the local stack
with its role enforced: signatures (Standard Webhooks and Svix, rotation, skew), payloads (generic
and Clerk's), replays, crashes and an unavailable bus; and the whole way from a signed Clerk
delivery to the person linked at their providers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import drain_queue
from provisioner_cli.local import new_webhook_secret
from provisioner_cli.webhook import Delivery, api_event, clerk_payload, generic_payload, sign
from provisioning import webhooks
from tests.conftest import ROOT, response_json
from tests.logs import texts

FUNCTION = "SignupWebhookFunction"
CLERK_ID = "user_2g8Y1kJ3hXz9QwErTyUiOpAsDfG"
# Personal data of the sample payloads: never in a log line, an answer or the table.
PERSONAL = [
    "ana.perez@example.test",
    "ana.work@example.test",
    "Pérez",
    "+5215512345678",
    "1990-04-01",
    "luis.diaz@example.test",
    "Díaz",
    "+5215587654321",
    "1988-09-12",
]


@pytest.fixture
def secret(stack, aws) -> str:
    """The live signing secret the local stack created."""
    value = aws("secretsmanager").get_secret_value(SecretId=stack.parameters["SignupWebhookSecretId"])
    return str(json.loads(value["SecretString"])["secrets"][0])


@pytest.fixture
def published(stack, aws) -> Callable[[], list[dict[str, Any]]]:
    """Every event the webhook publishes to the signup bus, as a catch-all rule delivers them."""
    sqs, events = aws("sqs"), aws("events")
    url = sqs.create_queue(QueueName="SignupWebhookTap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.refs["SignupEventBus"]
    events.put_rule(
        Name="SignupWebhookTap",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["provisioner.signups"]}),
    )
    events.put_targets(Rule="SignupWebhookTap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return list(seen)

    return read


@pytest.fixture
def claims(stack, aws) -> Callable[[str], dict[str, Any] | None]:
    """The replay record of a webhook id in the idempotency table (None when there is none)."""
    dynamodb = aws("dynamodb")

    def claim(webhook_id: str) -> dict[str, Any] | None:
        item = dynamodb.get_item(
            TableName=stack.refs["IdempotencyTable"], Key={"id": {"S": f"signup-webhook#{webhook_id}"}}
        ).get("Item")
        return None if item is None else {key: next(iter(value.values())) for key, value in item.items()}

    return claim


def _generic(external_id: str = "u-9001", **changes: Any) -> str:
    payload = generic_payload(ROOT, external_id)
    payload["data"].update(changes)
    return json.dumps(payload)


def _clerk(**changes: Any) -> str:
    payload = clerk_payload(ROOT)
    payload["data"].update(changes)
    return json.dumps(payload)


def _deliver(invoke, delivery: Delivery, *, base64_encoded: bool = False) -> dict[str, Any]:
    return invoke(api_event(ROOT, delivery, base64_encoded=base64_encoded))


def _refused(answer: dict[str, Any], reason: str) -> None:
    assert answer["statusCode"] == 401, answer
    error = response_json(answer)["error"]
    assert error["code"] == "invalid_signature"
    assert reason in error["message"]


# -- what is logged --------------------------------------------------------------------------------
# -- signatures ----------------------------------------------------------------------------------
def test_a_signed_generic_delivery_is_published_once_as_user_signed_up(invoke, secret, published, claims):
    delivery = sign(secret, _generic())

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 202, answer
    assert response_json(answer) == {
        "webhook_id": delivery.webhook_id,
        "external_id": "u-9001",
        "published": True,
        "duplicate": False,
        "ignored": False,
    }
    (event,) = published()
    assert event["source"] == "provisioner.signups"
    assert event["detail-type"] == "UserSignedUp"
    assert event["detail"] == {  # the Person, without the fields it does not have
        "external_id": "u-9001",
        "email": "luis.diaz@example.test",
        "first_name": "Luis",
        "last_name": "Díaz",
        "phone": "+5215587654321",
        "date_of_birth": "1988-09-12",
        "country": "MX",
        "providers": ["palenca", "validic"],
    }
    record = claims(delivery.webhook_id)
    assert record["state"] == "published"
    assert int(record["expiration"]) - int(record["claimed_at"]) == 3 * 86400
    assert not any(value in json.dumps(record) for value in PERSONAL)


def test_svix_headers_are_the_same_scheme(invoke, secret, published):
    delivery = sign(secret, _generic("u-9002"), svix=True)
    assert set(delivery.headers) == {"svix-id", "svix-timestamp", "svix-signature"}

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 202, answer
    assert [event["detail"]["external_id"] for event in published()] == ["u-9002"]


def test_a_base64_encoded_body_is_verified_over_its_decoded_bytes(invoke, secret, published):
    answer = _deliver(invoke, sign(secret, _generic("u-9003")), base64_encoded=True)

    assert answer["statusCode"] == 202, answer
    assert [event["detail"]["external_id"] for event in published()] == ["u-9003"]


def test_every_live_secret_verifies_during_a_rotation(invoke, stack, aws, secret, published):
    new = new_webhook_secret()
    aws("secretsmanager").put_secret_value(
        SecretId=stack.parameters["SignupWebhookSecretId"],
        SecretString=json.dumps({"secrets": [new, secret]}),
    )

    by_old = _deliver(invoke, sign(secret, _generic("u-old")))
    by_new = _deliver(invoke, sign(new, _generic("u-new")))
    by_neither = _deliver(invoke, sign(new_webhook_secret(), _generic("u-none")))

    assert (by_old["statusCode"], by_new["statusCode"]) == (202, 202)
    _refused(by_neither, "no signature matches a live secret")
    assert sorted(event["detail"]["external_id"] for event in published()) == ["u-new", "u-old"]


def test_a_wrong_signature_is_refused_and_nothing_is_published_or_claimed(invoke, secret, published, claims):
    delivery = sign(secret, _generic())
    tampered = Delivery(_generic(email="other@example.test"), delivery.headers)

    _refused(_deliver(invoke, tampered), "no signature matches a live secret")
    _refused(_deliver(invoke, sign(new_webhook_secret(), _generic())), "no signature matches a live secret")
    assert published() == []
    assert claims(delivery.webhook_id) is None


@pytest.mark.parametrize(
    ("skew", "reason"),
    [
        (timedelta(minutes=-6), "more than 5 minutes old"),
        (timedelta(minutes=6), "more than 5 minutes in the future"),
    ],
    ids=["old", "future"],
)
def test_a_timestamp_beyond_five_minutes_of_skew_is_refused(invoke, secret, published, skew, reason):
    delivery = sign(secret, _generic(), timestamp=datetime.now(tz=UTC) + skew)

    _refused(_deliver(invoke, delivery), reason)
    assert published() == []


def test_a_timestamp_within_the_skew_is_accepted(invoke, secret, published):
    delivery = sign(secret, _generic("u-late"), timestamp=datetime.now(tz=UTC) - timedelta(minutes=4))

    assert _deliver(invoke, delivery)["statusCode"] == 202
    assert len(published()) == 1


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_signature_header_is_refused_naming_it(invoke, secret, published, header):
    delivery = sign(secret, _generic())
    del delivery.headers[header]

    _refused(_deliver(invoke, delivery), header)
    assert published() == []


def test_a_request_without_any_signature_is_refused(invoke, published):
    _refused(_deliver(invoke, Delivery(_generic(), {})), "missing signature headers")
    assert published() == []


@pytest.mark.parametrize(
    ("signature", "timestamp", "reason"),
    [
        ("v1", None, "malformed webhook-signature"),
        ("v1,not base64!", None, "malformed webhook-signature"),
        ("v1,a,b", None, "malformed webhook-signature"),
        ("v2,c2lnbmF0dXJl", None, "no signature matches"),
        (None, "yesterday", "malformed webhook-timestamp"),
        (None, "1e999", "malformed webhook-timestamp"),
    ],
)
def test_malformed_signature_headers_are_refused_never_a_500(
    invoke, secret, published, signature, timestamp, reason
):
    delivery = sign(secret, _generic())
    if signature is not None:
        delivery.headers["webhook-signature"] = signature
    if timestamp is not None:
        delivery.headers["webhook-timestamp"] = timestamp

    _refused(_deliver(invoke, delivery), reason)
    assert published() == []


def test_an_over_long_webhook_id_is_refused(invoke, secret):
    _refused(_deliver(invoke, sign(secret, _generic(), webhook_id="m" * 129)), "webhook-id is longer")


# -- replays and failures --------------------------------------------------------------------------
def test_a_replayed_webhook_id_publishes_nothing_new(invoke, secret, published):
    delivery = sign(secret, _generic())
    first = _deliver(invoke, delivery)
    again = _deliver(invoke, delivery)
    # Svix's retry: the same id and body, signed again with a fresh timestamp.
    retried = _deliver(invoke, sign(secret, delivery.body, webhook_id=delivery.webhook_id, svix=True))

    assert first["statusCode"] == 202
    for answer in (again, retried):
        assert answer["statusCode"] == 200, answer
        assert response_json(answer) == {
            "webhook_id": delivery.webhook_id,
            "external_id": "u-9001",
            "published": False,
            "duplicate": True,
            "ignored": False,
        }
    assert len(published()) == 1


def test_a_published_record_past_its_expiration_no_longer_counts_as_a_replay(
    invoke, stack, aws, secret, published, claims
):
    """DynamoDB removes expired items only eventually: one still there after its three days is
    treated as gone (the same webhook-id so late is a new delivery, not a retry)."""
    delivery = sign(secret, _generic())
    aws("dynamodb").put_item(
        TableName=stack.refs["IdempotencyTable"],
        Item={
            "id": {"S": f"signup-webhook#{delivery.webhook_id}"},
            "state": {"S": "published"},
            "expiration": {"N": str(int(time.time()) - 1)},
        },
    )

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 202, answer
    assert len(published()) == 1
    assert int(claims(delivery.webhook_id)["expiration"]) > time.time() + 2 * 86400


class Killed(BaseException):
    """The container died (timeout, out of memory) between the claim and the publish."""


def test_a_retry_after_a_crash_between_claim_and_publish_still_publishes(
    invoke, secret, published, claims, monkeypatch
):
    delivery = sign(secret, _generic())

    def die(self, person):
        raise Killed

    with monkeypatch.context() as crash:
        crash.setattr(webhooks.SignupWebhookFunction, "_publish", die)
        with pytest.raises(Killed):
            _deliver(invoke, delivery)
    assert claims(delivery.webhook_id)["state"] == "publishing"
    assert published() == []

    retried = _deliver(invoke, sign(secret, delivery.body, webhook_id=delivery.webhook_id))

    assert retried["statusCode"] == 202, retried
    assert len(published()) == 1
    assert claims(delivery.webhook_id)["state"] == "published"


def test_when_the_bus_refuses_the_claim_is_removed_and_the_sender_retries(
    invoke, stack, aws, secret, published, claims
):
    events = aws("events")
    bus = stack.refs["SignupEventBus"]
    rules = {
        rule["Name"]: events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
        for rule in events.list_rules(EventBusName=bus)["Rules"]
    }
    patterns = {rule["Name"]: rule["EventPattern"] for rule in events.list_rules(EventBusName=bus)["Rules"]}
    for name in rules:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=[t["Id"] for t in rules[name]])
        events.delete_rule(Name=name, EventBusName=bus)
    events.delete_event_bus(Name=bus)  # the bus is gone: PutEvents fails
    delivery = sign(secret, _generic())

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 503, answer
    assert response_json(answer)["error"]["code"] == "webhook_unavailable"
    assert answer["multiValueHeaders"]["Retry-After"] == ["30"]
    assert claims(delivery.webhook_id) is None, "the claim must go: the retry has to publish"

    events.create_event_bus(Name=bus)
    for name, targets in rules.items():
        events.put_rule(Name=name, EventBusName=bus, EventPattern=patterns[name])
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    retried = _deliver(invoke, sign(secret, delivery.body, webhook_id=delivery.webhook_id))
    assert retried["statusCode"] == 202, retried
    assert len(published()) == 1


def test_when_the_delivery_cannot_be_recorded_nothing_is_published_and_the_sender_retries(
    invoke, stack, aws, secret, published
):
    aws("dynamodb").delete_table(TableName=stack.refs["IdempotencyTable"])  # the table is unavailable

    answer = _deliver(invoke, sign(secret, _generic()))

    assert answer["statusCode"] == 503, answer
    assert response_json(answer)["error"]["code"] == "webhook_unavailable"
    assert published() == []


def test_a_malformed_secret_is_a_503_naming_the_key_never_its_value(invoke, stack, aws, every_record):
    broken = "not-a-whsec-value-SENSITIVE"
    aws("secretsmanager").put_secret_value(
        SecretId=stack.parameters["SignupWebhookSecretId"],
        SecretString=json.dumps({"secrets": [new_webhook_secret(), broken]}),
    )
    every_record.records.clear()  # the harness's own call above: not the function's

    answer = _deliver(invoke, sign(new_webhook_secret(), _generic()))

    assert answer["statusCode"] == 503, answer
    assert response_json(answer)["error"]["code"] == "webhook_unavailable"
    logs = _logged(every_record.records)
    assert "secrets[1] must be whsec_" in logs
    assert broken not in logs
    assert broken not in answer["body"]


# -- payloads --------------------------------------------------------------------------------------
def test_clerk_user_created_is_mapped_to_the_person(invoke, secret, published):
    answer = _deliver(invoke, sign(secret, json.dumps(clerk_payload(ROOT)), svix=True))

    assert answer["statusCode"] == 202, answer
    assert response_json(answer)["external_id"] == CLERK_ID
    (event,) = published()
    assert event["detail"] == {
        "external_id": CLERK_ID,  # Clerk's user id as it is (user_ ids pass the external_id rule)
        "email": "ana.perez@example.test",  # the primary address, not the first one listed
        "first_name": "Ana",
        "last_name": "Pérez",
        "phone": "+5215512345678",
        "date_of_birth": "1990-04-01",
        "providers": ["palenca", "trust", "palm"],  # public_metadata.providers
    }  # gender "" is absent


def test_clerk_empty_fields_are_absent_and_no_providers_means_every_provider():
    payload = clerk_payload(ROOT)
    payload["data"].update(
        birthday="",
        gender="",
        phone_numbers=[],
        primary_phone_number_id=None,
        public_metadata={},
        last_name=None,
    )

    person = webhooks.signup_person(payload)

    assert person is not None
    assert person.model_dump(exclude_none=True) == {
        "external_id": CLERK_ID,
        "email": "ana.perez@example.test",
        "first_name": "Ana",
    }
    assert person.providers is None


def test_other_event_types_are_acknowledged_and_ignored(invoke, secret, published, claims):
    payload = clerk_payload(ROOT)
    payload["type"] = "user.updated"
    delivery = sign(secret, json.dumps(payload), svix=True)

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 200, answer
    assert response_json(answer)["ignored"] is True
    assert published() == []
    assert claims(delivery.webhook_id) is None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (_generic(phone="5512345678", nickname="Lu"), {"data.phone", "data.nickname"}),
        (_generic(external_id="luis.diaz@example.test"), {"data.external_id"}),
        (_clerk(birthday="01/04/1990"), {"data.birthday"}),
        (_clerk(email_addresses="ana.perez@example.test"), {"data.email_addresses"}),
        (_clerk(public_metadata={"providers": ["nowhere"]}), {"data.public_metadata.providers.0"}),
        (json.dumps({"data": {"external_id": "u-1"}}), {"type"}),
        (json.dumps({"type": "user.created", "data": ["u-1"]}), {"data"}),
        (json.dumps(["user.created"]), {"body"}),
        ("{not json", {"body"}),
        ('{"type": "user.created", "data": {"external_id": "u-1", "height_cm": NaN}}', {"body"}),
    ],
    ids=[
        "generic-fields",
        "personal-external-id",
        "clerk-birthday",
        "clerk-emails",
        "clerk-providers",
        "no-type",
        "data-not-object",
        "not-object",
        "not-json",
        "nan",
    ],
)
def test_a_signed_invalid_payload_is_a_400_naming_the_field_without_values(
    invoke, secret, published, claims, body, fields
):
    delivery = sign(secret, body)

    answer = _deliver(invoke, delivery)

    assert answer["statusCode"] == 400, answer
    error = response_json(answer)["error"]
    assert {f["field"] for f in error["fields"]} == fields
    assert not any(value in answer["body"] for value in [*PERSONAL, "5512345678", "Lu", "01/04/1990"])
    assert published() == []
    assert claims(delivery.webhook_id) is None


def _logged(records: list[logging.LogRecord]) -> str:
    """Every text of these records as handlers could write them (the hub's as its JSON lines)."""
    return "\n".join(text for record in records for text in texts(record))


def test_no_personal_data_signature_or_secret_is_logged_at_debug(invoke, secret, every_record, monkeypatch):
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    clerk = sign(secret, json.dumps(clerk_payload(ROOT)), svix=True)
    generic = sign(secret, _generic())
    bad = sign(new_webhook_secret(), _generic("u-bad"))
    invalid = sign(secret, _generic(phone="5512345678"))

    answers = [_deliver(invoke, delivery) for delivery in (clerk, generic, bad, invalid, clerk)]

    assert [a["statusCode"] for a in answers] == [202, 202, 401, 400, 200]
    logged = _logged(every_record.records)
    assert "invalid_signature" in logged, "the reason of a refusal is logged"
    assert len(every_record.records) > 5, "DEBUG records were captured"
    secret_key = secret.removeprefix("whsec_")
    for delivery in (clerk, generic, bad, invalid):
        assert delivery.headers[next(h for h in delivery.headers if h.endswith("signature"))] not in logged
    for value in [*PERSONAL, "5512345678", secret_key, "Ana", "Luis"]:
        where = [(r.name, r.getMessage()[:150]) for r in every_record.records if value in _logged([r])]
        assert value not in logged, f"{value!r} was logged: {where}"


# -- the whole way ---------------------------------------------------------------------------------
def test_a_signed_clerk_delivery_links_the_person_at_their_providers(
    invoke, stack, aws, secret, load_function, store, sandbox
):
    payload = clerk_payload(ROOT, providers=["palenca", "trust", "palm"])

    answer = _deliver(invoke, sign(secret, json.dumps(payload), svix=True))
    assert answer["statusCode"] == 202, answer

    sqs = aws("sqs")
    for queue, function in [
        ("PalencaCreateUserQueue", "PalencaCreateUserFunction"),
        ("TrustCreateUserQueue", "TrustCreateUserFunction"),
        ("PalmCreateUserQueue", "PalmCreateUserFunction"),
        ("ValidicProvisionUserQueue", "ValidicProvisionUserFunction"),
    ]:
        drain_queue(sqs, stack.refs[queue], load_function(function))

    linked = {link.provider for link in store.links_of(CLERK_ID) if link.provider_user_id}
    assert linked == {"palenca", "trust", "palm"}
    assert len(sandbox.emulators["trust"].users_with_email("ana.perez@example.test")) == 1


# -- its role --------------------------------------------------------------------------------------
def test_the_webhook_role_publishes_to_the_signup_bus_and_reads_its_own_secret_only(stack, admin_session):
    from tests.integration.test_iam import _as, _denied

    role = _as(admin_session, FUNCTION)
    events, secrets = role.client("events"), role.client("secretsmanager")
    entry = {
        "Source": "provisioner.signups",
        "DetailType": "UserSignedUp",
        "Detail": '{"external_id": "u-1"}',
    }

    assert (
        events.put_events(Entries=[{**entry, "EventBusName": stack.refs["SignupEventBus"]}])[
            "FailedEntryCount"
        ]
        == 0
    )
    secrets.get_secret_value(SecretId=stack.parameters["SignupWebhookSecretId"])
    assert _denied(lambda: events.put_events(Entries=[{**entry, "EventBusName": "default"}]))
    assert _denied(lambda: secrets.get_secret_value(SecretId=stack.parameters["PalencaSecretId"]))
    assert _denied(
        lambda: role.client("dynamodb").get_item(
            TableName=stack.refs["UsersTable"],
            Key={"external_id": {"S": "u-1"}, "provider": {"S": "palenca"}},
        )
    )
