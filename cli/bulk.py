"""``provisioner import``: bulk-import people into the provider queues.

The file (CSV with a header row, or JSON Lines) is read twice and never held in memory: the first
pass validates every row — each Person is mapped to the request of every provider it goes to — and
reports each invalid row by line number and field, without its values; the second pass sends the
requests with ``SendMessageBatch``, ten per call. Nothing is sent while a row is invalid, unless
``--skip-invalid``. An ``external_id`` appears at most once per provider in one import.

Rows are validated with the models the functions use, the rule on personal data in ``external_id``
included: ``--allow-identifying-ids`` matches a stack deployed with ``AllowIdentifyingExternalIds=true``.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from provisioner_cli.stack import PROVIDER_QUEUES, resolve_target, target_options
from provisioning.adapters import parse_json, validate_body
from provisioning.errors import FieldError, InvalidRequest
from provisioning.person import PROVIDERS, Person, parse_person, request_for
from provisioning.privacy import field_name
from provisioning.runtime import CreateUserSpec
from provisioning.validation import allow_identifying_ids
from provisioning.waiting import PRIORITY

BATCH = 10  # SQS SendMessageBatch's largest batch
MAX_SHOWN_ERRORS = 50
# Imported rows are bulk: under a provider's rate limit, signups go before them.
BULK = {PRIORITY: {"DataType": "String", "StringValue": "bulk"}}
PERSON_FIELDS = frozenset(Person.model_fields)


def create_specs() -> dict[str, CreateUserSpec[Any]]:
    from provisioning.providers import PROVIDERS

    return {info.name: info.create.load_spec() for info in PROVIDERS}


@dataclass
class Row:
    line: int
    data: Any


def detect_format(path: Path) -> str:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _csv_value(name: str, value: str) -> Any:
    if name == "providers":
        return [part.strip() for part in value.replace(";", "|").split("|") if part.strip()]
    return value


def read_rows(path: Path, fmt: str) -> Iterator[Row]:
    """Each row with its line number in the file (a CSV's header is line 1). Empty CSV cells are
    absent fields; blank JSON Lines are skipped."""
    with path.open(newline="" if fmt == "csv" else None, encoding="utf-8-sig") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            line = reader.line_num
            for record in reader:
                start, line = line + 1, reader.line_num
                data = {
                    name: _csv_value(name, value.strip())
                    for name, value in record.items()
                    if name is not None and isinstance(value, str) and value.strip()
                }
                if None in record:
                    data[None] = True  # more cells than the header has names
                yield Row(start, data)
            return
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield Row(number, parse_json(text))
            except json.JSONDecodeError as exc:  # NaN, over-long numbers and deep nesting included
                yield Row(number, ValueError(exc.msg))


@dataclass
class Planned:
    provider: str
    external_id: str
    body: str


@dataclass
class Planner:
    """Turns rows into the provider requests to queue; remembers external_ids per provider. A row
    that fails for one provider (e.g. a person without the e-mail Trust requires) still plans the
    requests of the other providers: they are sent only with ``--skip-invalid``."""

    providers: list[str]
    specs: dict[str, CreateUserSpec[Any]] = field(default_factory=create_specs)
    _seen: dict[str, dict[str, int]] = field(default_factory=dict)

    def plan(self, row: Row) -> tuple[list[Planned], list[FieldError]]:
        data = row.data
        if isinstance(data, ValueError):
            return [], [FieldError("row", str(data))]
        if not isinstance(data, dict):
            return [], [FieldError("row", "must be a JSON object")]
        if None in data:
            return [], [FieldError("row", "has more cells than the header")]
        try:
            requests, errors = self._requests(data)
        except InvalidRequest as exc:
            return [], exc.errors
        planned = []
        for provider, request in requests:
            seen = self._seen.setdefault(provider, {})
            first = seen.get(request.external_id)
            if first is not None:
                errors.append(FieldError("external_id", f"repeats line {first} for {provider}"))
                continue
            seen[request.external_id] = row.line
            body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
            planned.append(Planned(provider, request.external_id, json.dumps(body, separators=(",", ":"))))
        return planned, errors

    def _requests(self, data: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[FieldError]]:
        if set(data) <= PERSON_FIELDS:
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


@dataclass
class Validation:
    rows: int = 0
    invalid: int = 0
    per_provider: Counter[str] = field(default_factory=Counter)


def validate_file(path: Path, fmt: str, providers: list[str], report: Callable[[str], None]) -> Validation:
    """Pass 1: every row checked; each invalid one reported as ``line N: field: message``.
    ``per_provider`` counts the requests the valid parts of the rows would send."""
    planner = Planner(providers)
    result = Validation()
    for row in read_rows(path, fmt):
        result.rows += 1
        planned, errors = planner.plan(row)
        for item in planned:
            result.per_provider[item.provider] += 1
        if errors:
            result.invalid += 1
            if result.invalid <= MAX_SHOWN_ERRORS:
                for error in errors:
                    report(f"line {row.line}: {error.field}: {error.message}")
    if result.invalid > MAX_SHOWN_ERRORS:
        report(f"... and {result.invalid - MAX_SHOWN_ERRORS} more invalid rows")
    return result


@dataclass
class SendReport:
    calls: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


class BatchSender:
    """Sends up to ten requests per ``SendMessageBatch``; retries only the entries SQS reports as
    failed (with backoff), so no request is ever queued twice."""

    def __init__(
        self,
        sqs: Any,
        queue_urls: dict[str, str],
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sqs = sqs
        self.queue_urls = queue_urls
        self.attempts = attempts
        self.sleep = sleep
        self.report = SendReport()
        self._buffers: dict[str, list[Planned]] = {}

    def add(self, item: Planned) -> None:
        buffer = self._buffers.setdefault(item.provider, [])
        buffer.append(item)
        if len(buffer) == BATCH:
            self._send(item.provider, buffer)
            buffer.clear()

    def flush(self) -> None:
        for provider, buffer in self._buffers.items():
            if buffer:
                self._send(provider, buffer)
                buffer.clear()

    def _send(self, provider: str, items: list[Planned]) -> None:
        pending = {str(index): item for index, item in enumerate(items)}
        for attempt in range(1, self.attempts + 1):
            entries = [
                {"Id": key, "MessageBody": item.body, "MessageAttributes": BULK}
                for key, item in pending.items()
            ]
            self.report.calls[provider] += 1
            try:
                answer = self.sqs.send_message_batch(QueueUrl=self.queue_urls[provider], Entries=entries)
            except Exception as exc:  # the whole call failed: nothing of it was queued
                failures: list[dict[str, Any]] = [
                    {"Id": key, "Code": type(exc).__name__, "SenderFault": False} for key in pending
                ]
            else:
                failures = answer.get("Failed", [])
                failed_ids = {f["Id"] for f in failures}
                self.report.sent[provider] += len(pending) - len(failed_ids)
            retry = {}
            for failure in failures:
                if failure.get("SenderFault") or attempt == self.attempts:
                    self.report.failed[provider] += 1
                    self.report.reasons[str(failure.get("Code", "unknown"))] += 1
                else:
                    retry[failure["Id"]] = pending[failure["Id"]]
            pending = retry
            if not pending:
                return
            self.sleep(min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))


def send_file(
    path: Path,
    fmt: str,
    providers: list[str],
    sender: BatchSender,
    progress: Callable[[int], None] = lambda rows: None,
) -> SendReport:
    """Pass 2: every valid request (what pass 1 counted), queued in batches of ten per provider."""
    planner = Planner(providers)
    for row in read_rows(path, fmt):
        planned, _ = planner.plan(row)
        for item in planned:
            sender.add(item)
        progress(1)
    sender.flush()
    return sender.report


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--provider",
    type=click.Choice([*PROVIDERS, "all"]),
    required=True,
    help="Where to provision the rows (all: every provider each person targets).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the extension.")
@click.option("--skip-invalid", is_flag=True, help="Send the valid rows even when some are invalid.")
@click.option("--dry-run", is_flag=True, help="Validate and count; send nothing.")
@click.option("--queue-url", help="Send to this queue (with a single --provider) instead of the stack's.")
@click.option(
    "--allow-identifying-ids",
    "allow_identifying",
    is_flag=True,
    help=(
        "Accept external_ids that hold an e-mail address or look like a phone number or a name (not for "
        "Validic), as a stack deployed with AllowIdentifyingExternalIds=true does."
    ),
)
@target_options
def import_command(
    path: Path,
    provider: str,
    fmt: str | None,
    skip_invalid: bool,
    dry_run: bool,
    queue_url: str | None,
    allow_identifying: bool,
    **target: Any,
) -> None:
    """Import people from PATH (CSV or JSON Lines of persons, or provider-shaped bodies) into the
    provider queues: every row is validated first, then sent with SendMessageBatch."""
    with allow_identifying_ids(allow_identifying):
        _import(path, provider, fmt, skip_invalid, dry_run, queue_url, **target)


def _import(
    path: Path,
    provider: str,
    fmt: str | None,
    skip_invalid: bool,
    dry_run: bool,
    queue_url: str | None,
    **target: Any,
) -> None:
    providers = list(PROVIDERS) if provider == "all" else [provider]
    if queue_url and len(providers) != 1:
        raise click.UsageError("--queue-url needs a single --provider")
    fmt = fmt or detect_format(path)

    def report(message: str) -> None:
        click.echo(message, err=True)

    checked = validate_file(path, fmt, providers, report)
    valid = checked.rows - checked.invalid
    click.echo(f"{checked.rows} rows read, {valid} valid, {checked.invalid} invalid")
    if checked.invalid and not skip_invalid:
        raise click.ClickException("nothing sent: fix the rows above, or pass --skip-invalid")
    if dry_run:
        for name in providers:
            click.echo(f"  would send {checked.per_provider[name]:>7} to {name}")
        return

    if queue_url:
        queue_urls = {providers[0]: queue_url}
        import boto3

        sqs = boto3.client("sqs", endpoint_url=target.get("endpoint_url"), region_name=target.get("region"))
    else:
        stack = resolve_target(**target)
        queue_urls = {name: stack.resource(PROVIDER_QUEUES[name]) for name in providers}
        sqs = stack.client("sqs")
    sender = BatchSender(sqs, queue_urls)
    with click.progressbar(length=checked.rows, label="sending", file=sys.stderr) as bar:
        result = send_file(path, fmt, providers, sender, bar.update)

    if checked.invalid:
        click.echo(f"skipped the invalid parts of {checked.invalid} rows")
    for name in providers:
        line = f"  {name:<8} sent {result.sent[name]:>7} in {result.calls[name]} SendMessageBatch calls"
        if result.failed[name]:
            line += f", FAILED {result.failed[name]}"
        click.echo(line)
    if sum(result.failed.values()):
        reasons = ", ".join(f"{code} x{count}" for code, count in result.reasons.items())
        raise click.ClickException(f"some requests were not queued ({reasons}); re-run the import for them")


__all__ = ["BatchSender", "Planner", "import_command", "read_rows", "send_file", "validate_file"]
