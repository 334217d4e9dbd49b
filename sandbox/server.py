"""A small threaded HTTP server that hosts every provider emulator under its own path prefix
(``/palenca/v1/users`` ...), records the calls it served and can inject faults.

Faults are drawn per request from each provider's :class:`Faults` (seeded probabilities) or scripted
for the next requests to one route with :meth:`Sandbox.script_fault`. Besides slow answers, 5xx, 429
and dropped connections, the sandbox can behave like a hostile provider:

* before the emulator does anything (nothing is created): ``hang`` (never answer), ``redirect`` (to
  the *thief*, a second loopback server recording whatever reaches it), ``odd_retry_after`` (429 with
  a malformed ``Retry-After``), ``pii_error`` (an error message full of personal data) and
  ``oversize_error`` (a huge 500, streamed);
* after the emulator did the work (a write is committed): ``lose_answer`` (drop the connection),
  ``html`` (a proxy's HTML page instead of JSON), ``missing_id`` (success without the user's id),
  ``truncate`` (half the announced body), ``trickle`` (one byte at a time) and ``oversize`` (a huge
  success answer, streamed).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

PII_MESSAGE = (
    "Pepa Pérez Rangel (CURP PEPA900101MDFRRN09), Calle Falsa 123, Col. Centro, pepa.perez@example.com, "
    "+52 55 1234 5678: user could not be processed"
)

# Retry-After values a careless provider (or a proxy in front of it) sends.
ODD_RETRY_AFTER = [
    "inf",
    "nan",
    "soon",
    "-5",
    "1e309",
    "99999999999",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "",
    "3",
]

HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><h1>Bad gateway</h1><p>The upstream server returned an invalid response.</p>\n"
    "<hr><address>nginx</address></body></html>\n"
)

# Faults applied before the emulator runs (nothing happens at the provider) and after it ran (a write
# is committed, its answer is then lost or spoiled). Each has a ``<name>_rate`` in Faults.
BEFORE_WORK = (
    "reset",
    "error",
    "rate_limit",
    "hang",
    "redirect",
    "odd_retry_after",
    "pii_error",
    "oversize_error",
)
AFTER_WORK = ("lose_answer", "html", "missing_id", "truncate", "trickle", "oversize")
FAULT_NAMES = BEFORE_WORK + AFTER_WORK
# The faults a hostile provider adds to the ordinary ones (latency, 5xx, 429, resets, lost answers).
HOSTILE_FAULTS = BEFORE_WORK[3:] + AFTER_WORK[1:]

ID_KEYS = frozenset({"id", "_id", "user_id"})
FREE_TEXT_KEYS = frozenset({"message", "title", "detail", "errors", "description"})
_CHUNK = 64 * 1024
_MARK = "@@sandbox-filler-7f3a9c@@"  # where a streamed body's filler goes


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Padded:
    """A JSON body whose filler (``"xxx…"``, ``fill`` characters at each mark) is streamed in chunks,
    never held in memory whole."""

    def __init__(self, body: Any, fill: int) -> None:
        self.parts = [part.encode() for part in json.dumps(body).split(_MARK)]
        self.fill = max(0, fill)

    @classmethod
    def of_length(cls, body: Any, length: int) -> Padded:
        """``body`` (one mark in it) filled so the whole answer has ``length`` bytes (when it can)."""
        padded = cls(body, 0)
        padded.fill = max(0, length - padded.length)
        return padded

    @property
    def length(self) -> int:
        return sum(len(part) for part in self.parts) + self.fill * (len(self.parts) - 1)

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes | memoryview]:
        filler = memoryview(b"x" * min(size, max(1, self.fill)))
        yield self.parts[0]
        for part in self.parts[1:]:
            left = self.fill
            while left > 0:
                piece = filler[: min(left, len(filler))]
                left -= len(piece)
                yield piece
            yield part


@dataclass
class Delivery:
    """How an answer goes out when not in one piece: ``hang`` (no answer for ``seconds``, then close),
    ``truncate`` (half the announced body, then close) or ``trickle`` (a byte every ``seconds``)."""

    mode: str
    seconds: float = 0.0


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | Padded | None = None  # sent as is instead of ``body`` as JSON
    content_type: str = "application/json"
    delivery: Delivery | None = None

    def payload(self) -> bytes | Padded:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


Handler = Callable[..., Reply]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    write: bool = False  # creates state: "lose the answer" faults apply to it


class ProviderEmulator(Protocol):
    """One provider's API on the sandbox, under ``/<name>/``. ``sandbox/app.py`` lists one per
    registered provider (``provisioning.providers``)."""

    name: str  # the registered provider's name

    def routes(self) -> list[Route]: ...

    def credentials(self) -> dict[str, str]:
        """The secret (the provider's ``<PREFIX>_SECRET_ID`` JSON) this emulator accepts."""
        ...

    def users_for(self, external_id: str) -> int:
        """How many users the provider holds for the person ``external_id``."""
        ...

    def user_ids(self, external_id: str) -> list[str]:
        """The ids (as the hub stores them) of the users the provider holds for ``external_id``."""
        ...

    def create_call(self) -> tuple[str, str]:
        """Method and path (as the sandbox sees it) of the call that creates a user."""
        ...

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        """Body and headers of a create call, authorized, that makes a user :meth:`users_for`
        counts for ``external_id`` (for tests that speak to the sandbox as a plain HTTP client)."""
        ...

    def create_query(self) -> dict[str, str]:
        """The query string of that call: empty, or the credential of a provider that takes it in
        the URL (Validic Inform's organization token)."""
        ...

    def reset(self) -> None: ...

    def error_body(self, status: int, message: str) -> Any: ...

    def without_id(self, body: Any) -> Any: ...


class BudgetedEmulator(ProviderEmulator, Protocol):
    """The emulator of a provider with a registry ``Budget``: it answers 429 past ``budget`` requests
    in each of its windows, as the provider does."""

    budget: int


# The reason phrases providers still send where RFC 9110 renamed them.
_CLASSIC_REASONS = {413: "Request Entity Too Large", 422: "Unprocessable Entity"}


def reason(status: int) -> str:
    if status in _CLASSIC_REASONS:
        return _CLASSIC_REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def drop_ids(body: Any) -> Any:
    """``body`` without the keys that carry a provider user's id (``id``, ``_id``, ``user_id``)."""
    if isinstance(body, dict):
        return {k: drop_ids(v) for k, v in body.items() if k not in ID_KEYS}
    if isinstance(body, list):
        return [drop_ids(v) for v in body]
    return body


def fill_free_text(body: Any, text: str) -> Any:
    """``body`` with every free-text field (message, title, detail, errors, description) set to ``text``."""
    if isinstance(body, dict):
        return {
            k: text if k in FREE_TEXT_KEYS and isinstance(v, str) else fill_free_text(v, text)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [fill_free_text(v, text) for v in body]
    return body


@dataclass
class Faults:
    """Fault injection for one provider (rates are probabilities per request)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # answer 503 without doing anything
    rate_limit_rate: float = 0.0  # answer 429 with rate-limit headers
    reset_rate: float = 0.0  # drop the connection without doing anything
    lose_answer_rate: float = 0.0  # do the work, then drop the connection (writes only)
    seed: int | None = None
    # -- hostile provider, before the work (nothing is created) --
    hang_rate: float = 0.0  # read the request, never answer (for hang_s), then close
    hang_s: float = 60.0
    redirect_rate: float = 0.0  # redirect_status to the same path on the thief
    redirect_status: int = 307
    odd_retry_after_rate: float = 0.0  # 429 with an odd Retry-After (retry_after, or drawn)
    retry_after: str | None = None
    pii_error_rate: float = 0.0  # pii_error_status with PII_MESSAGE in every free-text field
    pii_error_status: int = 422
    oversize_error_rate: float = 0.0  # 500 whose message has oversize_bytes characters (streamed)
    # -- hostile provider, after the work (a write is committed; applies to 2xx answers) --
    html_rate: float = 0.0  # html_status with an HTML page instead of the JSON
    html_status: int = 200
    missing_id_rate: float = 0.0  # the answer without the provider user's id
    truncate_rate: float = 0.0  # full Content-Length, half the body, close
    trickle_rate: float = 0.0  # the body one byte every trickle_interval_s
    trickle_interval_s: float = 2.0
    oversize_rate: float = 0.0  # the answer plus a "padding" string: oversize_bytes in all (streamed)
    oversize_bytes: int = 30 * 1024 * 1024

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def choice(self, options: list[str]) -> str:
        with self._lock:
            return self._random.choice(options)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


FAULT_SETTINGS = frozenset(f.name for f in fields(Faults)) - {"seed"}


class _Settings:
    """A provider's Faults settings with a scripted fault's options over them."""

    def __init__(self, faults: Faults, options: dict[str, Any]) -> None:
        self.faults, self.options = faults, options

    def __getitem__(self, name: str) -> Any:
        return self.options[name] if name in self.options else getattr(self.faults, name)


@dataclass
class Call:
    provider: str
    method: str
    path: str
    status: int
    fault: str | None = None
    at: float = field(default_factory=time.time)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # dropped connections are part of fault injection


class _QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, no access log. Headers and body are written separately: without
    TCP_NODELAY, Nagle's algorithm and the client's delayed ACK hold every second answer on a
    kept-alive connection ~40 ms."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


def _read_request(handler: BaseHTTPRequestHandler) -> Request:
    parts = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length) if length else b""
    return Request(
        method=handler.command,
        path=parts.path,
        query={k: v[-1] for k, v in parse_qs(parts.query).items()},
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=body,
        raw_query=parts.query,
    )


class Thief:
    """Another host on loopback: what reaches it was sent where it should not have gone (a client that
    followed a provider's redirect). Records every request and answers 200 ``{}``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Request]:
        """A snapshot of the requests received so far (method, path, raw_query, headers, body)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="sandbox-thief", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        thief = self

        class _Handler(_QuietHandler):
            def _serve(self) -> None:
                request = _read_request(self)
                with thief._lock:
                    thief._requests.append(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        return _Handler


class Sandbox:
    """All emulators behind one loopback server. Use as a context manager or start()/stop()."""

    def __init__(self, emulators: list[ProviderEmulator], host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulators = {e.name: e for e in emulators}
        self.faults: dict[str, Faults] = {name: Faults() for name in self.emulators}
        self.calls: list[Call] = []
        self.scripted: dict[tuple[str, str], list[Reply]] = {}
        self.scripted_faults: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        self.thief = Thief(host)
        self._lock = threading.Lock()
        self._release = threading.Event()  # set: hanging and trickling answers give up at once
        self._routes = [(name, route) for name, e in self.emulators.items() for route in e.routes()]
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def thief_url(self) -> str:
        return self.thief.url

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def users_for(self, provider: str, external_id: str) -> int:
        """How many users ``provider`` holds for the person ``external_id``."""
        return self.emulators[provider].users_for(external_id)

    def user_ids(self, provider: str, external_id: str) -> list[str]:
        """The ids of the users ``provider`` holds for the person ``external_id``."""
        return self.emulators[provider].user_ids(external_id)

    def start(self) -> Sandbox:
        self.thief.start()
        # Polling for shutdown every 0.1 s (not 0.5 s) keeps stop() prompt.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # hanging handlers close their connection now
        self._server.shutdown()
        self._server.server_close()
        self.thief.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection -----------------------------------------------------------------------------
    def count(self, provider: str, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for c in self.calls
                if c.provider == provider
                and (method is None or c.method == method)
                and (path is None or c.path == path)
            )

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.scripted.clear()
            self.scripted_faults.clear()
            released, self._release = self._release, threading.Event()
        released.set()  # answers hanging or trickling from before the reset give up
        self.thief.clear()
        for name, emulator in self.emulators.items():
            emulator.reset()
            self.faults[name] = Faults()

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``method path`` with these replies (then behave normally)."""
        with self._lock:
            self.scripted.setdefault((method, path), []).extend(replies)

    def _scripted(self, request: Request) -> Reply | None:
        with self._lock:
            queue = self.scripted.get((request.method, request.path))
            return queue.pop(0) if queue else None

    def set_faults(self, provider: str, **settings: Any) -> None:
        self.faults[provider] = Faults(**settings)

    def clear_faults(self) -> None:
        """Drop the scripted faults not yet used (the providers answer normally again)."""
        with self._lock:
            self.scripted_faults.clear()

    def script_fault(
        self, provider: str, method: str, path: str, fault: str, count: int = 1, **options: Any
    ) -> None:
        """Give the next ``count`` requests to ``method path`` (as the sandbox sees it, e.g.
        ``/palenca/v1/users``) the fault ``fault`` (one of FAULT_NAMES), with ``options`` overriding
        the provider's Faults settings for them (``hang_s=5``, ``retry_after="inf"`` ...). Scripted
        faults come before random ones and before replies queued with :meth:`script`; after-work
        ones spoil whatever the emulator answered."""
        if fault not in FAULT_NAMES:
            raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULT_NAMES)}")
        unknown = set(options) - FAULT_SETTINGS
        if unknown:
            raise ValueError(f"unknown fault options: {', '.join(sorted(unknown))}")
        if count < 1:
            raise ValueError("count must be at least 1")
        emulator = self.emulators.get(provider)
        if emulator is None:
            raise KeyError(f"unknown provider {provider!r}")
        if not any(r.method == method and r.pattern.fullmatch(path) for r in emulator.routes()):
            raise ValueError(f"{provider} has no route {method} {path}")
        with self._lock:
            self.scripted_faults.setdefault((method, path), []).extend([(fault, dict(options))] * count)

    def _scripted_fault(self, request: Request) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            queue = self.scripted_faults.get((request.method, request.path))
            return queue.pop(0) if queue else None

    def make_hostile(
        self, rate: float, *, seed: int | None = None, hang_s: float = 15.0, trickle_interval_s: float = 0.5
    ) -> None:
        """Every provider misbehaves: each hostile fault (HOSTILE_FAULTS) at ``rate`` per request,
        hanging ``hang_s`` and trickling a byte every ``trickle_interval_s``. Other faults are cleared."""
        rates = {f"{name}_rate": rate for name in HOSTILE_FAULTS}
        for provider in self.emulators:
            self.set_faults(
                provider, seed=seed, hang_s=hang_s, trickle_interval_s=trickle_interval_s, **rates
            )

    # -- serving --------------------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def dispatch(self, request: Request) -> tuple[Reply | None, str | None]:
        """Returns the reply (None: drop the connection) and the fault applied, if any."""
        if request.path.startswith("/_sandbox/"):
            try:
                return self._admin(request), None
            except (KeyError, TypeError, ValueError) as exc:
                return Reply(400, {"error": str(exc)}), None
        for provider, route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if not match or route.method != request.method:
                continue
            emulator = self.emulators[provider]
            faults = self.faults[provider]
            scripted = self._scripted_fault(request)
            settings = _Settings(faults, scripted[1] if scripted else {})
            if settings["latency_ms"]:
                time.sleep(settings["latency_ms"] / 1000.0)
            fault = scripted[0] if scripted else self._roll_before_work(faults)
            reply: Reply | None
            if fault in BEFORE_WORK:
                reply = self._before_work(fault, emulator, request, settings, faults)
            elif scripted is None and (canned := self._scripted(request)) is not None:
                reply, fault = canned, "scripted"
            else:
                reply = route.handler(request, **match.groupdict())
                if scripted is None:
                    fault = self._roll_after_work(faults, route, reply)
                if fault is not None:
                    reply = self._after_work(fault, emulator, reply, settings)
            status = (
                0 if reply is None or (reply.delivery and reply.delivery.mode == "hang") else reply.status
            )
            self._record(Call(provider, request.method, request.path, status, fault))
            return reply, fault
        known = any(route.pattern.fullmatch(request.path) for _, route in self._routes)
        return Reply(405 if known else 404, {"error": "not found"}), None

    @staticmethod
    def _roll_before_work(faults: Faults) -> str | None:
        for name in BEFORE_WORK:
            if faults.roll(getattr(faults, f"{name}_rate")):
                return name
        return None

    @staticmethod
    def _roll_after_work(faults: Faults, route: Route, reply: Reply) -> str | None:
        if reply.status >= 300:
            return None
        if route.write and faults.roll(faults.lose_answer_rate):
            return "lose_answer"
        for name in AFTER_WORK[1:]:
            if faults.roll(getattr(faults, f"{name}_rate")):
                return name
        return None

    def _before_work(
        self,
        fault: str,
        emulator: ProviderEmulator,
        request: Request,
        settings: _Settings,
        faults: Faults,
    ) -> Reply | None:
        if fault == "reset":
            return None
        if fault == "error":
            return Reply(503, emulator.error_body(503, "Service unavailable"))
        if fault == "rate_limit":
            headers = {
                "Retry-After": "1",
                "X-RateLimit-Limit": "120",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 1),
            }
            return Reply(429, emulator.error_body(429, "Too many requests"), headers)
        if fault == "hang":
            return Reply(0, delivery=Delivery("hang", float(settings["hang_s"])))
        if fault == "redirect":
            target = self.thief_url + request.path + (f"?{request.raw_query}" if request.raw_query else "")
            return Reply(int(settings["redirect_status"]), headers={"Location": target})
        if fault == "odd_retry_after":
            value = settings["retry_after"]
            value = faults.choice(ODD_RETRY_AFTER) if value is None else str(value)
            return Reply(429, emulator.error_body(429, "Too many requests"), {"Retry-After": value})
        if fault == "pii_error":
            status = int(settings["pii_error_status"])
            return Reply(status, fill_free_text(emulator.error_body(status, PII_MESSAGE), PII_MESSAGE))
        if fault == "oversize_error":
            return Reply(500, raw=Padded(emulator.error_body(500, _MARK), int(settings["oversize_bytes"])))
        raise ValueError(f"not a before-work fault: {fault}")

    @staticmethod
    def _after_work(
        fault: str, emulator: ProviderEmulator, reply: Reply, settings: _Settings
    ) -> Reply | None:
        if fault == "lose_answer":
            return None
        if fault == "html":
            return Reply(
                int(settings["html_status"]), raw=HTML_PAGE.encode(), content_type="text/html; charset=utf-8"
            )
        if fault == "missing_id":
            return replace(reply, body=emulator.without_id(reply.body))
        if fault == "truncate":
            return replace(reply, delivery=Delivery("truncate"))
        if fault == "trickle":
            return replace(reply, delivery=Delivery("trickle", float(settings["trickle_interval_s"])))
        if fault == "oversize":
            body = reply.body if isinstance(reply.body, dict) else {"data": reply.body}
            padded = Padded.of_length({**body, "padding": _MARK}, int(settings["oversize_bytes"]))
            return replace(reply, raw=padded)
        raise ValueError(f"not an after-work fault: {fault}")

    def _admin(self, request: Request) -> Reply:
        if request.path == "/_sandbox/calls":
            with self._lock:
                return Reply(200, {"calls": [asdict(c) for c in self.calls]})
        if request.path == "/_sandbox/reset" and request.method == "POST":
            self.reset()
            return Reply(200, {"reset": True})
        if request.path == "/_sandbox/faults" and request.method == "POST":
            body = request.json() or {}
            for provider, settings in body.items():
                self.set_faults(provider, **settings)
            return Reply(200, {name: f.public() for name, f in self.faults.items()})
        if request.path == "/_sandbox/script_fault" and request.method == "POST":
            # {"provider", "method", "path", "fault", "count"?, options...} (options also as "options": {})
            body = dict(request.json() or {})
            options = {**body.pop("options", {}), **body}
            self.script_fault(**options)
            return Reply(200, {"scripted": True})
        if request.path == "/_sandbox/hostile" and request.method == "POST":
            self.make_hostile(**(request.json() or {}))
            return Reply(200, {name: f.public() for name, f in self.faults.items()})
        if request.path == "/_sandbox/thief":
            return Reply(
                200,
                {
                    "url": self.thief_url,
                    "requests": [
                        {
                            "method": r.method,
                            "path": r.path,
                            "query": r.raw_query,
                            "headers": r.headers,
                            "body": r.body.decode("utf-8", "replace"),
                        }
                        for r in self.thief.requests
                    ],
                },
            )
        if request.path == "/_sandbox/health":
            return Reply(200, {"ok": True, "providers": sorted(self.emulators), "thief_url": self.thief_url})
        return Reply(404, {"error": "not found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class _Handler(_QuietHandler):
            def _serve(self) -> None:
                request = _read_request(self)
                released = sandbox._release  # a reset or stop from now on ends a hang or trickle
                try:
                    reply, _ = sandbox.dispatch(request)
                except Exception as exc:  # an emulator bug: answer like a broken server would
                    reply = Reply(500, {"error": f"sandbox failure: {type(exc).__name__}"})
                if reply is None:
                    self._drop()
                    return
                mode = reply.delivery.mode if reply.delivery else None
                if mode == "hang":
                    assert reply.delivery is not None
                    released.wait(reply.delivery.seconds)
                    self._close()
                    return
                payload = reply.payload()
                length = payload.length if isinstance(payload, Padded) else len(payload)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(length))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    if mode == "truncate":
                        data = payload if isinstance(payload, bytes) else b"".join(payload.chunks())
                        self.wfile.write(data[: len(data) // 2])
                        self._close()
                    elif mode == "trickle":
                        assert reply.delivery is not None
                        self._trickle(payload, reply.delivery.seconds, released)
                    elif isinstance(payload, Padded):
                        for chunk in payload.chunks():
                            if released.is_set():
                                self._close()
                                return
                            self.wfile.write(chunk)
                    else:
                        self.wfile.write(payload)
                except OSError:  # the client went away
                    self.close_connection = True

            def _trickle(self, payload: bytes | Padded, interval: float, released: threading.Event) -> None:
                data = payload if isinstance(payload, bytes) else b"".join(payload.chunks())
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    if i + 1 < len(data) and released.wait(interval):
                        self._close()
                        return

            def _close(self) -> None:
                # Close the connection in order (FIN): what was written still reaches the client.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_WR)

            def _drop(self) -> None:
                # Reset the connection (RST) without answering.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return _Handler


def serve_forever(sandbox: Sandbox) -> None:  # pragma: no cover - CLI helper
    sandbox.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()
