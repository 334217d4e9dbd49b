"""One contract, two link stores: every assertion here runs on the DynamoDB ``LinkStore`` (moto,
the users table as template.yaml declares it) and on the in-memory one the engine's unit tests use
(``tests/fakes.py``), so that a test passing on the fake says something about the real store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from provisioning.errors import Conflict, InProgress
from provisioning.store import CLAIM_PREFIX, Lease, Link, Links, LinkSource, LinkStatus, now_ms
from tests.fakes import InMemoryLinkStore


@dataclass
class Backend:
    store: Links
    # Items no code path writes any more, as a test plants them: a claim left without its link
    # (a crash between the two writes) and a link stored before claims existed.
    plant_claim: Callable[[str, str, str], None]
    plant_link: Callable[[Link], None]


def _dynamodb(request: pytest.FixtureRequest) -> Backend:
    client, table = request.getfixturevalue("users_table")

    def plant_claim(provider: str, provider_user_id: str, owner: str) -> None:
        item = {
            "external_id": {"S": f"{CLAIM_PREFIX}{provider_user_id}"},
            "provider": {"S": provider},
            "owner": {"S": owner},
        }
        client.put_item(TableName=table, Item=item)

    def plant_link(link: Link) -> None:
        client.put_item(TableName=table, Item=link.to_item())

    return Backend(request.getfixturevalue("dynamodb_store"), plant_claim, plant_link)


def _memory(request: pytest.FixtureRequest) -> Backend:
    store = InMemoryLinkStore()

    def plant_claim(provider: str, provider_user_id: str, owner: str) -> None:
        store.claims[(provider, provider_user_id)] = owner

    def plant_link(link: Link) -> None:
        store.items[(link.provider, link.external_id)] = link

    return Backend(store, plant_claim, plant_link)


@pytest.fixture(params=["dynamodb", "memory"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return {"dynamodb": _dynamodb, "memory": _memory}[request.param](request)


@pytest.fixture
def store(backend: Backend) -> Links:
    return backend.store


def _link(external_id: str = "p-1", user: str = "u-1", provider: str = "fake", **extra: Any) -> Link:
    return Link(external_id=external_id, provider=provider, provider_user_id=user, **extra)


def test_a_first_attempt_is_recorded_pending_and_unknown(store):
    assert store.get("fake", "p-1") is None

    pending = store.mark_pending("fake", "p-1")

    assert not pending.may_exist
    link = pending.link
    assert (link.status, link.attempts, link.unknown, link.provider_user_id) == (
        LinkStatus.PENDING,
        1,
        True,
        None,
    )
    assert link.attempted_at == link.updated_at == link.created_at
    assert store.get("fake", "p-1") == link


def test_a_second_attempt_after_an_unsettled_one_may_find_the_person_created(store):
    first = store.mark_pending("fake", "p-1").link

    again = store.mark_pending("fake", "p-1")

    assert again.may_exist
    assert again.link.attempts == 2
    assert again.link.created_at == first.created_at
    assert store.get("fake", "p-1").attempts == 2


def test_settle_clears_the_unknown_flag_of_its_own_attempt_only(store):
    store.mark_pending("fake", "p-1")
    store.mark_pending("fake", "p-1")

    store.settle("fake", "p-1", attempts=1)  # an older attempt: another one has started since
    assert store.get("fake", "p-1").unknown is True

    store.settle("fake", "p-1", attempts=2)
    assert store.get("fake", "p-1").unknown is False
    after = store.mark_pending("fake", "p-1")
    assert not after.may_exist
    assert after.link.attempts == 3
    assert after.link.unknown is True


def test_settle_writes_nothing_where_nothing_is_pending(store):
    store.settle("fake", "p-1", attempts=1)
    assert store.get("fake", "p-1") is None

    store.save_link(_link())
    store.settle("fake", "p-1", attempts=0)
    assert store.get("fake", "p-1").unknown is None
    assert store.get("fake", "p-1").status == LinkStatus.LINKED


def test_a_saved_link_is_found_by_person_by_provider_user_and_by_owner(store):
    pending = store.mark_pending("fake", "p-1").link
    candidate = _link(
        source=LinkSource.CREATED,
        details={"n": 1, "name": "x"},
        sealed={"access_token": "c2VhbGVk"},
        created_at=pending.created_at,
        attempted_at=pending.attempted_at,
        attempts=pending.attempts,
    )

    stored, wrote = store.save_link(candidate)

    assert wrote
    assert (stored.status, stored.unknown, stored.provider_user_id) == (LinkStatus.LINKED, None, "u-1")
    assert stored.updated_at >= pending.updated_at
    assert store.get("fake", "p-1") == stored
    assert store.find_by_provider_user_id("fake", "u-1") == stored
    assert store.owner_of("fake", "u-1") == "p-1"
    assert store.links_of("p-1") == [stored]


def test_marking_a_linked_person_pending_changes_nothing_and_answers_the_link(store):
    stored, _ = store.save_link(_link())

    pending = store.mark_pending("fake", "p-1")

    assert not pending.may_exist
    assert pending.link == stored
    assert store.get("fake", "p-1") == stored


def test_a_provider_user_claimed_by_another_person_is_refused_and_the_person_stays_pending(store):
    store.save_link(_link("p-1", "u-9"))
    store.mark_pending("fake", "p-2")

    with pytest.raises(Conflict) as conflict:
        store.save_link(_link("p-2", "u-9"))

    assert conflict.value.code == "conflict"
    assert conflict.value.provider == "fake"
    assert "p-1" not in conflict.value.message
    assert store.get("fake", "p-2").status == LinkStatus.PENDING
    assert store.owner_of("fake", "u-9") == "p-1"
    assert store.find_by_provider_user_id("fake", "u-9").external_id == "p-1"


def test_a_refused_link_writes_no_item_for_its_person(store):
    store.save_link(_link("p-1", "u-9"))

    with pytest.raises(Conflict):
        store.save_link(_link("p-2", "u-9"))

    assert store.get("fake", "p-2") is None
    assert [link.external_id for link in store.scan_links()] == ["p-1"]  # claims are not links


def test_a_person_linked_first_by_another_delivery_keeps_that_link(store):
    first, _ = store.save_link(_link("p-1", "u-1"))

    stored, wrote = store.save_link(_link("p-1", "u-2"))

    assert not wrote
    assert stored == first
    assert store.get("fake", "p-1") == first
    # The second call's claim was written before its link was refused: it names the same person.
    assert store.owner_of("fake", "u-2") == "p-1"


def test_saving_the_same_link_twice_is_answered_with_the_stored_one(store):
    first, _ = store.save_link(_link())

    stored, wrote = store.save_link(_link())

    assert (stored, wrote) == (first, False)


def test_pending_people_are_not_found_by_provider_user_id(store):
    store.mark_pending("fake", "p-1")

    assert store.find_by_provider_user_id("fake", "u-1") is None
    assert store.owner_of("fake", "u-1") is None


def test_one_person_s_links_are_per_provider_and_only_theirs(store):
    store.save_link(_link("p-1", "u-1", provider="palm"))
    store.mark_pending("fake", "p-1")
    store.save_link(_link("p-2", "u-2", provider="fake"))

    links = store.links_of("p-1")

    assert [(link.provider, link.status) for link in links] == [
        ("fake", LinkStatus.PENDING),
        ("palm", LinkStatus.LINKED),
    ]
    assert store.links_of("p-3") == []
    assert store.find_by_provider_user_id("palm", "u-2") is None  # the same id at another provider


def test_scan_lists_pending_and_linked_people_but_never_claims(store):
    store.save_link(_link("p-1", "u-1"))
    store.mark_pending("fake", "p-2")

    found = sorted((link.external_id, link.status) for link in store.scan_links())

    assert found == [("p-1", LinkStatus.LINKED), ("p-2", LinkStatus.PENDING)]


def test_a_claim_left_without_its_link_still_names_its_person(backend):
    store = backend.store
    backend.plant_claim("fake", "u-7", "p-1")

    assert store.owner_of("fake", "u-7") == "p-1"
    with pytest.raises(Conflict):
        store.save_link(_link("p-2", "u-7"))
    stored, wrote = store.save_link(_link("p-1", "u-7"))

    assert wrote
    assert stored.provider_user_id == "u-7"


def test_a_link_stored_before_claims_existed_names_its_owner(backend):
    store = backend.store
    backend.plant_link(_link("p-1", "shared-1"))

    assert store.owner_of("fake", "shared-1") == "p-1"
    assert store.get("fake", "p-1").provider_user_id == "shared-1"
    # The store alone does not refuse it (no claim): the engine asks owner_of before linking.
    _, wrote = store.save_link(_link("p-2", "shared-1"))
    assert wrote


def test_a_pending_record_written_before_the_unknown_flag_counts_as_unknown(backend):
    backend.plant_link(Link(external_id="p-1", provider="fake", status=LinkStatus.PENDING, attempts=1))

    pending = backend.store.mark_pending("fake", "p-1")

    assert pending.may_exist
    assert pending.link.attempts == 2


REPORT = {"code": "invalid_request", "message": "phone: is required by fake", "attempts": 1, "status": 422}


def test_a_dead_letter_report_of_an_unknown_person_is_kept_on_a_pending_item(store):
    assert store.record_failure("fake", "p-1", REPORT) is True

    item = store.get("fake", "p-1")
    assert item.status == LinkStatus.PENDING
    assert item.provider_user_id is None
    assert item.failure["code"] == "invalid_request"
    assert item.failure["message"] == "phone: is required by fake"
    assert item.failure["attempts"] == 1
    assert item.failure["at"]
    assert set(item.failure) == {"code", "message", "attempts", "at"}
    assert store.find_by_provider_user_id("fake", "u-1") is None
    # Nothing was sent for that person: the next attempt need not reconcile first.
    assert store.mark_pending("fake", "p-1").may_exist is False


def test_a_dead_letter_report_never_touches_a_linked_person(store):
    store.mark_pending("fake", "p-1")
    linked, _ = store.save_link(_link())

    assert store.record_failure("fake", "p-1", REPORT) is False

    assert store.get("fake", "p-1") == linked
    assert store.get("fake", "p-1").failure is None


def test_a_pending_person_keeps_its_attempts_when_a_report_is_recorded(store):
    store.mark_pending("fake", "p-1")
    store.mark_pending("fake", "p-1")

    assert store.record_failure("fake", "p-1", REPORT) is True

    item = store.get("fake", "p-1")
    assert item.attempts == 2
    assert item.unknown is True  # an attempt may have created the person: still reconciled first
    assert item.failure["code"] == "invalid_request"


def test_a_new_attempt_clears_the_dead_letter_report(store):
    store.record_failure("fake", "p-1", REPORT)

    pending = store.mark_pending("fake", "p-1")

    assert pending.link.failure is None
    assert store.get("fake", "p-1").failure is None
    assert store.get("fake", "p-1").attempts == 1


# -- the claim of a person: fingerprint and lease --------------------------------------------------
def _lease(owner: str, live: bool = True) -> Lease:
    return Lease(owner=owner, until=now_ms() + (60_000 if live else -1), fingerprint=f"fp-{owner}")


def test_a_live_lease_refuses_every_other_attempt_and_changes_nothing(store):
    store.mark_pending("fake", "p-1", _lease("a"))

    with pytest.raises(InProgress) as refused:
        store.mark_pending("fake", "p-1", _lease("b"))
    with pytest.raises(InProgress):
        store.mark_pending("fake", "p-1")  # tooling without a lease is refused too

    assert refused.value.code == "in_progress"
    assert refused.value.transient
    stored = store.get("fake", "p-1")
    assert (stored.attempts, stored.fingerprint) == (1, "fp-a")


def test_the_holder_of_a_lease_marks_again_for_its_own_retry(store):
    lease = _lease("a")
    store.mark_pending("fake", "p-1", lease)

    again = store.mark_pending("fake", "p-1", lease)

    assert again.link.attempts == 2
    assert again.link.fingerprint == "fp-a"


def test_an_expired_lease_is_taken_over_and_its_attempt_counts_as_unknown(store):
    store.mark_pending("fake", "p-1", _lease("crashed", live=False))

    taken = store.mark_pending("fake", "p-1", _lease("b"))

    assert taken.may_exist  # the crashed attempt may have created the person: reconcile first
    assert (taken.link.attempts, taken.link.fingerprint) == (2, "fp-b")
    with pytest.raises(InProgress):
        store.mark_pending("fake", "p-1", _lease("c"))  # b holds it now


def test_a_release_drops_the_lease_and_settles_only_when_told(store):
    store.mark_pending("fake", "p-1", _lease("a"))

    store.release("fake", "p-1", attempts=1, settled=False)
    second = store.mark_pending("fake", "p-1", _lease("b"))  # at once: no wait for the lease
    assert second.may_exist  # not settled: the next attempt reconciles first

    store.release("fake", "p-1", attempts=2, settled=True)
    third = store.mark_pending("fake", "p-1", _lease("c"))
    assert not third.may_exist


def test_the_release_of_an_older_attempt_leaves_the_newer_lease(store):
    store.mark_pending("fake", "p-1", _lease("crashed", live=False))
    store.mark_pending("fake", "p-1", _lease("b"))

    store.release("fake", "p-1", attempts=1, settled=True)

    with pytest.raises(InProgress):
        store.mark_pending("fake", "p-1", _lease("c"))
    assert store.get("fake", "p-1").unknown is True


def test_a_link_keeps_the_fingerprint_drops_the_lease_and_answers_every_later_claim(store):
    pending = store.mark_pending("fake", "p-1", _lease("a")).link
    store.save_link(_link(fingerprint=pending.fingerprint, attempts=pending.attempts))

    found = store.mark_pending("fake", "p-1", _lease("b"))

    assert found.link.status == LinkStatus.LINKED
    assert found.link.fingerprint == "fp-a"  # unchanged: the engine compares it with its own
    assert store.get("fake", "p-1") == found.link


def test_tooling_does_not_settle_an_attempt_that_holds_a_live_lease(store):
    store.mark_pending("fake", "p-1", _lease("a"))

    store.settle("fake", "p-1", attempts=1)  # it may be creating right now

    assert store.get("fake", "p-1").unknown is True
    with pytest.raises(InProgress):
        store.mark_pending("fake", "p-1", _lease("b"))
