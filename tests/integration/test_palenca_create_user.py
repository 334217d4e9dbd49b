"""PalencaCreateUserFunction through real API Gateway and SQS event shapes, against moto and the
Palenca sandbox on loopback."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import api_event, dead_letters, response_json, send_and_drain, send_bodies
from tests.integration.conftest import well_inside_a_window

FUNCTION = "PalencaCreateUserFunction"
ROUTE = "/palenca/users"
WIDGET = "feecb679-a3cc-47ef-8fd4-600799f12a39"


def test_post_creates_user_and_stores_palenca_user_id(invoke, store, sandbox):
    response = invoke(api_event(ROUTE, {"external_id": "u-1"}))

    assert response["statusCode"] == 201
    body = response_json(response)
    palenca_user = sandbox.emulators["palenca"].users_with_external_id("u-1")
    assert len(palenca_user) == 1
    assert body["provider"] == "palenca"
    assert body["external_id"] == "u-1"
    assert body["provider_user_id"] == palenca_user[0].user_id
    link = store.get("palenca", "u-1")
    assert link is not None
    assert link.provider_user_id == palenca_user[0].user_id
    assert link.details["widget_id"] == WIDGET  # the secret's widget by default
    assert link.created_at
    assert link.updated_at


def test_repeat_answers_200_without_calling_palenca_again(invoke, sandbox):
    first = invoke(api_event(ROUTE, {"external_id": "u-1"}))
    second = invoke(api_event(ROUTE, {"external_id": "u-1"}))

    assert (first["statusCode"], second["statusCode"]) == (201, 200)
    assert response_json(second)["provider_user_id"] == response_json(first)["provider_user_id"]
    assert response_json(second)["outcome"] == "already_provisioned"
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 1


def test_repeat_from_a_new_container_answers_from_the_users_table_alone(load_function, stack, aws, sandbox):
    # The person's claim and link are one item of the users table: the idempotency table (the
    # signup webhook's) is not needed, even gone.
    idempotency = stack.refs["IdempotencyTable"]
    aws("dynamodb").delete_table(TableName=idempotency)
    try:
        first = load_function(FUNCTION)(api_event(ROUTE, {"external_id": "u-9"}))
        second = load_function(FUNCTION)(api_event(ROUTE, {"external_id": "u-9"}))
    finally:
        aws("dynamodb").create_table(
            TableName=idempotency,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )

    assert (first["statusCode"], second["statusCode"]) == (201, 200)
    assert response_json(second)["outcome"] == "already_provisioned"
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 1


def test_base64_encoded_body_is_accepted(invoke, sandbox):
    event = api_event(ROUTE, {"external_id": "u-b64", "widget_id": WIDGET}, base64_encoded=True)

    response = invoke(event)

    assert response["statusCode"] == 201
    assert response_json(response)["external_id"] == "u-b64"


def test_ready_events_in_events_folder_work(invoke):
    from tests.conftest import EVENTS

    for name in ("api.json", "api_base64.json"):
        event = json.loads((EVENTS / "palenca_create_user" / name).read_text())
        assert invoke(event)["statusCode"] == 201, name


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "external_id"),
        ({"external_id": 5}, 422, "external_id"),
        ({"external_id": ""}, 422, "external_id"),
        ({"external_id": "has space"}, 422, "external_id"),
        ({"external_id": "u-1", "widget_id": "not-a-uuid"}, 422, "widget_id"),
        ({"external_id": "u-1", "unexpected": 1}, 422, "unexpected"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_input_answers_4xx_naming_the_field(invoke, sandbox, body, status, field):
    response = invoke(api_event(ROUTE, body))

    assert response["statusCode"] == status
    error = response_json(response)["error"]
    assert error["code"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]]
    assert "Traceback" not in response["body"]
    assert sandbox.count("palenca") == 0


def test_malformed_json_answers_400(invoke, sandbox):
    response = invoke(api_event(ROUTE, None, raw='{"external_id": '))

    assert response["statusCode"] == 400
    assert response_json(response)["error"]["fields"] == [{"field": "body", "message": "is not valid JSON"}]
    assert sandbox.count("palenca") == 0


def test_oversized_body_answers_413(invoke):
    response = invoke(api_event(ROUTE, {"external_id": "u-1", "pad": "x" * 20000}))

    assert response["statusCode"] == 413


def test_same_external_id_with_different_payload_is_a_conflict(invoke, sandbox):
    invoke(api_event(ROUTE, {"external_id": "u-1"}))
    other = invoke(
        api_event(ROUTE, {"external_id": "u-1", "widget_id": "0b5e1d7c-5f5e-4f0e-9d53-3f8e0f6b2a11"})
    )

    assert other["statusCode"] == 409
    assert response_json(other)["error"]["code"] == "conflict"
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 1


def test_palenca_rejecting_our_key_answers_502_naming_palenca_and_its_code(invoke, sandbox):
    sandbox.emulators["palenca"].api_key = "rotated-key"

    response = invoke(api_event(ROUTE, {"external_id": "u-1"}))

    assert response["statusCode"] == 502
    error = response_json(response)["error"]
    assert error["code"] == "provider_auth_failed"
    assert error["provider_status"] == 401
    assert error["message"] == "palenca refused our credentials (401)"
    assert "sandbox-palenca-key" not in response["body"]


def test_palenca_unreachable_answers_502(invoke, monkeypatch, sandbox):
    sandbox.stop()  # nothing listens on the sandbox port any more

    response = invoke(api_event(ROUTE, {"external_id": "u-1"}))

    assert response["statusCode"] == 502
    assert response_json(response)["error"]["code"] == "provider_unavailable"


def test_palenca_rejection_answers_422_with_a_fixed_message(invoke, sandbox):
    sandbox.emulators["palenca"].disabled_widgets.add(WIDGET)

    response = invoke(api_event(ROUTE, {"external_id": "u-1"}))

    assert response["statusCode"] == 422
    error = response_json(response)["error"]
    assert error["code"] == "provider_rejected"
    assert error["message"] == "palenca rejected the person's data (422)"


def test_unsupported_event_answers_400_not_a_crash(invoke):
    response = invoke({"hello": "world"})

    assert response["statusCode"] == 400


def test_sqs_batch_acknowledges_good_records_and_reports_only_the_malformed_one(invoke, stack, aws, store):
    sqs = aws("sqs")
    queue_url = stack.refs["PalencaCreateUserQueue"]
    bodies = [{"external_id": "q-1"}, "{not json", {"external_id": "q-2"}, {"external_id": "q-3"}]
    send_bodies(sqs, queue_url, bodies)
    from provisioner_cli.lambda_runtime import sqs_record

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])[
        "Messages"
    ]
    assert len(messages) == 4
    bad_id = next(m["MessageId"] for m in messages if m["Body"] == "{not json")
    arn = stack.attrs["PalencaCreateUserQueue.Arn"]

    response = invoke({"Records": [sqs_record(m, arn) for m in messages]})

    assert response == {"batchItemFailures": [{"itemIdentifier": bad_id}]}
    assert {link.external_id for link in store.scan_links()} == {"q-1", "q-2", "q-3"}
    failed = dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"])
    assert [f["body"] for f in failed] == ["{not json"]
    assert failed[0]["failure"]["code"] == "validation_error"
    assert failed[0]["failure"]["attempts"] == 1


def test_sqs_redelivery_does_not_create_a_second_palenca_user(invoke, stack, aws, sandbox):
    sqs = aws("sqs")
    queue_url = stack.refs["PalencaCreateUserQueue"]

    report = send_and_drain(sqs, queue_url, invoke, [{"external_id": "dup"}, {"external_id": "dup"}])

    assert report.acknowledged == 2
    assert len(sandbox.emulators["palenca"].users_with_external_id("dup")) == 1


def test_api_and_queue_for_the_same_person_create_one_palenca_user(invoke, stack, aws, sandbox):
    invoke(api_event(ROUTE, {"external_id": "both"}))
    report = send_and_drain(
        aws("sqs"), stack.refs["PalencaCreateUserQueue"], invoke, [{"external_id": "both"}]
    )

    assert report.acknowledged == 1
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 1


def test_transient_failure_is_reported_for_retry_not_dead_lettered(invoke, stack, aws, sandbox):
    sandbox.set_faults("palenca", error_rate=1.0)
    sqs = aws("sqs")

    report = send_and_drain(
        sqs, stack.refs["PalencaCreateUserQueue"], invoke, [{"external_id": "t-1"}], max_batches=1
    )

    assert report.failed == 1
    assert dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"]) == []


def _well_inside_a_minute_window() -> None:
    """Fixed one-minute windows: start a budget test at least 25 s before the window turns (a
    record whose wait is under the retry policy's 5 s cap is retried in place, so a test running
    slowly near the turn would see the next window)."""
    well_inside_a_window(latest=35, after_turn=0.2)


def test_rate_limited_records_wait_in_the_queue_for_a_later_window_without_failing(
    invoke, stack, aws, sandbox, monkeypatch
):
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", "2")
    _well_inside_a_minute_window()
    sqs = aws("sqs")
    queue_url = stack.refs["PalencaCreateUserQueue"]

    report = send_and_drain(
        sqs, queue_url, invoke, [{"external_id": f"r-{n}"} for n in range(4)], max_batches=1
    )

    assert report.acknowledged == 4  # two sent, two sent back to wait: none failed
    assert report.failed == 0
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 2
    # The two records wait, delayed, for the next window instead of coming straight back.
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "2"
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    assert dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"]) == []


def test_api_answers_429_with_retry_after_when_the_budget_is_used_up(invoke, sandbox, monkeypatch):
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", "1")
    _well_inside_a_minute_window()
    assert invoke(api_event(ROUTE, {"external_id": "a-1"}))["statusCode"] == 201

    response = invoke(api_event(ROUTE, {"external_id": "a-2"}))

    assert response["statusCode"] == 429
    assert 1 <= int(response["multiValueHeaders"]["Retry-After"][0]) <= 61
    assert response_json(response)["error"]["code"] == "provider_rate_limited"


def test_batch_records_are_provisioned_concurrently(invoke, load_function, stack, aws, sandbox, monkeypatch):
    sandbox.set_faults("palenca", latency_ms=200)
    sqs = aws("sqs")
    queue_url = stack.refs["PalencaCreateUserQueue"]
    invoke(api_event(ROUTE, {"external_id": "warm-up"}))  # cold start out of the measurement

    def timed_batch(prefix: str, invoke: Any) -> float:
        send_bodies(sqs, queue_url, [{"external_id": f"{prefix}-{n}"} for n in range(10)])
        started = time.monotonic()
        report = send_and_drain(sqs, queue_url, invoke, [], max_batches=1)
        assert report.acknowledged == 10
        return time.monotonic() - started

    concurrent = timed_batch("c", invoke)
    # The environment is read once per container: a container configured for one record at a time.
    monkeypatch.setenv("RECORD_CONCURRENCY", "1")
    sequential_container = load_function(FUNCTION)
    sequential_container(api_event(ROUTE, {"external_id": "warm-up-2"}))
    sequential = timed_batch("s", sequential_container)

    assert sequential > 2.0
    assert concurrent < sequential / 2, f"concurrent {concurrent:.2f}s vs sequential {sequential:.2f}s"
