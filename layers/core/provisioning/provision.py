"""The provisioning engine shared by every create operation.

For one (provider, external_id) it makes sure the person exists once at the provider and is linked
once in our table, and that a provider user is never linked to two people:
  1. mark the person pending and claim them for this attempt (the request's fingerprint and a
     lease that ends after the invocation), in one conditional write that also answers what was
     stored: already linked -> answer without calling the provider (a conflict when linked lately
     for another payload); claimed by another attempt whose lease is live -> ``InProgress``;
  2. an earlier attempt may have created the person (its outcome is unknown) -> reconcile with the
     provider's lookup first; where no lookup can find this person, hold the record for an operator
     (``unknown_outcome``) instead of creating a second time;
  3. create, then claim the provider user for this person and store the link (a provider
     user claimed by someone else is a ``conflict``, never a second link);
  4. transient failures are retried with jittered backoff while the invocation still has room for a
     whole call; any create without a clean, complete, parseable success is an unknown outcome,
     never retried blindly: the next attempt reconciles first;
  5. an attempt that ends without a link releases its lease in one write (the next delivery need
     not wait for it to expire) which, when it knows nothing was created, also clears the pending
     record's unknown flag, so the next one need not reconcile (nor hold). A crash leaves the lease
     to expire with the invocation; the next delivery then takes over and reconciles.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from provisioning.errors import (
    Conflict,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ProvisioningError,
    RateLimited,
    UnknownOutcome,
    UnknownOutcomeHeld,
)
from provisioning.http import Deadline, RetryPolicy, Timeouts, within
from provisioning.models import CreateRequest, ProviderUser, ProvisionResult
from provisioning.observability import logger
from provisioning.store import Lease, Link, Links, LinkSource, LinkStatus, now_ms
from provisioning.values import Value

RETRYABLE = (ProviderUnavailable, ProviderTimeout, RateLimited, UnknownOutcome)
# A lease lasts until the invocation ends and this long after: clocks of two hosts may differ.
LEASE_MARGIN_S = 5.0
# How long after a link the same external_id with another payload is a conflict (after it: an
# answer from the link, like any repeat).
CONFLICT_WINDOW_S = 3600.0


def fingerprint_of(request: CreateRequest) -> str:
    """A hash of the whole request payload (its canonical JSON): two requests of one external_id
    with different payloads have different fingerprints. Stored instead of the payload."""
    canonical = json.dumps(
        request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class CreateOperation[RequestT: CreateRequest](Protocol):
    """One provider's create: the only provider-specific part of provisioning a person."""

    provider: str

    def create(self, request: RequestT) -> tuple[ProviderUser, LinkSource]:
        """Create the person (or, when the provider says it already knows them, find them: only a
        provider user that provably belongs to this person is returned, else Conflict)."""
        ...

    def can_look_up(self, request: RequestT) -> bool:
        """Whether ``find_existing`` can find this person at all (else an unknown outcome is held)."""
        ...

    def find_existing(self, request: RequestT, since: datetime) -> ProviderUser | None:
        """Look the person up after an unknown outcome; ``since`` is when the first create was sent.
        Only a provider user that provably belongs to this person is returned."""
        ...


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Provisioner[RequestT: CreateRequest]:
    def __init__(
        self,
        operation: CreateOperation[RequestT],
        store: Links,
        policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        seal: Callable[[dict[str, str]], dict[str, str]] | None = None,
        on_provider_error: Callable[[ProviderError], None] | None = None,
        call_timeout: float = Timeouts().total,
        conflict_window: float = CONFLICT_WINDOW_S,
    ) -> None:
        self.operation = operation
        self.store = store
        self.policy = policy
        self._sleep = sleep
        self._seal = seal
        self._on_provider_error = on_provider_error
        self.call_timeout = call_timeout
        self.conflict_window = conflict_window

    @property
    def provider(self) -> str:
        return self.operation.provider

    def provision(self, request: RequestT, deadline: Deadline) -> ProvisionResult:
        """Provision one person; every provider call starts only while ``deadline`` covers it."""
        with within(deadline):
            return self._provision(request, deadline)

    def _provision(self, request: RequestT, deadline: Deadline) -> ProvisionResult:
        lease = Lease(
            owner=uuid.uuid4().hex,
            until=now_ms() + int((deadline.ends_in() + LEASE_MARGIN_S) * 1000),
            fingerprint=fingerprint_of(request),
        )
        pending = self.store.mark_pending(self.provider, request.external_id, lease)
        if pending.link.status == LinkStatus.LINKED:
            return self._replay(pending.link, lease)
        state = _Attempt(pending.link, pending.may_exist)
        try:
            return self._attempts(request, deadline, lease, state)
        except BaseException:
            self._release(state)
            raise

    def _attempts(
        self, request: RequestT, deadline: Deadline, lease: Lease, state: _Attempt
    ) -> ProvisionResult:
        """The attempt's calls, retried while the invocation has room; ``state`` follows what is
        stored and whether a create of this person may exist without a link."""
        must_reconcile = state.may_exist  # an earlier create may have reached the provider
        first_sent = _parse_time(state.link.created_at)

        attempt = 0
        while True:
            try:
                if must_reconcile:
                    if not self.operation.can_look_up(request):
                        raise UnknownOutcomeHeld(
                            f"an earlier {self.provider} create's outcome is unknown and {self.provider} "
                            "offers no lookup for this person: an operator must check before it is retried",
                            provider=self.provider,
                        )
                    found = self.operation.find_existing(request, first_sent)
                    if found is not None:
                        return self._link(request, found, LinkSource.RECONCILED, state.link)
                    must_reconcile = state.may_exist = False
                if attempt > 0:  # a retry: still not linked by a concurrent delivery?
                    again = self.store.mark_pending(self.provider, request.external_id, lease)
                    if again.link.status == LinkStatus.LINKED:
                        return self._replay(again.link, lease)
                    if again.link.attempts != state.link.attempts + 1:  # another attempt ran meanwhile
                        must_reconcile = state.may_exist = must_reconcile or again.may_exist
                    state.link = again.link
                user, source = self.operation.create(request)
                state.may_exist = state.may_exist or source == LinkSource.CREATED
                return self._link(request, user, source, state.link)
            except UnknownOutcome as exc:
                must_reconcile = state.may_exist = True
                self._note(exc)
                error: ProvisioningError = exc
            except RETRYABLE as exc:
                self._note(exc)
                error = exc
            except UnknownOutcomeHeld:
                raise  # the claim is released; the pending record keeps its unknown flag
            except ProviderError as exc:  # final: rejected, refused credentials
                self._note(exc)
                raise
            attempt += 1
            retry_after = error.retry_after if isinstance(error, RateLimited) else None
            delay = self.policy.delay(attempt, retry_after)
            waits_too_long = retry_after is not None and retry_after > self.policy.max_delay
            if (
                attempt >= self.policy.max_attempts
                or waits_too_long
                or not deadline.allows(delay + self.call_timeout)
            ):
                raise error  # a queued record goes back to SQS (after retry_after, when known)
            logger.info(
                "retrying provider call",
                extra={
                    "provider": self.provider,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "code": error.code,
                },
            )
            self._sleep(delay)

    def _replay(self, link: Link, lease: Lease) -> ProvisionResult:
        """The answer to a person found linked: already provisioned, or a conflict when the link was
        made lately for another payload (a link without a fingerprint predates them: a repeat)."""
        if link.fingerprint and link.fingerprint != lease.fingerprint:
            linked_for = (datetime.now(UTC) - _parse_time(link.updated_at)).total_seconds()
            if linked_for < self.conflict_window:
                raise Conflict(
                    "this external_id was already requested with a different payload", provider=self.provider
                )
        return self._result(link, "already_provisioned")

    def _release(self, state: _Attempt) -> None:
        """This attempt ends without a link: drop its lease and, when it knows no create of this
        person exists, say so, so the next attempt creates without reconciling (or holding) first.
        Best effort: a lease not released expires with the invocation."""
        try:
            self.store.release(
                self.provider, state.link.external_id, state.link.attempts, settled=not state.may_exist
            )
        except Exception:
            logger.warning("could not release the claim; it expires with the invocation")

    def _note(self, error: ProviderError) -> None:
        if isinstance(error, RateLimited) and not error.sent:
            return  # our own budget said wait: nothing went wrong at the provider
        if self._on_provider_error is not None:
            self._on_provider_error(error)

    def _link(
        self, request: RequestT, user: ProviderUser, source: LinkSource, pending: Link
    ) -> ProvisionResult:
        """Store the link, keeping the pending record's history (``pending``: as last written by
        this invocation, so no extra read is needed)."""
        if source != LinkSource.CREATED:
            owner = self.store.owner_of(self.provider, user.provider_user_id)
            if owner is not None and owner != request.external_id:
                raise Conflict(
                    f"this {self.provider} user is already linked to another person; not linked",
                    provider=self.provider,
                )
        sealed = self._seal(user.sealed) if (self._seal and user.sealed) else {}
        candidate = Link(
            external_id=request.external_id,
            provider=self.provider,
            provider_user_id=user.provider_user_id,
            source=source,
            details=user.details,
            sealed=sealed,
            created_at=pending.created_at,
            attempted_at=pending.attempted_at,
            attempts=pending.attempts,
            fingerprint=pending.fingerprint,
        )
        stored, wrote = self.store.save_link(candidate)
        if not wrote:
            return self._result(stored, "already_provisioned")
        outcome = {
            LinkSource.CREATED: "created",
            LinkSource.EXISTING: "linked_existing",
            LinkSource.RECONCILED: "reconciled",
            LinkSource.SYNCED: "linked_existing",
            LinkSource.RESOLVED: "linked_existing",
        }[source]
        return self._result(stored, outcome)

    def _result(self, link: Link, outcome: str) -> ProvisionResult:
        return ProvisionResult.model_validate(
            {
                "provider": link.provider,
                "external_id": link.external_id,
                "provider_user_id": link.provider_user_id,
                "outcome": outcome,
                "details": link.details,
            }
        )


class _Attempt(Value):
    """What one invocation's attempt knows: the pending record as it last wrote it, and whether a
    create of this person may exist without a link."""

    __slots__ = ("link", "may_exist")
    link: Link
    may_exist: bool

    def __init__(self, link: Link, may_exist: bool) -> None:
        self.link = link
        self.may_exist = may_exist
