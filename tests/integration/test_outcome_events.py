"""Outcome events: every change of the users table reaches OutcomeEventsFunction through the table's
stream (the local stack's event source mapping, reading with the function's role), which publishes
PersonProvisioned and ProvisioningFailed to the hub's bus; a subscriber's rule delivers them to its
queue. Everything runs under the template's roles, IAM enforced."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import StreamSource
from provisioner_cli.outcomes import Subscriber, function_session, outcome_source, summary
from provisioner_sandbox.app import sandbox_credentials
from provisioning.providers import PROVIDERS
from provisioning.store import Lease, LinkStatus, now_ms
from tests.conftest import EVENTS, dead_letters, send_bodies
from tests.integration.conftest import queue_depth
from tests.people import person

FUNCTION = "OutcomeEventsFunction"
PROVISIONED_FIELDS = {
    "event_id",
    "external_id",
    "provider",
    "provider_user_id",
    "outcome",
    "linked_at",
    "details",
}
FAILED_FIELDS = {"event_id", "external_id", "provider", "code", "message", "attempts", "failed_at"}


@pytest.fixture
def subscriber(stack) -> Subscriber:
    return Subscriber.create(stack)


@pytest.fixture
def outcome_events(load_function) -> Any:
    return load_function(FUNCTION)


@pytest.fixture
def source(template, stack) -> StreamSource:
    return outcome_source(template, stack)


def drain(stack, source: StreamSource, invoke: Any) -> Any:
    return source.drain(function_session(stack), invoke)


def api_body(info: Any, external_id: str) -> dict[str, Any]:
    event = json.loads((EVENTS / info.create.folder / "api.json").read_text())
    return {**json.loads(event["body"]), "external_id": external_id}


def create_through_api(load_function: Any, info: Any, external_id: str) -> dict[str, Any]:
    event = json.loads((EVENTS / info.create.folder / "api.json").read_text())
    event["body"] = json.dumps(api_body(info, external_id))
    answer = load_function(info.create.function)(event)
    assert answer["statusCode"] == 201, answer
    return json.loads(answer["body"])


def personal_values(body: Any) -> set[str]:
    """Every text value of a request body but its external_id (names, e-mails, phones...)."""
    found: set[str] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if key != "external_id":
                found |= personal_values(value)
    elif isinstance(body, list):
        for value in body:
            found |= personal_values(value)
    elif isinstance(body, str) and len(body) >= 4:
        found.add(body)
    return found


def test_a_create_through_the_api_publishes_one_person_provisioned_per_link_without_secrets(
    stack, load_function, subscriber, outcome_events, source, aws, caplog
):
    answers = {info.name: create_through_api(load_function, info, "out-1") for info in PROVIDERS}
    caplog.clear()
    invoked: list[dict[str, Any]] = []

    def recorded(event: dict[str, Any]) -> Any:
        invoked.extend(event["Records"])
        return outcome_events(event)

    report = drain(stack, source, recorded)

    assert report.failures == []
    assert report.errors == []
    # The mapping's FilterCriteria pass over pending marks, settles and claims.
    assert report.filtered > 0
    assert [r["dynamodb"]["NewImage"]["status"]["S"] for r in invoked] == ["linked"] * len(PROVIDERS)
    events = subscriber.events()
    provisioned = [e for e in events if e["detail-type"] == "PersonProvisioned"]
    assert {e["source"] for e in events} == {"provisioner"}
    assert sorted(e["detail"]["provider"] for e in provisioned) == sorted(p.name for p in PROVIDERS)
    assert len(events) == len(PROVIDERS), "one event per link: pending marks and claims publish nothing"
    for event in provisioned:
        detail = event["detail"]
        answer = answers[detail["provider"]]
        assert set(detail) == PROVISIONED_FIELDS
        assert detail["external_id"] == "out-1"
        assert detail["provider_user_id"] == answer["provider_user_id"]
        assert detail["outcome"] == "created"
        assert detail["linked_at"].endswith("Z")
        assert len(detail["event_id"]) == 32
    by_provider = {e["detail"]["provider"]: e["detail"]["details"] for e in provisioned}
    widget_id = sandbox_credentials()["palenca"]["widget_id"]
    assert by_provider["palenca"] == {"widget_id": widget_id}
    palenca = next(e for e in provisioned if e["detail"]["provider"] == "palenca")
    palenca_id = answers["palenca"]["provider_user_id"]
    line = f"PersonProvisioned  palenca out-1 -> {palenca_id} (created) widget_id={widget_id}"
    assert summary(palenca) == line
    assert by_provider["validic_inform"] == {}, "the marketplace URL only when the stack enables it"
    assert by_provider["validic"] == {}
    assert by_provider["palm"] == {}
    assert set(by_provider["trust"]) <= {"company_uid"}

    published = json.dumps(events)
    secrets = {v for creds in sandbox_credentials().values() for k, v in creds.items() if k != "widget_id"}
    personal = set().union(*(personal_values(api_body(info, "out-1")) for info in PROVIDERS))
    for link in aws_links(aws, stack, "out-1"):
        secrets |= set(link.get("sealed", {}).get("M", {}).get(k, {}).get("S", "") for k in ("access_token",))
    for value in (secrets | personal) - {""}:
        assert value not in published, f"{value!r} was published"
    assert "outcome events published" in caplog.messages
    logs = json.dumps([vars(record) for record in caplog.records], default=str)
    for value in personal | {"out-1"}:
        assert value not in logs


def aws_links(aws: Any, stack: Any, external_id: str) -> list[dict[str, Any]]:
    answer = aws("dynamodb").query(
        TableName=stack.refs["UsersTable"],
        KeyConditionExpression="external_id = :e",
        ExpressionAttributeValues={":e": {"S": external_id}},
    )
    return list(answer["Items"])


def test_a_second_drain_publishes_nothing_new_and_a_replayed_create_publishes_nothing(
    stack, load_function, subscriber, outcome_events, source
):
    info = PROVIDERS[0]
    create_through_api(load_function, info, "out-2")
    drain(stack, source, outcome_events)
    event = json.loads((EVENTS / info.create.folder / "api.json").read_text())
    event["body"] = json.dumps(api_body(info, "out-2"))
    assert load_function(info.create.function)(event)["statusCode"] == 200  # answered from our table

    again = drain(stack, source, outcome_events)

    assert len(subscriber.events()) == 1
    assert again.failures == []


def test_claims_their_releases_and_take_overs_pass_no_filter_and_the_link_publishes_no_fingerprint(
    stack, load_function, subscriber, outcome_events, source, store
):
    live = now_ms() + 60_000
    store.mark_pending("palm", "out-l1", Lease("a", live, "1" * 64))  # a claim (INSERT)
    store.release("palm", "out-l1", attempts=1, settled=False)  # its failure's release
    store.mark_pending("palm", "out-l1", Lease("b", now_ms() - 1, "2" * 64))  # then a crash
    store.mark_pending("palm", "out-l1", Lease("c", live, "3" * 64))  # and its take-over
    info = next(p for p in PROVIDERS if p.name == "palenca")
    answer = create_through_api(load_function, info, "out-l2")
    other = {"external_id": "out-l2", "widget_id": "0b5e1d7c-5f5e-4f0e-9d53-3f8e0f6b2a11"}
    event = json.loads((EVENTS / info.create.folder / "api.json").read_text())
    event["body"] = json.dumps(other)
    assert load_function(info.create.function)(event)["statusCode"] == 409  # writes nothing
    invoked: list[dict[str, Any]] = []

    def recorded(event: dict[str, Any]) -> Any:
        invoked.extend(event["Records"])
        return outcome_events(event)

    report = drain(stack, source, recorded)

    assert report.failures == []
    assert report.filtered >= 4 + 2  # the four claim writes; palenca's claim and its owner claim
    assert [r["dynamodb"]["Keys"]["external_id"]["S"] for r in invoked] == ["out-l2"]
    [provisioned] = subscriber.details("PersonProvisioned")
    assert set(provisioned) == PROVISIONED_FIELDS
    assert provisioned["provider_user_id"] == answer["provider_user_id"]
    fingerprint = store.get("palenca", "out-l2").fingerprint
    assert fingerprint
    assert fingerprint not in json.dumps(subscriber.events())
    assert len(subscriber.events()) == 1


def test_the_publisher_dying_after_put_events_before_its_checkpoint_republishes_the_same_event(
    stack, load_function, subscriber, outcome_events, source
):
    create_through_api(load_function, PROVIDERS[0], "out-3")

    class PollerKilled(BaseException):
        """The invocation returned, but its poller died before it moved the checkpoint."""

    def published_then_killed(event: dict[str, Any]) -> Any:
        outcome_events(event)
        raise PollerKilled

    with pytest.raises(PollerKilled):
        drain(stack, source, published_then_killed)
    first = subscriber.details("PersonProvisioned")
    drain(stack, source, outcome_events)

    both = subscriber.details("PersonProvisioned")
    assert len(first) == 1
    assert len(both) == 2, "at least once: the batch is published again"
    assert both[0] == both[1], "the same event, event_id included: consumers dedupe by it"


class FlakyBus:
    """An EventBridge client whose PutEvents refuses the event of ``refused`` (an external_id) in its
    first ``failures`` calls holding one, as EventBridge does under throttling: FailedEntryCount and
    an ErrorCode on that entry, the others accepted."""

    def __init__(self, client: Any, refused: str, failures: int) -> None:
        self.client, self.refused, self.failures = client, refused, failures
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        people = [json.loads(e["Detail"])["external_id"] for e in Entries]
        self.calls.append(people)
        if self.failures <= 0 or self.refused not in people:
            return self.client.put_events(Entries=Entries)
        self.failures -= 1
        index = people.index(self.refused)
        others = Entries[:index] + Entries[index + 1 :]
        answers = list(self.client.put_events(Entries=others)["Entries"]) if others else []
        answers.insert(index, {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"})
        return {"FailedEntryCount": 1, "Entries": answers}


def flaky(load_function: Any, refused: str, failures: int) -> tuple[Any, FlakyBus]:
    """OutcomeEventsFunction's handler, its PutEvents failing as FlakyBus says (the client is the
    function's own, with its role)."""
    invoke = load_function(FUNCTION)
    invoke({"Records": []})  # a first invocation: the container's publisher and client exist
    publisher = invoke.container.handler.publisher
    bus = FlakyBus(publisher._events, refused, failures)
    publisher._events = bus
    return invoke, bus


