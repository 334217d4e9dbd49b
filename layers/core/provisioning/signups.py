"""Signups from where they happen: publishing ``UserSignedUp`` for the hub's own sources, and the
Cognito user pool's post-confirmation trigger (``SignupTriggerFunction``).

``publish_signup`` is the one way the hub publishes a person (source ``provisioner.signups``, which
the signup rules accept beside the stack's ``SignupEventSource``).

The trigger must never block nor fail a signup: Cognito waits at most 5 seconds for it and, when it
fails, tells the user their confirmation failed. So every AWS call here has short timeouts and few
retries, every exception is caught, and the event is always returned unchanged. A person the bus
does not take waits in ``SignupFallbackQueue``, which the same function drains into the bus later;
a person that cannot be mapped (no usable external_id, an invalid target list) goes to
``SignupFallbackDLQ`` with the reason (attribute names, never values). Nothing here logs a value of
the person: only attribute names, codes and counts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config
from pydantic import ValidationError

from provisioning import adapters
from provisioning.errors import FieldError, InvalidRequest, ProvisioningError
from provisioning.http import RedactingFilter, redact_in
from provisioning.observability import logger, metrics
from provisioning.person import SIGNUP_DETAIL_TYPE, Person
from provisioning.settings import SignupSettings
from provisioning.validation import field_errors
from provisioning.values import FrozenValue, Value

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SIGNUP_SOURCE = "provisioner.signups"
CONFIRM_SIGN_UP = "PostConfirmation_ConfirmSignUp"

# Cognito gives the trigger 5 seconds in all. The bus gets one attempt (a person it does not take
# goes to the fallback queue, which retries); the fallback queue two short ones: at most
# 0.5 + 1 + 2 x (0.5 + 0.75) = 4 seconds of waiting, whatever AWS does.
EVENTS_CONFIG = Config(connect_timeout=0.5, read_timeout=1.0, retries={"mode": "standard", "max_attempts": 1})
SQS_CONFIG = Config(connect_timeout=0.5, read_timeout=0.75, retries={"mode": "standard", "max_attempts": 2})

# botocore logs each request's parameters at DEBUG: a PutEvents or SendMessage body holds the person.
_BODY = re.compile(r"""('body': b?)(?:'(?:[^'\\]|\\.)*+'|"(?:[^"\\]|\\.)*+")""")


def withhold_request_bodies(text: str) -> str:
    return _BODY.sub(r"\1'[withheld]'", text) if "'body'" in text else text


redact_in(RedactingFilter(withhold_request_bodies), "botocore.endpoint")


class PublishFailed(Exception):
    """The bus did not take the event (the message is an error code, never the person)."""


def signup_entry(bus: str, person: Person, source: str = SIGNUP_SOURCE) -> dict[str, str]:
    """The PutEvents entry of ``person``'s ``UserSignedUp`` event (its detail: the Person, no nulls)."""
    return {
        "EventBusName": bus,
        "Source": source,
        "DetailType": SIGNUP_DETAIL_TYPE,
        "Detail": person.model_dump_json(exclude_none=True),
    }


def publish_signup(events_client: Any, bus: str, person: Person, source: str = SIGNUP_SOURCE) -> None:
    """Publish one ``UserSignedUp`` event for ``person``; PublishFailed when the bus refuses it
    (a client error, such as a timeout, is raised as it is)."""
    answer = events_client.put_events(Entries=[signup_entry(bus, person, source)])
    if answer.get("FailedEntryCount"):
        code = (answer.get("Entries") or [{}])[0].get("ErrorCode") or "failed"
        raise PublishFailed(str(code))


# -- Cognito's user attributes as a Person ---------------------------------------------------------
# Standard attributes (OpenID Connect claims) -> Person fields.
ATTRIBUTES = {
    "email": "email",
    "given_name": "first_name",
    "family_name": "last_name",
    "phone_number": "phone",
    "birthdate": "date_of_birth",
    "gender": "gender",
    "zoneinfo": "timezone",
}


class CognitoMapping(FrozenValue):
    """Where the person's external_id and target providers come from."""

    __slots__ = ("external_id_attribute", "providers", "providers_attribute")
    external_id_attribute: str
    providers: tuple[str, ...] | None  # None: every provider
    providers_attribute: str | None  # a comma-separated list, overriding ``providers``

    def __init__(
        self,
        external_id_attribute: str = "sub",
        providers: tuple[str, ...] | None = None,
        providers_attribute: str | None = "custom:providers",
    ) -> None:
        object.__setattr__(self, "external_id_attribute", external_id_attribute)
        object.__setattr__(self, "providers", providers)
        object.__setattr__(self, "providers_attribute", providers_attribute)

    @classmethod
    def from_settings(cls, settings: SignupSettings) -> CognitoMapping:
        return cls(
            settings.signup_external_id_attribute,
            settings.signup_providers,
            settings.signup_providers_attribute,
        )


