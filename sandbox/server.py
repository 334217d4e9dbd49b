"""A small threaded HTTP server that hosts every provider emulator under its own path prefix
(``/palenca/v1/users`` ...), records the calls it served and can inject faults."""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Reply]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    write: bool = False  # creates state: "lose the answer" faults apply to it


class ProviderEmulator(Protocol):
    name: str

    def routes(self) -> list[Route]: ...

    def reset(self) -> None: ...


@dataclass
class Faults:
    """Fault injection for one provider (rates are probabilities per request)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # answer 503 without doing anything
    rate_limit_rate: float = 0.0  # answer 429 with rate-limit headers
    reset_rate: float = 0.0  # drop the connection without doing anything
    lose_answer_rate: float = 0.0  # do the work, then drop the connection (writes only)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


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


class Sandbox:
    """All emulators behind one loopback server. Use as a context manager or start()/stop()."""

    def __init__(self, emulators: list[ProviderEmulator], host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulators = {e.name: e for e in emulators}
        self.faults: dict[str, Faults] = {name: Faults() for name in self.emulators}
        self.calls: list[Call] = []
        self.scripted: dict[tuple[str, str], list[Reply]] = {}
        self._lock = threading.Lock()
        self._routes = [(name, route) for name, e in self.emulators.items() for route in e.routes()]
        self._server = _QuietServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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

    # -- serving --------------------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def dispatch(self, request: Request) -> tuple[Reply | None, str | None]:
        """Returns the reply (None: drop the connection) and the fault applied, if any."""
        if request.path.startswith("/_sandbox/"):
            return self._admin(request), None
        for provider, route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if not match or route.method != request.method:
                continue
            faults = self.faults[provider]
            if faults.latency_ms:
                time.sleep(faults.latency_ms / 1000.0)
            if faults.roll(faults.reset_rate):
                reply, fault = None, "reset"
            elif faults.roll(faults.error_rate):
                reply, fault = Reply(503, {"error": "service_unavailable"}), "error"
            elif faults.roll(faults.rate_limit_rate):
                reset = int(time.time()) + 1
                headers = {
                    "Retry-After": "1",
                    "X-RateLimit-Limit": "120",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
                reply, fault = Reply(429, {"error": "too_many_requests"}, headers), "rate_limit"
            elif (canned := self._scripted(request)) is not None:
                reply, fault = canned, "scripted"
            else:
                reply, fault = route.handler(request, **match.groupdict()), None
                if route.write and reply.status < 300 and faults.roll(faults.lose_answer_rate):
                    reply, fault = None, "lose_answer"
            self._record(Call(provider, request.method, request.path, reply.status if reply else 0, fault))
            return reply, fault
        known = any(route.pattern.fullmatch(request.path) for _, route in self._routes)
        return Reply(405 if known else 404, {"error": "not found"}), None

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
        if request.path == "/_sandbox/health":
            return Reply(200, {"ok": True, "providers": sorted(self.emulators)})
        return Reply(404, {"error": "not found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are written separately: without TCP_NODELAY, Nagle's algorithm and
            # the client's delayed ACK hold every second answer on a kept-alive connection ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    reply, _ = sandbox.dispatch(request)
                except Exception as exc:  # an emulator bug: answer like a broken server would
                    reply = Reply(500, {"error": f"sandbox failure: {type(exc).__name__}"})
                if reply is None:
                    self._drop()
                    return
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

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
