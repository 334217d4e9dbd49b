"""The provisioning engine: one provider user per (provider, external_id), whatever fails.

The engine runs on the in-memory link store (``tests/fakes.py``), held to the DynamoDB store's
behaviour by ``test_link_store_contract.py``; what only DynamoDB items can show runs on moto."""

from __future__ import annotations

import re

import pytest

from provisioning.errors import (
    Conflict,
    InProgress,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
    UnknownOutcomeHeld,
)
from provisioning.http import Deadline, RetryPolicy
from provisioning.models import CreateRequest
from provisioning.provision import LEASE_MARGIN_S, Provisioner, fingerprint_of
from provisioning.store import Lease, LinkStatus, now_ms
from tests.fakes import FakeProvider, InMemoryLinkStore, SharedUser


@pytest.fixture
def store() -> InMemoryLinkStore:
    return InMemoryLinkStore()


def _provision(store, provider, request_id="p-1", attempts=4):
    sleeps: list[float] = []
    engine = Provisioner(
        provider, store, RetryPolicy(max_attempts=attempts, base_delay=0.01), sleep=sleeps.append
    )
    return engine.provision(CreateRequest(external_id=request_id), Deadline(lambda: 30_000)), sleeps


def test_creates_and_links_once(store):
    provider = FakeProvider([])
    result, _ = _provision(store, provider)
    again, _ = _provision(store, provider)

    assert result.outcome == "created"
    assert again.outcome == "already_provisioned"
    assert provider.creates == 1
    link = store.get("fake", "p-1")
    assert link.status == LinkStatus.LINKED
    assert link.provider_user_id == result.provider_user_id
    assert store.find_by_provider_user_id("fake", result.provider_user_id).external_id == "p-1"


def test_transient_failures_are_retried_with_backoff(store):
    provider = FakeProvider(["down", "429"])
    result, sleeps = _provision(store, provider)

    assert result.outcome == "created"
    assert provider.creates == 3
    assert len(sleeps) == 2
    assert sleeps[1] >= 0.01  # honours retry_after


def test_lost_answer_is_reconciled_not_created_twice(store):
    provider = FakeProvider(["lose"])
    result, _ = _provision(store, provider)

    assert result.outcome == "reconciled"
    assert provider.creates == 1
    assert provider.lookups == 1
    assert len(provider.users) == 1


def test_lost_answer_in_an_earlier_invocation_is_reconciled_first(store):
    provider = FakeProvider(["lose"])
    with pytest.raises(UnknownOutcome):
        _provision(store, provider, attempts=1)
    assert store.get("fake", "p-1").status == LinkStatus.PENDING

    result, _ = _provision(store, provider)

    assert result.outcome == "reconciled"
    assert provider.creates == 1


def test_rejection_is_final_and_not_retried(store):
    provider = FakeProvider(["reject"])
    with pytest.raises(ProviderRejected):
        _provision(store, provider)
    assert provider.creates == 1


def test_retries_stop_at_the_budget(store):
    provider = FakeProvider(["down"] * 10)
    with pytest.raises(ProviderUnavailable):
        _provision(store, provider, attempts=3)
    assert provider.creates == 3


def test_retries_stop_before_the_invocation_runs_out_of_time(store):
    provider = FakeProvider(["down"] * 10)
    engine = Provisioner(provider, store, RetryPolicy(max_attempts=10), sleep=lambda s: None)
    with pytest.raises(ProviderUnavailable):
        engine.provision(CreateRequest(external_id="p-1"), Deadline(lambda: 3_500, margin=3.0))
    assert provider.creates == 1


def test_a_long_rate_limit_wait_hands_the_record_back_instead_of_sleeping(store):
    class Limited(FakeProvider):
        def create(self, request):
            self.creates += 1
            raise RateLimited("window full", provider="fake", retry_after=40)

    provider = Limited([])
    with pytest.raises(RateLimited) as raised:
        _provision(store, provider)
    assert provider.creates == 1
    assert raised.value.retry_after == 40


