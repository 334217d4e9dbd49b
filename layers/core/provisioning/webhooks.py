"""Signed signup webhooks: ``POST /signups/webhook`` (``SignupWebhookFunction``).

A hosted identity product (Clerk through Svix, or any sender following the Standard Webhooks
specification) posts a signed delivery; a verified ``user.created`` becomes one ``UserSignedUp``
event on the hub's bus (source ``provisioner.signups``), which the signup rules route to the
providers' queues. The route has no IAM authorizer: its authentication is the signature.

- **Signature**: Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
  or Svix's identical ``svix-*`` headers, verified by the ``standardwebhooks`` library over the
  raw body (at most 5 minutes of clock skew, constant-time comparison). Every live secret of
  the Secrets Manager secret ``{"secrets": ["whsec_…", …]}`` is tried, so a secret can be
  rotated without refusing deliveries. Anything wrong is a 401 ``invalid_signature`` with the
  reason; nothing is published and nothing but the reason is logged.
- **Payloads**: a generic ``{"type": "user.created", "data": <Person>}``, or Clerk's
  ``user.created`` (told apart by ``data.object == "user"``), mapped to a Person. Other event
  types are answered 200 ``ignored`` (the sender stops retrying); a signed but invalid payload
  is a 400 naming the field.
- **Replays**: each delivery is recorded in the idempotency table as
  ``signup-webhook#<webhook-id>`` for three days (Svix retries for about 28 hours). A claim
  (``publishing``) is written before the event is published, then marked ``published``: a
  delivery whose id is ``published`` is answered 200 ``duplicate`` and publishes nothing. One
  found ``publishing`` (an attempt that crashed between its claim and its mark, or one running
  right now) publishes again: provisioning downstream is idempotent per ``external_id``, so a
  second event can never create a second provider user. When publishing fails, the claim is
  removed and the answer is 503: the sender retries.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Response  # resolves the route's annotation
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from provisioning import adapters
from provisioning.dependencies import Dependencies
from provisioning.errors import ConfigurationError, FieldError, InvalidRequest, ProvisioningError
from provisioning.handler import LambdaFunction
from provisioning.http import RedactingFilter, redact_in
from provisioning.models import ErrorBody
from provisioning.observability import logger, metrics
from provisioning.person import Person, parse_person
from provisioning.signups import PublishFailed, publish_signup
from provisioning.validation import field_errors

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver
    from aws_lambda_powertools.utilities.typing import LambdaContext

ROUTE = "/signups/webhook"
SIGNUP_EVENT = "user.created"
REPLAY_PREFIX = "signup-webhook#"
REPLAY_SECONDS = 3 * 86400  # Svix retries a delivery for about 28 hours
MAX_WEBHOOK_ID = 128
HEADERS = ("id", "timestamp", "signature")
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every signing secret, not one

# botocore logs every request's body at DEBUG: PutEvents' Detail holds the person.
_DETAIL_BODY = re.compile(r"PutEvents|\"Entries\"")


def _redact_put_events(text: str) -> str:
    return "[PutEvents request redacted: it holds a person]" if _DETAIL_BODY.search(text) else text


redact_in(RedactingFilter(_redact_put_events), "botocore.endpoint", "botocore.parsers", "botocore.hooks")


# -- errors ------------------------------------------------------------------------------------
class InvalidSignature(ProvisioningError):
    """The delivery is not signed by a live secret (or its headers are missing, malformed, too
    old or too new): nothing is published."""

    code = "invalid_signature"
    http_status = 401


class WebhookUnavailable(ProvisioningError):
    """The hub cannot take deliveries now (its secret is unusable, or the bus refused the event):
    the sender retries later."""

    code = "webhook_unavailable"
    http_status = 503
    transient = True

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "30"}


# -- the secret --------------------------------------------------------------------------------
class WebhookSecrets(BaseModel):
    """The Secrets Manager secret: every live signing secret (a rotation adds the new one first,
    and removes the old one once the sender signs with the new)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    secrets: list[str] = Field(min_length=1, max_length=10)

    @field_validator("secrets")
    @classmethod
    def _signing_secrets(cls, values: list[str]) -> list[str]:
        for n, value in enumerate(values):
            try:
                Webhook(value)
                valid = value.startswith(SECRET_PREFIX) and len(value) > len(SECRET_PREFIX)
            except Exception:
                valid = False
            if not valid:  # never the value: the error is logged
                raise ValueError(f"secrets[{n}] must be whsec_ followed by base64")
        return values

    def verifiers(self) -> list[Webhook]:
        return [Webhook(value) for value in self.secrets]


