"""Importing a file that is in S3: the same validate-then-send as ``provisioner import``
(``provisioning.imports``), streaming the object, with a summary written beside it.

``ImportFunction`` runs it for each object put under ``imports/`` in ImportBucket (an S3 event);
``provisioner import s3://bucket/key`` runs it with the caller's credentials.

- Pass 1 streams the object (``GetObject``'s body through a text decoder: never the whole file in
  memory) and validates every row. If a row is invalid, nothing is sent (unless the object's
  metadata says ``skip-invalid: true``) and the summary lists each invalid row by line number and
  field, never with its values.
- Pass 2 reads the object again, at the same ETag (``IfMatch``): a file replaced between the
  passes (or since its event) is refused, not mixed. Its valid requests are queued with the
  concurrent ``SendMessageBatch`` sender.
- With a deadline (a Lambda invocation's), the import stops in time: the calls in flight finish
  and the summary says how far it got (``sent_through_line``: every row up to it was handled, none
  after it was sent). Put the file again with ``start-after-line`` metadata to continue.
- The summary, ``<key>.summary.json``: status, counts per provider (planned, sent, failed,
  unconfirmed), the invalid rows (the first ``MAX_SHOWN_ERRORS``, and their total), the object's
  ETag and version, the duration.

Object metadata (``x-amz-meta-*``, all optional): ``provider`` (one provider for provider-shaped
rows, as ``--provider``; default ``all``: every provider each person targets), ``skip-invalid``
(``true``), ``start-after-line`` (a line number: rows up to it are validated, not sent).

Nothing here logs or reports a row's values: only counts, line numbers, field names and messages.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TextIO

from botocore.exceptions import ClientError

from provisioning.handler import LambdaFunction
from provisioning.imports import (
    MAX_SHOWN_ERRORS,
    BatchClient,
    BatchSender,
    Format,
    Planner,
    read_rows,
)
from provisioning.observability import logger
from provisioning.person import PROVIDERS
from provisioning.validation import allow_identifying_ids, identifying_ids_allowed
from provisioning.values import FrozenValue, Value

SUMMARY_SUFFIX = ".summary.json"
FORMATS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl"}
DEADLINE_CHECK_EVERY = 256  # rows between two looks at the clock

# done: every valid request queued; validated: a dry run, nothing sent; rejected: invalid rows (or
# the object's name, metadata or encoding), nothing sent; changed: the object was replaced, nothing
# sent; incomplete: the deadline came (see sent_through_line); failed: some requests were not queued.
Status = Literal["done", "validated", "rejected", "changed", "incomplete", "failed"]


class ImportIncomplete(Exception):
    """The import did not queue every row (stopped at the deadline, or entries failed): its summary
    says how far it got. Raised after the summary is written, so that the invocation fails (the
    Errors alarm, Lambda's OnFailure record in ImportDLQ); never carries a row's values."""


class S3Object(FrozenValue):
    __slots__ = ("bucket", "etag", "fmt", "key", "version_id")
    bucket: str
    key: str
    etag: str  # as the event or HeadObject gives it (quotes optional)
    version_id: str | None
    fmt: Format | None  # None: from the key's suffix

    def __init__(
        self, bucket: str, key: str, etag: str, version_id: str | None = None, fmt: Format | None = None
    ) -> None:
        object.__setattr__(self, "bucket", bucket)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "etag", etag)
        object.__setattr__(self, "version_id", version_id)
        object.__setattr__(self, "fmt", fmt)

    @property
    def if_match(self) -> str:
        return '"' + self.etag.strip('"') + '"'

    @property
    def summary_key(self) -> str:
        return self.key + SUMMARY_SUFFIX

    @property
    def format(self) -> Format | None:
        if self.fmt is not None:
            return self.fmt
        for suffix, fmt in FORMATS.items():
            if self.key.lower().endswith(suffix):
                return fmt
        return None


@dataclass
class ProviderCounts:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    unconfirmed: int = 0
    calls: int = 0


@dataclass
class Summary:
    """``<key>.summary.json``: what an import of one object did (no row's values)."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    format: str
    providers: list[str]
    status: Status = "done"
    reason: str = ""
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_rows: list[dict[str, Any]] = field(default_factory=list)  # line, field, message
    invalid_rows_total: int = 0
    skip_invalid: bool = False
    start_after_line: int = 0
    validated_through_line: int = 0
    sent_through_line: int = 0  # every row up to this line was handled; none after it was sent
    per_provider: dict[str, ProviderCounts] = field(default_factory=dict)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    started_at: str = ""
    duration_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.per_provider.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.per_provider.values())

    @property
    def unconfirmed(self) -> int:
        return sum(c.unconfirmed for c in self.per_provider.values())

    def counts(self) -> dict[str, Any]:
        """What a log line may say about the import: counts only."""
        return {
            "status": self.status,
            "rows": self.rows,
            "invalid": self.invalid,
            "sent": self.sent,
            "failed": self.failed,
            "unconfirmed": self.unconfirmed,
            "sent_through_line": self.sent_through_line,
            "duration_seconds": self.duration_seconds,
        }


class Changed(Exception):
    """The object is not the one the import started with (If-Match failed)."""


class OutOfTime(Exception):
    pass


class Options(Value):
    __slots__ = ("dry_run", "providers", "skip_invalid", "start_after_line")
    providers: list[str]
    skip_invalid: bool
    start_after_line: int
    dry_run: bool  # validate and count only

    def __init__(
        self,
        providers: list[str],
        skip_invalid: bool = False,
        start_after_line: int = 0,
        dry_run: bool = False,
    ) -> None:
        self.providers = providers
        self.skip_invalid = skip_invalid
        self.start_after_line = start_after_line
        self.dry_run = dry_run

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> Options:
        """The object's ``x-amz-meta-*``; a value that makes no sense is refused naming its key."""
        provider = metadata.get("provider", "all").strip().lower() or "all"
        if provider != "all" and provider not in PROVIDERS:
            raise ValueError(f"metadata provider: must be all or one of {', '.join(PROVIDERS)}")
        skip = metadata.get("skip-invalid", "false").strip().lower()
        if skip not in ("true", "false"):
            raise ValueError("metadata skip-invalid: must be true or false")
        start = metadata.get("start-after-line", "0").strip()
        if not start.isdigit():
            raise ValueError("metadata start-after-line: must be a line number")
        return cls(list(PROVIDERS) if provider == "all" else [provider], skip == "true", int(start))


@contextmanager
def object_lines(s3: Any, obj: S3Object, fmt: Format) -> Iterator[tuple[TextIO, dict[str, str]]]:
    """The object's text, streamed (and its metadata), at ``obj``'s ETag: ``Changed`` if the object
    was replaced since."""
    try:
        answer = s3.get_object(Bucket=obj.bucket, Key=obj.key, IfMatch=obj.if_match)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            raise Changed from None
        raise
    body = answer["Body"]
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="" if fmt == "csv" else None)
    try:
        yield text, dict(answer.get("Metadata") or {})
    finally:
        body.close()


