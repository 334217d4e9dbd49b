"""``provisioner sync``: run the Palenca sync now, with a payload shaped as its schedule's Input.

The schedule's target passes ``{"sync": {...}}`` as its constant Input (template.yaml); this command
sends the same shape, built and checked with the function's own model (``SyncRequest``), so a window
the function would refuse is refused here, before anything runs. The local stack runs the handler
in a fresh process (as ``provisioner invoke``); a deployed stack's function is invoked with
``lambda:InvokeFunction``, synchronously: its error comes back here, and is neither retried nor
dead-lettered as a scheduled run's would be.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from botocore.config import Config

from provisioner_cli.stack import StackTarget, resolve_target, target_options, template_option

SYNC_FUNCTION = "PalencaListUsersFunction"
# Lambda's longest timeout and some: the answer comes when the sync ends. One attempt only: a read
# timeout retried would start a second sync beside the first.
INVOKE_CONFIG = Config(read_timeout=960, connect_timeout=10, retries={"total_max_attempts": 1})
OPTIONS = {"days": "--days", "since": "--since", "until": "--until"}


def _option(loc: tuple[str | int, ...]) -> str:
    """The option of a window field (``("sync", "days")`` is ``--days``)."""
    name = str(loc[-1]) if loc else "sync"
    return OPTIONS.get(name, name)


def sync_payload(
    days: int | None = None, since: date | None = None, until: date | None = None
) -> dict[str, Any]:
    """``{"sync": {...}}`` as the schedule's Input carries it; click.UsageError naming the option
    when the function would refuse the window."""
    from pydantic import ValidationError

    from provisioning.listing import SyncRequest
    from provisioning.validation import field_errors

    window: dict[str, Any] = {}
    if days is not None:
        window["days"] = days
    if since is not None:
        window["since"] = since.isoformat()
    if until is not None:
        window["until"] = until.isoformat()
    try:
        request = SyncRequest.model_validate({"sync": window})
    except ValidationError as exc:
        errors = field_errors(exc, rename=_option, root="sync")
        raise click.UsageError("; ".join(f"{e.field}: {e.message}" for e in errors)) from None
    return request.model_dump(exclude_none=True)


def lambda_client(target: StackTarget) -> Any:
    kw: dict[str, Any] = {"endpoint_url": target.endpoint_url} if target.endpoint_url else {}
    return target.session.client("lambda", config=INVOKE_CONFIG, **kw)


def invoke_deployed(target: StackTarget, payload: dict[str, Any]) -> Any:
    """Invoke the deployed sync function and wait for its summary."""
    function_name = target.resource(SYNC_FUNCTION)
    answer = lambda_client(target).invoke(
        FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
    )
    body = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        error = body if isinstance(body, dict) else {}
        raise click.ClickException(
            f"{function_name} failed: {error.get('errorType', 'error')}: {error.get('errorMessage', body)}"
        )
    return body


def invoke_local(template_path: str, target: StackTarget, payload: dict[str, Any]) -> Any:
    """Run the sync handler against the local stack, in a fresh process."""
    from provisioner_cli.invoke import invoke_function
    from provisioner_cli.template import Template

    assert target.local_state is not None
    path = Path(template_path)
    if not path.exists():
        raise click.UsageError(f"{path} not found: run from the project folder or pass --template")
    outcome = invoke_function(Template(path), target.local_state, SYNC_FUNCTION, payload)
    click.echo(outcome.logs, err=True, nl=False)
    if not outcome.ok:
        raise click.ClickException(outcome.error or "the sync failed")
    return outcome.result


def _day(_ctx: click.Context, _param: click.Parameter, value: datetime | None) -> date | None:
    return value.date() if value else None


@click.command("sync")
@click.option("--days", type=int, help="Sync the last DAYS days, up to today (UTC).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), callback=_day, help="Earliest day, YYYY-MM-DD.")
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    callback=_day,
    help="Latest day (default: today; with no --since, the 7 days before it).",
)
@template_option("SAM template (for the local stack).")
@target_options
def sync_command(
    days: int | None, since: date | None, until: date | None, template_path: str, **target: Any
) -> None:
    """Run the Palenca sync now: upsert the Palenca users of a window into the users table (with
    no option, the last 7 days, as the schedule does). Prints the sync's summary."""
    payload = sync_payload(days, since, until)
    stack = resolve_target(**target)
    if stack.local_state is not None:
        summary = invoke_local(template_path, stack, payload)
    else:
        summary = invoke_deployed(stack, payload)
    click.echo(json.dumps(summary, indent=2))
    if isinstance(summary, dict) and summary.get("complete") is False:
        click.echo(
            "the sync stopped before the function's timeout: run it again to finish the window", err=True
        )


__all__ = ["SYNC_FUNCTION", "invoke_deployed", "sync_command", "sync_payload"]
