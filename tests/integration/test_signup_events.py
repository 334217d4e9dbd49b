"""UserSignedUp events published to the hub's EventBridge bus (moto) reach the queues of the
providers each person targets, and the create functions turn them into links; a person lacking
what one provider requires fails for that provider alone, with the reason in its DLQ."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import drain_queue
from tests.conftest import EVENTS, dead_letters

QUEUES = {
    "palenca": ("PalencaCreateUserQueue", "PalencaCreateUserDLQ", "PalencaCreateUserFunction"),
    "trust": ("TrustCreateUserQueue", "TrustCreateUserDLQ", "TrustCreateUserFunction"),
    "palm": ("PalmCreateUserQueue", "PalmCreateUserDLQ", "PalmCreateUserFunction"),
    "validic": ("ValidicProvisionUserQueue", "ValidicProvisionUserDLQ", "ValidicProvisionUserFunction"),
}

EVERYWHERE = {
    "external_id": "sig-1",
    "email": "ana.perez@example.test",
    "first_name": "Ana",
    "last_name": "Perez",
    "phone": "+5215512345678",
    "date_of_birth": "1990-04-01",
    "country": "MX",
    "gender": "female",
    "height_cm": 165,
    "weight_kg": 60.5,
}
TWO_PROVIDERS = {"external_id": "sig-2", "providers": ["palenca", "validic"]}
TRUST_WITHOUT_EMAIL = {"external_id": "sig-3", "first_name": "Luis", "last_name": "Diaz"}


def publish(events_client: Any, bus: str, *people: dict[str, Any], source: str = "app.signup") -> None:
    entries = [
        {"EventBusName": bus, "Source": source, "DetailType": "UserSignedUp", "Detail": json.dumps(person)}
        for person in people
    ]
    answer = events_client.put_events(Entries=entries)
    assert answer["FailedEntryCount"] == 0


@pytest.fixture
def bus(stack) -> str:
    return stack.refs["SignupEventBus"]


def test_each_event_reaches_the_queues_of_the_providers_its_person_targets(stack, aws, bus):
    publish(aws("events"), bus, EVERYWHERE, TWO_PROVIDERS, {"external_id": "sig-4", "providers": ["palm"]})
    sqs = aws("sqs")

    routed = {}
    for provider, (queue, _, _) in QUEUES.items():
        messages = sqs.receive_message(
            QueueUrl=stack.refs[queue], MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", [])
        routed[provider] = sorted(json.loads(m["Body"])["detail"]["external_id"] for m in messages)

    assert routed == {
        "palenca": ["sig-1", "sig-2"],
        "trust": ["sig-1"],
        "palm": ["sig-1", "sig-4"],
        "validic": ["sig-1", "sig-2"],
    }


def test_other_detail_types_are_not_routed(stack, aws, bus):
    aws("events").put_events(
        Entries=[
            {
                "EventBusName": bus,
                "Source": "app.signup",
                "DetailType": "UserDeleted",
                "Detail": json.dumps({"external_id": "sig-9"}),
            }
        ]
    )
    sqs = aws("sqs")
    for queue, _, _ in QUEUES.values():
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.refs[queue], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"


def test_handlers_turn_signup_events_into_links_and_dead_letter_per_provider(
    stack, aws, bus, load_function, store, sandbox
):
    publish(aws("events"), bus, EVERYWHERE, TWO_PROVIDERS, TRUST_WITHOUT_EMAIL)
    sqs = aws("sqs")

    for _provider, (queue, _, function) in QUEUES.items():
        drain_queue(sqs, stack.refs[queue], load_function(function))

    linked = {(link.external_id, link.provider) for link in store.scan_links() if link.provider_user_id}
    assert linked == {
        ("sig-1", "palenca"),
        ("sig-1", "trust"),
        ("sig-1", "palm"),
        ("sig-1", "validic"),
        ("sig-2", "palenca"),
        ("sig-2", "validic"),
        ("sig-3", "palenca"),
        ("sig-3", "palm"),
        ("sig-3", "validic"),
    }
    # What each provider received came from the person: Trust's name fields, Palm's vault.
    trust_user = sandbox.emulators["trust"].users_with_email(EVERYWHERE["email"])
    assert len(trust_user) == 1
    assert store.get("validic", "sig-1").provider_user_id

    # sig-3 lacks the e-mail Trust requires: only its Trust record is dead-lettered, with why.
    failed = dead_letters(sqs, stack.refs["TrustCreateUserDLQ"])
    assert len(failed) == 1
    assert json.loads(failed[0]["body"])["detail"]["external_id"] == "sig-3"
    assert failed[0]["failure"]["code"] == "validation_error"
    assert "email: is required by trust" in failed[0]["failure"]["message"]
    for provider in ("palenca", "palm", "validic"):
        assert dead_letters(sqs, stack.refs[QUEUES[provider][1]]) == []


def test_an_invalid_person_is_dead_lettered_naming_the_field(stack, aws, bus, load_function, store):
    publish(aws("events"), bus, {"external_id": "sig-5", "phone": "5512345678", "nickname": "x"})
    sqs = aws("sqs")
    drain_queue(sqs, stack.refs["PalencaCreateUserQueue"], load_function("PalencaCreateUserFunction"))

    failed = dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"])
    assert len(failed) == 1
    message = failed[0]["failure"]["message"]
    assert "detail.phone" in message
    assert "detail.nickname" in message
    assert "5512345678" not in message, "the reason must not repeat personal data"
    # Not linked; the report is kept on the person's item (it publishes ProvisioningFailed).
    [pending] = store.links_of("sig-5")
    assert pending.provider_user_id is None
    assert pending.status == "pending"
    assert pending.failure["code"] == "validation_error"
    assert pending.failure["message"] == message


def test_a_queued_event_for_a_provider_the_person_does_not_target_is_acknowledged(
    stack, aws, load_function, store, sandbox
):
    sqs = aws("sqs")
    event = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "source": "app.signup",
        "account": "123456789012",
        "time": "2026-11-24T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail-type": "UserSignedUp",
        "detail": {"external_id": "sig-6", "providers": ["palm"]},
    }
    sqs.send_message(QueueUrl=stack.refs["PalencaCreateUserQueue"], MessageBody=json.dumps(event))
    report = drain_queue(
        sqs, stack.refs["PalencaCreateUserQueue"], load_function("PalencaCreateUserFunction")
    )

    assert report.responses == [{"batchItemFailures": []}]
    assert store.links_of("sig-6") == []
    assert sandbox.count("palenca") == 0


@pytest.mark.parametrize("provider", sorted(QUEUES))
def test_the_ready_signup_event_of_each_function_provisions_its_person(provider, stack, load_function, store):
    _, _, function = QUEUES[provider]
    folder = {"palenca": "palenca_create_user", "trust": "trust_create_user", "palm": "palm_create_user"}
    event = json.loads((EVENTS / folder.get(provider, "validic_provision_user") / "signup.json").read_text())

    assert load_function(function)(event) == {"batchItemFailures": []}
    assert store.get(provider, "signup-1").provider_user_id
