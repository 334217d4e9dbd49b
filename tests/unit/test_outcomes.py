"""What a change of the users table publishes (provisioning/outcomes.py), on real stream records
(events/outcome_events/stream.json), and how a batch is split into PutEvents calls."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from provisioning.adapters import external_id_of
from provisioning.outcomes import MAX_ENTRIES, Outcome, calls, outcome_of
from provisioning.store import Link, LinkStatus
from tests.conftest import EVENTS

STREAM = json.loads((EVENTS / "outcome_events" / "stream.json").read_text())
LINKED, FAILED = STREAM["Records"]


def record(
    new: Link | None, old: Link | None = None, name: str = "MODIFY", sequence: int = 1
) -> dict[str, Any]:
    change: dict[str, Any] = {"SequenceNumber": str(sequence), "StreamViewType": "NEW_AND_OLD_IMAGES"}
    some = new or old
    assert some is not None
    change["Keys"] = {"external_id": {"S": some.external_id}, "provider": {"S": some.provider}}
    if new is not None:
        change["NewImage"] = new.to_item()
    if old is not None:
        change["OldImage"] = old.to_item()
    return {"eventName": name, "eventSource": "aws:dynamodb", "dynamodb": change}


def test_a_person_newly_linked_publishes_person_provisioned_with_only_the_published_details():
    outcome = outcome_of(LINKED)

    assert outcome is not None
    assert outcome.detail_type == "PersonProvisioned"
    assert outcome.detail == {
        "event_id": outcome.detail["event_id"],
        "external_id": "u-1",
        "provider": "palenca",
        "provider_user_id": "b8a4c0de-7a36-4c6f-9c3e-2f1d3a9c0e11",
        "outcome": "created",
        "linked_at": "2026-11-26T18:21:12.348Z",
        "details": {"widget_id": "wgt-sandbox-1"},
    }
    assert outcome.sequence_number == "1100000000017454423009"


def test_a_new_dead_letter_report_publishes_provisioning_failed():
    outcome = outcome_of(FAILED)

    assert outcome is not None
    assert outcome.detail_type == "ProvisioningFailed"
    assert outcome.detail == {
        "event_id": outcome.detail["event_id"],
        "external_id": "u-2",
        "provider": "trust",
        "code": "validation_error",
        "message": "email: is required by trust",
        "attempts": 1,
        "failed_at": "2026-11-26T18:21:13.020Z",
    }


def test_the_same_change_delivered_twice_has_the_same_event_id_and_another_change_another():
    again = outcome_of(copy.deepcopy(LINKED))
    relinked = copy.deepcopy(LINKED)
    relinked["dynamodb"]["NewImage"]["updated_at"] = {"S": "2026-11-27T00:00:00.000Z"}

    assert again is not None
    assert outcome_of(LINKED) is not None
    assert again.detail["event_id"] == outcome_of(LINKED).detail["event_id"]  # type: ignore[union-attr]
    assert outcome_of(relinked).detail["event_id"] != again.detail["event_id"]  # type: ignore[union-attr]
    assert outcome_of(FAILED).detail["event_id"] != again.detail["event_id"]  # type: ignore[union-attr]


PENDING = Link(external_id="u-3", provider="palm", status=LinkStatus.PENDING, attempts=1, unknown=True)
LINK = Link(external_id="u-3", provider="palm", provider_user_id="pu-1", source="existing")
FAILURE = {"code": "conflict", "message": "this palm user is already linked", "attempts": 3, "at": "t1"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (record(PENDING, name="INSERT"), "an attempt starting"),
        (record(PENDING.model_copy(update={"unknown": False}), PENDING), "an attempt settled"),
        (record(LINK.model_copy(update={"details": {"status": "x"}}), LINK), "a linked person changed"),
        (record(None, LINK, name="REMOVE"), "a removal"),
        (
            record(
                PENDING.model_copy(update={"failure": FAILURE, "attempts": 2}),
                PENDING.model_copy(update={"failure": FAILURE}),
            ),
            "the same report, another attempt count",
        ),
        (
            {
                "eventName": "INSERT",
                "dynamodb": {
                    "SequenceNumber": "9",
                    "Keys": {"external_id": {"S": "#owner#pu-1"}, "provider": {"S": "palm"}},
                    "NewImage": {
                        "external_id": {"S": "#owner#pu-1"},
                        "provider": {"S": "palm"},
                        "owner": {"S": "u-3"},
                    },
                },
            },
            "a claim",
        ),
    ],
)
def test_other_changes_publish_nothing(change, why):
    assert outcome_of(change) is None, why


def test_a_person_linked_after_a_failure_publishes_person_provisioned_with_its_source():
    outcome = outcome_of(record(LINK, PENDING.model_copy(update={"failure": FAILURE})))

    assert outcome is not None
    assert outcome.detail_type == "PersonProvisioned"
    assert outcome.detail["outcome"] == "existing"
    assert outcome.detail["details"] == {}, "Palm's details are fingerprints of personal data"


def test_the_marketplace_url_is_published_only_when_it_may_be_unsealed():
    link = Link(
        external_id="u-4",
        provider="validic_inform",
        provider_user_id="vi-1",
        source="created",
        sealed={"marketplace_url": "c2VhbGVkLXVybA==", "marketplace_token": "c2VhbGVkLXRva2Vu"},
    )
    unsealed: list[dict[str, str]] = []

    def unseal(values: dict[str, str]) -> dict[str, str]:
        unsealed.append(values)
        return {name: f"https://marketplace.example/{name}" for name in values}

    without = outcome_of(record(link, name="INSERT"))
    with_url = outcome_of(record(link, name="INSERT"), unseal)

    assert without is not None
    assert with_url is not None
    assert without.detail["details"] == {}
    assert with_url.detail["details"] == {"marketplace_url": "https://marketplace.example/marketplace_url"}
    assert unsealed == [{"marketplace_url": "c2VhbGVkLXVybA=="}], "never the tokens"


def _outcome(external_id: str, provider: str = "palm", n: int = 0) -> Outcome:
    return Outcome(str(n), external_id, provider, "PersonProvisioned", {})


def test_a_call_holds_at_most_ten_events_and_never_two_of_one_person_and_provider():
    outcomes = [_outcome(f"p-{n}", n=n) for n in range(12)]
    outcomes.insert(3, _outcome("p-1", n=99))  # p-1's second change, after its first

    split = calls(outcomes)

    assert [len(call) for call in split] == [3, 10]
    assert [o for call in split for o in call] == outcomes, "in stream order"
    for call in split:
        assert len(call) <= MAX_ENTRIES
        assert len({(o.external_id, o.provider) for o in call}) == len(call)
    assert len(calls([_outcome("p-1", provider) for provider in ("palm", "trust")])) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"external_id": "u-9", "email": 3}', "u-9"),
        ('{"detail-type": "UserSignedUp", "detail": {"external_id": "u-8"}}', "u-8"),
        ('{"external_id": "ana@example.test"}', None),  # an e-mail address is no external_id
        ('{"external_id": 12}', None),
        ('{"external_id": "has space"}', None),
        ("[1]", None),
        ("not json", None),
        (None, None),
    ],
)
def test_the_external_id_of_a_record_that_could_not_be_parsed_is_taken_only_when_valid(body, expected):
    assert external_id_of(body) == expected


class _Bus:
    """PutEvents answering from a script: "ok", "refuse:<n>" (entry n refused) or "raise"."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([json.loads(e["Detail"])["external_id"] for e in Entries])
        step = self.script.pop(0) if self.script else "ok"
        if step == "raise":
            raise ConnectionError("the bus is unreachable")
        answers: list[dict[str, Any]] = [{"EventId": str(n)} for n in range(len(Entries))]
        if step.startswith("refuse:"):
            answers[int(step.split(":")[1])] = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            return {"FailedEntryCount": 1, "Entries": answers}
        return {"FailedEntryCount": 0, "Entries": answers}


