"""Test doubles of the engine's collaborators: an in-memory link store with the DynamoDB store's
semantics (held to them by ``tests/unit/test_link_store_contract.py``) and a scripted provider
create operation. With them the engine's tests need neither moto nor the sandbox."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from provisioning.errors import (
    Conflict,
    InProgress,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.models import CreateRequest, ProviderUser
from provisioning.store import Lease, Link, LinkSource, LinkStatus, Pending, failure_of, now_ms, utc_now


class InMemoryLinkStore:
    """``provisioning.store.LinkStore`` in memory: every method is atomic, as each DynamoDB call is,
    and every conditional write fails where DynamoDB's would.

    ``items`` holds each person's item by (provider, external_id), pending or linked; ``claims``
    the owner of each claimed provider user by (provider, provider_user_id); ``leases`` the lease
    (owner, until) on each pending item that has one. A test may plant items in any of them (a link
    stored before claims existed, a claim left without its link by a crash, a live lease)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Link] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.leases: dict[tuple[str, str], tuple[str, int]] = {}
        self._lock = threading.RLock()

    def get(self, provider: str, external_id: str) -> Link | None:
        with self._lock:
            item = self.items.get((provider, external_id))
            return item.model_copy(deep=True) if item else None

    def links_of(self, external_id: str) -> list[Link]:
        with self._lock:  # a Query of the partition: in sort key (provider) order
            return [
                self.items[key].model_copy(deep=True)
                for key in sorted(key for key in self.items if key[1] == external_id)
            ]

    def find_by_provider_user_id(self, provider: str, provider_user_id: str) -> Link | None:
        with self._lock:  # the sparse GSI: pending items (no provider_user_id) are not in it
            for (item_provider, _), item in self.items.items():
                if item_provider == provider and item.provider_user_id == provider_user_id:
                    return item.model_copy(deep=True)
            return None

    def mark_pending(self, provider: str, external_id: str, lease: Lease | None = None) -> Pending:
        now = utc_now()
        key = (provider, external_id)
        with self._lock:
            old = self.items.get(key)
            if old is not None and old.status != LinkStatus.PENDING:  # the condition fails: unchanged
                return Pending(old.model_copy(deep=True), may_exist=False)
            held = self.leases.get(key)
            if held is not None and held[1] >= now_ms() and (lease is None or held[0] != lease.owner):
                raise InProgress("this person is being provisioned by another request", provider=provider)
            link = Link(
                external_id=external_id,
                provider=provider,
                status=LinkStatus.PENDING,
                created_at=old.created_at if old else now,
                updated_at=now,
                attempted_at=now,
                attempts=(old.attempts if old else 0) + 1,
                unknown=True,
                fingerprint=lease.fingerprint if lease else (old.fingerprint if old else None),
            )
            # An update: attributes it does not set (e.g. an earlier item's details) stay; an
            # earlier dead-letter report is removed.
            update = link.model_dump(
                include={"status", "attempted_at", "updated_at", "unknown", "attempts", "fingerprint"}
            )
            update["failure"] = None
            self.items[key] = old.model_copy(update=update) if old else link
            if lease is not None:
                self.leases[key] = (lease.owner, lease.until)
            else:
                self.leases.pop(key, None)
            return Pending(link.model_copy(deep=True), may_exist=old is not None and old.unknown is not False)

    def release(self, provider: str, external_id: str, attempts: int, *, settled: bool) -> None:
        key = (provider, external_id)
        with self._lock:
            item = self.items.get(key)
            if item is None or item.status != LinkStatus.PENDING or item.attempts != attempts:
                return  # the condition fails; the lease and the flag stay
            self.leases.pop(key, None)
            update: dict[str, Any] = {"updated_at": utc_now()}
            if settled:
                update["unknown"] = False
            self.items[key] = item.model_copy(update=update)

    def settle(self, provider: str, external_id: str, attempts: int) -> None:
        key = (provider, external_id)
        with self._lock:
            item = self.items.get(key)
            if item is None or item.status != LinkStatus.PENDING or item.attempts != attempts:
                return  # the condition fails; the flag stays set
            if key in self.leases and self.leases[key][1] >= now_ms():
                return  # a live attempt may be creating right now
            self.items[key] = item.model_copy(update={"unknown": False, "updated_at": utc_now()})

    def record_failure(self, provider: str, external_id: str, report: dict[str, Any]) -> bool:
        now = utc_now()
        failure = failure_of(report, now)
        with self._lock:
            item = self.items.get((provider, external_id))
            if item is not None and item.status != LinkStatus.PENDING:
                return False  # the condition fails: a linked person is never touched
            if item is None:
                item = Link(
                    external_id=external_id,
                    provider=provider,
                    status=LinkStatus.PENDING,
                    created_at=now,
                    unknown=False,  # no attempt sent anything
                )
            self.items[(provider, external_id)] = item.model_copy(
                update={"failure": failure, "updated_at": now}
            )
            return True

    def owner_of(self, provider: str, provider_user_id: str) -> str | None:
        with self._lock:
            owner = self.claims.get((provider, provider_user_id))
            if owner is not None:
                return owner
            linked = self.find_by_provider_user_id(provider, provider_user_id)
            return linked.external_id if linked else None

    def save_link(self, link: Link) -> tuple[Link, bool]:
        user_id = link.provider_user_id
        assert user_id, "a link needs the provider's id"
        link = link.model_copy(update={"status": LinkStatus.LINKED, "updated_at": utc_now(), "unknown": None})
        with self._lock:
            owner = self.claims.get((link.provider, user_id))
            if owner is not None and owner != link.external_id:
                raise Conflict(
                    f"this {link.provider} user is already linked to another person; not linked",
                    provider=link.provider,
                )
            self.claims[(link.provider, user_id)] = link.external_id
            existing = self.items.get((link.provider, link.external_id))
            if existing is not None and existing.status != LinkStatus.PENDING:
                return existing.model_copy(deep=True), False
            self.items[(link.provider, link.external_id)] = link.model_copy(deep=True)
            self.leases.pop((link.provider, link.external_id), None)  # a put replaces the whole item
            return link, True

    def scan_links(self, page_size: int = 200) -> list[Link]:
        with self._lock:  # claims are not links
            return [item.model_copy(deep=True) for item in self.items.values()]


class FakeProvider:
    """A provider create operation that fails as its script says, one step per create ("ok",
    "down", "429", "reject", or "lose": created, but the answer is lost), and really creates the
    users whose answers it may lose, so that its lookup finds them."""

    provider = "fake"

    def __init__(self, script: list[str], lookup: bool = True) -> None:
        self.script = list(script)
        self.users: dict[str, str] = {}
        self.creates = 0
        self.lookups = 0
        self.lookup = lookup

    def can_look_up(self, request: CreateRequest) -> bool:
        return self.lookup

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


class SharedUser(FakeProvider):
    """A provider whose create answers 'already exists' with one user whoever asks."""

    def create(self, request: CreateRequest) -> tuple[ProviderUser, LinkSource]:
        self.creates += 1
        return ProviderUser(provider_user_id="shared-1"), LinkSource.EXISTING
