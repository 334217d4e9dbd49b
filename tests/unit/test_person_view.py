"""One person at every provider (provisioning.people), over the in-memory link store: each state,
what is never shown (credentials, sealed tokens, fingerprints of personal data, claims)."""

from __future__ import annotations

import pytest

from provisioning.errors import InvalidRequest
from provisioning.people import ProviderState, parse_external_id, person_view, shown_details
from provisioning.providers import NAMES, PROVIDERS
from provisioning.store import Link, LinkSource
from tests.fakes import InMemoryLinkStore

FIRST, SECOND, THIRD = NAMES[0], NAMES[1], NAMES[2]
REPORT = {
    "code": "provider_rejected",
    "message": "rejected: Missing params",
    "attempts": 3,
    "at": "2026-11-26T10:00:00Z",
}


def _linked(store: InMemoryLinkStore, provider: str, external_id: str, **details: object) -> Link:
    link, _ = store.save_link(
        Link(
            external_id=external_id,
            provider=provider,
            provider_user_id=f"{provider}-user-1",
            source=LinkSource.CREATED,
            attempts=1,
            details=dict(details),
            sealed={"access_token": "sealed-ciphertext"},
        )
    )
    return link


def test_every_registered_provider_has_a_state_in_registry_order():
    store = InMemoryLinkStore()
    _linked(store, FIRST, "u-1")

    view = person_view(store, "u-1")

    assert list(view.providers) == list(NAMES)
    assert view.providers[FIRST].state == ProviderState.LINKED
    assert all(view.providers[name].state == ProviderState.NOT_REQUESTED for name in NAMES[1:])
    assert view.known


def test_a_linked_provider_shows_its_id_source_timestamps_and_attempts():
    store = InMemoryLinkStore()
    stored = _linked(store, FIRST, "u-1", widget_id="w-1")

    shown = person_view(store, "u-1").providers[FIRST]

    assert shown.provider_user_id == f"{FIRST}-user-1"
    assert shown.source == LinkSource.CREATED
    assert (shown.created_at, shown.updated_at, shown.attempts) == (stored.created_at, stored.updated_at, 1)
    assert shown.details == {"widget_id": "w-1"}
    assert shown.failure is None


def test_an_attempt_under_way_is_pending_and_listed():
    store = InMemoryLinkStore()
    store.mark_pending(SECOND, "u-2")

    view = person_view(store, "u-2")

    shown = view.providers[SECOND]
    assert shown.state == ProviderState.PENDING
    assert shown.attempts == 1
    assert shown.attempted_at
    assert shown.provider_user_id is None
    assert view.pending == [SECOND]
    assert view.dead_lettered == []


def test_a_pending_item_with_a_failure_report_is_dead_lettered_with_its_report():
    store = InMemoryLinkStore()
    store.mark_pending(SECOND, "u-3")
    store.items[(SECOND, "u-3")] = store.items[(SECOND, "u-3")].model_copy(update={"failure": dict(REPORT)})
    store.mark_pending(THIRD, "u-3")

    view = person_view(store, "u-3")

    shown = view.providers[SECOND]
    assert shown.state == ProviderState.DEAD_LETTERED
    assert shown.failure is not None
    assert shown.failure.model_dump() == REPORT
    assert view.dead_lettered == [SECOND]
    assert view.pending == [THIRD]


def test_a_failure_report_with_more_or_fewer_keys_still_reads():
    store = InMemoryLinkStore()
    store.mark_pending(SECOND, "u-4")
    report = {"code": "unknown_outcome", "provider_status": 502, "fields": [{"field": "x", "message": "y"}]}
    store.items[(SECOND, "u-4")] = store.items[(SECOND, "u-4")].model_copy(update={"failure": report})

    shown = person_view(store, "u-4").providers[SECOND]

    assert shown.state == ProviderState.DEAD_LETTERED
    assert shown.failure is not None
    assert (shown.failure.code, shown.failure.attempts) == ("unknown_outcome", None)


def test_a_person_no_provider_knows_is_not_known():
    view = person_view(InMemoryLinkStore(), "u-unknown")

    assert not view.known
    assert {v.state for v in view.providers.values()} == {ProviderState.NOT_REQUESTED}
    assert view.pending == view.dead_lettered == []


@pytest.mark.parametrize("info", PROVIDERS, ids=NAMES)
def test_credentials_and_sealed_tokens_are_never_shown(info):
    store = InMemoryLinkStore()
    credentials = {key: f"secret-{key}" for key in info.credentials}
    _linked(store, info.name, "u-5", status="active", **credentials)

    dumped = person_view(store, "u-5").model_dump_json()

    assert "secret-" not in dumped
    assert "sealed" not in dumped
    assert "sealed-ciphertext" not in dumped
    assert person_view(store, "u-5").providers[info.name].details == {"status": "active"}


def test_details_derived_from_personal_data_and_nested_values_are_not_shown():
    info = PROVIDERS[0]
    details = {
        "status": "active",
        "email_fingerprint": "fp-e",
        "phone_fingerprint": "fp-p",
        "nested": {"email": "ana@example.com"},
        "confirmed": True,
    }

    assert shown_details(info, details) == {"status": "active", "confirmed": True}


def test_claims_of_provider_users_never_appear():
    store = InMemoryLinkStore()
    _linked(store, FIRST, "u-6")
    # A claim item, as DynamoDB would hold it, planted among the person's items.
    store.items[(FIRST, f"#owner#{FIRST}-user-1")] = Link(
        external_id=f"#owner#{FIRST}-user-1", provider=FIRST
    )

    view = person_view(store, "u-6")

    assert view.providers[FIRST].provider_user_id == f"{FIRST}-user-1"
    assert "#owner#" not in view.model_dump_json()
    assert not person_view(store, f"#owner#{FIRST}-user-1").known


def test_an_item_of_a_provider_no_longer_registered_is_ignored():
    store = InMemoryLinkStore()
    store.items[("retired", "u-7")] = Link(external_id="u-7", provider="retired", provider_user_id="r-1")

    view = person_view(store, "u-7")

    assert "retired" not in view.providers
    assert not view.known


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("u-1", "u-1"), ("dTE%2Bx%3D", "dTE+x="), ("a%3Ab", "a:b"), ("cust-00001", "cust-00001")],
)
def test_path_ids_are_percent_decoded_once(raw, expected):
    assert parse_external_id(raw) == expected


@pytest.mark.parametrize(
    "raw", ["a%2Fb", "%20u", "a%2541", "ana%40example.com", "u" * 129, "-u", "a%00b", "%E2%9C%93"]
)
def test_invalid_path_ids_are_a_400_naming_external_id_without_the_value(raw):
    with pytest.raises(InvalidRequest) as caught:
        parse_external_id(raw)

    assert caught.value.http_status == 400
    assert [e.field for e in caught.value.errors] == ["external_id"]
    assert "example.com" not in caught.value.message


def test_an_id_given_as_is_is_not_percent_decoded():
    with pytest.raises(InvalidRequest):
        parse_external_id("u%2B1", percent_encoded=False)