def test_put_events_partially_failing_is_retried_from_the_failed_record_and_nothing_is_lost(
    stack, load_function, subscriber, source
):
    people = [f"out-p{n}" for n in range(4)]
    for external_id in people:
        create_through_api(load_function, PROVIDERS[0], external_id)
    invoke, bus = flaky(load_function, "out-p1", failures=2)

    report = drain(stack, source, invoke)

    assert report.failures == []
    assert report.retries == 2
    assert bus.calls == [people, people[1:], people[1:]], "each retry starts at the refused record"
    received = [d["external_id"] for d in subscriber.details("PersonProvisioned")]
    assert set(received) == set(people), "nothing lost"
    assert len(received) == 3 + 2 + 3, "accepted entries after a refused one are published again"
    assert received[:1] == ["out-p0"]
    assert received[-3:] == people[1:], "in stream order, once accepted"


def test_put_events_failing_past_the_retries_sends_the_batch_s_place_to_the_dlq(
    stack, load_function, subscriber, source, aws, caplog
):
    create_through_api(load_function, PROVIDERS[0], "out-x0")
    create_through_api(load_function, PROVIDERS[0], "out-x1")
    invoke, _ = flaky(load_function, "out-x1", failures=1000)

    report = drain(stack, source, invoke)

    assert report.retries == source.maximum_retry_attempts
    assert len(report.failures) == 1
    assert report.errors == [], "reported as a batch item failure, never a crashed invocation"
    assert "PutEvents failed" not in caplog.text, "each retry was an entry PutEvents refused"
    messages = aws("sqs").receive_message(QueueUrl=stack.refs["OutcomeEventsDLQ"], MaxNumberOfMessages=10)
    [message] = messages["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    info = record["DDBStreamBatchInfo"]
    assert info["streamArn"] == stack.attrs["UsersTable.StreamArn"]
    assert info["batchSize"] >= 1
    assert int(info["startSequenceNumber"]) <= int(info["endSequenceNumber"])
    received = [d["external_id"] for d in subscriber.details("PersonProvisioned")]
    assert received == ["out-x0"], "the events before the failed one were published"


def test_a_dead_lettered_signup_records_its_failure_and_publishes_provisioning_failed(
    stack, load_function, subscriber, outcome_events, source, aws, store
):
    info = next(p for p in PROVIDERS if p.name == "trust")  # Trust requires an e-mail address
    bare = person("out-f1", email=None).model_dump(exclude_none=True)
    signup = {"version": "0", "detail-type": "UserSignedUp", "source": "app.signup", "detail": bare}
    sqs = aws("sqs")
    send_bodies(sqs, stack.refs[info.create.queue], [signup, {"detail-type": "UserSignedUp", "detail": {}}])
    from provisioner_cli.lambda_runtime import drain_queue

    drain_queue(sqs, stack.refs[info.create.queue], load_function(info.create.function))

    assert queue_depth(sqs, stack.refs[info.create.queue]) == 0
    assert len(dead_letters(sqs, stack.refs[info.create.dead_letter_queue])) == 2
    link = store.get("trust", "out-f1")
    assert link.status == LinkStatus.PENDING
    assert link.failure["code"] == "validation_error"
    assert [item for item in store.scan_links() if item.external_id != "out-f1"] == [], (
        "a record without a usable external_id cannot be attributed: nothing is recorded"
    )

    drain(stack, source, outcome_events)

    [failed] = subscriber.details("ProvisioningFailed")
    assert set(failed) == FAILED_FIELDS
    assert failed["external_id"] == "out-f1"
    assert failed["provider"] == "trust"
    assert failed["code"] == "validation_error"
    assert "email" in failed["message"]
    assert failed["attempts"] == 1
    for value in personal_values(bare) - {"out-f1"}:  # its national_id is its external_id here
        assert value not in json.dumps(failed)
    assert subscriber.details("PersonProvisioned") == []
    [event] = subscriber.events()
    assert summary(event) == "ProvisioningFailed trust out-f1: validation_error: email: is required by trust"


@pytest.fixture
def marketplace_stack(request, monkeypatch):
    """The stack deployed with OutcomeEventsIncludeMarketplaceUrl=true (its role then may decrypt)."""
    from provisioner_cli import local

    monkeypatch.setitem(local.LOCAL_OVERRIDES, "OutcomeEventsIncludeMarketplaceUrl", "true")
    return request.getfixturevalue("stack")


def test_the_marketplace_url_is_published_only_when_the_stack_enables_it(
    marketplace_stack, template, load_function, sandbox, caplog
):
    stack = marketplace_stack
    subscriber = Subscriber.create(stack)
    info = next(p for p in PROVIDERS if p.published_credentials)
    create_through_api(load_function, info, "out-m1")
    user = next(iter(sandbox.emulators[info.name].users.values()))
    caplog.clear()

    drain(stack, outcome_source(template, stack), load_function(FUNCTION))

    [published] = subscriber.details("PersonProvisioned")
    assert published["details"] == {"marketplace_url": user["marketplace"]["url"]}
    # The URL carries the marketplace token (that is why it is opt-in); the mobile token never goes.
    assert user["mobile"]["token"] not in json.dumps(published)
    logs = json.dumps([vars(record) for record in caplog.records], default=str)
    assert user["marketplace"]["url"] not in logs
