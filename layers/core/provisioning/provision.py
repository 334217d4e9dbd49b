"""The provisioning engine shared by every create operation.

For one (provider, external_id) it makes sure the person exists once at the provider and is linked
once in our table:
  1. mark the person pending, in one conditional write that also answers what was stored:
     already linked -> answer without calling the provider;
  2. pending before (an earlier create's outcome is unknown) -> reconcile with the provider's lookup;
  3. create, then store the link with a conditional write;
  4. transient failures are retried with jittered backoff inside the invocation's time; a lost
     answer is never retried blindly: the next attempt reconciles first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from provisioning.errors import (
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.http import Deadline, RetryPolicy
from provisioning.models import CreateRequest, ProviderUser, ProvisionResult
from provisioning.observability import logger
from provisioning.store import Link, LinkSource, LinkStatus, LinkStore

RETRYABLE = (ProviderUnavailable, ProviderTimeout, RateLimited, UnknownOutcome)


class CreateOperation[RequestT: CreateRequest](Protocol):
    """One provider's create: the only provider-specific part of provisioning a person."""

    provider: str

    def create(self, request: RequestT) -> tuple[ProviderUser, LinkSource]:
        """Create the person (or, when the provider says it already knows them, find them)."""
        ...

    def find_existing(self, request: RequestT, since: datetime) -> ProviderUser | None:
        """Look the person up after an unknown outcome; ``since`` is when the first create was sent."""
        ...


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Provisioner[RequestT: CreateRequest]:
    def __init__(
        self,
        operation: CreateOperation[RequestT],
        store: LinkStore,
        policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        seal: Callable[[dict[str, str]], dict[str, str]] | None = None,
        on_provider_error: Callable[[ProviderError], None] | None = None,
    ) -> None:
        self.operation = operation
        self.store = store
        self.policy = policy
        self._sleep = sleep
        self._seal = seal
        self._on_provider_error = on_provider_error

    @property
    def provider(self) -> str:
        return self.operation.provider

    def provision(self, request: RequestT, deadline: Deadline) -> ProvisionResult:
        link = self.store.mark_pending(self.provider, request.external_id)
        if link.status == LinkStatus.LINKED:
            return self._result(link, "already_provisioned")
        # An earlier attempt left the person pending: its create may have reached the provider.
        must_reconcile = link.attempts > 1
        first_sent = _parse_time(link.created_at)

        attempt = 0
        while True:
            try:
                if must_reconcile:
                    found = self.operation.find_existing(request, first_sent)
                    if found is not None:
                        return self._link(request, found, LinkSource.RECONCILED, link)
                    must_reconcile = False
                if attempt > 0:  # a retry: still not linked by a concurrent delivery?
                    link = self.store.mark_pending(self.provider, request.external_id)
                    if link.status == LinkStatus.LINKED:
                        return self._result(link, "already_provisioned")
                user, source = self.operation.create(request)
                return self._link(request, user, source, link)
            except UnknownOutcome as exc:
                must_reconcile = True
                self._note(exc)
                error: ProviderError = exc
            except RETRYABLE as exc:
                self._note(exc)
                error = exc
            except ProviderError as exc:  # final: rejected input, refused credentials
                self._note(exc)
                raise
            attempt += 1
            retry_after = error.retry_after if isinstance(error, RateLimited) else None
            delay = self.policy.delay(attempt, retry_after)
            waits_too_long = retry_after is not None and retry_after > self.policy.max_delay
            if attempt >= self.policy.max_attempts or waits_too_long or not deadline.allows(delay + 1.0):
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

    def _note(self, error: ProviderError) -> None:
        if self._on_provider_error is not None:
            self._on_provider_error(error)

    def _link(
        self, request: RequestT, user: ProviderUser, source: LinkSource, pending: Link
    ) -> ProvisionResult:
        """Store the link, keeping the pending record's history (``pending``: as last written by
        this invocation, so no extra read is needed)."""
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
        )
        stored, wrote = self.store.save_link(candidate)
        if not wrote:
            return self._result(stored, "already_provisioned")
        outcome = {
            LinkSource.CREATED: "created",
            LinkSource.EXISTING: "linked_existing",
            LinkSource.RECONCILED: "reconciled",
            LinkSource.SYNCED: "linked_existing",
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
