"""The canonical person and the ``UserSignedUp`` event that carries one.

A product emits one ``UserSignedUp`` event per person; an EventBridge rule per provider routes it
to that provider's queue (only when the person targets the provider), and the provider's create
function maps the person to its own request with the provider's ``from_person`` mapping. A person
that lacks what one provider requires fails for that provider alone (its record is dead-lettered
with the missing fields named); the other providers are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, field_validator

from provisioning.adapters import is_signup_event
from provisioning.errors import FieldError, InvalidRequest
from provisioning.models import ExternalId, Provider, StrictModel
from provisioning.providers import NAMES
from provisioning.validation import (
    Country,
    DateOfBirth,
    E164Phone,
    Email,
    Text,
    TimeZone,
    field_errors,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

SIGNUP_DETAIL_TYPE = "UserSignedUp"
Gender = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
PROVIDERS: tuple[Provider, ...] = NAMES


class Person(StrictModel):
    """One person as our product knows them; every field but ``external_id`` is optional, and
    ``providers`` (absent: all) lists where they should be provisioned. ``external_id`` follows the
    rule of every route: by default it must not hold an e-mail address, a phone number or a name
    (``validation.no_personal_data``); the person's data goes in the other fields."""

    external_id: ExternalId
    email: Email | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    phone: E164Phone | None = Field(default=None, description="E.164, e.g. +5215512345678")
    date_of_birth: DateOfBirth | None = Field(default=None, description="YYYY-MM-DD")
    national_id: Text | None = None
    nationality: Text | None = None
    country: Country | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. MX")
    gender: Gender | None = None
    timezone: TimeZone | None = Field(default=None, description="IANA time zone, e.g. America/Mexico_City")
    height_cm: float | None = Field(default=None, ge=30, le=300)
    weight_kg: float | None = Field(default=None, ge=2, le=700)
    providers: list[Provider] | None = Field(default=None, min_length=1, max_length=len(PROVIDERS))

    @field_validator("providers")
    @classmethod
    def _distinct(cls, value: list[Provider] | None) -> list[Provider] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must not repeat a provider")
        return value

    def targets(self, provider: str) -> bool:
        return self.providers is None or provider in self.providers

    def present(self, *fields: str) -> dict[str, Any]:
        """The named fields that are set, by name (absent ones left out)."""
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}


PersonMapping = Callable[[Person], dict[str, Any]]


def require(person: Person, provider: str, *fields: str) -> None:
    """InvalidRequest naming every field ``provider`` requires that ``person`` lacks."""
    missing = [name for name in fields if getattr(person, name) is None]
    if missing:
        raise InvalidRequest([FieldError(name, f"is required by {provider}") for name in missing])


def parse_person(data: Any, location: str = "") -> Person:
    """A Person, or InvalidRequest naming the fields (prefixed with ``location``)."""
    if not isinstance(data, dict):
        raise InvalidRequest([FieldError(location or "person", "must be a JSON object")])
    try:
        return Person.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc, location)) from None


def request_for[RequestT: BaseModel](
    person: Person, provider: str, mapping: PersonMapping, model: type[RequestT]
) -> RequestT:
    """The provider's create request for ``person``, or InvalidRequest naming what is missing or
    invalid for this provider (field names are the Person's where the mapping is one to one)."""
    body = mapping(person)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc, suffix=f" (for {provider})")) from None


def signup_person(event: dict[str, Any]) -> Person:
    """The person of an EventBridge ``UserSignedUp`` event (as queued by an EventBridge rule)."""
    detail_type = event.get("detail-type")
    if detail_type != SIGNUP_DETAIL_TYPE:
        raise InvalidRequest([FieldError("detail-type", f"must be {SIGNUP_DETAIL_TYPE}")])
    if not isinstance(event.get("source"), str) or not event["source"]:
        raise InvalidRequest([FieldError("source", "is required")])
    return parse_person(event.get("detail"), "detail")


__all__ = [
    "PROVIDERS",
    "SIGNUP_DETAIL_TYPE",
    "Person",
    "PersonMapping",
    "is_signup_event",
    "parse_person",
    "request_for",
    "require",
    "signup_person",
]
