"""``provisioner webhook send``: a signed test delivery to ``POST /signups/webhook``.

The delivery is signed as a sender signs it (Standard Webhooks, with the ``standardwebhooks``
library; ``svix-*`` headers for a Clerk delivery, which Clerk sends through Svix). With ``--url``
it is posted there (a deployed stack's ``SignupWebhookUrl`` output, with ``--secret``); without,
``SignupWebhookFunction`` of the local stack is invoked with the API Gateway event of that request,
signed with the secret the local stack created (read from its Secrets Manager).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from standardwebhooks import Webhook

from provisioner_cli.invoke import invoke_function
from provisioner_cli.local import (
    STATE_FILE,
    WEBHOOK_FUNCTION,
    StackState,
    aws_client,
    webhook_secret_parameter,
)
from provisioner_cli.stack import template_option
from provisioner_cli.template import Template
from provisioning.providers import NAMES

EVENTS_FOLDER = "signup_webhook"
SIGNATURE_HEADERS = ("id", "timestamp", "signature")


@dataclass
class Delivery:
    """A signed request: its body (exactly the bytes signed) and headers."""

    body: str
    headers: dict[str, str]

    @property
    def webhook_id(self) -> str:
        return next(v for k, v in self.headers.items() if k.endswith("-id"))


def _events(root: Path) -> Path:
    return root / "events" / EVENTS_FOLDER


def clerk_payload(
    root: Path, external_id: str | None = None, providers: list[str] | None = None
) -> dict[str, Any]:
    """Clerk's ``user.created`` (events/signup_webhook/clerk_user_created.json), for another user
    id and target providers when given."""
    payload: dict[str, Any] = json.loads((_events(root) / "clerk_user_created.json").read_text())
    if external_id:
        payload["data"]["id"] = external_id
    if providers is not None:
        payload["data"]["public_metadata"]["providers"] = providers
    return payload


def generic_payload(
    root: Path, external_id: str | None = None, providers: list[str] | None = None
) -> dict[str, Any]:
    """A generic ``{"type": "user.created", "data": <Person>}`` (events/signup_webhook/user_created.json)."""
    payload: dict[str, Any] = json.loads((_events(root) / "user_created.json").read_text())
    if external_id:
        payload["data"]["external_id"] = external_id
    if providers is not None:
        payload["data"]["providers"] = providers
    return payload


def sign(
    secret: str,
    body: str,
    *,
    webhook_id: str | None = None,
    timestamp: datetime | None = None,
    svix: bool = False,
) -> Delivery:
    """``body`` signed with ``secret`` (``whsec_…``): ``webhook-*`` headers, or ``svix-*``."""
    webhook_id = webhook_id or f"msg_{secrets.token_hex(12)}"
    timestamp = timestamp or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(webhook_id, timestamp, body)
    prefix = "svix" if svix else "webhook"
    values = (webhook_id, str(int(timestamp.timestamp())), signature)
    return Delivery(
        body, {f"{prefix}-{name}": value for name, value in zip(SIGNATURE_HEADERS, values, strict=True)}
    )


def api_event(root: Path, delivery: Delivery, *, base64_encoded: bool = False) -> dict[str, Any]:
    """The API Gateway REST proxy event of ``delivery`` (events/signup_webhook/api.json's shape)."""
    event: dict[str, Any] = json.loads((_events(root) / "api.json").read_text())
    for where in ("headers", "multiValueHeaders"):
        headers = {
            key: value
            for key, value in event[where].items()
            if not key.lower().startswith(("svix-", "webhook-"))
        }
        for key, value in delivery.headers.items():
            headers[key] = [value] if where == "multiValueHeaders" else value
        event[where] = headers
    if base64_encoded:
        event["body"] = base64.b64encode(delivery.body.encode()).decode()
    else:
        event["body"] = delivery.body
    event["isBase64Encoded"] = base64_encoded
    return event


def local_secret(template: Template, state: StackState) -> str:
    """The first live signing secret of the local stack's webhook secret."""
    parameter = webhook_secret_parameter(template)
    if parameter is None:
        raise click.ClickException(f"{template.path.name} has no {WEBHOOK_FUNCTION}")
    value = aws_client(state, "secretsmanager").get_secret_value(SecretId=state.parameters[parameter])
    return str(json.loads(value["SecretString"])["secrets"][0])


def send_local(template: Template, state: StackState, delivery: Delivery) -> dict[str, Any]:
    """Invoke the local stack's webhook function with ``delivery``: its proxy answer."""
    outcome = invoke_function(template, state, WEBHOOK_FUNCTION, api_event(template.root, delivery))
    if not outcome.ok:
        raise click.ClickException(outcome.error or "invocation failed")
    return dict(outcome.result)


def send_signed_clerk_delivery(
    template: Template, state: StackState, external_id: str | None = None, providers: list[str] | None = None
) -> dict[str, Any]:
    """A Clerk ``user.created`` signed with the local stack's secret (svix-* headers), sent to its
    webhook function: the function's answer, ``{"statusCode", "body", ...}``."""
    body = json.dumps(clerk_payload(template.root, external_id, providers))
    return send_local(template, state, sign(local_secret(template, state), body, svix=True))


def send_url(url: str, delivery: Delivery) -> tuple[int, str]:
    import requests

    answer = requests.post(
        url,
        data=delivery.body.encode(),
        headers={"Content-Type": "application/json", **delivery.headers},
        timeout=(5, 30),
        allow_redirects=False,
    )
    return answer.status_code, answer.text


def _providers(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(NAMES))
    if unknown or not names:
        raise click.BadParameter(f"choose from {', '.join(NAMES)}", param_hint="--providers")
    return names


@click.group()
def webhook() -> None:
    """Signed signup webhooks (POST /signups/webhook)."""


@webhook.command("send")
@template_option("SAM template (for the local stack).")
@click.option(
    "--clerk", is_flag=True, help="Send Clerk's user.created (svix-* headers) instead of the generic one."
)
@click.option("--external-id", help="The person's id (Clerk: the user id, e.g. user_2abc...).")
@click.option("--providers", help="Comma-separated providers the person targets (default: the sample's).")
@click.option("--url", help="POST here (a deployed stack's SignupWebhookUrl) instead of the local stack.")
@click.option("--secret", help="Signing secret whsec_... (default: the local stack's).")
@click.option("--webhook-id", help="The delivery's id (default: a new one; repeat one to see a replay).")
def send(
    template_path: str,
    clerk: bool,
    external_id: str | None,
    providers: str | None,
    url: str | None,
    secret: str | None,
    webhook_id: str | None,
) -> None:
    """Send a signed test delivery, and print the answer."""
    template = Template(Path(template_path))
    targets = _providers(providers)
    make = clerk_payload if clerk else generic_payload
    body = json.dumps(make(template.root, external_id, targets))
    if url:
        if not secret:
            raise click.UsageError(
                "--url needs --secret (a live secret of the stack's SignupWebhookSecretName)"
            )
        status, text = send_url(url, sign(secret, body, webhook_id=webhook_id, svix=clerk))
        click.echo(f"{status} {text}")
        return
    try:
        state = StackState.load(STATE_FILE)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    delivery = sign(secret or local_secret(template, state), body, webhook_id=webhook_id, svix=clerk)
    answer = send_local(template, state, delivery)
    click.echo(f"{answer['statusCode']} {answer['body']}")


__all__ = [
    "Delivery",
    "api_event",
    "clerk_payload",
    "generic_payload",
    "send_signed_clerk_delivery",
    "sign",
    "webhook",
]
