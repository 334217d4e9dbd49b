"""The provisioning engine: one provider user per (provider, external_id), whatever fails."""

from __future__ import annotations

from datetime import datetime

import pytest

from provisioning.errors import ProviderRejected, ProviderUnavailable, RateLimited, UnknownOutcome
from provisioning.http import Deadline, RetryPolicy
from provisioning.models import CreateRequest, ProviderUser
from provisioning.provision import Provisioner
from provisioning.store import LinkSource, LinkStatus, LinkStore


class FakeProvider:
    """A provider that fails as told, and really creates users it may then 'lose the answer' of."""

    provider = "fake"

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.users: dict[str, str] = {}
        self.creates = 0
        self.lookups = 0

    def create(self, request: CreateRequest) -> tuple[ProviderUser, LinkSource]:
        self.creates += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise ProviderUnavailable("down", provider="fake")
        if step == "429":
            raise RateLimited("slow down", provider="fake", retry_after=0.01)
        if step == "reject":
            raise ProviderRejected("bad", provider="fake", status=422)
        user_id = f"fake-{len(self.users) + 1}"
        self.users[request.external_id] = user_id
        if step == "lose":
            raise UnknownOutcome("lost", provider="fake")
        return ProviderUser(provider_user_id=user_id, details={"n": 1}), LinkSource.CREATED

    def find_existing(self, request: CreateRequest, since: datetime) -> ProviderUser | None:
        self.lookups += 1
        user_id = self.users.get(request.external_id)
        return ProviderUser(provider_user_id=user_id) if user_id else None


@pytest.fixture
def store(stack, aws):
    return LinkStore(aws("dynamodb"), stack.refs["UsersTable"])


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
