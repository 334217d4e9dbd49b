"""``provisioner``: the hub's command line (local stack, invoke, links, demo)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from provisioner_cli.bulk import import_command
from provisioner_cli.dlq import dlq
from provisioner_cli.invoke import invoke_function
from provisioner_cli.local import STATE_FILE, LocalStack, StackState
from provisioner_cli.person import person_command
from provisioner_cli.stack import PROVIDER_WIDTH, resolve_target, target_options, template_option
from provisioner_cli.status import status
from provisioner_cli.sync import sync_command
from provisioner_cli.template import Template
from provisioner_cli.webhook import webhook
from provisioning.providers import NAMES


def _template(path: str) -> Template:
    template_path = Path(path)
    if not template_path.exists():
        raise click.UsageError(f"{template_path} not found: run from the project folder or pass --template")
    return Template(template_path)


def _state() -> StackState:
    try:
        return StackState.load(STATE_FILE)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def cli() -> None:
    """Provision people at every registered provider; run and inspect the hub locally."""


@cli.group()
def local() -> None:
    """The local stack: moto's server (AWS) and the provider sandbox on 127.0.0.1."""


@local.command("up")
@template_option()
@click.option("--aws-port", default=4566, show_default=True)
@click.option("--sandbox-port", default=4577, show_default=True)
@click.option(
    "--hostile",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of provider calls answered with a hostile fault (HTML, cut-off or huge bodies, redirects, "
    "trickles, hangs, odd Retry-After, personal data in errors); also POST /_sandbox/hostile.",
)
@click.option(
    "--iam/--no-iam",
    "enforce_iam",
    default=True,
    show_default=True,
    help="Run each function under its own role as SAM deploys it, enforced (needs the SAM CLI's "
    "environment: make sam-venv).",
)
def local_up(template_path: str, aws_port: int, sandbox_port: int, hostile: float, enforce_iam: bool) -> None:
    """Start the local stack in the foreground (Ctrl-C stops it)."""
    stack = LocalStack(
        _template(template_path), aws_port=aws_port, sandbox_port=sandbox_port, enforce_iam=enforce_iam
    )
    state = stack.start()
    state.save(STATE_FILE)
    if hostile > 0:
        stack.sandbox.make_hostile(hostile)
    click.echo(f"AWS endpoint (moto): {state.aws_endpoint}")
    click.echo(
        f"provider sandbox:    {state.sandbox_url}" + (f" (hostile: {hostile:.0%})" if hostile else "")
    )
    click.echo(
        "IAM:                 "
        + ("each function under its own role, enforced" if enforce_iam else "not enforced (--no-iam)")
    )
    click.echo(f"state written to {STATE_FILE}; Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        STATE_FILE.unlink(missing_ok=True)


@local.command("env")
@template_option()
@click.argument("function_id")
def local_env(template_path: str, function_id: str) -> None:
    """Print a function's environment resolved for the running local stack."""
    click.echo(json.dumps(_state().function_environment(_template(template_path), function_id), indent=2))


@local.command("env-json")
@template_option()
def local_env_json(template_path: str) -> None:
    """Print env.json for `sam local invoke --env-vars` (every function's variables)."""
    from provisioner_cli.local import sam_local_env

    click.echo(json.dumps(sam_local_env(_template(template_path)), indent=2))


@cli.command()
@template_option()
@click.argument("function_id")
@click.option(
    "--event",
    "event_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Event JSON file (see events/).",
)
def invoke(template_path: str, function_id: str, event_path: str) -> None:
    """Invoke FUNCTION_ID (a logical id of template.yaml) with an event, against the local stack."""
    template = _template(template_path)
    state = _state()
    event = _with_local_arns(json.loads(Path(event_path).read_text()), state)
    try:
        outcome = invoke_function(template, state, function_id, event)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    click.echo(outcome.logs, err=True, nl=False)
    if not outcome.ok:
        raise click.ClickException(outcome.error or "invocation failed")
    click.echo(json.dumps(outcome.result, indent=2))


def _with_local_arns(event: dict[str, Any], state: StackState) -> dict[str, Any]:
    """Point SQS records at the local queue of the same logical id."""
    for record in event.get("Records", []):
        arn = record.get("eventSourceARN", "")
        name = arn.rsplit(":", 1)[-1]
        if f"{name}.Arn" in state.attrs:
            record["eventSourceARN"] = state.attrs[f"{name}.Arn"]
    return event


@cli.command()
@click.option("--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def openapi(output: str | None) -> None:
    """Print the API's OpenAPI document (generated from the functions' routes)."""
    from provisioner_cli.openapi import build_openapi, render

    text = render(build_openapi())
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("external_id", required=False)
@click.option("--table", help="Users table name (instead of the stack's UsersTable).")
@target_options
def links(external_id: str | None, table: str | None, **target: Any) -> None:
    """Show stored provider links: of EXTERNAL_ID, or all of them."""
    from provisioning.store import LinkStore

    store = LinkStore(*_users_table(table, target))
    found = store.links_of(external_id) if external_id else store.scan_links()
    print_links(found)


@cli.command()
@click.argument("external_id")
@click.option("--provider", type=click.Choice(sorted(NAMES)), required=True)
@click.option(
    "--provider-user-id", help="Link the person to this provider user, found at the provider by hand."
)
@click.option(
    "--not-created", is_flag=True, help="The provider holds no user for this person: let it be created."
)
@click.option("--table", help="Users table name (instead of the stack's UsersTable).")
@target_options
def resolve(
    external_id: str,
    provider: str,
    provider_user_id: str | None,
    not_created: bool,
    table: str | None,
    **target: Any,
) -> None:
    """Settle a person held with ``unknown_outcome``: an earlier create may have reached PROVIDER and
    no lookup can tell. Check at the provider, then either link the user found there
    (--provider-user-id) or declare that none exists (--not-created); then redrive the DLQ."""
    from provisioning.errors import Conflict
    from provisioning.store import Link, LinkSource, LinkStatus, LinkStore

    if bool(provider_user_id) == not_created:
        raise click.UsageError("give exactly one of --provider-user-id and --not-created")
    store = LinkStore(*_users_table(table, target))
    pending = store.get(provider, external_id)
    if pending is None or pending.status != LinkStatus.PENDING:
        state = "not known" if pending is None else "already linked"
        raise click.ClickException(f"nothing to resolve: {external_id} at {provider} is {state}")
    if not_created:
        store.settle(provider, external_id, pending.attempts)
        click.echo(f"{external_id} at {provider}: marked as not created; a redelivery creates it")
        return
    link = Link(
        external_id=external_id,
        provider=provider,
        provider_user_id=provider_user_id,
        source=LinkSource.RESOLVED,
        created_at=pending.created_at,
        attempted_at=pending.attempted_at,
        attempts=pending.attempts,
    )
    try:
        store.save_link(link)
    except Conflict as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{external_id} at {provider}: linked to {provider_user_id}; a redelivery answers it")


def _users_table(table: str | None, target: dict[str, Any]) -> tuple[Any, str]:
    stack = resolve_target(**target) if not table else None
    if stack is not None:
        return stack.client("dynamodb"), stack.users_table
    import boto3

    client = boto3.client(
        "dynamodb", endpoint_url=target.get("endpoint_url"), region_name=target.get("region")
    )
    return client, str(table)


def print_links(found: list[Any]) -> None:
    if not found:
        click.echo("no links")
        return
    rows = sorted(found, key=lambda link: (link.external_id, link.provider))
    header = (
        f"{'external_id':<24} {'provider':<{PROVIDER_WIDTH}} {'status':<8} {'source':<11} provider_user_id"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for link in rows:
        click.echo(
            f"{link.external_id:<24} {link.provider:<{PROVIDER_WIDTH}} {link.status.value:<8} "
            f"{(link.source.value if link.source else '-'):<11} {link.provider_user_id or '-'}"
        )


@cli.command()
@template_option()
def demo(template_path: str) -> None:
    """Run the hub end to end on a throwaway local stack and print the stored links."""
    from provisioner_cli.demo import run_demo

    sys.exit(run_demo(_template(template_path)))


@cli.command("deploy-check")
@template_option()
@click.option(
    "--output-dir",
    default=".deploy-check",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Build, packaged and translated templates and the report.",
)
def deploy_check(template_path: str, output_dir: str) -> None:
    """Rehearse a deploy on moto's server: sam build, sam package to its S3, cfn-lint, then the stack
    through its CloudFormation, compared with the template and with the local stack."""
    from provisioner_cli.deploycheck import run

    report = run(_template(template_path).path.resolve(), Path(output_dir).resolve())
    if report.failures:
        raise click.ClickException(f"deploy-check failed: {len(report.failures)} problem(s) above")


for command in (import_command, status, dlq, sync_command, person_command, webhook):
    cli.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    cli()
