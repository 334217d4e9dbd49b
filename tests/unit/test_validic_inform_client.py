"""The Validic Inform (v2) client and operation against the sandbox's emulator of the contract and
against recorded answers: create, 422 -> lookup, the error envelopes, the uid rules, what is sealed,
answers that are not a clean success."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from provisioner_sandbox.validic_inform import ORG_TOKEN, ORGANIZATION_ID
from provisioning.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.http import ProviderHttp, Timeouts, new_session, redact_query
from provisioning.models import LinkSource
from provisioning.person import Person, request_for
from provisioning.providers import BY_NAME
from provisioning.providers.validic_inform.client import (
    CREATE_USER,
    ValidicInformClient,
    ValidicInformProvisionUser,
    ValidicInformProvisionUserRequest,
    ValidicInformSecret,
)
from tests.support import Recorded, recorded_server

PROVIDER = "validic_inform"
USERS = f"/{PROVIDER}/organizations/{ORGANIZATION_ID}/users"
# From validic-inform-provision-user.md
CREATED = {
    "id": "598518fd8a5da50001578157",
    "uid": "277040620-wcwflair",
    "marketplace": {"token": "c7ff39aa47", "url": "https://syncmydevice.com/?token=c7ff39aa47"},
    "mobile": {"token": "0a811c9b0cf0af663eda6e2b496a3b9c"},
    "location": {"timezone": "America/New_York", "country_code": "US"},
    "sources": [],
    "status": "active",
    "created_at": "2026-01-05T01:01:49Z",
    "updated_at": "2026-01-05T01:01:49Z",
}


def _secret(organization_id: str = ORGANIZATION_ID, token: str = ORG_TOKEN) -> ValidicInformSecret:
    return ValidicInformSecret(organization_id=organization_id, token=SecretStr(token))


def _client(url: str, secret: ValidicInformSecret | None = None) -> ValidicInformClient:
    chosen = secret or _secret()
    return ValidicInformClient(ProviderHttp(PROVIDER, url, new_session()), lambda refresh=False: chosen)


@pytest.fixture
def inform(sandbox):
    return sandbox.emulators[PROVIDER]


@pytest.fixture
def client(sandbox) -> ValidicInformClient:
    return _client(sandbox.base_url(PROVIDER))


def _request(external_id: str = "u-1001", **location: str) -> ValidicInformProvisionUserRequest:
    body: dict = {"external_id": external_id}
    if location:
        body["location"] = location
    return ValidicInformProvisionUserRequest.model_validate(body)


def test_create_sends_uid_and_location_with_the_token_in_the_query_and_seals_every_user_credential(
    client, inform, sandbox
):
    operation = ValidicInformProvisionUser(client)

    user, source = operation.create(_request(timezone="America/New_York", country_code="US"))

    stored = inform.users["u-1001"]
    assert source == LinkSource.CREATED
    assert user.provider_user_id == stored["id"]
    assert user.details == {}
    assert user.sealed == {
        "marketplace_token": stored["marketplace"]["token"],
        "marketplace_url": stored["marketplace"]["url"],
        "mobile_token": stored["mobile"]["token"],
    }
    assert set(user.sealed) <= BY_NAME[PROVIDER].credentials
    assert stored["location"] == {"timezone": "America/New_York", "country_code": "US"}
    assert sandbox.count(PROVIDER, "POST", USERS) == 1


def test_a_422_on_create_is_reconciled_with_the_lookup_by_uid(client, inform, sandbox):
    existing = inform.seed_user("u-1001")

    user, source = ValidicInformProvisionUser(client).create(_request())

    assert (user.provider_user_id, source) == (existing["id"], LinkSource.EXISTING)
    assert user.sealed["mobile_token"] == existing["mobile"]["token"]
    assert sandbox.count(PROVIDER, "GET", f"{USERS}/u-1001") == 1
    assert len(inform.users) == 1


def test_a_422_for_a_uid_validic_does_not_hold_stands(sandbox, client):
    sandbox.script("POST", USERS, _reply(422, {"message": "An error occurred and an error response"}))

    with pytest.raises(ProviderRejected) as raised:
        ValidicInformProvisionUser(client).create(_request())

    assert raised.value.status == 422
    assert raised.value.message == "validic_inform rejected the person's data (422)"
    assert sandbox.count(PROVIDER, "GET", f"{USERS}/u-1001") == 1


def test_find_existing_answers_the_user_or_none(client, inform):
    operation = ValidicInformProvisionUser(client)
    since = datetime.now(UTC)
    assert operation.can_look_up(_request())
    assert operation.find_existing(_request(), since) is None
    seeded = inform.seed_user("u-1001")
    found = operation.find_existing(_request(), since)
    assert found is not None
    assert found.provider_user_id == seeded["id"]


def test_the_emulator_gives_the_tooling_its_credentials_and_counts_users_per_person(client, inform):
    assert inform.credentials() == {"organization_id": ORGANIZATION_ID, "token": ORG_TOKEN}
    assert inform.users_for("u-1001") == 0
    client.provision("u-1001", None)
    assert inform.users_for("u-1001") == 1
    assert ValidicInformSecret.model_validate(inform.credentials()).token.get_secret_value() == ORG_TOKEN


def test_list_reads_data_and_the_documented_users_envelope(client, inform):
    inform.seed_user("u-1")
    assert [u.uid for u in client.list_users()] == ["u-1"]
    with recorded_server([Recorded(200, {"users": [CREATED]})]) as (url, _):
        assert [u.id for u in _client(url).list_users()] == [CREATED["id"]]


def test_without_the_organization_token_it_is_401_and_no_free_text_travels(sandbox):
    client = _client(sandbox.base_url(PROVIDER), _secret(token="not-the-token"))

    with pytest.raises(ProviderAuthFailed) as raised:
        client.provision("u-1001", None)

    assert raised.value.status == 401
    assert raised.value.message == (
        "validic_inform refused our credentials (401): Token is not authorized to access organization"
    )
    assert "not-the-token" not in str(raised.value.report())


def test_another_organization_is_403(sandbox):
    client = _client(sandbox.base_url(PROVIDER), _secret(organization_id="another-org"))

    with pytest.raises(ProviderAuthFailed) as raised:
        client.find("u-1001")

    assert raised.value.status == 403
    assert raised.value.message.endswith("(403): Invalid authentication credentials")


@pytest.mark.parametrize(
    "body",
    [
        {"errors": ["Some text that may echo data"]},
        {"errors": {"uid": ["has already been taken by ana@example.com"]}},
        {"status": 403, "error": "Forbidden"},
        {"message": "free text about the person"},
        "Bad Request",
    ],
)
def test_every_error_envelope_is_tolerated_and_only_known_texts_travel(body):
    status = 403 if isinstance(body, dict) and body.get("status") == 403 else 400
    with recorded_server([Recorded(status, body)]) as (url, _), pytest.raises(ProviderError) as raised:
        _client(url, _secret()).provision("u-1001", None)
    message = raised.value.message
    assert "ana@example.com" not in message
    assert "free text" not in message
    assert "echo" not in message
    if status == 403:
        assert message.endswith(": Forbidden")


def test_the_rate_limit_is_answered_429_once_the_hour_is_used_up(client, inform):
    inform.requests_per_hour = 1
    assert client.find("u-1001") is None
    with pytest.raises(RateLimited):
        client.find("u-1001")
    assert inform.used_this_hour == 2


@pytest.mark.parametrize("fault", ["html", "truncate", "missing_id"])
def test_a_create_answered_with_anything_but_a_clean_user_is_an_unknown_outcome(sandbox, client, fault):
    sandbox.script_fault(PROVIDER, "POST", USERS, fault)

    with pytest.raises(UnknownOutcome):
        client.provision("u-1001", None)


def test_a_lookup_answered_with_html_is_unavailable(sandbox, client, inform):
    inform.seed_user("u-1001")
    sandbox.script_fault(PROVIDER, "GET", f"{USERS}/u-1001", "html")

    with pytest.raises(ProviderUnavailable):
        client.find("u-1001")


def test_a_created_user_with_another_uid_is_an_unknown_outcome():
    with recorded_server([Recorded(201, CREATED)]) as (url, _), pytest.raises(UnknownOutcome):
        _client(url).provision("u-1001", None)


@pytest.mark.parametrize(
    ("external_id", "why"),
    [
        ("ana@example.com", "e-mail"),
        ("56-9-1234-5678", "phone"),
        ("John-Doe", "name"),
        ("abc", "4 to 254"),
        ("-abcd", "single hyphens"),
        ("abcd-", "single hyphens"),
        ("ab--cd", "single hyphens"),
        ("ab_cd", "single hyphens"),
        ("ab.cd", "single hyphens"),
    ],
)
def test_uid_rules_refuse_with_a_field_error_naming_external_id(external_id, why):
    with pytest.raises(ValidationError) as raised:
        _request(external_id)
    (error,) = raised.value.errors()
    assert error["loc"] == ("external_id",)
    assert why in error["msg"]


@pytest.mark.parametrize("external_id", ["u-12", "277040620-wcwflair", "ABCD", "a1b2c3d4"])
def test_uids_of_letters_digits_and_single_hyphens_pass(external_id):
    assert _request(external_id).external_id == external_id


@pytest.mark.parametrize(
    ("location", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "location.timezone"),
        ({"timezone": "../etc/passwd"}, "location.timezone"),
        ({"country_code": "usa"}, "location.country_code"),
        ({"country_code": "us"}, "location.country_code"),
        ({}, "location"),
        ({"timezone": "UTC", "city": "x"}, "location.city"),
    ],
)
def test_location_must_be_an_iana_zone_and_an_alpha2_country(location, field):
    with pytest.raises(ValidationError) as raised:
        ValidicInformProvisionUserRequest.model_validate({"external_id": "u-1001", "location": location})
    assert field in [".".join(map(str, e["loc"])) for e in raised.value.errors()]


def test_a_person_maps_to_uid_country_and_time_zone():
    person = Person(external_id="p-1001", email="ana@example.test", country="MX", first_name="Ana")

    request = request_for(person, PROVIDER, CREATE_USER.from_person, CREATE_USER.request_model)

    assert request.model_dump(exclude_none=True) == {
        "external_id": "p-1001",
        "location": {"country_code": "MX"},
    }
    zoned = Person(external_id="p-1003", timezone="America/Mexico_City")
    assert request_for(zoned, PROVIDER, CREATE_USER.from_person, CREATE_USER.request_model).model_dump(
        exclude_none=True
    ) == {
        "external_id": "p-1003",
        "location": {"timezone": "America/Mexico_City"},
    }
    bare = request_for(
        Person(external_id="p-1002"), PROVIDER, CREATE_USER.from_person, CREATE_USER.request_model
    )
    assert bare.location is None


def test_the_secret_needs_an_organization_and_a_token_and_hides_the_token():
    secret = ValidicInformSecret.model_validate({"organization_id": "org-1", "token": "t0ken"})
    assert "t0ken" not in repr(secret)
    with pytest.raises(ValidationError):
        ValidicInformSecret.model_validate({"organization_id": "org/../x", "token": "t"})
    with pytest.raises(ValidationError):
        ValidicInformSecret.model_validate({"organization_id": "org-1"})


def _reply(status: int, body: object):
    from provisioner_sandbox.server import Reply

    return Reply(status, body)


@pytest.mark.parametrize("fault", ["reset", "redirect", "hang"])
def test_a_failed_call_raises_an_error_holding_no_url_nor_the_exception_that_held_one(sandbox, fault):
    """requests' and urllib3's exceptions print the URL, query string (the token) included."""
    http = ProviderHttp(PROVIDER, sandbox.base_url(PROVIDER), new_session(), Timeouts(total=0.5, read=0.5))
    client = ValidicInformClient(http, lambda refresh=False: _secret())
    sandbox.script_fault(PROVIDER, "POST", USERS, fault, hang_s=2)

    with pytest.raises(ProviderError) as raised:
        client.provision("u-1001", None)

    error = raised.value
    assert error.__context__ is None
    assert error.__cause__ is None
    printed = (
        "".join(traceback.format_exception(error)) + json.dumps(error.report()) + json.dumps(error.body())
    )
    assert ORG_TOKEN not in printed
    assert "?token=" not in printed


def test_a_host_that_cannot_be_reached_raises_without_the_url():
    client = _client("http://127.0.0.1:9")  # nothing listens on the discard port

    with pytest.raises(ProviderUnavailable) as raised:
        client.find("u-1001")

    assert raised.value.__context__ is None
    assert ORG_TOKEN not in "".join(traceback.format_exception(raised.value))


def test_query_strings_are_redacted_from_url_loggers_records():
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '%s://%s:%s "%s %s %s" %s %s',
        (
            "https",
            "api.v2.validic.com",
            443,
            "GET",
            f"/organizations/o/users/u-1?token={ORG_TOKEN}",
            "HTTP/1.1",
            200,
            9,
        ),
        None,
    )
    assert logging.getLogger("urllib3.connectionpool").filter(record)
    assert record.getMessage() == (
        'https://api.v2.validic.com:443 "GET /organizations/o/users/u-1?token=[redacted] HTTP/1.1" 200 9'
    )
    assert redact_query("/a?x=1&token=abc#f") == "/a?x=[redacted]&token=[redacted]#f"
