"""The import's core, independent of where the file comes from: ``provisioner import`` reads a
local file with it, and a function can read an object in S3 with it. Validate everything first, then
send.

Entry points:

- ``read_rows(lines, fmt) -> Iterator[Row]``: the rows of a text stream or any iterator of lines,
  ``fmt`` ``"csv"`` (a header row; open the stream with ``newline=""``) or ``"jsonl"``; each row
  with its line number.
- ``validate(rows, providers, report) -> Validation``: pass 1. Every row is mapped to the request of
  every provider it goes to, with the models the functions use; each invalid row is reported through
  ``report`` as ``line N: field: message``, without its values. ``Validation`` counts the rows, the
  invalid ones, and the requests per provider the valid parts would send.
  ``validate_lines(lines, fmt, providers, report)`` is the same from the lines themselves (what
  ``provisioner import`` and the S3 import run): a CSV's plain lines are accepted by
  ``import_check.LineCheck`` without being read into rows (``Planner.checked``).
- ``send(rows, sqs, queue_urls, concurrency) -> SendReport``: pass 2 on the same rows read again:
  the valid requests are queued with ``SendMessageBatch``, ten per call, up to ``concurrency`` calls
  in flight. ``sqs`` is ``BatchClient(boto3_session, concurrency)`` (what ``provisioner import``
  uses: about half of a boto3 client's CPU per row) or a boto3 SQS client made by ``sqs_client``;
  either makes no retries of its own. The ``SendReport`` counts calls, sent, failed (with reasons)
  and unconfirmed entries per provider. ``send_with(rows, providers, sender)`` takes a
  ``BatchSender`` of one's own.

An ``external_id`` appears at most once per provider in one import. Rows are validated with the rule
on personal data in ``external_id`` as in force where the passes run (``allow_identifying_ids``).

Memory stays bounded whatever the file's size: rows are streamed one at a time, validation renders
no message bodies, and the external_ids already seen are kept as 64-bit hashes in arrays
(``SeenIds``, about 26 bytes per id) rather than as a dict of strings.

Nothing is sent twice (``BatchSender``): refused entries are resent, acknowledged ones never, and a
call whose answer was lost is reported as unconfirmed, not resent.
"""

from __future__ import annotations

import csv
import json
import random
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)
from botocore.httpsession import URLLib3Session

from provisioning.adapters import parse_json, validate_body
from provisioning.errors import FieldError, InvalidRequest
from provisioning.import_check import FastCheck
from provisioning.person import Person, parse_person, request_for
from provisioning.privacy import field_name
from provisioning.spec import CreateUserSpec
from provisioning.validation import allow_identifying_ids, identifying_ids_allowed
from provisioning.values import Value
from provisioning.waiting import PRIORITY

Format = Literal["csv", "jsonl"]
# Pass 1's verdict on a row: its line, the providers its valid requests go to, its errors.
Checked = tuple[int, tuple[str, ...], Sequence[FieldError]]

BATCH = 10  # SQS SendMessageBatch's largest batch
MAX_SHOWN_ERRORS = 50
# Imported rows are bulk: under a provider's rate limit, signups go before them.
BULK = {PRIORITY: {"DataType": "String", "StringValue": "bulk"}}
PERSON_FIELDS = frozenset(Person.model_fields)


def create_specs() -> dict[str, CreateUserSpec[Any]]:
    from provisioning.providers import PROVIDERS

    return {info.name: info.create.load_spec() for info in PROVIDERS}


class Row(Value):
    __slots__ = ("data", "line")
    line: int
    data: Any

    def __init__(self, line: int, data: Any) -> None:
        self.line = line
        self.data = data


def _csv_value(name: str, value: str) -> Any:
    if name == "providers":
        return _providers_cell(value)
    return value


def read_rows(lines: Iterable[str], fmt: Format) -> Iterator[Row]:
    """Each row of ``lines`` (a text stream or any iterator of lines) with its line number (a CSV's
    header is line 1). Empty CSV cells are absent fields; blank JSON Lines are skipped. One row at a
    time: the input is never held. For CSV, open the stream with ``newline=""`` (as ``csv`` asks);
    ``encoding="utf-8-sig"`` drops a byte-order mark."""
    if fmt == "csv":
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is not None:
            yield from _csv_rows(reader, header)
        return
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield Row(number, parse_json(text))
        except json.JSONDecodeError as exc:  # NaN, over-long numbers and deep nesting included
            yield Row(number, ValueError(exc.msg))


