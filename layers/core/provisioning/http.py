"""HTTP plumbing shared by every provider client: one pooled session per container, a total
deadline per call, bodies read up to a cap, no redirects, transport failures and statuses mapped to
the hub's errors (with the provider's free text left behind), and the retry policy.

A URL may be a credential (Validic Inform's organization token travels in the query string): no
query string ever reaches a log line (``QueryStringRedactor`` on the loggers of urllib3 and requests,
which log every request's URL at DEBUG), and no error this module raises carries a URL or the
transport exception that held one.

What a provider answers is untrusted. A call is bounded in time as a whole (connect, headers and
the whole body), not per socket read, so a provider that trickles or hangs cannot hold an
invocation past its deadline; a body is read up to ``MAX_BODY_BYTES``; a redirect is an error, so a
credential never leaves for a host other than the configured base URL.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import requests
import urllib3.exceptions
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError

from provisioning.errors import (
    CallNotStarted,
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.observability import metrics
from provisioning.values import FrozenValue

USER_AGENT = "provisioner/0.1 (+python-requests)"
MAX_BODY_BYTES = 1024 * 1024  # a larger provider answer counts as malformed
RETRY_AFTER_MAX_S = 3600.0  # a provider's Retry-After is clamped to this


# -- no query string in a log line ----------------------------------------------------------------
# ``?name=value&name=value`` inside any text: each value is replaced, the names are kept.
_QUERY_VALUE = re.compile(r"([?&][^=&?#\s\"']{1,128}=)[^&#\s\"']++")
REDACTED = "[redacted]"
# The loggers of the HTTP stack that write request URLs (urllib3's connection pool logs
# '"GET /path?token=... HTTP/1.1" 200' at DEBUG; its retry and redirect messages name the URL too).
URL_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
    "requests",
)


def redact_query(text: str) -> str:
    """``text`` with the value of every query-string parameter it holds replaced by ``[redacted]``."""
    return _QUERY_VALUE.sub(rf"\1{REDACTED}", text) if "=" in text else text


def _redact_arg(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bytes, bytearray)):
        return redact(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, (int, float)) or value is None:
        return value
    return redact(str(value))  # e.g. an exception or a Retry: what it prints, redacted


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, arguments and traceback with ``redact`` before any handler
    sees it. Installed on a logger, it applies to the records logged there."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.msg if isinstance(record.msg, str) else str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg, self.redact) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(value, self.redact) for key, value in record.args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_in(redacting: RedactingFilter, *logger_names: str) -> None:
    """Install ``redacting`` on these loggers (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if redacting not in target.filters:
            target.addFilter(redacting)


QUERY_STRINGS = RedactingFilter(redact_query)


def redact_urls_in(*logger_names: str) -> None:
    """Keep query strings out of these loggers' records. The HTTP stack's are covered on import; a
    provider whose client logs URLs through another library adds that library's loggers."""
    redact_in(QUERY_STRINGS, *logger_names)


redact_urls_in(*URL_LOGGERS)


# -- a total deadline per call ---------------------------------------------------------------------
# The deadline (time.monotonic()) of the provider call in progress on this thread. Sockets of the
# provider pool bound every read and write by it, so the whole call ends by then.
_call = threading.local()


class _DeadlineSocket:
    """A connected socket whose every read and write is bounded by the calling thread's deadline
    (urllib3 and http.client time out per socket operation, so a trickle never times out)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._timeout: float | None = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _bound(self) -> None:
        end: float | None = getattr(_call, "deadline", None)
        if end is None:
            self._sock.settimeout(self._timeout)
            return
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("provider call deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return int(self._sock.recv_into(buffer, nbytes, flags))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return bytes(self._sock.recv(bufsize, flags))

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return int(self._sock.send(data, flags))

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        self._sock.sendall(data, flags)

    def makefile(self, mode: str = "r", buffering: int | None = None, **kw: Any) -> Any:
        if mode != "rb":
            return self._sock.makefile(mode, buffering, **kw)
        # As socket.makefile("rb"), but reading through this wrapper's bounded recv_into.
        self._sock._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"), io.DEFAULT_BUFFER_SIZE)  # type: ignore[arg-type]


class _DeadlineHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


def new_session(pool_size: int = 16) -> requests.Session:
    session = requests.Session()
    adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


# -- the invocation's deadline ---------------------------------------------------------------------
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

    def allows(self, seconds: float) -> bool:
        return self.remaining() > seconds

    def ends_in(self) -> float:
        """Seconds until the invocation itself ends (no margin)."""
        return self.remaining() + self._margin


_invocation: ContextVar[Deadline | None] = ContextVar("provisioning_invocation_deadline", default=None)


@contextmanager
def within(deadline: Deadline) -> Iterator[Deadline]:
    """Provider calls made inside this block (on this thread) start only while ``deadline`` still
    covers their full call deadline."""
    token = _invocation.set(deadline)
    try:
        yield deadline
    finally:
        _invocation.reset(token)


# -- what a provider answers -----------------------------------------------------------------------
def _never_sent(exc: BaseException) -> bool:
    """True when the connection failed before the request left (so nothing can have happened)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


_DELAY_SECONDS = re.compile(r"\d{1,15}(?:\.\d{1,6})?")


def _clamp(seconds: float) -> float:
    return min(RETRY_AFTER_MAX_S, max(0.0, seconds))


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``X-RateLimit-Reset``
    (Unix time, or seconds when small), clamped to [0, RETRY_AFTER_MAX_S]; anything else is
    ignored (``inf``, ``soon``, ``-5``...)."""
    now = time.time() if now is None else now
    value = (headers.get("Retry-After") or "").strip()
    if _DELAY_SECONDS.fullmatch(value):
        return _clamp(float(value))
    if value and len(value) <= 64:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return _clamp(parsed.timestamp() - now)
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if _DELAY_SECONDS.fullmatch(reset):
        moment = float(reset)
        return _clamp(moment - now if moment > 1e9 else moment)
    return None


def read_json(response: requests.Response) -> Any:
    """The answer's JSON, or ValueError for anything else (including nesting too deep to parse)."""
    try:
        return json.loads(response.content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class ErrorVocabulary(FrozenValue):
    """What of a provider's error answers may travel (to API answers, logs, metrics, DLQ reports):
    the exact messages and the error codes it documents. Anything else it says is free text that
    may echo personal data, and is left behind."""

    __slots__ = ("codes", "messages")
    messages: frozenset[str]
    codes: frozenset[str]

    def __init__(self, messages: frozenset[str] = frozenset(), codes: frozenset[str] = frozenset()) -> None:
        object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "codes", codes)

    def message(self, text: str | None) -> str | None:
        if not text:
            return None
        wanted = text.strip().casefold()
        return next((known for known in self.messages if known.casefold() == wanted), None)

    def code(self, code: str | None) -> str | None:
        return code if code in self.codes else None


NO_VOCABULARY = ErrorVocabulary()


def _status_text(provider: str, status: int) -> str:
    if status in (401, 403):
        return f"{provider} refused our credentials ({status})"
    if status == 429:
        return f"{provider} rate limit reached (429)"
    if status == 400:
        return f"{provider} rejected the request as malformed (400)"
    if status == 404:
        return f"{provider} answered not found (404)"
    if status == 409:
        return f"{provider} reports a conflict (409)"
    if status == 422:
        return f"{provider} rejected the person's data (422)"
    if status >= 500:
        return f"{provider} failed ({status})"
    return f"{provider} rejected the request ({status})"


def raise_for_status(
    provider: str,
    response: requests.Response,
    *,
    write: bool,
    messages: Sequence[str] = (),
    provider_code: str | None = None,
    vocabulary: ErrorVocabulary = NO_VOCABULARY,
) -> None:
    """Map a provider's error status to a hub error. Its message is a fixed text per status, plus
    the first of the provider's ``messages`` that ``vocabulary`` lists; its code only when listed."""
    status = response.status_code
    if status < 400:
        return
    known = next((k for k in map(vocabulary.message, messages) if k), None)
    text = _status_text(provider, status) + (f": {known}" if known else "")
    kw: dict[str, Any] = {
        "provider": provider,
        "status": status,
        "provider_code": vocabulary.code(provider_code),
    }
    error: ProviderError
    if status == 429:
        error = RateLimited(text, retry_after=retry_after_seconds(response.headers), **kw)
    elif status in (401, 403):
        error = ProviderAuthFailed(text, **kw)
    elif status >= 500 and write:
        error = UnknownOutcome(f"{text} while creating: the person may exist", **kw)
    elif status == 504:
        error = ProviderTimeout(text, **kw)
    elif status >= 500:
        error = ProviderUnavailable(text, **kw)
    else:
        error = ProviderRejected(text, **kw)
    raise error


def error_texts(response: requests.Response, *fields: str) -> list[str]:
    """The strings under ``fields`` in a JSON error body (a field may hold a list of strings)."""
    if response.status_code < 400:
        return []
    try:
        body = read_json(response)
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    texts: list[str] = []
    for name in fields:
        value = body.get(name)
        values = value if isinstance(value, list) else [value]
        texts.extend(v for v in values if isinstance(v, str) and v)
    return texts


def malformed(provider: str, what: str, *, write: bool, status: int | None = None) -> ProviderError:
    """A provider answer that is not a clean, complete, parseable success: after a create the
    person may exist (unknown outcome); after a read, the provider is unusable for now."""
    if write:
        return UnknownOutcome(
            f"{provider} answered a create with {what}: the person may exist",
            provider=provider,
            status=status,
        )
    return ProviderUnavailable(f"{provider} answered {what}", provider=provider, status=status)


def parse_answer[M: BaseModel](
    provider: str, model: type[M], response: requests.Response, *, write: bool
) -> M:
    """A provider's JSON answer as ``model``; anything else is ``malformed``."""
    try:
        return model.model_validate(read_json(response))
    except (ValueError, ValidationError):
        raise malformed(provider, "a malformed body", write=write, status=response.status_code) from None


# -- sending ---------------------------------------------------------------------------------------
class Timeouts(FrozenValue):
    __slots__ = ("connect", "read", "total")
    connect: float  # to open a connection
    read: float  # for any one socket read
    total: float  # for the whole call: connect, headers and the whole body

    def __init__(self, connect: float = 3.05, read: float = 10.0, total: float = 10.0) -> None:
        object.__setattr__(self, "connect", connect)
        object.__setattr__(self, "read", read)
        object.__setattr__(self, "total", total)


class SecretGetter[S](Protocol):
    """A provider's secret; ``refresh=True`` bypasses the cache (after a 401/403)."""

    def __call__(self, refresh: bool = False) -> S: ...


def with_fresh_secret[S](
    secret: SecretGetter[S], send: Callable[[S], requests.Response]
) -> requests.Response:
    """Send with the cached secret; on a 401/403 read the secret again, bypassing the cache, and
    send once more if it changed (a rotated credential heals within one call)."""
    current = secret()
    response = send(current)
    if response.status_code in (401, 403):
        fresh = secret(refresh=True)
        if fresh != current:
            response = send(fresh)
    return response


class _TooLarge(Exception):
    pass


def _read_capped(response: requests.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class ProviderHttp:
    """Sends requests to one provider and turns transport failures into hub errors."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        session: requests.Session,
        timeouts: Timeouts = Timeouts(),
        before_request: Callable[[], None] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeouts = timeouts
        self._before_request = before_request
        self.max_body_bytes = max_body_bytes

    @property
    def call_timeout(self) -> float:
        return self._timeouts.total

    def _budget(self) -> float:
        """This call's deadline in seconds: its full total, which the invocation must still cover."""
        deadline = _invocation.get()
        total = self._timeouts.total
        if deadline is not None and deadline.remaining() < total:
            raise CallNotStarted(
                f"{self.provider}: too little time left in this invocation for another call",
                provider=self.provider,
            )
        return total

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
        """Send one request and read its whole answer within the call's deadline. ``write`` marks a
        request that changes state at the provider: an answer lost after it was sent leaves an
        unknown outcome instead of a plain retryable failure."""
        budget = self._budget()
        if self._before_request is not None:
            self._before_request()
        started = time.monotonic()
        previous = getattr(_call, "deadline", None)
        _call.deadline = started + budget
        response: requests.Response | None = None
        # Raised after the handlers: requests' and urllib3's exceptions hold the URL (with its query
        # string), so the error raised must not keep them as its context.
        failure: ProviderError | None = None
        try:
            response = self._session.request(
                method,
                f"{self.base_url}{path}",
                json=json,
                params=params,
                headers=dict(headers or {}),
                timeout=(min(self._timeouts.connect, budget), min(self._timeouts.read, budget)),
                allow_redirects=False,
                stream=True,
            )
            if response.is_redirect or 300 <= response.status_code < 400:
                raise self._redirected(response.status_code, write)
            response._content = _read_capped(response, self.max_body_bytes)
            metrics.add_metric(
                name="ProviderLatency",
                unit=MetricUnit.Milliseconds,
                value=(time.monotonic() - started) * 1000,
            )
            return response
        except ProviderError:
            raise
        except _TooLarge:
            failure = malformed(
                self.provider,
                f"a body over {self.max_body_bytes} bytes",
                write=write,
                status=response.status_code if response is not None else None,
            )
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                OSError, ValueError) as exc:  # fmt: skip
            failure = self._failed(exc, write, timed_out=time.monotonic() - started >= budget)
        finally:
            _call.deadline = previous
            if response is not None and not getattr(response, "_content_consumed", True):
                response.close()  # never hand a half-read connection back to the pool
        assert failure is not None  # every handler that does not raise sets it
        raise failure

    def _redirected(self, status: int, write: bool) -> ProviderError:
        what = f"a redirect ({status}), which is not followed"
        if write:
            return malformed(self.provider, what, write=True, status=status)
        return ProviderUnavailable(
            f"{self.provider} answered {what}: check {self.provider.upper()}_BASE_URL",
            provider=self.provider,
            status=status,
        )

    def _failed(self, exc: BaseException, write: bool, timed_out: bool) -> ProviderError:
        p = self.provider
        if _never_sent(exc):
            return ProviderUnavailable(f"{p} could not be reached", provider=p)
        timeout = timed_out or isinstance(exc, (requests.exceptions.Timeout, TimeoutError))
        if write:
            what = "did not answer in time" if timeout else "did not answer completely"
            return UnknownOutcome(f"{p} {what} after a create was sent: the person may exist", provider=p)
        if timeout:
            return ProviderTimeout(f"{p} did not answer in time", provider=p)
        return ProviderUnavailable(f"{p} did not answer completely ({type(exc).__name__})", provider=p)


# -- retries ---------------------------------------------------------------------------------------
class RetryPolicy(FrozenValue):
    """Bounded exponential backoff with full jitter, kept inside the invocation's remaining time."""

    __slots__ = ("base_delay", "max_attempts", "max_delay")
    max_attempts: int
    base_delay: float
    max_delay: float

    def __init__(self, max_attempts: int = 4, base_delay: float = 0.2, max_delay: float = 5.0) -> None:
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "base_delay", base_delay)
        object.__setattr__(self, "max_delay", max_delay)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))
        if retry_after is not None:
            return max(retry_after, backoff)
        return backoff