def _linked(n: int) -> dict[str, Any]:
    link = Link(external_id=f"p-{n}", provider="palm", provider_user_id=f"pu-{n}", source="created")
    return record(link, name="INSERT", sequence=100 + n)


def test_a_put_events_call_that_raises_is_reported_from_its_first_record_and_later_calls_wait():
    from provisioning.outcomes import OutcomePublisher

    bus = _Bus("ok", "raise")
    records = [_linked(n) for n in range(15)]

    published = OutcomePublisher(bus, "hub").publish(records)

    assert bus.calls == [[f"p-{n}" for n in range(10)], [f"p-{n}" for n in range(10, 15)]]
    assert published.events == 10
    assert published.failed_at == "110"


def test_a_refused_entry_is_reported_and_no_later_call_is_made():
    from provisioning.outcomes import OutcomePublisher

    bus = _Bus("refuse:3")
    records = [_linked(n) for n in range(15)]

    published = OutcomePublisher(bus, "hub").publish(records)

    assert len(bus.calls) == 1
    assert published.failed_at == "103"
    assert published.events == 3


def test_a_record_that_cannot_be_read_stops_the_batch_there_after_publishing_the_ones_before():
    from provisioning.outcomes import OutcomePublisher

    broken = _linked(2)
    broken["dynamodb"]["NewImage"]["attempts"] = {"S": "not a number"}
    bus = _Bus()

    published = OutcomePublisher(bus, "hub").publish([_linked(0), _linked(1), broken, _linked(3)])

    assert bus.calls == [["p-0", "p-1"]]
    assert published.failed_at == "102"
