"""Waiting is not failing: a queued record that must wait for a request budget (ours, or a
provider's 429) is sent back to its queue delayed until its turn and acknowledged, so it never uses
up its delivery attempts; it writes nothing before it has a slot, so a create that was never sent
never costs a lookup; its wait is bounded."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from moto.sqs.models import sqs_backends

from provisioner_cli.lambda_runtime import drain_queue
from provisioner_cli.local import ACCOUNT, REGION
from provisioning.providers import PROVIDERS
from provisioning.ratelimit import WINDOW_S, SharedRateLimiter
from provisioning.waiting import ATTEMPTS, COME_BACK_AT, WAITING_SINCE
from tests.conftest import EVENTS, dead_letters, send_bodies
from tests.integration.conftest import well_inside_a_window

QUEUE, DLQ = "PalencaCreateUserQueue", "PalencaCreateUserDLQ"


@pytest.fixture
def invoke(load_function, monkeypatch):
    handler = load_function("PalencaCreateUserFunction")
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", "4")  # after loading: the template says 120
    return handler


@pytest.fixture
def limiter(stack, aws) -> SharedRateLimiter:
    return SharedRateLimiter(aws("dynamodb"), stack.refs["RateLimitTable"], "palenca", 4)


@pytest.fixture(autouse=True)
def well_inside_a_minute_window() -> None:
    """These tests turn windows over by hand: start them well before the clock does."""
    well_inside_a_window(latest=30, after_turn=1.2)


def _exhaust(limiter: SharedRateLimiter) -> None:
    while limiter.try_take() is not None:
        pass


def _next_window(stack: Any, aws: Any) -> None:
    """What a new minute brings: the current window's counters start again."""
    dynamodb = aws("dynamodb")
    window = int(time.time() // WINDOW_S)
    dynamodb.delete_item(
        TableName=stack.refs["RateLimitTable"], Key={"id": {"S": f"ratelimit#palenca#{window}"}}
    )


def _waiting(queue: str) -> list[dict[str, Any]]:
    """The records waiting (delayed) in a queue: body, our attributes, seconds until visible."""
    found = []
    for message in sqs_backends[ACCOUNT][REGION].get_queue(queue)._messages:
        if message.delayed:
            attributes = {name: value["StringValue"] for name, value in message.message_attributes.items()}
            found.append(
                {
                    "body": message.body,
                    "attributes": attributes,
                    "delay": message.delayed_until / 1000 - time.time(),
                }
            )
    return found


def _their_turn(sqs: Any, url: str) -> None:
    """Time passes: the waiting records come back now, as their turn (their delay over; here
    ``come_back_at`` is moved to now, as the window turned over by hand)."""
    queue = sqs_backends[ACCOUNT][REGION].get_queue(url.rsplit("/", 1)[-1])
    waiting = [m for m in queue._messages if m.delayed]
    for message in waiting:
        queue._messages.remove(message)
    for message in waiting:
        attributes = {
            name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
            for name, value in message.message_attributes.items()
        }
        if COME_BACK_AT in attributes:
            attributes[COME_BACK_AT]["StringValue"] = str(time.time())
        sqs.send_message(QueueUrl=url, MessageBody=message.body, MessageAttributes=attributes)


def test_a_batch_under_a_spent_budget_writes_nothing_and_later_creates_without_any_lookup(
    invoke, stack, aws, sandbox, limiter, store
):
    """Five records in one batch, a budget of four already spent by other containers."""
    sqs, url = aws("sqs"), stack.refs[QUEUE]
    _exhaust(limiter)
    send_bodies(sqs, url, [{"external_id": f"spent-{n}"} for n in range(5)])

    report = drain_queue(sqs, url, invoke, max_batches=1)

    assert (report.acknowledged, report.failed) == (5, 0)  # waiting, not failing
    assert sandbox.calls == []
    assert list(store.scan_links()) == []  # nobody marked pending: nothing was sent
    waiting = _waiting(QUEUE)
    assert len(waiting) == 5
    assert all(w["attributes"][ATTEMPTS] == "0" for w in waiting)
    # Back when their turn comes: four in the next window (the budget), the fifth in the one after.
    now = time.time()
    turns = sorted(int((now + w["delay"]) // WINDOW_S) - int(now // WINDOW_S) for w in waiting)
    assert turns == [1, 1, 1, 1, 2]

    for _ in range(2):  # the next windows: four, then the last one
        _next_window(stack, aws)
        _their_turn(sqs, url)
        drain_queue(sqs, url, invoke, max_batches=1)

    palenca = sandbox.emulators["palenca"]
    assert all(len(palenca.users_with_external_id(f"spent-{n}")) == 1 for n in range(5))
    assert sandbox.count("palenca", "POST", "/palenca/v1/users") == 5
    assert sandbox.count("palenca", "POST", "/palenca/v1/users/search") == 0  # no lookup spent
    assert dead_letters(sqs, stack.refs[DLQ]) == []


def test_waits_do_not_use_up_attempts_and_the_dlq_counts_real_ones(invoke, stack, aws, sandbox, limiter):
    sqs, url = aws("sqs"), stack.refs[QUEUE]
    send_bodies(sqs, url, [{"external_id": "patient"}])
    for _ in range(5):  # five waits, more than the queue's maxReceiveCount
        _exhaust(limiter)
        drain_queue(sqs, url, invoke, max_batches=1)
        _their_turn(sqs, url)
    assert dead_letters(sqs, stack.refs[DLQ]) == []

    sandbox.set_faults("palenca", error_rate=1.0)  # now real failures: 503 before anything is done
    for _ in range(3):  # each attempt retries in place, four calls: the window's whole budget
        _next_window(stack, aws)
        drain_queue(sqs, url, invoke, max_batches=1, visibility_timeout=0)

    dead = dead_letters(sqs, stack.refs[DLQ])
    assert len(dead) == 1
    assert dead[0]["failure"]["code"] == "provider_unavailable"
    assert dead[0]["failure"]["attempts"] == 3  # three real attempts; the five waits not counted
    assert len([c for c in sandbox.calls if c.fault == "error"]) == 3 * 4


def test_a_record_that_waited_past_the_bound_is_dead_lettered_as_rate_limited(
    load_function, stack, aws, sandbox, limiter, monkeypatch
):
    invoke = load_function("PalencaCreateUserFunction")
    monkeypatch.setenv("RATE_LIMIT_MAX_WAIT_SECONDS", "600")
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", "4")
    sqs, url = aws("sqs"), stack.refs[QUEUE]
    _exhaust(limiter)
    since = time.time() - 590  # ten seconds short of the bound: the next window is past it
    send_bodies(
        sqs,
        url,
        [{"external_id": "too-long"}],
        {
            WAITING_SINCE: {"DataType": "Number", "StringValue": str(since)},
            ATTEMPTS: {"DataType": "Number", "StringValue": "1"},
        },
    )

    drain_queue(sqs, url, invoke, max_batches=1)

    dead = dead_letters(sqs, stack.refs[DLQ])
    assert [d["body"] for d in dead] == [json.dumps({"external_id": "too-long"})]
    assert dead[0]["failure"]["code"] == "rate_limited"
    assert 590 <= dead[0]["failure"]["waited_seconds"] <= 600
    assert dead[0]["failure"]["attempts"] == 1
    assert "RATE_LIMIT_MAX_WAIT_SECONDS" in dead[0]["failure"]["message"]
    assert sandbox.calls == []


def test_a_provider_429_with_retry_after_is_a_wait_not_an_attempt(load_function, stack, aws, sandbox):
    invoke = load_function("TrustCreateUserFunction")
    sqs, url = aws("sqs"), stack.refs["TrustCreateUserQueue"]
    sandbox.script_fault("trust", "POST", "/trust/users/create", "odd_retry_after", retry_after="120")
    person = {"external_id": "slow-down", "email": "slow@example.test", "name": "Ana", "last_name": "Ruiz"}
    send_bodies(sqs, url, [person])

    report = drain_queue(sqs, url, invoke, max_batches=1)

    assert (report.acknowledged, report.failed) == (1, 0)
    [waiting] = _waiting("TrustCreateUserQueue")
    assert 110 <= waiting["delay"] <= 121  # as long as Trust asked
    assert waiting["attributes"][ATTEMPTS] == "0"
    assert dead_letters(sqs, stack.refs["TrustCreateUserDLQ"]) == []

    _their_turn(sqs, url)
    drain_queue(sqs, url, invoke, max_batches=1)
    assert len(sandbox.emulators["trust"].users_with_email("slow@example.test")) == 1


def test_a_copy_received_before_its_turn_goes_back_untouched(invoke, stack, aws, sandbox, store):
    """A wait longer than SQS's 15-minute delay takes several hops."""
    sqs, url = aws("sqs"), stack.refs[QUEUE]
    turn = time.time() + 2000
    send_bodies(
        sqs, url, [{"external_id": "later"}], {COME_BACK_AT: {"DataType": "Number", "StringValue": str(turn)}}
    )

    drain_queue(sqs, url, invoke, max_batches=1)

    [waiting] = _waiting(QUEUE)
    assert 895 <= waiting["delay"] <= 900  # the longest SQS delay; it comes back for the rest
    assert float(waiting["attributes"][COME_BACK_AT]) == pytest.approx(turn, abs=0.01)
    assert sandbox.calls == []
    assert list(store.scan_links()) == []


@pytest.mark.parametrize("info", PROVIDERS, ids=lambda info: info.name)
def test_a_record_that_cannot_be_sent_back_waits_in_the_queue_instead(
    info, load_function, template, stack, aws, sandbox, monkeypatch
):
    """SQS refusing the delayed copy: the record is reported failed (SQS keeps it) and made invisible
    until its turn with its own queue's visibility, so it neither comes back at once nor is lost.
    A provider with a shared budget waits for it (spent), the others for their provider's 429."""
    provider, function = info.name, info.create.function
    invoke = load_function(function)
    if info.budget is not None:
        longest = info.budget.window_seconds + 2
        monkeypatch.setenv(info.budget.setting, "4")
        table = stack.refs["RateLimitTable"]
        _exhaust(SharedRateLimiter(aws("dynamodb"), table, provider, 4, window_s=info.budget.window_seconds))
    else:
        longest = 122
        sandbox.set_faults(provider, odd_retry_after_rate=1.0, retry_after="120")
    queue = info.create.queue
    sqs, url = aws("sqs"), stack.refs[queue]
    sample = EVENTS / template.function(function).code_uri.name / "sqs.json"
    body = json.loads(json.loads(sample.read_text())["Records"][0]["body"])
    send_bodies(sqs, url, [{**body, "external_id": f"not-sent-back-{provider.replace('_', '-')}"}])
    backend = sqs_backends[ACCOUNT][REGION]
    original = backend.send_message_batch

    def refuse(queue_name: str, entries: Any) -> Any:
        raise RuntimeError("SendMessageBatch is unavailable")

    backend.send_message_batch = refuse
    try:
        report = drain_queue(sqs, url, invoke, max_batches=1, visibility_timeout=0)
    finally:
        backend.send_message_batch = original

    assert (report.acknowledged, report.failed) == (0, 1)
    (message,) = backend.get_queue(queue)._messages
    seconds_invisible = message.visible_at / 1000 - time.time()
    assert 1 < seconds_invisible <= longest  # until its turn, not the queue's 180 s nor at once
    assert _waiting(queue) == []