def _csv_rows(reader: Any, header: list[str]) -> Iterator[Row]:
    """The rows of a ``csv.reader`` past its ``header``, numbered by the reader's lines."""
    line = reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if cells:  # not a blank line, as csv.DictReader skips them
            yield Row(start, _csv_data(header, cells))


def _csv_data(header: list[str], cells: list[str]) -> dict[Any, Any]:
    """A CSV row's fields: its non-empty cells, stripped, by the header's names."""
    data: dict[Any, Any] = {
        name: value for name, cell in zip(header, cells, strict=False) if (value := cell.strip())
    }
    if "providers" in data:
        data["providers"] = _csv_value("providers", data["providers"])
    if len(cells) > len(header):
        data[None] = True  # more cells than the header has names
    return data


def _providers_cell(value: str) -> list[str]:
    """A CSV's providers cell (stripped, not empty): names separated by | or ;."""
    return [part.strip() for part in value.replace(";", "|").split("|") if part.strip()]


class _Lines:
    """The lines handed to a ``csv.reader`` one record at a time: ``pending`` first, then as many
    lines of the source as the record takes (a quoted field may span lines); ``taken`` counts them."""

    def __init__(self, source: Iterator[str]) -> None:
        self.source = source
        self.pending: str | None = None
        self.taken = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        self.taken += 1
        if self.pending is not None:
            line, self.pending = self.pending, None
            return line
        return next(self.source)


def estimate_rows(size: int, head: bytes) -> int:
    """About how many rows a file of ``size`` bytes holds, from its first bytes ``head`` (some
    thousands of lines): to size the seen ids once. A file whose later lines are longer holds fewer
    (the table is then larger than needed, by as much); shorter, more (it grows, as unsized)."""
    lines = head.count(b"\n")
    if not lines or not size:
        return 0
    return size * lines // len(head[: head.rindex(b"\n") + 1]) + 1


class Planned(Value):
    __slots__ = ("body", "external_id", "provider")
    provider: str
    external_id: str
    body: str

    def __init__(self, provider: str, external_id: str, body: str) -> None:
        self.provider = provider
        self.external_id = external_id
        self.body = body