def test_a_lost_answer_without_any_lookup_is_held_not_created_again(store):
    provider = FakeProvider(["lose"], lookup=False)
    with pytest.raises(UnknownOutcomeHeld) as held:
        _provision(store, provider)
    assert held.value.code == "unknown_outcome"
    assert not held.value.transient  # a queued record is dead-lettered at once, with this reason

    with pytest.raises(UnknownOutcomeHeld):  # a redelivery or a redrive: still held
        _provision(store, provider)
    assert provider.creates == 1
    assert provider.lookups == 0
    assert store.get("fake", "p-1").status == LinkStatus.PENDING


def test_a_failure_that_sent_nothing_lets_the_next_delivery_create_without_a_lookup(store):
    provider = FakeProvider(["down"], lookup=False)
    with pytest.raises(ProviderUnavailable):
        _provision(store, provider, attempts=1)

    result, _ = _provision(store, provider)

    assert result.outcome == "created"
    assert provider.lookups == 0
    assert provider.creates == 2


def test_a_crash_after_marking_pending_counts_as_unknown(store):
    store.mark_pending("fake", "p-1")  # an invocation that died before it could say what happened
    provider = FakeProvider([])

    result, _ = _provision(store, provider)

    assert result.outcome == "created"
    assert provider.lookups == 1  # looked up before creating


def test_one_provider_user_is_never_linked_to_two_people(store):
    provider = SharedUser([])
    first, _ = _provision(store, provider, request_id="p-1")

    with pytest.raises(Conflict) as conflict:
        _provision(store, provider, request_id="p-2")

    assert first.provider_user_id == "shared-1"
    assert conflict.value.code == "conflict"
    assert "p-1" not in conflict.value.message
    assert store.get("fake", "p-2").status == LinkStatus.PENDING
    assert store.find_by_provider_user_id("fake", "shared-1").external_id == "p-1"


def test_a_link_stored_before_claims_existed_still_blocks_a_second_person(users_table, dynamodb_store):
    # Genuinely DynamoDB: a link item as written before claims existed, found through the GSI.
    legacy = {
        "external_id": {"S": "p-1"},
        "provider": {"S": "fake"},
        "status": {"S": "linked"},
        "provider_user_id": {"S": "shared-1"},
    }
    client, table = users_table
    client.put_item(TableName=table, Item=legacy)

    with pytest.raises(Conflict):
        _provision(dynamodb_store, SharedUser([]), request_id="p-2")
    assert dynamodb_store.get("fake", "p-2").status == LinkStatus.PENDING


# -- the claim: the same person twice, at once or with another payload ----------------------------
class Person(CreateRequest):
    email: str | None = None


def _engine(store, provider, conflict_window=3600.0):
    return Provisioner(
        provider,
        store,
        RetryPolicy(max_attempts=2, base_delay=0.01),
        sleep=lambda _: None,
        conflict_window=conflict_window,
    )


def _person(email="ana@example.com"):
    return Person(external_id="p-1", email=email)


def test_the_same_external_id_with_another_payload_is_a_conflict_naming_no_personal_data(store):
    provider = FakeProvider([])
    engine = _engine(store, provider)
    engine.provision(_person(), Deadline(lambda: 30_000))

    with pytest.raises(Conflict) as conflict:
        engine.provision(_person("bea@example.com"), Deadline(lambda: 30_000))
    again = engine.provision(_person(), Deadline(lambda: 30_000))

    assert conflict.value.code == "conflict"
    assert conflict.value.message == "this external_id was already requested with a different payload"
    for value in ("p-1", "ana@example.com", "bea@example.com"):
        assert value not in str(conflict.value.body())
    assert again.outcome == "already_provisioned"  # the same payload is a replay
    assert provider.creates == 1
    assert store.get("fake", "p-1").fingerprint == fingerprint_of(_person())