# -- payloads ----------------------------------------------------------------------------------
class ClerkEmail(BaseModel):
    """One of a Clerk user's e-mail addresses."""

    model_config = ConfigDict(defer_build=True, extra="ignore")
    id: str
    email_address: str


class ClerkPhone(BaseModel):
    """One of a Clerk user's phone numbers."""

    model_config = ConfigDict(defer_build=True, extra="ignore")
    id: str
    phone_number: str


class ClerkUser(BaseModel):
    """The fields of Clerk's user object (``data`` of its ``user.created``) a Person takes."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    object: Literal["user"]
    id: str
    first_name: str | None = None
    last_name: str | None = None
    email_addresses: list[ClerkEmail] = Field(default_factory=list)
    primary_email_address_id: str | None = None
    phone_numbers: list[ClerkPhone] = Field(default_factory=list)
    primary_phone_number_id: str | None = None
    birthday: str | None = None
    gender: str | None = None
    public_metadata: dict[str, Any] = Field(default_factory=dict)

    def person(self) -> dict[str, Any]:
        """The Person's fields (empty strings are absent values in Clerk's payloads)."""
        email = next(
            (e.email_address for e in self.email_addresses if e.id == self.primary_email_address_id), None
        )
        phone = next(
            (p.phone_number for p in self.phone_numbers if p.id == self.primary_phone_number_id), None
        )
        fields: dict[str, Any] = {
            "external_id": self.id,
            "email": email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "phone": phone,
            "date_of_birth": self.birthday,
            "gender": self.gender,
        }
        if "providers" in self.public_metadata:
            fields["providers"] = self.public_metadata["providers"]
        return {name: value for name, value in fields.items() if value not in (None, "")}


# A Person field's name in Clerk's payload (errors name what the sender sent).
CLERK_FIELDS = {
    "external_id": "id",
    "email": "email_addresses",
    "phone": "phone_numbers",
    "date_of_birth": "birthday",
    "providers": "public_metadata.providers",
}


def _clerk_person(data: dict[str, Any]) -> Person:
    try:
        user = ClerkUser.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc, "data"), status=400) from None
    try:
        return parse_person(user.person())
    except InvalidRequest as exc:
        errors = []
        for error in exc.errors:
            head, _, rest = error.field.partition(".")
            name = CLERK_FIELDS.get(head, head) + (f".{rest}" if rest else "")
            errors.append(FieldError(f"data.{name}", error.message))
        raise InvalidRequest(errors, status=400) from None


def signup_person(payload: Any) -> Person | None:
    """The person of a ``user.created`` delivery; None for another event type; InvalidRequest
    (400) naming the field for a payload that cannot be one."""
    if not isinstance(payload, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")], status=400)
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidRequest([FieldError("type", "is required (a string, e.g. user.created)")], status=400)
    if kind != SIGNUP_EVENT:
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise InvalidRequest([FieldError("data", "must be a JSON object")], status=400)
    if data.get("object") == "user":
        return _clerk_person(data)
    try:
        return parse_person(data, "data")
    except InvalidRequest as exc:
        raise InvalidRequest(exc.errors, status=400) from None


class WebhookAnswer(BaseModel):
    """The answer to a verified delivery."""

    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    webhook_id: str
    external_id: str | None = None
    published: bool = Field(description="A UserSignedUp event was published by this delivery.")
    duplicate: bool = Field(default=False, description="This webhook-id was already published.")
    ignored: bool = Field(default=False, description="Not a user.created event: nothing to do.")


class GenericSignup(BaseModel):
    """A Standard Webhooks ``user.created`` delivery carrying the hub's Person."""

    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    type: Literal["user.created"]
    timestamp: str | None = None
    data: Person