class SeenIds:
    """The first line of each ``external_id`` per provider, in about 26 bytes per id at a million
    ids (not the ~100 bytes of a dict of strings): an open-addressing table of the ids' 64-bit
    hashes in arrays, with one bit per provider. Two different ids with the same 64-bit hash would be
    reported as a repeat: at a million ids the odds are about 3 in 100 million, and the hashes are
    salted per process, so a re-run tells them apart."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._allocate(capacity)
        self._count = 0
        # (provider bit, hash) -> first line, where it differs from the id's first line of all.
        self._other_lines: dict[tuple[int, int], int] = {}

    @classmethod
    def for_rows(cls, rows: int) -> SeenIds:
        """Sized for about ``rows`` ids from the start, so the table never grows (growing holds the
        old arrays beside the new: a third more memory at its peak)."""
        return cls(max(1 << 16, rows * 2 + rows // 4))  # at most half full, with a quarter to spare

    def _allocate(self, capacity: int) -> None:
        self._size = capacity
        self._most = capacity // 2  # ids held before the table grows: at most half full
        self._keys = array("q", [0]) * capacity
        self._lines = array("i", [0]) * capacity
        self._bits = bytearray(capacity)

    def _slot(self, key: int) -> int:
        keys, size = self._keys, self._size
        slot = key % size
        while (found := keys[slot]) != 0 and found != key:
            slot += 1
            if slot == size:
                slot = 0
        return slot

    def first(self, external_id: str, bit: int, line: int) -> int | None:
        """The line that already claimed ``external_id`` for the provider of ``bit``, or None after
        claiming it for ``line``."""
        if self.claim(external_id, bit, line):
            return self.line_of(external_id, bit)
        return None

    def claim(self, external_id: str, bits: int, line: int) -> int:
        """Claims ``external_id`` for the providers of ``bits`` on ``line``, as ``first`` would for
        each in turn; the bits of those that had already claimed it (0: none, the usual answer)."""
        key = hash(external_id) or 1  # 0 marks an empty slot
        keys, size = self._keys, self._size
        slot = key % size
        if keys[slot] == 0 and self._count < self._most:  # the usual case: a new id, its slot free
            keys[slot] = key
            self._lines[slot] = line
            self._bits[slot] = bits
            self._count += 1
            return 0
        while (found := keys[slot]) != 0 and found != key:
            slot += 1
            if slot == size:
                slot = 0
        if found == 0:
            if self._count >= self._most:
                self._grow()
                return self.claim(external_id, bits, line)
            keys[slot], self._lines[slot], self._bits[slot] = key, line, bits
            self._count += 1
            return 0
        had = self._bits[slot]
        new = bits & ~had
        if new:
            self._bits[slot] = had | bits
            if self._lines[slot] != line:
                bit = 1
                while bit <= new:
                    if new & bit:
                        self._other_lines[(bit, key)] = line
                    bit <<= 1
        return bits & had

    def line_of(self, external_id: str, bit: int) -> int:
        """The line that claimed ``external_id`` for the provider of ``bit`` (claimed before)."""
        key = hash(external_id) or 1
        return self._other_lines.get((bit, key), self._lines[self._slot(key)])

    def _grow(self) -> None:
        keys, lines, bits = self._keys, self._lines, self._bits
        self._allocate(len(keys) * 2)
        for index, key in enumerate(keys):
            if key:
                slot = self._slot(key)
                self._keys[slot], self._lines[slot], self._bits[slot] = key, lines[index], bits[index]


@dataclass
class Planner:
    """Turns rows into the provider requests to queue; remembers external_ids per provider. A row
    that fails for one provider (e.g. a person without the e-mail Trust requires) still plans the
    requests of the other providers: they are sent only with ``--skip-invalid``."""

    providers: list[str]
    specs: dict[str, CreateUserSpec[Any]] = field(default_factory=create_specs)
    render: bool = True  # False: no message bodies (validation only counts them)
    fast: bool = False  # True (validation only): plain rows accepted by ``import_check.FastCheck``
    expected_rows: int = 0  # an estimate of the rows to come, to size the seen ids once (0: grow)
    _seen: SeenIds = field(default_factory=SeenIds)

    def __post_init__(self) -> None:
        if self.expected_rows:
            self._seen = SeenIds.for_rows(self.expected_rows)
        self._bits = {provider: 1 << index for index, provider in enumerate(self.providers)}
        self._fast = FastCheck(self.providers, self.specs) if self.fast and not self.render else None

    def plan(self, row: Row) -> tuple[list[Planned], list[FieldError]]:
        data = row.data
        if isinstance(data, ValueError):
            return [], [FieldError("row", str(data))]
        if not isinstance(data, dict):
            return [], [FieldError("row", "must be a JSON object")]
        if None in data:
            return [], [FieldError("row", "has more cells than the header")]
        if self._fast is not None and (targets := self._fast(data)) is not None:
            return self._plan_accepted(targets, data["external_id"], row.line)
        try:
            requests, errors = self._requests(data)
        except InvalidRequest as exc:
            return [], exc.errors
        planned = []
        for provider, request in requests:
            first = self._seen.first(request.external_id, self._bits[provider], row.line)
            if first is not None:
                errors.append(FieldError("external_id", f"repeats line {first} for {provider}"))
                continue
            body = ""
            if self.render:
                body = json.dumps(
                    request.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":")
                )
            planned.append(Planned(provider, request.external_id, body))
        return planned, errors

    def _plan_accepted(
        self, targets: list[str], external_id: str, line: int
    ) -> tuple[list[Planned], list[FieldError]]:
        """A row the fast check accepted, planned as ``plan`` would (no bodies: validation only)."""
        planned, errors = [], []
        for provider in targets:
            first = self._seen.first(external_id, self._bits[provider], line)
            if first is not None:
                errors.append(FieldError("external_id", f"repeats line {first} for {provider}"))
            else:
                planned.append(Planned(provider, external_id, ""))
        return planned, errors

    def checked(self, lines: Iterable[str], fmt: Format) -> Iterator[Checked]:
        """Pass 1 over the rows of ``lines`` (as ``read_rows`` reads them): for each row, its line,
        the providers its valid requests go to, and its errors, as ``plan`` finds them. With the
        fast check, a CSV's lines that ``LineCheck`` accepts are not read into rows at all; every
        other line is read by ``csv.reader`` as ``read_rows`` reads it and planned with ``plan``."""
        if fmt != "csv" or self._fast is None:
            for row in read_rows(lines, fmt):
                yield self._checked(row)
            return
        source = iter(lines)
        feed = _Lines(source)
        reader = csv.reader(feed)
        header = next(reader, None)
        if header is None:
            return
        line_check = self._fast.lines(header, _providers_cell)
        if line_check is None:
            for row in _csv_rows(reader, header):
                yield self._checked(row)
            return
        check, claim, bits = line_check.check, self._seen.claim, self._bits
        masks: dict[tuple[str, ...], int] = {}  # the providers of an accepted line -> their bits
        number = feed.taken
        for text in source:
            number += 1
            accepted = check(text)
            if accepted is None:  # read as read_rows reads it, with the lines its record takes
                feed.pending, feed.taken = text, 0
                cells = next(reader)
                start, number = number, number + feed.taken - 1
                if cells:
                    yield self._checked(Row(start, _csv_data(header, cells)))
                continue
            external_id, providers = accepted
            mask = masks.get(providers)
            if mask is None:
                mask = masks[providers] = sum(bits[p] for p in providers)
            repeated = claim(external_id, mask, number) if mask else 0
            if not repeated:
                yield number, providers, ()
                continue
            planned, errors = [], []
            for provider in providers:
                if repeated & bits[provider]:
                    first = self._seen.line_of(external_id, bits[provider])
                    errors.append(FieldError("external_id", f"repeats line {first} for {provider}"))
                else:
                    planned.append(provider)
            yield number, tuple(planned), errors

    def _checked(self, row: Row) -> Checked:
        planned, errors = self.plan(row)
        return row.line, tuple(item.provider for item in planned), errors

    def _requests(self, data: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[FieldError]]:
        if PERSON_FIELDS.issuperset(data):
            person = parse_person(data)
            results, errors = [], []
            for provider in (p for p in self.providers if person.targets(p)):
                spec = self.specs[provider]
                if spec.from_person is None:
                    errors.append(FieldError("row", f"{provider} takes only provider-shaped rows"))
                    continue
                try:
                    results.append(
                        (provider, request_for(person, provider, spec.from_person, spec.request_model))
                    )
                except InvalidRequest as exc:
                    errors.extend(exc.errors)
            return results, errors
        if len(self.providers) != 1:
            unknown = sorted(field_name(str(name)) for name in set(data) - PERSON_FIELDS)
            raise InvalidRequest(
                [
                    FieldError(name, "is not a Person field (provider-shaped rows need one --provider)")
                    for name in unknown
                ]
            )
        (provider,) = self.providers
        return [(provider, validate_body(data, self.specs[provider].request_model))], []


class Validation(Value):
    __slots__ = ("invalid", "per_provider", "rows")
    rows: int
    invalid: int
    per_provider: Counter[str]

    def __init__(self, rows: int = 0, invalid: int = 0, per_provider: Counter[str] | None = None) -> None:
        self.rows = rows
        self.invalid = invalid
        self.per_provider = Counter() if per_provider is None else per_provider


def validate(
    rows: Iterable[Row],
    providers: list[str],
    report: Callable[[str], None] = lambda message: None,
    expected_rows: int = 0,
) -> Validation:
    """Pass 1: every row checked, nothing rendered or sent; each invalid row reported as
    ``line N: field: message`` (the first ``MAX_SHOWN_ERRORS`` rows, then a count), never with its
    values. ``per_provider`` counts the requests the valid parts of the rows would send.
    ``expected_rows`` (e.g. ``estimate_rows``) sizes the seen ids once. ``validate_lines`` does the
    same from the lines of a file, faster for a CSV."""
    planner = Planner(providers, render=False, fast=True, expected_rows=expected_rows)
    result = Validation()
    with allow_identifying_ids(identifying_ids_allowed()):  # the rule read once, not per id
        _validate((planner._checked(row) for row in rows), result, report)
    return result


def validate_lines(
    lines: Iterable[str],
    fmt: Format,
    providers: list[str],
    report: Callable[[str], None] = lambda message: None,
    expected_rows: int = 0,
) -> Validation:
    """``validate`` over the rows of ``lines`` (read as ``read_rows`` reads them), with the same
    result and report; a CSV's plain lines are checked without reading them into rows
    (``Planner.checked``)."""
    planner = Planner(providers, render=False, fast=True, expected_rows=expected_rows)
    result = Validation()
    with allow_identifying_ids(identifying_ids_allowed()):  # the rule read once, not per id
        _validate(planner.checked(lines, fmt), result, report)
    return result


def _validate(checked: Iterator[Checked], result: Validation, report: Callable[[str], None]) -> None:
    counts: Counter[tuple[str, ...]] = Counter()  # rows per set of providers planned
    rows = invalid = 0
    for line, planned, errors in checked:
        rows += 1
        counts[planned] += 1
        if errors:
            invalid += 1
            if invalid <= MAX_SHOWN_ERRORS:
                for error in errors:
                    report(f"line {line}: {error.field}: {error.message}")
    result.rows, result.invalid = rows, invalid
    for planned, count in counts.items():
        for provider in planned:
            result.per_provider[provider] += count
    if invalid > MAX_SHOWN_ERRORS:
        report(f"... and {invalid - MAX_SHOWN_ERRORS} more invalid rows")


@dataclass
class SendReport:
    calls: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    unconfirmed: Counter[str] = field(default_factory=Counter)  # the answer lost: maybe queued


# A call that raised one of these never reached SQS, or SQS answered it with an error: none of its
# entries was queued, so all of them may be sent again.
NOT_QUEUED: tuple[type[Exception], ...] = (ClientError, EndpointConnectionError, ConnectTimeoutError)

# Raised before a request is sent, and raised again by any retry: not queued, not resent.
NEVER_SENT: tuple[type[Exception], ...] = (NoCredentialsError, ParamValidationError, NoRegionError)


def sqs_client(make_client: Callable[..., Any], concurrency: int, **kw: Any) -> Any:
    """An SQS client for the import: one connection per call in flight, and no retries of its own
    (botocore would resend a call whose answer was lost; ``BatchSender`` decides what is resent)."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
        parameter_validation=False,  # the entries are built here, always well formed
    )
    return make_client("sqs", config=config, **kw)


