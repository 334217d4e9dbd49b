"""A loopback SQS endpoint that answers ``SendMessageBatch`` instantly, in SQS's JSON protocol
(``X-Amz-Target: AmazonSQS.SendMessageBatch``), so that a measure of ``provisioner import``'s
sending shows the command's own cost rather than a server's. It can refuse some entries (``Failed``
in the answer, as SQS does under load) and it records every body it accepted, so tests can check
that nothing is queued twice."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any

# Whether to refuse an entry: called with its body and how many times that body was offered before.
Refuse = Callable[[str, int], bool]


class InstantSqs(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, refuse: Refuse | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.refuse = refuse or (lambda body, offered: False)
        self.lock = threading.Lock()
        self.offered: Counter[str] = Counter()  # every body, each time it was sent
        self.accepted: Counter[str] = Counter()  # bodies answered as Successful
        self.calls = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        successful, failed = [], []
        with self.lock:
            self.calls += 1
            for entry in entries:
                body = entry["MessageBody"]
                before = self.offered[body]
                self.offered[body] += 1
                if self.refuse(body, before):
                    failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
                    continue
                self.accepted[body] += 1
                successful.append(
                    {
                        "Id": entry["Id"],
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                    }
                )
        return {"Successful": successful, "Failed": failed}


class _Handler(BaseHTTPRequestHandler):
    server: InstantSqs
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        if target == "AmazonSQS.SendMessageBatch":
            status, answer = 200, self.server.answer(request.get("Entries", []))
        else:
            status = 400
            answer = {"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": target}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def instant_sqs(refuse: Refuse | None = None) -> Iterator[InstantSqs]:
    server = InstantSqs(refuse)
    thread = threading.Thread(target=server.serve_forever, name="instant-sqs", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _serve(conn: Connection) -> None:
    with instant_sqs() as server:
        conn.send(server.url)
        conn.recv()  # until the parent is done
        with server.lock:
            conn.send((server.calls, len(server.accepted), sum(server.accepted.values())))


@contextmanager
def instant_sqs_process() -> Iterator[tuple[str, Callable[[], tuple[int, int, int]]]]:
    """The endpoint in a process of its own, so that its work does not share the measured process's
    interpreter: the URL, and a function giving (calls, distinct bodies accepted, bodies accepted)
    once sending is done."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    process.start()
    url = parent.recv()

    def stats() -> tuple[int, int, int]:
        parent.send("stop")
        answer: tuple[int, int, int] = parent.recv()
        return answer

    try:
        yield url, stats
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