class Clock:
    """How much time the import has left: ``time_left`` (seconds, e.g. a Lambda context's) less a
    margin for the calls in flight and the summary; no deadline without ``time_left``."""

    def __init__(self, time_left: Callable[[], float] | None, margin: float) -> None:
        self.time_left = time_left
        self.margin = margin

    def out(self) -> bool:
        return self.time_left is not None and self.time_left() <= self.margin


def _decode_errors[T](rows: Iterator[T]) -> Iterator[T]:
    """A file that is not UTF-8 text (or not CSV) ends the import with a reason, not a traceback
    with its bytes."""
    try:
        yield from rows
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    except csv.Error as exc:  # csv's messages name the fault, not the cell
        raise ValueError(f"the file is not valid CSV ({exc})") from None


def import_object(
    s3: Any,
    sqs: Any,
    obj: S3Object,
    queue_urls: dict[str, str],
    *,
    options: Options | None = None,
    concurrency: int = 8,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Validate, then send, the object ``obj``; the summary of what was done (not written: see
    ``write_summary``). ``options``: the object's metadata's, when None. ``sqs``: an
    ``imports.BatchClient`` (or a client from ``imports.sqs_client``): no retries of its own."""
    started = time.monotonic()
    clock = clock or Clock(None, 0)
    fmt = obj.format
    summary = Summary(
        obj.bucket,
        obj.key,
        obj.etag.strip('"'),
        obj.version_id,
        fmt or "",
        [],
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        if fmt is None:
            raise ValueError("the key must end in .csv or .jsonl")
        with allow_identifying_ids(identifying_ids_allowed()):  # the rule read once, not per id
            options = _validate(s3, obj, fmt, options, clock, summary)
            if summary.status == "done" and options.dry_run:
                summary.status = "validated"
            if summary.status == "done":
                _send(s3, sqs, obj, fmt, options, queue_urls, concurrency, clock, sleep, summary)
    except Changed:
        summary.status = "changed"
        summary.reason = (
            "the object was replaced after this import started; nothing of it was sent by this import "
            "(the new object has its own event)"
            if summary.sent == 0
            else "the object was replaced"
        )
    except ValueError as exc:  # the object's name, metadata or encoding: nothing sent
        summary.status = "rejected"
        summary.reason = str(exc)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    return summary


def _validate(
    s3: Any, obj: S3Object, fmt: Format, options: Options | None, clock: Clock, summary: Summary
) -> Options:
    with object_lines(s3, obj, fmt) as (text, metadata):
        options = options or Options.from_metadata(metadata)
        summary.providers = options.providers
        summary.skip_invalid = options.skip_invalid
        summary.start_after_line = options.start_after_line
        summary.per_provider = {name: ProviderCounts() for name in options.providers}
        planner = Planner(options.providers, render=False, fast=True)  # as imports.validate_lines
        for count, (line, planned, errors) in enumerate(_decode_errors(planner.checked(text, fmt)), start=1):
            if count % DEADLINE_CHECK_EVERY == 0 and clock.out():
                _totals(summary)
                summary.status = "incomplete"
                summary.reason = (
                    f"the deadline came during validation (through line {summary.validated_through_line}); "
                    "nothing was sent: split the file, or see docs/imports.md for larger files"
                )
                return options
            summary.rows += 1
            for provider in planned:
                summary.per_provider[provider].planned += 1
            if errors:
                summary.invalid += 1
                if summary.invalid <= MAX_SHOWN_ERRORS:
                    summary.invalid_rows.extend(
                        {"line": line, "field": error.field, "message": error.message} for error in errors
                    )
            summary.validated_through_line = line
    _totals(summary)
    if summary.invalid and not options.skip_invalid:
        summary.status = "rejected"
        summary.reason = f"{summary.invalid} invalid rows: nothing sent (fix them, or set skip-invalid)"
    return options


def _totals(summary: Summary) -> None:
    summary.valid = summary.rows - summary.invalid
    summary.invalid_rows_total = summary.invalid


def _send(
    s3: Any,
    sqs: Any,
    obj: S3Object,
    fmt: Format,
    options: Options,
    queue_urls: dict[str, str],
    concurrency: int,
    clock: Clock,
    sleep: Callable[[float], None],
    summary: Summary,
) -> None:
    sender = BatchSender(
        sqs, {p: queue_urls[p] for p in options.providers}, concurrency=concurrency, sleep=sleep
    )
    planner = Planner(options.providers)
    summary.sent_through_line = options.start_after_line
    with object_lines(s3, obj, fmt) as (text, _):
        try:
            for count, row in enumerate(_decode_errors(read_rows(text, fmt)), start=1):
                if count % DEADLINE_CHECK_EVERY == 0 and clock.out():
                    raise OutOfTime
                planned, _errors = planner.plan(row)  # every row: an id repeated later is still caught
                if row.line > options.start_after_line:
                    for item in planned:
                        sender.add(item)
                    summary.sent_through_line = row.line
        except OutOfTime:
            summary.status = "incomplete"
        finally:
            sender.flush()  # the calls in flight finish: what they did is counted
    report = sender.report
    for name, counts in summary.per_provider.items():
        counts.sent, counts.failed = report.sent[name], report.failed[name]
        counts.unconfirmed, counts.calls = report.unconfirmed[name], report.calls[name]
    summary.failure_reasons = dict(Counter(report.reasons))
    if summary.status == "incomplete":
        summary.reason = (
            f"the deadline came while sending: rows through line {summary.sent_through_line} were "
            "handled, none after it was sent; put the file again with start-after-line metadata "
            f"{summary.sent_through_line} to send the rest"
        )
    elif summary.failed:
        summary.status = "failed"
        maybe = (
            f"; {summary.unconfirmed} of them may have been queued (their answer was lost)"
            if summary.unconfirmed
            else ""
        )
        summary.reason = f"{summary.failed} requests were not queued{maybe}; re-run the import for them"


def write_summary(s3: Any, summary: Summary) -> str:
    """Put ``<key>.summary.json`` beside the file; its key."""
    key = summary.key + SUMMARY_SUFFIX
    s3.put_object(
        Bucket=summary.bucket, Key=key, Body=summary.to_json().encode(), ContentType="application/json"
    )
    return key


def objects_of(event: dict[str, Any]) -> list[S3Object]:
    """The objects an S3 event notification names (keys URL-decoded)."""
    from urllib.parse import unquote_plus

    # From its own module: the package's __init__ would load the data class of every kind of event.
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event

    return [
        S3Object(
            record.s3.bucket.name,
            unquote_plus(record.s3.get_object.key),  # S3 sends keys URL-encoded
            record.s3.get_object.etag,
            record.s3.get_object.version_id,
        )
        for record in S3Event(event).records
    ]


class ImportFunction(LambdaFunction):
    """The Lambda handler of ImportBucket's object-created events: imports each object named,
    writes its summary beside it, and fails the invocation (after the summary is written) when an
    import did not queue every row."""

    provider = "all"

    def __init__(self, s3: Any = None, sqs: Any = None) -> None:
        self._s3 = s3
        self._sqs = sqs

    def dispatch(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        import boto3

        from provisioning.settings import ImportSettings

        settings = ImportSettings.from_env()
        if self._s3 is None:  # once per container, as the SQS client below
            self._s3 = boto3.client("s3")
        s3 = self._s3
        if self._sqs is None:  # the container's session: its role's credentials
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            self._sqs = BatchClient(boto3.DEFAULT_SESSION, settings.import_concurrency)
        sqs = self._sqs
        clock = Clock(
            lambda: context.get_remaining_time_in_millis() / 1000, settings.import_deadline_margin_seconds
        )
        results = []
        incomplete = []
        for obj in objects_of(event):
            if obj.key.endswith(SUMMARY_SUFFIX):  # never triggered by the bucket's filters; not imported
                continue
            try:
                summary = import_object(
                    s3, sqs, obj, settings.queue_urls, concurrency=settings.import_concurrency, clock=clock
                )
            except ClientError as exc:  # the object cannot be read (gone, denied): a summary says so
                code = exc.response.get("Error", {}).get("Code", "")
                summary = Summary(obj.bucket, obj.key, obj.etag, obj.version_id, obj.format or "", [])
                summary.status, summary.reason = "failed", f"the object could not be read ({code})"
            write_summary(s3, summary)
            logger.info("import finished", extra={"import": summary.counts()})  # counts only
            results.append({"key": obj.key, **summary.counts()})
            if summary.status in ("incomplete", "failed"):
                incomplete.append(f"{obj.key}: {summary.status}")
        if incomplete:
            raise ImportIncomplete("; ".join(incomplete) + " (see the summaries)")
        return {"imports": results}


__all__ = [
    "Clock",
    "ImportFunction",
    "ImportIncomplete",
    "Options",
    "S3Object",
    "Summary",
    "import_object",
    "objects_of",
    "write_summary",
]
