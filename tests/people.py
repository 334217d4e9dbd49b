"""People for the tests, and each provider's request for one: a full Person (everything a provider
may ask for) mapped with the provider's own Person mapping (``from_person``), so that a provider
added to the registry is covered without a test edit.

The sandbox's Trust, which keeps no id of ours, knows a person by the national id their request
carries: here, their external_id (see ``TrustEmulator.users_for``)."""

from __future__ import annotations

from typing import Any

from provisioning.errors import InvalidRequest
from provisioning.person import Person
from provisioning.providers import provider

UNSET: Any = object()
# The header of the people CSVs the import tests write.
COLUMNS = [
    "external_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "date_of_birth",
    "country",
    "providers",
]


def person(external_id: str, *, email: str | None = UNSET, **fields: Any) -> Person:
    """A person with every field set (``email``: ``<external_id>@example.test`` unless given, None:
    none); ``fields`` override the others (None: unset)."""
    data: dict[str, Any] = {
        "external_id": external_id,
        "email": f"{external_id}@example.test" if email is UNSET else email,
        "first_name": "Ana",
        "last_name": "Pérez",
        "date_of_birth": "1990-01-15",
        "national_id": external_id,
        "nationality": "MX",
        "country": "MX",
        "gender": "F",
        "height_cm": 165.0,
        "weight_kg": 60.0,
        **fields,
    }
    return Person.model_validate({key: value for key, value in data.items() if value is not None})


def request_body(name: str, who: Person) -> dict[str, Any]:
    """The body of ``name``'s create request (API Gateway or queue) for ``who``; InvalidRequest when
    the provider cannot take this person (e.g. it requires an e-mail address they lack)."""
    from_person = provider(name).create.load_spec().from_person
    assert from_person is not None, f"{name} has no Person mapping"
    return from_person(who)


def body_for(name: str, external_id: str, **fields: Any) -> dict[str, Any]:
    """``name``'s request for a full person ``external_id`` (``fields`` as for :func:`person`)."""
    return request_body(name, person(external_id, **fields))


def takes(name: str, who: Person) -> bool:
    """Whether ``name``'s mapping accepts ``who`` (it has what the provider requires)."""
    try:
        request_body(name, who)
    except InvalidRequest:
        return False
    return True
