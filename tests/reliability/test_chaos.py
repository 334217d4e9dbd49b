"""Chaos: 1000 people across the four providers pushed through the SQS handlers while the sandbox
injects faults into well over 20% of provider calls (latency, 5xx, 429 with rate-limit headers,
connection resets, and creates whose answer is lost), every message delivered at least twice, failed
records redriven until the queues are empty. Exactly one provider user and one link per (provider,
person); nothing lost; the DLQs hold only the invalid records the test planted."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest

from provisioner_cli.lambda_runtime import drain_queue
from provisioning.store import LinkStatus, LinkStore

PEOPLE = int(os.environ.get("CHAOS_PEOPLE", "1000"))
FAULTS = {
    "latency_ms": 2,
    "error_rate": 0.07,
    "rate_limit_rate": 0.05,
    "reset_rate": 0.05,
    "lose_answer_rate": 0.06,
}
FUNCTIONS = {
    "palenca": ("PalencaCreateUserFunction", "PalencaCreateUserQueue", "PalencaCreateUserDLQ"),
    "trust": ("TrustCreateUserFunction", "TrustCreateUserQueue", "TrustCreateUserDLQ"),
    "palm": ("PalmCreateUserFunction", "PalmCreateUserQueue", "PalmCreateUserDLQ"),
    "validic": ("ValidicProvisionUserFunction", "ValidicProvisionUserQueue", "ValidicProvisionUserDLQ"),
}
PROVIDERS = list(FUNCTIONS)


def _body(provider: str, n: int) -> dict:
    external_id = f"chaos-{n:04d}"
    if provider == "trust":
        return {
            "external_id": external_id,
            "email": f"{external_id}@example.test",
            "name": "Chaos",
            "last_name": "Test",
        }
    if provider == "palm":
        return {"external_id": external_id, "vault": {"identity.email": f"{external_id}@example.test"}}
    return {"external_id": external_id}


PLANTED = {
    "palenca": ['{"external_id": ', json.dumps({"external_id": "bad id"})],
    "trust": [
        json.dumps({"external_id": "chaos-bad-1", "email": "not-an-email", "name": "A", "last_name": "B"})
    ],
    "palm": [json.dumps({"external_id": "chaos-bad-2", "vault": {"identity.shoe_size": "44"}})],
    "validic": [json.dumps({"external_id": "john@example.com"})],
}


def _provider_users(sandbox, provider: str, n: int) -> int:
    emulator = sandbox.emulators[provider]
    external_id = f"chaos-{n:04d}"
    if provider == "palenca":
        return len(emulator.users_with_external_id(external_id))
    if provider in ("trust", "palm"):
        return len(emulator.users_with_email(f"{external_id}@example.test"))
    return 1 if external_id in emulator.users else 0


@pytest.mark.timeout(900)
def test_every_person_is_provisioned_exactly_once_under_faults(
    load_function, stack, aws, sandbox, monkeypatch, capsys
):
    sqs = aws("sqs")
    handlers = {p: load_function(f) for p, (f, _, _) in FUNCTIONS.items()}
    # Palenca's shared budget and its own limit are tested on their own; here they would only slow things.
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", "1000000")
    sandbox.emulators["palenca"].requests_per_minute = 1_000_000
    for provider in PROVIDERS:
        sandbox.set_faults(provider, seed=7, **FAULTS)

    # Each person once, at one provider; every message sent twice (at-least-once delivery).
    expected: dict[str, list[int]] = {p: [] for p in PROVIDERS}
    for n in range(PEOPLE):
        provider = PROVIDERS[n % 4]
        expected[provider].append(n)
    for provider, (_, queue_id, _) in FUNCTIONS.items():
        bodies = [json.dumps(_body(provider, n)) for n in expected[provider]] + PLANTED[provider]
        for _delivery in range(2):
            for start in range(0, len(bodies), 10):
                chunk = bodies[start : start + 10]
                sqs.send_message_batch(
                    QueueUrl=stack.refs[queue_id],
                    Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
                )

    started = time.monotonic()
    redriven = 0
    for _round in range(30):
        pending = 0
        for provider, (_, queue_id, dlq_id) in FUNCTIONS.items():
            drain_queue(sqs, stack.refs[queue_id], handlers[provider], max_batches=2000, visibility_timeout=0)
            redriven += _redrive_transient(sqs, stack.refs[dlq_id], stack.refs[queue_id])
            attrs = sqs.get_queue_attributes(
                QueueUrl=stack.refs[queue_id], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            pending += int(attrs["ApproximateNumberOfMessages"])
        if pending == 0:
            break
        time.sleep(1.1)  # rate-limited records come back after their Retry-After
    elapsed = time.monotonic() - started

    # Faults really happened on more than 20% of provider calls.
    faults = Counter(c.fault for c in sandbox.calls if c.fault)
    fault_share = sum(faults.values()) / len(sandbox.calls)
    assert fault_share >= 0.2, faults
    assert faults["lose_answer"] > 0
    assert faults["reset"] > 0

    # Exactly one provider user and one link per (provider, person); nothing lost.
    store = LinkStore(aws("dynamodb"), stack.refs["UsersTable"])
    links = store.scan_links()
    by_key = Counter((link.provider, link.external_id) for link in links)
    assert all(count == 1 for count in by_key.values())
    duplicates = lost = 0
    for provider, numbers in expected.items():
        for n in numbers:
            users = _provider_users(sandbox, provider, n)
            duplicates += max(0, users - 1)
            link = store.get(provider, f"chaos-{n:04d}")
            if link is None or link.status != LinkStatus.LINKED or users != 1:
                lost += 1
    assert duplicates == 0
    assert lost == 0
    assert len([link for link in links if link.status == LinkStatus.LINKED]) == PEOPLE

    # The DLQs hold only the planted invalid records, each with its reason.
    for provider, (_, _, dlq_id) in FUNCTIONS.items():
        dead = _all_messages(sqs, stack.refs[dlq_id])
        assert {m["Body"] for m in dead} == set(PLANTED[provider]), provider
        assert all("failure" in m.get("MessageAttributes", {}) for m in dead)

    report = {
        "people": PEOPLE,
        "provider_calls": len(sandbox.calls),
        "faults": dict(faults),
        "fault_share": round(fault_share, 3),
        "redriven_from_dlq": redriven,
        "duplicates": duplicates,
        "lost": lost,
        "seconds": round(elapsed, 1),
    }
    with capsys.disabled():
        print(f"\nchaos: {json.dumps(report)}")


def _all_messages(sqs, queue_url: str) -> list[dict]:
    found: list[dict] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=300
        ).get("Messages", [])
        if not batch:
            return found
        found.extend(batch)


def _redrive_transient(sqs, dlq_url: str, queue_url: str) -> int:
    """Move back the records SQS's redrive policy parked (no failure report: transient), as an operator
    would after an outage; records the handler dead-lettered with a reason stay."""
    moved = 0
    keep: list[dict] = []
    for message in _all_messages(sqs, dlq_url):
        if "failure" in message.get("MessageAttributes", {}):
            keep.append(message)
            continue
        sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        moved += 1
    for message in keep:  # make the kept ones visible again
        sqs.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return moved
