"""The canonical Person and its pure mapping to each provider's create request."""

from __future__ import annotations

import pytest

from provisioning.errors import InvalidRequest
from provisioning.person import Person, parse_person, request_for, signup_person
from provisioning.providers import PROVIDERS

SPECS = {info.name: info.create.load_spec() for info in PROVIDERS}
FULL = Person(
    external_id="p-1",
    email="ana.perez@example.test",
    first_name="Ana",
    last_name="Perez",
    phone="+5215512345678",
    date_of_birth="1990-04-01",
    national_id="PEAN900401",
    nationality="MEX",
    country="MX",
    gender="female",
    timezone="America/Mexico_City",
    height_cm=165,
    weight_kg=60.5,
)


def request(person: Person, provider: str):
    spec = SPECS[provider]
    return request_for(person, provider, spec.from_person, spec.request_model)


def test_person_has_exactly_the_documented_fields():
    assert set(Person.model_fields) == {
        "external_id",
        "email",
        "first_name",
        "last_name",
        "phone",
        "date_of_birth",
        "national_id",
        "nationality",
        "country",
        "gender",
        "timezone",
        "height_cm",
        "weight_kg",
        "providers",
    }


def test_full_person_maps_to_every_provider_request():
    assert request(FULL, "palenca").model_dump(exclude_none=True) == {"external_id": "p-1"}

    trust_request = request(FULL, "trust")
    assert (trust_request.email, trust_request.name, trust_request.last_name) == (
        "ana.perez@example.test",
        "Ana",
        "Perez",
    )
    assert (trust_request.phone_number, trust_request.dni, trust_request.nationality) == (
        "+5215512345678",
        "PEAN900401",
        "MEX",
    )

    body = request(FULL, "palm").palm_body()
    assert body["display_name"] == "Ana Perez"
    assert body["metadata"] == {"external_id": "p-1"}
    assert body["vault"] == {
        "identity.first_name": "Ana",
        "identity.last_name": "Perez",
        "identity.email": "ana.perez@example.test",
        "identity.phone": "+5215512345678",
        "identity.date_of_birth": "1990-04-01",
        "address.country": "MX",
    }

    profile = request(FULL, "validic").profile
    assert profile is not None
    assert profile.model_dump(exclude_none=True) == {
        "gender": "female",
        "country": "MX",
        "birth_year": 1990,
        "height": 165,
        "weight": 60.5,
    }

    inform = request(FULL.model_copy(update={"external_id": "p-1001"}), "validic_inform")
    assert inform.model_dump(exclude_none=True) == {
        "external_id": "p-1001",
        "location": {"timezone": "America/Mexico_City", "country_code": "MX"},
    }


def test_minimal_person_fails_only_where_a_provider_requires_more():
    minimal = Person(external_id="p-2")
    assert request(minimal, "palenca").external_id == "p-2"
    assert request(minimal, "palm").vault.palm_body() == {}
    assert request(minimal, "validic").profile is None
    with pytest.raises(InvalidRequest) as failed:
        request(minimal, "trust")
    assert [e.field for e in failed.value.errors] == ["email", "first_name", "last_name"]
    assert all("required by trust" in e.message for e in failed.value.errors)


def test_identifying_external_id_is_refused_and_with_the_parameter_true_by_validic_only(monkeypatch):
    with pytest.raises(InvalidRequest) as refused:
        parse_person({"external_id": "ana.perez@example.test"})
    assert refused.value.errors[0].field == "external_id"
    assert "ana.perez" not in refused.value.message

    monkeypatch.setenv("ALLOW_IDENTIFYING_EXTERNAL_IDS", "true")
    person = Person(external_id="ana.perez@example.test")
    assert request(person, "palenca").external_id == person.external_id
    with pytest.raises(InvalidRequest) as failed:
        request(person, "validic")
    assert failed.value.errors[0].field == "external_id"
    assert "e-mail" in failed.value.errors[0].message
    assert "ana.perez" not in failed.value.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "external_id"),
        ({"external_id": "p", "email": "not-an-email"}, "email"),
        ({"external_id": "p", "phone": "5512345678"}, "phone"),
        ({"external_id": "p", "date_of_birth": "1990-02-30"}, "date_of_birth"),
        ({"external_id": "p", "country": "Mexico"}, "country"),
        ({"external_id": "p", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"external_id": "p", "timezone": "GMT+5 (Lima)"}, "timezone"),
        ({"external_id": "p", "height_cm": 900}, "height_cm"),
        ({"external_id": "p", "providers": []}, "providers"),
        ({"external_id": "p", "providers": ["palm", "palm"]}, "providers"),
        ({"external_id": "p", "providers": ["acme"]}, "providers.0"),
        ({"external_id": "p", "nickname": "x"}, "nickname"),
    ],
)
def test_invalid_person_names_the_field(data, field):
    with pytest.raises(InvalidRequest) as failed:
        parse_person(data)
    assert field in [e.field for e in failed.value.errors]


def test_target_list_absent_means_every_provider():
    assert all(Person(external_id="p").targets(p) for p in SPECS)
    only = Person(external_id="p", providers=["palm"])
    assert [p for p in SPECS if only.targets(p)] == ["palm"]


def test_signup_event_envelope_is_checked():
    person = signup_person({"source": "app", "detail-type": "UserSignedUp", "detail": {"external_id": "p"}})
    assert person.external_id == "p"
    with pytest.raises(InvalidRequest) as wrong_type:
        signup_person({"source": "app", "detail-type": "UserDeleted", "detail": {"external_id": "p"}})
    assert wrong_type.value.errors[0].field == "detail-type"
    with pytest.raises(InvalidRequest) as bad_detail:
        signup_person({"source": "app", "detail-type": "UserSignedUp", "detail": {"email": "x"}})
    assert {e.field for e in bad_detail.value.errors} == {"detail.external_id", "detail.email"}
