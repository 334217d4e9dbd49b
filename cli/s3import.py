"""``provisioner import s3://bucket/key``: the import of an object in S3 (``provisioning.s3_import``,
the same passes as ImportFunction's), run here with the caller's credentials; and
``provisioner import FILE --in-cloud``: the file put in the stack's ImportBucket, for ImportFunction
to import, and its summary awaited."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from provisioner_cli.stack import PROVIDER_QUEUES, StackTarget, resolve_target
from provisioning.imports import MAX_SHOWN_ERRORS, BatchClient, Format
from provisioning.person import PROVIDERS
from provisioning.s3_import import SUMMARY_SUFFIX, Options, S3Object, Summary, import_object

IMPORT_PREFIX = "imports/"
IMPORT_BUCKET = "ImportBucket"
IMPORT_FUNCTION = "ImportFunction"


def parse_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise click.BadParameter("must be s3://bucket/key", param_hint="PATH")
    return bucket, key


def import_from_s3(
    url: str,
    provider: str,
    fmt: Format | None,
    skip_invalid: bool,
    dry_run: bool,
    queue_url: str | None,
    concurrency: int,
    **target: Any,
) -> None:
    """Validate, then send, the object at ``url``, streamed with the caller's credentials."""
    bucket, key = parse_s3_url(url)
    providers = list(PROVIDERS) if provider == "all" else [provider]
    if queue_url and len(providers) != 1:
        raise click.UsageError("--queue-url needs a single --provider")
    if queue_url:
        import boto3

        kw = {k: v for k, v in (("endpoint_url", target.get("endpoint_url")),) if v}
        session = boto3.Session(region_name=target.get("region"))
        queue_urls = {providers[0]: queue_url}
    else:
        stack = resolve_target(**target)
        session = stack.session
        kw = {"endpoint_url": stack.endpoint_url} if stack.endpoint_url else {}
        queue_urls = {name: stack.resource(PROVIDER_QUEUES[name]) for name in providers}
    s3 = session.client("s3", **kw)
    head = s3.head_object(Bucket=bucket, Key=key)
    obj = S3Object(bucket, key, head["ETag"], head.get("VersionId"), fmt)
    sqs = BatchClient(session, concurrency, **kw)
    options = Options(providers, skip_invalid=skip_invalid, dry_run=dry_run)
    summary = import_object(s3, sqs, obj, queue_urls, options=options, concurrency=concurrency)
    show(summary)


def show(summary: Summary) -> None:
    """What ``provisioner import`` prints of a local file, from a summary; a ClickException unless
    every row was queued (or validated, for a dry run)."""
    for row in summary.invalid_rows:
        click.echo(f"line {row['line']}: {row['field']}: {row['message']}", err=True)
    if summary.invalid_rows_total > MAX_SHOWN_ERRORS:
        click.echo(f"... and {summary.invalid_rows_total - MAX_SHOWN_ERRORS} more invalid rows", err=True)
    click.echo(f"{summary.rows} rows read, {summary.valid} valid, {summary.invalid} invalid")
    if summary.status == "validated":
        for name, counts in summary.per_provider.items():
            click.echo(f"  would send {counts.planned:>7} to {name}")
        return
    if summary.status in ("rejected", "changed"):
        raise click.ClickException(f"nothing sent: {summary.reason}")
    for name, counts in summary.per_provider.items():
        line = f"  {name:<8} sent {counts.sent:>7} in {counts.calls} SendMessageBatch calls"
        if counts.failed:
            line += f", FAILED {counts.failed}"
        click.echo(line)
    if summary.status != "done":
        raise click.ClickException(summary.reason)


def summary_from(document: dict[str, Any]) -> Summary:
    from provisioning.s3_import import ProviderCounts

    fields = dict(document)
    fields["per_provider"] = {
        name: ProviderCounts(**counts) for name, counts in (fields.get("per_provider") or {}).items()
    }
    return Summary(**fields)


def import_in_cloud(
    path: Path, provider: str, skip_invalid: bool, wait_seconds: float, **target: Any
) -> None:
    """Put ``path`` under imports/ in the stack's ImportBucket (the provider and skip-invalid as the
    object's metadata) and print its summary once ImportFunction has written it. On the local stack,
    which has no S3 notifications, the function is invoked here with the put event S3 would send."""
    stack = resolve_target(**target)
    bucket = stack.resource(IMPORT_BUCKET)
    key = f"{IMPORT_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{path.name}"
    s3 = stack.client("s3")
    metadata = {"provider": provider, "skip-invalid": str(skip_invalid).lower()}
    with path.open("rb") as body:
        answer = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
    click.echo(f"put s3://{bucket}/{key}", err=True)
    if stack.local_state is not None:
        event = put_event(bucket, key, answer["ETag"], answer.get("VersionId"), path.stat().st_size)
        _invoke_locally(stack, event)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            document = json.loads(s3.get_object(Bucket=bucket, Key=key + SUMMARY_SUFFIX)["Body"].read())
            break
        except s3.exceptions.NoSuchKey:
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"no summary after {wait_seconds:.0f} s: see s3://{bucket}/{key}{SUMMARY_SUFFIX} later, "
                    "and ImportDLQ (provisioner dlq show) if the import failed"
                ) from None
            time.sleep(5)
    click.echo(f"summary s3://{bucket}/{key}{SUMMARY_SUFFIX}", err=True)
    show(summary_from(document))


def put_event(bucket: str, key: str, etag: str, version_id: str | None, size: int) -> dict[str, Any]:
    """The event S3 sends ImportFunction for a put (the key URL-encoded, as S3 does)."""
    from urllib.parse import quote_plus

    obj = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag.strip('"')}
    if version_id:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
            }
        ]
    }


def _invoke_locally(stack: StackTarget, event: dict[str, Any]) -> None:
    """ImportFunction run on the local stack with ``event``, as its S3 notification would."""
    from provisioner_cli.invoke import invoke_function
    from provisioner_cli.template import Template

    assert stack.local_state is not None
    here = Path("template.yaml")
    template = Template(here if here.exists() else Path(__file__).resolve().parents[1] / "template.yaml")
    invocation = invoke_function(template, stack.local_state, IMPORT_FUNCTION, event)
    if not invocation.ok:
        click.echo(f"ImportFunction failed: {invocation.error}", err=True)
