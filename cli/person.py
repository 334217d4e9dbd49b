"""``provisioner person <external_id>``: one person at every provider, as ``GET /people/{id}``
answers it (the same ``provisioning.people.person_view``), read from the local stack or a deployed
stack's users table with one Query."""

from __future__ import annotations

from typing import Any

import click

from provisioner_cli.stack import PROVIDER_WIDTH, resolve_target, target_options
from provisioning.errors import InvalidRequest
from provisioning.people import PersonView, parse_external_id, person_view
from provisioning.store import LinkStore


def render(view: PersonView) -> list[str]:
    """One line per provider: state, provider user id, source, last update, failure code."""
    header = (
        f"{'provider':<{PROVIDER_WIDTH}} {'state':<13} {'provider_user_id':<36} {'source':<11} "
        f"{'updated_at':<24} failure"
    )
    lines = [f"external_id: {view.external_id}", header, "-" * len(header)]
    for name, shown in view.providers.items():
        failure = shown.failure.code if shown.failure else "-"
        lines.append(
            f"{name:<{PROVIDER_WIDTH}} {shown.state.value:<13} {shown.provider_user_id or '-':<36} "
            f"{shown.source.value if shown.source else '-':<11} {shown.updated_at or '-':<24} {failure}"
        )
    if view.pending:
        lines.append(f"pending: {', '.join(view.pending)}")
    if view.dead_lettered:
        lines.append(f"dead-lettered: {', '.join(view.dead_lettered)} (see `provisioner dlq show`)")
    return lines


@click.command("person")
@click.argument("external_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the API's answer).")
@target_options
def person_command(external_id: str, as_json: bool, **target: Any) -> None:
    """One person at every provider: linked, pending, dead-lettered or not requested."""
    try:
        person_id = parse_external_id(external_id, percent_encoded=False)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.errors[0].message, param_hint="EXTERNAL_ID") from None
    stack = resolve_target(**target)
    view = person_view(LinkStore(stack.client("dynamodb"), stack.users_table), person_id)
    if not view.known:
        raise click.ClickException(f"no provider holds anything for {person_id}")
    click.echo(view.model_dump_json(indent=2) if as_json else "\n".join(render(view)))


__all__ = ["person_command", "render"]