class BatchClient:
    """``send_message_batch`` and nothing else, at a fraction of a boto3 client's cost per call: the
    request body is rendered with ``json.dumps``, signed with botocore's SigV4 signer and sent on the
    pooled urllib3 session of a boto3 client made for the import (``sqs_client``), in SQS's JSON
    protocol (``AmazonSQS.SendMessageBatch``); the answer's ``Successful`` and ``Failed`` are returned
    as boto3 returns them. boto3's per-call machinery (parameter serialisation, most event hooks, the
    user agent, retries, response parsing against the model) is what this skips; the ``before-send``
    event is emitted as botocore's endpoint emits it (a hook's answer, e.g. a stub's or an in-process
    mock's, is used instead of sending). The endpoint, region, credentials and connection settings
    are the boto3 client's and session's. Errors are botocore's: an error answer is a
    ``ClientError`` with SQS's code, a failed connection an ``EndpointConnectionError``, a lost answer
    a read timeout or a closed connection; no retries of its own (``BatchSender`` decides what is
    resent)."""

    TARGET = "AmazonSQS.SendMessageBatch"
    EVENT = "before-send.sqs.SendMessageBatch"  # as botocore's endpoint emits it

    def __init__(self, session: Any, concurrency: int, **kw: Any) -> None:
        self.session = session
        client = sqs_client(session.client, concurrency, **kw)  # the endpoint and region botocore resolves
        self.endpoint = client.meta.endpoint_url.rstrip("/") + "/"  # JSON protocol: POST /, as botocore
        self.region = client.meta.region_name
        self._events = client.meta.events  # "before-send" hooks answer as for boto3 (stubs, moto's mock)
        self._credentials = session.get_credentials()
        # The client's own connection pool: botocore configured it (proxies from the environment, the CA
        # bundle, TCP_NODELAY, timeouts, one connection per call in flight).
        self._http: URLLib3Session = client._endpoint.http_session

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self._credentials is None:
            raise NoCredentialsError
        body = json.dumps({"QueueUrl": QueueUrl, "Entries": Entries}, separators=(",", ":"))
        request = AWSRequest(
            method="POST",
            url=self.endpoint,
            data=body.encode(),
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": self.TARGET},
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "sqs", self.region).add_auth(request)
        prepared = request.prepare()
        hooked = [r for _, r in self._events.emit(self.EVENT, request=prepared) if r is not None]
        response = hooked[0] if hooked else self._http.send(prepared)
        if response.status_code >= 300:  # an error answer: nothing of the call was queued
            try:
                error = json.loads(response.content or b"{}")
            except ValueError:  # not SQS's (a proxy's page...)
                error = {}
            raise ClientError(_error(response.status_code, response.headers, error), "SendMessageBatch")
        answer = json.loads(response.content)  # unreadable: the answer is lost, the entries unconfirmed
        return {"Successful": answer.get("Successful", []), "Failed": answer.get("Failed", [])}


