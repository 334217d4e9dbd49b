"""Pass 2 of ``provisioner import`` spread over worker processes.

Signing and sending one ``SendMessageBatch`` costs about a millisecond of CPU in Python, so one
process sends at most a few thousand rows a second however many calls are in flight. With
``--processes N`` (by default: one per CPU, up to ``MAX_PROCESSES``, for imports of at least
``PROCESSES_FROM`` requests), this process still reads, maps and renders every row in order (the
external_ids seen once, as in one process), and hands the rendered batches, a few at a time, to N
worker processes, each with its own ``BatchClient`` and its share of the calls in flight.

The guarantees are ``BatchSender``'s, which each worker runs: entries SQS refuses are resent,
acknowledged ones never, and a call whose answer was lost is reported as unconfirmed. A worker that
stops (killed, out of memory) leaves its chunks unconfirmed: reported, never resent; nothing more is
sent after that, and the import fails naming the count.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from typing import Any

from botocore.credentials import RefreshableCredentials

from provisioning.imports import BATCH, BatchClient, BatchSender, Planned, Sender, SendReport

PROCESSES_FROM = 20_000  # requests: below, starting workers (about half a second) is not worth it
MAX_PROCESSES = 4
CHUNK_CALLS = 4  # batches handed to a worker at once, per call it has in flight (fewer hand-overs)

Batch = tuple[str, list[Planned]]


def auto_processes(requests: int) -> int:
    """How many processes send ``requests``: one for a small import, else one per usable CPU."""
    if requests < PROCESSES_FROM:
        return 1
    return max(1, min(MAX_PROCESSES, os.process_cpu_count() or 1))


@dataclass(frozen=True)
class ClientSpec:
    """What a worker needs to make the same ``BatchClient``: the endpoint and region it resolved,
    the profile, and the credentials when they are static (refreshable ones, such as an assumed role
    or SSO, the worker resolves from the same profile, so they are refreshed there too)."""

    endpoint_url: str
    region: str
    profile: str | None
    credentials: tuple[str, str, str | None] | None
    concurrency: int

    @classmethod
    def of(cls, client: BatchClient, concurrency: int) -> ClientSpec:
        session = client.session
        # "default" is what boto3 names no profile: the worker then resolves the same default chain.
        profile = None if session.profile_name == "default" else session.profile_name
        found = session.get_credentials()
        static = None
        if found is not None and not isinstance(found, RefreshableCredentials):
            frozen = found.get_frozen_credentials()
            static = (frozen.access_key, frozen.secret_key, frozen.token)
        return cls(client.endpoint, client.region, profile, static, concurrency)

    def client(self) -> BatchClient:
        import boto3

        keys: dict[str, Any] = {}
        if self.credentials is not None:
            access, secret, token = self.credentials
            keys = {"aws_access_key_id": access, "aws_secret_access_key": secret, "aws_session_token": token}
        session = boto3.Session(region_name=self.region, profile_name=self.profile, **keys)
        return BatchClient(session, self.concurrency, endpoint_url=self.endpoint_url)


_worker: BatchSender | None = None


def _start_worker(spec: ClientSpec, queue_urls: dict[str, str], attempts: int) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's: calls in flight finish
    _worker = BatchSender(spec.client(), queue_urls, attempts=attempts, concurrency=spec.concurrency)


def _send_chunk(chunk: list[tuple[str, list[str]]]) -> SendReport:
    """Send a chunk of batches given as (provider, message bodies): only the bodies cross over."""
    if _worker is None:
        raise RuntimeError("the worker was not started")
    return _worker.send_batches(
        (provider, [Planned(provider, "", body) for body in bodies]) for provider, bodies in chunk
    )


class ProcessSender:
    """A ``Sender`` whose calls are made by ``processes`` worker processes, ``concurrency`` calls
    in flight in all (each worker its share); at most two chunks per worker wait, so memory stays
    bounded."""

    def __init__(
        self,
        client: BatchClient,
        queue_urls: dict[str, str],
        processes: int,
        concurrency: int = 8,
        attempts: int = 5,
    ) -> None:
        share = max(1, -(-concurrency // processes))
        self.report = SendReport()
        self.processes = processes
        self._args = (ClientSpec.of(client, share), queue_urls, attempts)
        self._per_chunk = CHUNK_CALLS * share  # a few calls per call a worker has in flight
        self._buffers: dict[str, list[Planned]] = {}
        self._chunk: list[Batch] = []
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight: dict[Future[SendReport], list[Batch]] = {}

    def add(self, item: Planned) -> None:
        buffer = self._buffers.setdefault(item.provider, [])
        buffer.append(item)
        if len(buffer) == BATCH:
            self._buffers[item.provider] = []
            self._chunk.append((item.provider, buffer))
            if len(self._chunk) == self._per_chunk:
                self._submit()

    def flush(self) -> None:
        self._chunk.extend((provider, buffer) for provider, buffer in self._buffers.items() if buffer)
        self._buffers = {}
        if self._chunk:
            self._submit()
        self._wait(0)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _submit(self) -> None:
        chunk, self._chunk = self._chunk, []
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),  # no inherited sockets or locks
                initializer=_start_worker,
                initargs=self._args,
            )
        self._wait(2 * self.processes - 1)
        try:
            future = self._pool.submit(
                _send_chunk, [(p, [item.body for item in items]) for p, items in chunk]
            )
        except BrokenProcessPool:  # a worker stopped earlier: send nothing more
            self._lost(chunk, "a worker process stopped (not sent)")
            return
        self._in_flight[future] = chunk

    def _wait(self, most: int) -> None:
        """Until at most ``most`` chunks are in flight; a worker's unexpected error is raised here."""
        while len(self._in_flight) > most:
            done, _ = wait(self._in_flight, return_when=FIRST_COMPLETED if most else ALL_COMPLETED)
            for future in done:
                chunk = self._in_flight.pop(future)
                try:
                    part = future.result()
                except BrokenProcessPool:  # some of the chunk may have been queued: never resent
                    self._lost(chunk, "a worker process stopped (unconfirmed)", unconfirmed=True)
                else:
                    for counter in fields(SendReport):
                        getattr(self.report, counter.name).update(getattr(part, counter.name))

    def _lost(self, chunk: list[Batch], reason: str, unconfirmed: bool = False) -> None:
        for provider, items in chunk:
            self.report.failed[provider] += len(items)
            self.report.reasons[reason] += len(items)
            if unconfirmed:
                self.report.unconfirmed[provider] += len(items)


def make_sender(
    client: BatchClient,
    queue_urls: dict[str, str],
    concurrency: int,
    processes: int,
) -> Sender:
    """``BatchSender`` in this process for ``processes=1``, else a ``ProcessSender``."""
    if processes <= 1:
        return BatchSender(client, queue_urls, concurrency=concurrency)
    return ProcessSender(client, queue_urls, processes, concurrency)


__all__ = ["MAX_PROCESSES", "PROCESSES_FROM", "ClientSpec", "ProcessSender", "auto_processes", "make_sender"]