class Mapped(Value):
    __slots__ = ("dropped", "person")
    person: Person
    dropped: list[str]  # attributes left out as invalid (names only)

    def __init__(self, person: Person, dropped: list[str] | None = None) -> None:
        self.person = person
        self.dropped = [] if dropped is None else dropped


def _text(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def person_from_cognito(attributes: Mapping[str, Any], mapping: CognitoMapping) -> Mapped:
    """The Person of a confirmed user's attributes. An invalid optional attribute (a birthdate
    without a year, ``0000-04-01``; an unknown time zone) is left out and named in ``dropped``;
    InvalidRequest, naming the attribute, when there is no valid external_id or the target list
    names an unknown provider (then nobody must be provisioned by guesswork)."""
    external_id = _text(attributes, mapping.external_id_attribute)
    if external_id is None:
        raise InvalidRequest(
            [FieldError(mapping.external_id_attribute, "is required (the person's external_id)")]
        )
    data: dict[str, Any] = {"external_id": external_id}
    source: dict[str, str] = {"external_id": mapping.external_id_attribute}
    for attribute, name in ATTRIBUTES.items():
        value = _text(attributes, attribute)
        if value is not None:
            data[name] = value
            source[name] = attribute
    listed = _text(attributes, mapping.providers_attribute) if mapping.providers_attribute else None
    if listed is not None:
        data["providers"] = [p.strip() for p in listed.split(",") if p.strip()]
        source["providers"] = str(mapping.providers_attribute)
    elif mapping.providers is not None:
        data["providers"] = list(mapping.providers)
        source["providers"] = "SIGNUP_PROVIDERS"

    dropped: list[str] = []
    for _ in range(2):  # errors are per field: one pass drops every invalid optional attribute
        try:
            return Mapped(Person.model_validate(data), dropped)
        except ValidationError as exc:
            names = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            required = names & {"external_id", "providers"}
            if required:
                errors = [e for e in field_errors(exc) if e.field.split(".")[0] in required]
                raise InvalidRequest(
                    [FieldError(source[e.field.split(".")[0]], e.message) for e in errors]
                ) from None
            for name in sorted(names):
                data.pop(name, None)
                dropped.append(source.get(name, name))
    raise InvalidRequest([FieldError("userAttributes", "cannot be mapped to a person")])


def cognito_attributes(event: Mapping[str, Any]) -> Mapping[str, Any]:
    request = event.get("request")
    attributes = request.get("userAttributes") if isinstance(request, Mapping) else None
    if not isinstance(attributes, Mapping):
        raise InvalidRequest([FieldError("request.userAttributes", "is required")])
    return attributes


def is_cognito_trigger(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("triggerSource"), str) and isinstance(data.get("request"), Mapping)


# -- the Lambda handler -----------------------------------------------------------------------------
class SignupTriggerFunction:
    """Cognito's PostConfirmation trigger, and the drain of ``SignupFallbackQueue`` (SQS events)."""

    def __init__(self, settings: SignupSettings | None = None) -> None:
        self._settings = settings

    @cached_property
    def settings(self) -> SignupSettings:
        return self._settings or SignupSettings.from_env()

    @cached_property
    def mapping(self) -> CognitoMapping:
        return CognitoMapping.from_settings(self.settings)

    @cached_property
    def events(self) -> Any:
        return boto3.client("events", config=EVENTS_CONFIG)

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs", config=SQS_CONFIG)

    @cached_property
    def dead_letters(self) -> adapters.DeadLetters:
        settings = self.settings
        return adapters.DeadLetters(
            lambda: self.sqs, settings.signup_fallback_dlq_url, settings.signup_fallback_queue_url
        )

    def __call__(self, event: Any, context: LambdaContext) -> Any:
        if isinstance(event, dict) and _is_sqs(event):
            return self._handler(event, context)  # a failure: SQS retries the whole batch
        try:
            self._handler(event, context)
        except Exception as exc:  # never fail a signup (the handler catches everything; this is the last net)
            logger.error("signup trigger failed outside its handler", extra={"error": _reason(exc)})
        return event

    @cached_property
    def _handler(self) -> Callable[[Any, LambdaContext], Any]:
        @metrics.log_metrics
        @logger.inject_lambda_context(clear_state=True, log_event=False)
        def handler(event: Any, context: LambdaContext) -> Any:
            metrics.clear_metrics()
            if _is_sqs(event):
                return self.drain(event)
            self.confirm(event)
            return event

        return handler

    # -- the trigger ---------------------------------------------------------------------------------
    def confirm(self, event: Any) -> None:
        """Publish the confirmed person; on any failure keep them in the fallback queue (or its
        DLQ), and never raise."""
        started = time.monotonic()
        source = event.get("triggerSource") if isinstance(event, dict) else None
        logger.append_keys(trigger_source=source if isinstance(source, str) else None)
        if source != CONFIRM_SIGN_UP:
            # A confirmed password reset (or any other trigger): the person was provisioned at signup.
            logger.info("nothing to publish for this trigger")
            return
        try:
            mapped = person_from_cognito(cognito_attributes(event), self.mapping)
        except InvalidRequest as exc:
            self._unmappable(event, exc)
            return
        except Exception as exc:  # e.g. a broken configuration: its error names variables only
            logger.error("could not map the confirmed user", extra={"error": _reason(exc)})
            self._unmappable(event, InvalidRequest([FieldError("userAttributes", "could not be mapped")]))
            return
        if mapped.dropped:
            logger.warning("invalid attributes left out", extra={"attributes": mapped.dropped})
        try:
            publish_signup(self.events, self.settings.signup_event_bus_name, mapped.person)
        except Exception as exc:
            logger.warning(
                "the bus did not take the signup; it waits in the fallback queue",
                extra={"error": _reason(exc)},
            )
            self._fall_back(mapped.person)
        else:
            metrics.add_metric(name="SignupsPublished", unit=MetricUnit.Count, value=1)
            logger.info("signup published", extra={"elapsed_ms": round((time.monotonic() - started) * 1000)})

    def _fall_back(self, person: Person) -> None:
        try:
            url = self.settings.signup_fallback_queue_url
            if not url:
                raise RuntimeError("SIGNUP_FALLBACK_QUEUE_URL is not set")
            self.sqs.send_message(QueueUrl=url, MessageBody=person.model_dump_json(exclude_none=True))
        except Exception as exc:
            self._lost(exc)
        else:
            metrics.add_metric(name="SignupsDeferred", unit=MetricUnit.Count, value=1)

    def _unmappable(self, event: Any, error: ProvisioningError) -> None:
        """The whole trigger event, with why, to SignupFallbackDLQ (fix the attribute or the
        configuration, then redrive: the drain maps a Cognito event again)."""
        logger.warning("the confirmed user cannot be mapped to a person", extra={"error": error.report()})
        try:
            url = self.settings.signup_fallback_dlq_url
            if not url:
                raise RuntimeError("SIGNUP_FALLBACK_DLQ_URL is not set")
            self.sqs.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(event),
                MessageAttributes={
                    "failure": {"DataType": "String", "StringValue": json.dumps(error.report())}
                },
            )
        except Exception as exc:
            self._lost(exc)
        else:
            metrics.add_metric(name="SignupsDeadLettered", unit=MetricUnit.Count, value=1)

    def _lost(self, exc: Exception) -> None:
        logger.error("a confirmed signup was neither published nor kept", extra={"error": _reason(exc)})
        metrics.add_metric(name="SignupsLost", unit=MetricUnit.Count, value=1)

    # -- the fallback queue ---------------------------------------------------------------------------
    def drain(self, event: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Publish each queued person (or a redriven Cognito event, mapped again); a record the bus
        did not take is a batch item failure (SQS retries it, then redrives it to the DLQ); a
        record that can never be published goes to the DLQ at once, with its reason."""
        records = [adapters.QueueRecord.from_event(raw) for raw in event.get("Records", [])]
        people: list[tuple[adapters.QueueRecord, Person]] = []
        failed: list[str] = []
        for record in records:
            try:
                people.append((record, self._queued_person(record.body)))
            except ProvisioningError as exc:
                if not self.dead_letters.send(record, exc):
                    failed.append(record.message_id)
                logger.warning("queued signup dead-lettered", extra={"error": exc.report()})
        bus = self.settings.signup_event_bus_name
        for start in range(0, len(people), 10):  # PutEvents takes at most 10 entries
            chunk = people[start : start + 10]
            try:
                answer = self.events.put_events(Entries=[signup_entry(bus, person) for _, person in chunk])
                results = answer.get("Entries") or []
            except Exception as exc:
                logger.warning("the bus did not take the queued signups", extra={"error": _reason(exc)})
                results = [{"ErrorCode": "unavailable"}] * len(chunk)
            for n, (record, _) in enumerate(chunk):
                result = results[n] if n < len(results) else {"ErrorCode": "no_answer"}
                if result.get("ErrorCode") or not result.get("EventId"):
                    failed.append(record.message_id)
        published = len(people) - len([r for r, _ in people if r.message_id in failed])
        if published:
            metrics.add_metric(name="SignupsPublished", unit=MetricUnit.Count, value=published)
        logger.info("fallback queue drained", extra={"published": published, "failed": len(failed)})
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    def _queued_person(self, body: str | None) -> Person:
        data = adapters.load_object(body)
        if is_cognito_trigger(data):
            return person_from_cognito(cognito_attributes(data), self.mapping).person
        try:
            return Person.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(field_errors(exc)) from None


def _is_sqs(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and (records[0].get("eventSource") == "aws:sqs")
    )


def _reason(exc: Exception) -> str:
    """An exception as an error code or type name (botocore's messages can quote the request)."""
    if isinstance(exc, PublishFailed):
        return str(exc)
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return str(code) if code else type(exc).__name__


__all__ = [
    "SIGNUP_SOURCE",
    "CognitoMapping",
    "PublishFailed",
    "SignupTriggerFunction",
    "person_from_cognito",
    "publish_signup",
    "signup_entry",
]
