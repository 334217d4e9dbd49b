"""Every failure the hub knows, with what it means for an API caller and for a queued record.

One place decides the HTTP status and whether a queued record should be retried later
(``transient``) or dead-lettered at once (permanent). Messages never carry request values:
they may be returned to callers and written to the dead-letter queue.
"""

from __future__ import annotations

import math
from typing import Any

from provisioning.values import Value


class FieldError(Value):
    __slots__ = ("field", "message")
    field: str
    message: str

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ProvisioningError(Exception):
    """Base of every expected failure."""

    code = "error"
    http_status = 500
    transient = False

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.provider:
            error["provider"] = self.provider
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}

    def report(self) -> dict[str, Any]:
        """What an operator needs to decide about a failed record (no personal data)."""
        report: dict[str, Any] = {"code": self.code, "message": self.message, "transient": self.transient}
        if self.provider:
            report["provider"] = self.provider
        return report


class ConfigurationError(ProvisioningError):
    """The deployment is misconfigured (missing variable, malformed secret)."""

    code = "configuration_error"
    http_status = 500
    transient = True  # fixing the configuration and retrying the record is the remedy


class InvalidRequest(ProvisioningError):
    """The caller's input is wrong; the field(s) are named."""

    code = "validation_error"
    http_status = 422

    def __init__(self, errors: list[FieldError], *, status: int = 422, code: str | None = None) -> None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
        super().__init__(summary)
        self.errors = errors
        self.http_status = status
        if code:
            self.code = code

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["fields"] = [e.as_dict() for e in self.errors]
        return body

    def report(self) -> dict[str, Any]:
        report = super().report()
        report["fields"] = [e.as_dict() for e in self.errors]
        return report


class Conflict(ProvisioningError):
    """The same person was already requested with a different payload, or the provider user found
    for this person provably belongs to someone else (never linked to two people)."""

    code = "conflict"
    http_status = 409


class InProgress(ProvisioningError):
    """Another delivery of the same person is being provisioned right now."""

    code = "in_progress"
    http_status = 409
    transient = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class ProviderError(ProvisioningError):
    """Base for failures that come from a provider."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.provider_code = provider_code

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.status is not None:
            body["error"]["provider_status"] = self.status
        return body

    def report(self) -> dict[str, Any]:
        report = super().report()
        report["provider_status"] = self.status
        if self.provider_code:
            report["provider_code"] = self.provider_code
        return report


class ProviderRejected(ProviderError):
    """The provider refused the request (a 4xx other than auth and rate limit): final."""

    code = "provider_rejected"
    http_status = 422


class ProviderAuthFailed(ProviderError):
    """The provider refused our credentials: an operator must fix the secret."""

    code = "provider_auth_failed"
    http_status = 502
    transient = True


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered 5xx before doing anything."""

    code = "provider_unavailable"
    http_status = 502
    transient = True


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    code = "provider_timeout"
    http_status = 504
    transient = True


class UnknownOutcome(ProviderError):
    """A create was sent but no clean, complete, parseable success came back (lost, cut off, late,
    redirected, HTML, without the id...): the person may exist at the provider.

    It must be reconciled with the provider's lookup before any new create is sent.
    """

    code = "provider_unknown_outcome"
    http_status = 504
    transient = True


class UnknownOutcomeHeld(ProviderError):
    """An earlier create's outcome is unknown and the provider offers no lookup that could find
    this person: it is held for an operator, never created a second time."""

    code = "unknown_outcome"
    http_status = 502


class CallNotStarted(ProviderError):
    """Too little of the invocation is left for one more provider call's full deadline: the call
    was not sent (a queued record is retried by a later invocation)."""

    code = "provider_timeout"
    http_status = 504
    transient = True


class RateLimited(ProviderError):
    """The provider (or our shared limiter) asks us to wait."""

    code = "provider_rate_limited"
    http_status = 429
    transient = True

    def __init__(
        self, message: str, *, provider: str, retry_after: float | None = None, sent: bool = True, **kw: Any
    ) -> None:
        super().__init__(message, provider=provider, **kw)
        self.retry_after = retry_after
        self.sent = sent  # False: our own budget refused it before anything was sent

    def headers(self) -> dict[str, str]:
        if self.retry_after is None or not math.isfinite(self.retry_after):
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class WaitedTooLong(ProvisioningError):
    """A queued record waited for a request slot longer than the deployment allows
    (``RATE_LIMIT_MAX_WAIT_SECONDS``): dead-lettered, to be redriven when the backlog is smaller."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, provider: str, waited_seconds: float) -> None:
        super().__init__(message, provider=provider)
        self.waited_seconds = waited_seconds

    def report(self) -> dict[str, Any]:
        report = super().report()
        report["waited_seconds"] = round(self.waited_seconds)
        return report