def test_another_payload_after_the_conflict_window_is_answered_from_the_link(store):
    provider = FakeProvider([])
    _engine(store, provider).provision(_person(), Deadline(lambda: 30_000))

    later = _engine(store, provider, conflict_window=0).provision(
        _person("bea@example.com"), Deadline(lambda: 30_000)
    )

    assert later.outcome == "already_provisioned"
    assert provider.creates == 1


def test_the_fingerprint_is_a_hash_of_the_whole_payload_without_personal_data():
    fingerprint = fingerprint_of(_person())

    same = Person.model_validate({"email": "ana@example.com", "external_id": "p-1"})  # key order
    assert fingerprint == fingerprint_of(same)
    assert fingerprint != fingerprint_of(_person("bea@example.com"))
    assert re.fullmatch("[0-9a-f]{64}", fingerprint)  # a sha256, never the payload


def test_a_delivery_while_another_holds_the_person_is_in_progress_and_creates_nothing(store):
    holder = Lease(owner="other-invocation", until=now_ms() + 60_000, fingerprint=fingerprint_of(_person()))
    store.mark_pending("fake", "p-1", holder)
    provider = FakeProvider([])

    with pytest.raises(InProgress) as busy:
        _engine(store, provider).provision(_person(), Deadline(lambda: 30_000))

    assert busy.value.transient  # a queued record comes back later; the API answers 409
    assert (provider.creates, provider.lookups) == (0, 0)
    assert store.leases[("fake", "p-1")] == ("other-invocation", holder.until)  # untouched


def test_a_crashed_attempt_s_lease_expires_and_the_next_delivery_takes_over_and_reconciles(store):
    provider = FakeProvider([])
    provider.users["p-1"] = "fake-9"  # the crashed attempt's create reached the provider
    crashed = Lease(owner="crashed", until=now_ms() - 1, fingerprint=fingerprint_of(_person()))
    store.mark_pending("fake", "p-1", crashed)

    result = _engine(store, provider).provision(_person(), Deadline(lambda: 30_000))

    assert (result.outcome, result.provider_user_id) == ("reconciled", "fake-9")
    assert (provider.creates, provider.lookups) == (0, 1)
    assert ("fake", "p-1") not in store.leases


def test_the_lease_ends_with_the_invocation_and_a_margin(store):
    store.release = lambda *args, **kwargs: None  # keep the lease the claim wrote, to read it
    before = now_ms()
    with pytest.raises(ProviderRejected):
        _engine(store, FakeProvider(["reject"])).provision(_person(), Deadline(lambda: 7_000))

    _, until = store.leases[("fake", "p-1")]
    margin = int(LEASE_MARGIN_S * 1000)  # past the invocation's end, as seen from another host
    assert before + 7_000 + margin <= until <= now_ms() + 7_000 + margin


@pytest.mark.parametrize(
    ("script", "error", "unknown"),
    [
        (["reject"], ProviderRejected, False),
        (["down", "down"], ProviderUnavailable, False),
        (["lose", "lose"], UnknownOutcome, True),
    ],
)
def test_a_failure_releases_the_lease_so_a_retry_need_not_wait(store, script, error, unknown):
    provider = FakeProvider([*script], lookup=True)
    provider.find_existing = lambda request, since: None  # type: ignore[method-assign]
    with pytest.raises(error):
        _engine(store, provider).provision(_person(), Deadline(lambda: 30_000))

    assert ("fake", "p-1") not in store.leases
    assert store.get("fake", "p-1").unknown is unknown  # a create that may exist is reconciled first
    result = _engine(store, provider).provision(_person(), Deadline(lambda: 30_000))  # at once
    assert result.outcome == "created"


def test_a_held_unknown_outcome_releases_the_lease_and_stays_held(store):
    provider = FakeProvider(["lose"], lookup=False)
    with pytest.raises(UnknownOutcomeHeld):
        _provision(store, provider)

    assert ("fake", "p-1") not in store.leases
    with pytest.raises(UnknownOutcomeHeld):  # not InProgress: the redelivery is held again, at once
        _provision(store, provider)
    assert provider.creates == 1
