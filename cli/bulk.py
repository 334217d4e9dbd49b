"""``provisioner import``: bulk-import people into the provider queues.

The file (CSV with a header row, or JSON Lines) is read twice and never held in memory: the first
pass validates every row — each Person is mapped to the request of every provider it goes to — and
reports each invalid row by line number and field, without its values; the second pass sends the
requests with ``SendMessageBatch``, ten per call, several calls in flight (``--concurrency``), through
``BatchClient`` (signed requests without boto3's per-call machinery), from several processes for a
large import (``--processes``, ``import_workers``).
Nothing is sent while a row is invalid, unless ``--skip-invalid``. An ``external_id`` appears at
most once per provider in one import.

The passes themselves are the layer's (``provisioning.imports``): this module is the command, the
target's resolution and what it prints.

Rows are validated with the models the functions use, the rule on personal data in ``external_id``
included: ``--allow-identifying-ids`` matches a stack deployed with ``AllowIdentifyingExternalIds=true``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from provisioner_cli.import_workers import MAX_PROCESSES, PROCESSES_FROM, auto_processes, make_sender
from provisioner_cli.stack import PROVIDER_QUEUES, resolve_target, target_options
from provisioning.imports import (
    NOT_QUEUED,
    BatchClient,
    BatchSender,
    Format,
    Planned,
    Planner,
    Row,
    SeenIds,
    Sender,
    SendReport,
    Validation,
    estimate_rows,
    send_with,
    sqs_client,
    validate_lines,
)
from provisioning.imports import read_rows as read_lines
from provisioning.person import PROVIDERS
from provisioning.validation import allow_identifying_ids


def detect_format(path: Path) -> Format:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def read_rows(path: Path, fmt: Format) -> Iterator[Row]:
    """The rows of the file at ``path``, one at a time (``provisioning.imports.read_rows``)."""
    with path.open(newline="" if fmt == "csv" else None, encoding="utf-8-sig") as handle:
        yield from read_lines(handle, fmt)


def expected_rows(path: Path) -> int:
    """An estimate of the rows in ``path`` from its size and its first 256 KB."""
    with path.open("rb") as handle:
        head = handle.read(1 << 18)
    return estimate_rows(path.stat().st_size, head)


def validate_file(path: Path, fmt: Format, providers: list[str], report: Callable[[str], None]) -> Validation:
    """Pass 1 over the file (``provisioning.imports.validate_lines``)."""
    with path.open(newline="" if fmt == "csv" else None, encoding="utf-8-sig") as handle:
        return validate_lines(handle, fmt, providers, report, expected_rows(path))


def send_file(
    path: Path,
    fmt: Format,
    providers: list[str],
    sender: Sender,
    progress: Callable[[int], None] = lambda rows: None,
) -> SendReport:
    """Pass 2 over the file (``provisioning.imports.send_with``)."""
    return send_with(read_rows(path, fmt), providers, sender, progress, expected_rows(path))


@click.command("import")
@click.argument("path")
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
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="SendMessageBatch calls in flight.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    help=(
        "Processes that sign and send a local file's requests (the calls in flight are shared among them). "
        f"Default: one per CPU (at most {MAX_PROCESSES}) from {PROCESSES_FROM:,} requests, else one."
    ),
)
@click.option(
    "--allow-identifying-ids",
    "allow_identifying",
    is_flag=True,
    help=(
        "Accept external_ids that hold an e-mail address or look like a phone number or a name (not for "
        "Validic), as a stack deployed with AllowIdentifyingExternalIds=true does."
    ),
)
@click.option(
    "--in-cloud",
    is_flag=True,
    help="Put the file in the stack's ImportBucket for ImportFunction to import, and print its summary.",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0),
    default=960,
    show_default=True,
    help="With --in-cloud: how long to wait for the summary (seconds).",
)
@target_options
def import_command(
    path: str,
    provider: str,
    fmt: str | None,
    skip_invalid: bool,
    dry_run: bool,
    queue_url: str | None,
    concurrency: int,
    processes: int | None,
    allow_identifying: bool,
    in_cloud: bool,
    wait_seconds: float,
    **target: Any,
) -> None:
    """Import people from PATH (CSV or JSON Lines of persons, or provider-shaped bodies) into the
    provider queues: every row is validated first, then sent with SendMessageBatch. PATH may be
    s3://bucket/key: the object is streamed from S3 with your credentials (docs/imports.md)."""
    from provisioner_cli import s3import

    form: Format | None = "csv" if fmt == "csv" else "jsonl" if fmt == "jsonl" else None
    with allow_identifying_ids(allow_identifying):
        if path.startswith("s3://"):
            s3import.import_from_s3(
                path, provider, form, skip_invalid, dry_run, queue_url, concurrency, **target
            )
            return
        file = click.Path(exists=True, dir_okay=False, path_type=Path).convert(path, None, None)
        if in_cloud:
            s3import.import_in_cloud(file, provider, skip_invalid, wait_seconds, **target)
            return
        _import(file, provider, fmt, skip_invalid, dry_run, queue_url, concurrency, processes, **target)


def _import(
    path: Path,
    provider: str,
    fmt: str | None,
    skip_invalid: bool,
    dry_run: bool,
    queue_url: str | None,
    concurrency: int = 8,
    processes: int | None = None,
    **target: Any,
) -> None:
    providers = list(PROVIDERS) if provider == "all" else [provider]
    if queue_url and len(providers) != 1:
        raise click.UsageError("--queue-url needs a single --provider")
    form: Format = "csv" if (fmt or detect_format(path)) == "csv" else "jsonl"

    def report(message: str) -> None:
        click.echo(message, err=True)

    checked = validate_file(path, form, providers, report)
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

        sqs = BatchClient(
            boto3.Session(region_name=target.get("region")),
            concurrency,
            endpoint_url=target.get("endpoint_url"),
        )
    else:
        stack = resolve_target(**target)
        queue_urls = {name: stack.resource(PROVIDER_QUEUES[name]) for name in providers}
        kw = {"endpoint_url": stack.endpoint_url} if stack.endpoint_url else {}
        sqs = BatchClient(stack.session, concurrency, **kw)
    processes = processes or auto_processes(sum(checked.per_provider[name] for name in providers))
    if processes > 1:
        click.echo(f"sending from {processes} processes, {concurrency} calls in flight")
    sender = make_sender(sqs, queue_urls, concurrency, processes)
    with click.progressbar(length=checked.rows, label="sending", file=sys.stderr) as bar:
        result = send_file(path, form, providers, sender, bar.update)

    if checked.invalid:
        click.echo(f"skipped the invalid parts of {checked.invalid} rows")
    for name in providers:
        line = f"  {name:<8} sent {result.sent[name]:>7} in {result.calls[name]} SendMessageBatch calls"
        if result.failed[name]:
            line += f", FAILED {result.failed[name]}"
        click.echo(line)
    if sum(result.failed.values()):
        reasons = ", ".join(f"{code} x{count}" for code, count in result.reasons.items())
        unconfirmed = sum(result.unconfirmed.values())
        maybe = f"; {unconfirmed} of them may have been queued (their answer was lost)" if unconfirmed else ""
        raise click.ClickException(
            f"some requests were not queued ({reasons}){maybe}; re-run the import for them"
        )


__all__ = [
    "NOT_QUEUED",
    "BatchSender",
    "Planned",
    "Planner",
    "SeenIds",
    "detect_format",
    "import_command",
    "read_rows",
    "send_file",
    "sqs_client",
    "validate_file",
]