def _error(status: int, headers: Any, answer: Any) -> Any:
    """An error answer as botocore shapes it: SQS's code (its query-compatible one when given)."""
    code = str(answer.get("__type", "") if isinstance(answer, dict) else "").rsplit("#", 1)[-1]
    if query := headers.get("x-amzn-query-error"):
        code = query.split(";", 1)[0]
    message = answer.get("message", answer.get("Message", "")) if isinstance(answer, dict) else ""
    return {
        "Error": {"Code": code or str(status), "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


class BatchSender:
    """Sends up to ten requests per ``SendMessageBatch``, with up to ``concurrency`` calls in flight
    (a bounded thread pool; at most twice as many batches wait for it, so memory stays bounded).

    Nothing is sent twice by the command:
    - an entry SQS acknowledges (``Successful``) is never sent again;
    - an entry SQS refuses (``Failed``) is resent (with backoff), unless the fault is the sender's;
    - a call that raises had none of its entries acknowledged. If the error shows that SQS queued
      none of them (an error answer, or no connection: ``NOT_QUEUED``), they are resent; if the
      answer was lost (a read timeout, a connection closed mid-call), they may have been queued:
      they are not resent but counted as ``unconfirmed``, and the import fails naming them, so a
      re-run decides (the create functions are idempotent per external_id, so a re-run is safe);
    - a call refused before it was sent (``NEVER_SENT``: no credentials, no region) is not resent.
    The SQS client must not retry by itself (``sqs_client``)."""

    def __init__(
        self,
        sqs: Any,
        queue_urls: dict[str, str],
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int = 8,
    ) -> None:
        self.sqs = sqs
        self.queue_urls = queue_urls
        self.attempts = attempts
        self.sleep = sleep
        self.concurrency = max(1, concurrency)
        self.report = SendReport()
        self._buffers: dict[str, list[Planned]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[None]] = set()

    def add(self, item: Planned) -> None:
        buffer = self._buffers.setdefault(item.provider, [])
        buffer.append(item)
        if len(buffer) == BATCH:
            self._submit(item.provider, buffer)
            self._buffers[item.provider] = []

    def flush(self) -> None:
        for provider, buffer in self._buffers.items():
            if buffer:
                self._submit(provider, buffer)
        self._buffers = {}
        self._wait(0)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def send_batches(self, batches: Iterable[tuple[str, list[Planned]]]) -> SendReport:
        """Send these batches (provider, at most ten requests) now, up to ``concurrency`` calls in
        flight, and return the report of these alone (a worker process's unit of work)."""
        self.report = SendReport()
        for provider, items in batches:
            self._submit(provider, items)
        self._wait(0)
        return self.report

    def _submit(self, provider: str, items: list[Planned]) -> None:
        if self.concurrency == 1:
            self._send(provider, items)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="send")
        self._wait(2 * self.concurrency - 1)
        self._in_flight.add(self._pool.submit(self._send, provider, items))

    def _wait(self, most: int) -> None:
        """Until at most ``most`` batches are in flight; a batch's unexpected error is raised here."""
        while len(self._in_flight) > most:
            done, self._in_flight = wait(
                self._in_flight, return_when=FIRST_COMPLETED if most else ALL_COMPLETED
            )
            for future in done:
                future.result()

    def _count(self, counter: str, provider: str, amount: int = 1) -> None:
        with self._lock:
            getattr(self.report, counter)[provider] += amount

    def _send(self, provider: str, items: list[Planned]) -> None:
        pending = {str(index): item for index, item in enumerate(items)}
        for attempt in range(1, self.attempts + 1):
            entries = [
                {"Id": key, "MessageBody": item.body, "MessageAttributes": BULK}
                for key, item in pending.items()
            ]
            self._count("calls", provider)
            try:
                answer = self.sqs.send_message_batch(QueueUrl=self.queue_urls[provider], Entries=entries)
            except NOT_QUEUED as exc:  # none of them was queued: all may be sent again
                code = exc.response["Error"].get("Code", "") if isinstance(exc, ClientError) else ""
                failures: list[dict[str, Any]] = [
                    {"Id": key, "Code": code or type(exc).__name__, "SenderFault": False} for key in pending
                ]
            except NEVER_SENT as exc:  # refused before sending (no credentials...): a retry would not help
                self._count("failed", provider, len(pending))
                with self._lock:
                    self.report.reasons[type(exc).__name__] += len(pending)
                return
            except Exception as exc:  # the answer was lost: they may be queued; never resent
                self._count("unconfirmed", provider, len(pending))
                self._count("failed", provider, len(pending))
                with self._lock:
                    self.report.reasons[f"{type(exc).__name__} (unconfirmed)"] += len(pending)
                return
            else:
                failures = answer.get("Failed", [])
                failed_ids = {f["Id"] for f in failures}
                self._count("sent", provider, len(pending) - len(failed_ids))
            retry = {}
            for failure in failures:
                if failure.get("SenderFault") or attempt == self.attempts:
                    self._count("failed", provider)
                    with self._lock:
                        self.report.reasons[str(failure.get("Code", "unknown"))] += 1
                else:
                    retry[failure["Id"]] = pending[failure["Id"]]
            pending = retry
            if not pending:
                return
            self.sleep(min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))