class ClerkSignup(BaseModel):
    """Clerk's ``user.created`` delivery (the fields the hub reads; the rest is ignored)."""

    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    object: Literal["event"] = "event"
    type: Literal["user.created"]
    data: ClerkUser


def describe_request(document: dict[str, Any]) -> None:
    """Add the route's signature headers and its two payloads to the OpenAPI ``document`` (the
    function reads the raw body itself: the signature is checked before the body is parsed, so
    the route declares no body model for Powertools to validate first)."""
    from pydantic.json_schema import models_json_schema

    operation = document["paths"][ROUTE]["post"]
    operation["responses"].pop("422", None)  # Powertools' body validation: this route has none
    operation["parameters"] = [
        {
            "name": f"webhook-{name}",
            "in": "header",
            "required": False,
            "description": f"{description} Required, or Svix's svix-{name} instead.",
            "schema": {"type": "string"},
        }
        for name, description in (
            ("id", "The delivery's id: a replay of a published id publishes nothing."),
            ("timestamp", "Unix seconds; at most 5 minutes from now."),
            ("signature", "Space-separated v1,<base64 HMAC-SHA256 of ${id}.${timestamp}.${body}>."),
        )
    ]
    refs, schemas = models_json_schema(
        [(GenericSignup, "validation"), (ClerkSignup, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in schemas.get("$defs", {}).items():
        if components.setdefault(name, schema) != schema:
            raise ValueError(f"two schemas named {name} in the OpenAPI document")
    operation["requestBody"] = {
        "required": True,
        "content": {
            adapters.JSON: {
                "schema": {"oneOf": [refs[(GenericSignup, "validation")], refs[(ClerkSignup, "validation")]]}
            }
        },
    }
    document["components"]["schemas"] = dict(sorted(components.items()))


# -- verification ------------------------------------------------------------------------------
def signature_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` of a proxy event: the
    Standard Webhooks headers when any is sent, else Svix's ``svix-*`` (the same scheme)."""
    found: dict[str, str] = {}
    for where in ("multiValueHeaders", "headers"):  # the single-value map wins
        headers = event.get(where)
        if not isinstance(headers, Mapping):
            continue
        for key, value in headers.items():
            if isinstance(value, list):
                value = value[-1] if value else None
            if isinstance(value, str):
                found[str(key).lower()] = value
    prefix = "webhook" if any(f"webhook-{name}" in found for name in HEADERS) else "svix"
    return {f"webhook-{name}": found[f"{prefix}-{name}"] for name in HEADERS if f"{prefix}-{name}" in found}


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The bytes the sender signed (API Gateway base64-encodes some bodies)."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise InvalidSignature("the body is not text")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body.encode("ascii"), validate=True)
        except (ValueError, binascii.Error):
            raise InvalidSignature("the body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


def check_headers(headers: dict[str, str]) -> None:
    """InvalidSignature naming the signature headers that are missing (before any secret is read)."""
    missing = [f"webhook-{name}" for name in HEADERS if not headers.get(f"webhook-{name}")]
    if missing:
        raise InvalidSignature(f"missing signature headers: {', '.join(missing)} (or svix-*)")
    if len(headers["webhook-id"]) > MAX_WEBHOOK_ID:
        raise InvalidSignature(f"webhook-id is longer than {MAX_WEBHOOK_ID} characters")


def verify(body: bytes, headers: dict[str, str], verifiers: list[Webhook]) -> None:
    """InvalidSignature with the reason unless one of ``verifiers`` signed the delivery."""
    check_headers(headers)
    reason = "no signature matches a live secret"
    for verifier in verifiers:
        try:
            verifier.verify(body, headers, json_parse=False)
            return
        except WebhookVerificationError as exc:
            reason = _reason(str(exc))
        except UnicodeDecodeError:
            reason = "the body is not UTF-8"
        except Exception:  # the library's own parsing of a malformed header (ValueError, binascii.Error)
            reason = "malformed webhook-signature header"
        if reason != "no signature matches a live secret":
            break  # the same for every secret: no use trying the others
    raise InvalidSignature(reason)


def _reason(message: str) -> str:
    return {
        "Message timestamp too old": "webhook-timestamp is more than 5 minutes old",
        "Message timestamp too new": "webhook-timestamp is more than 5 minutes in the future",
        "Invalid Signature Headers": "malformed webhook-timestamp header",
        "No matching signature found": "no signature matches a live secret",
        "Missing required headers": "missing signature headers",
    }.get(message, "invalid signature")


# -- replays -----------------------------------------------------------------------------------
class Deliveries:
    """Which webhook ids were published (the idempotency table, ``signup-webhook#<id>``)."""

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._clock = clock

    @staticmethod
    def _key(webhook_id: str) -> dict[str, Any]:
        return {"id": {"S": REPLAY_PREFIX + webhook_id}}

    def claim(self, webhook_id: str) -> bool:
        """Claim the delivery before publishing; False when it was already published (a record
        that is ``publishing``, or expired but not yet removed by the TTL, is claimed again)."""
        now = int(self._clock())
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    **self._key(webhook_id),
                    "state": {"S": "publishing"},
                    "claimed_at": {"N": str(now)},
                    "expiration": {"N": str(now + REPLAY_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(id) OR #state <> :published OR #expiration < :now",
                ExpressionAttributeNames={"#state": "state", "#expiration": "expiration"},
                ExpressionAttributeValues={":published": {"S": "published"}, ":now": {"N": str(now)}},
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def published(self, webhook_id: str) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key(webhook_id),
            UpdateExpression="SET #state = :published, published_at = :now",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":published": {"S": "published"},
                ":now": {"N": str(int(self._clock()))},
            },
        )

    def release(self, webhook_id: str) -> None:
        """Remove a claim whose event could not be published (not a published record)."""
        with contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=self._key(webhook_id),
                ConditionExpression="#state = :publishing",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":publishing": {"S": "publishing"}},
            )


# -- the function ------------------------------------------------------------------------------
class SignupWebhookFunction(LambdaFunction):
    """``POST /signups/webhook``: verify, map, publish once per webhook id."""

    provider = "signups"

    def __init__(self, deps: Dependencies | None = None) -> None:
        self.deps = deps or Dependencies()

    def build_app(self) -> APIGatewayRestResolver:
        from provisioning import rest

        app = rest.new_rest_app()
        app.post(
            ROUTE,
            summary="Take a signed signup webhook (Standard Webhooks or Svix; Clerk's user.created)",
            description=(
                "No IAM: the request is authenticated by its Standard Webhooks signature (webhook-id, "
                "webhook-timestamp, webhook-signature; or Svix's svix-* headers), HMAC-SHA256 with a "
                "live secret of the hub over `${id}.${timestamp}.${body}`, at most 5 minutes old or "
                "early. A verified user.created (generic, or Clerk's) becomes one UserSignedUp event; "
                "a replay of a published webhook-id publishes nothing. See docs/webhooks.md."
            ),
            responses={
                200: {
                    "description": "Already published (duplicate), or not a user.created event (ignored).",
                    "content": {adapters.JSON: {"model": WebhookAnswer}},
                },
                202: {
                    "description": "Verified and published as a UserSignedUp event.",
                    "content": {adapters.JSON: {"model": WebhookAnswer}},
                },
                **rest.error_responses(400, 401, 413, 503),
                400: {
                    "description": "A signed payload that is not JSON, or not a valid person: the fields "
                    "are named, never their values. Nothing is published.",
                    "content": {adapters.JSON: {"model": ErrorBody}},
                },
            },
        )(self._receive)
        return app

    @cached_property
    def deliveries(self) -> Deliveries:
        return Deliveries(self.deps.dynamodb, self.deps.settings.idempotency_table)

    def _verifiers(self) -> list[Webhook]:
        secret_id = self.deps.settings.signup_webhook_secret_id
        try:
            if not secret_id:
                raise ConfigurationError("SIGNUP_WEBHOOK_SECRET_ID is not set")
            return self.deps.secrets.get(secret_id, WebhookSecrets).verifiers()
        except ConfigurationError as exc:
            logger.error("the webhook's signing secrets cannot be used", extra={"error": exc.report()})
            raise WebhookUnavailable(
                "the webhook's signing secrets are not usable; see the function's log"
            ) from None

    def _publish(self, person: Person) -> None:
        bus = self.deps.settings.signup_event_bus_name
        if not bus:
            logger.error("SIGNUP_EVENT_BUS_NAME is not set")
            raise WebhookUnavailable("the signup bus is not configured; see the function's log")
        try:
            publish_signup(self.deps.client("events"), bus, person)
        except PublishFailed as refused:
            logger.error("the bus refused the signup event", extra={"error_code": str(refused)})
            raise WebhookUnavailable("the signup event could not be published; retry later") from None
        except Exception as exc:
            logger.error("the signup event could not be published", extra={"error_type": type(exc).__name__})
            raise WebhookUnavailable("the signup event could not be published; retry later") from None

    def _receive(self) -> Response[str]:
        from provisioning import rest

        event = self.app.current_event.raw_event
        headers = signature_headers(event)
        body = raw_body(event)
        check_headers(headers)
        verify(body, headers, self._verifiers())
        webhook_id = headers["webhook-id"]
        logger.append_keys(webhook_id=webhook_id)
        try:
            payload = adapters.parse_json(body.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else "is not UTF-8"
            raise InvalidRequest([FieldError("body", message)], status=400) from None
        person = signup_person(payload)
        if person is None:
            logger.info("webhook ignored: not a user.created event")
            return rest.json_response(WebhookAnswer(webhook_id=webhook_id, published=False, ignored=True))
        answer = WebhookAnswer(webhook_id=webhook_id, external_id=person.external_id, published=False)
        try:
            claimed = self.deliveries.claim(webhook_id)
        except Exception as exc:  # the table is unavailable: the sender retries
            logger.error("the delivery could not be claimed", extra={"error_type": type(exc).__name__})
            raise WebhookUnavailable("the delivery could not be recorded; retry later") from None
        if not claimed:
            logger.info("webhook replay: already published", extra={"external_id": person.external_id})
            metrics.add_metric(name="SignupWebhookReplays", unit=MetricUnit.Count, value=1)
            return rest.json_response(answer.model_copy(update={"duplicate": True}))
        try:
            self._publish(person)
        except WebhookUnavailable:
            try:
                self.deliveries.release(webhook_id)
            except Exception as exc:  # the retry finds the claim "publishing": it publishes all the same
                logger.warning("the claim could not be removed", extra={"error_type": type(exc).__name__})
            raise
        try:
            self.deliveries.published(webhook_id)
        except Exception as exc:  # published: a retry of this delivery publishes it again
            logger.warning(
                "the delivery could not be marked published", extra={"error_type": type(exc).__name__}
            )
        logger.info("webhook published a UserSignedUp event", extra={"external_id": person.external_id})
        metrics.add_metric(name="SignupWebhooksPublished", unit=MetricUnit.Count, value=1)
        return rest.json_response(answer.model_copy(update={"published": True}), 202)

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.api(event, context)


__all__ = [
    "ClerkSignup",
    "GenericSignup",
    "SignupWebhookFunction",
    "WebhookAnswer",
    "WebhookSecrets",
    "check_headers",
    "describe_request",
    "signup_person",
    "verify",
]
