"""HTTP plumbing shared by every provider client: one pooled session per container, explicit
timeouts, transport failures and statuses mapped to the hub's errors, and the retry policy."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from provisioning.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.observability import metrics
from provisioning.privacy import redact

USER_AGENT = "provisioner/0.1 (+python-requests)"


def new_session(pool_size: int = 16) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection failed before the request left (so nothing can have happened)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset`` (Unix time)."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.05
    read: float = 10.0


class ProviderHttp:
    """Sends requests to one provider and turns transport failures into hub errors."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        session: requests.Session,
        timeouts: Timeouts = Timeouts(),
        before_request: Callable[[], None] | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeouts = timeouts
        self._before_request = before_request

    def send(
        self,
        method: str,
        path: str,
        *,
        write: bool,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request. ``write`` marks a request that changes state at the provider: losing
        its answer leaves an unknown outcome instead of a plain retryable failure."""
        if self._before_request is not None:
            self._before_request()
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                f"{self.base_url}{path}",
                json=json,
                params=params,
                headers=dict(headers or {}),
                timeout=(self._timeouts.connect, self._timeouts.read),
            )
            metrics.add_metric(
                name="ProviderLatency",
                unit=MetricUnit.Milliseconds,
                value=(time.monotonic() - started) * 1000,
            )
            return response
        except requests.exceptions.ConnectionError as exc:
            if _never_sent(exc):
                raise ProviderUnavailable(
                    f"{self.provider} could not be reached", provider=self.provider
                ) from None
            if write:
                raise UnknownOutcome(
                    f"{self.provider} dropped the connection after the request was sent",
                    provider=self.provider,
                ) from None
            raise ProviderUnavailable(
                f"{self.provider} dropped the connection", provider=self.provider
            ) from None
        except requests.exceptions.Timeout:
            if write:
                raise UnknownOutcome(
                    f"{self.provider} did not answer in time after the request was sent",
                    provider=self.provider,
                ) from None
            raise ProviderTimeout(f"{self.provider} did not answer in time", provider=self.provider) from None
        except requests.exceptions.RequestException as exc:
            raise ProviderUnavailable(
                f"{self.provider} request failed: {type(exc).__name__}", provider=self.provider
            ) from None


def raise_for_status(
    provider: str,
    response: requests.Response,
    *,
    write: bool,
    message: str | None,
    provider_code: str | None = None,
) -> None:
    """Map a provider's error status to a hub error carrying the provider's (redacted) message."""
    status = response.status_code
    if status < 400:
        return
    text = redact(message or response.reason or f"HTTP {status}")
    kw: dict[str, Any] = {"provider": provider, "status": status, "provider_code": provider_code}
    error: ProviderError
    if status == 429:
        error = RateLimited(
            f"{provider} rate limit: {text}", retry_after=retry_after_seconds(response.headers), **kw
        )
    elif status in (401, 403):
        error = ProviderAuthFailed(f"{provider} refused our credentials: {text}", **kw)
    elif status >= 500 and write:
        error = UnknownOutcome(f"{provider} failed while creating ({status}): {text}", **kw)
    elif status == 504:
        error = ProviderTimeout(f"{provider} timed out: {text}", **kw)
    elif status >= 500:
        error = ProviderUnavailable(f"{provider} is unavailable ({status}): {text}", **kw)
    else:
        error = ProviderRejected(f"{provider} rejected the request: {text}", **kw)
    raise error


def error_message(response: requests.Response, *fields: str) -> str | None:
    """The first non-empty of ``fields`` in a JSON error body, if the body is a JSON object."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return next((str(body[f]) for f in fields if body.get(f)), None)


def parse_answer[M: BaseModel](provider: str, model: type[M], response: requests.Response) -> M:
    """A provider's JSON answer as ``model``; a malformed one is an unavailable provider."""
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError):
        raise ProviderUnavailable(f"{provider} answered a malformed body", provider=provider) from None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, kept inside the invocation's remaining time."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    safety_margin: float = 3.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))
        if retry_after is not None:
            return max(retry_after, backoff)
        return backoff


class Deadline:
    """The time an invocation has left, less a margin to answer and record failures."""

    def __init__(self, remaining_ms: Callable[[], int] | None, margin: float = 3.0) -> None:
        self._remaining_ms = remaining_ms
        self._margin = margin
        self._fallback_end = time.monotonic() + 25.0

    def remaining(self) -> float:
        if self._remaining_ms is None:
            return self._fallback_end - time.monotonic() - self._margin
        return self._remaining_ms() / 1000.0 - self._margin

    def allows(self, delay: float) -> bool:
        return self.remaining() > delay