class Sender(Protocol):
    """What pass 2 hands its requests to: ``BatchSender``, or the command's sender spread over
    worker processes."""

    report: SendReport

    def add(self, item: Planned) -> None: ...

    def flush(self) -> None: ...


def send_with(
    rows: Iterable[Row],
    providers: list[str],
    sender: Sender,
    progress: Callable[[int], None] = lambda rows: None,
    expected_rows: int = 0,
) -> SendReport:
    """Pass 2: every valid request (what pass 1 counted), queued by ``sender`` in batches of ten
    per provider; invalid rows (and their invalid parts) are skipped."""
    planner = Planner(providers, expected_rows=expected_rows)
    with allow_identifying_ids(identifying_ids_allowed()):
        for row in rows:
            planned, _ = planner.plan(row)
            for item in planned:
                sender.add(item)
            progress(1)
    sender.flush()
    return sender.report


def send(
    rows: Iterable[Row],
    sqs: Any,
    queue_urls: dict[str, str],
    concurrency: int = 8,
    progress: Callable[[int], None] = lambda rows: None,
) -> SendReport:
    """Pass 2 to the queues of ``queue_urls`` (provider -> queue URL; its keys are the providers
    imported to), with up to ``concurrency`` calls in flight. ``sqs`` should come from
    ``sqs_client`` (no retries of its own)."""
    sender = BatchSender(sqs, queue_urls, concurrency=concurrency)
    return send_with(rows, list(queue_urls), sender, progress)


__all__ = [
    "BATCH",
    "MAX_SHOWN_ERRORS",
    "NEVER_SENT",
    "NOT_QUEUED",
    "BatchClient",
    "BatchSender",
    "Checked",
    "Format",
    "Planned",
    "Planner",
    "Row",
    "SeenIds",
    "SendReport",
    "Sender",
    "Validation",
    "estimate_rows",
    "read_rows",
    "send",
    "send_with",
    "sqs_client",
    "validate",
    "validate_lines",
]
