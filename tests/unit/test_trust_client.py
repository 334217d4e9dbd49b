"""The Trust client against Trust's documented payloads, served on loopback."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from provisioning.errors import ProviderRejected
from provisioning.http import ProviderHttp, new_session
from provisioning.providers.trust.client import (
    TrustClient,
    TrustCreateUser,
    TrustCreateUserRequest,
    TrustSecret,
)
from provisioning.store import LinkSource
from tests.support import Recorded, recorded_server

SECRET = TrustSecret(client_id="cid", client_secret=SecretStr("csecret"))
TOKEN = {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 7200, "created_at": 1700000000}
# From trust-create-user.md
CREATED = {
    "status": True,
    "message": "Created",
    "user": {
        "id": 2866,
        "email": "abeta@example.test",
        "created_at": "2021-07-21T22:14:10.119Z",
        "updated_at": "2021-07-21T22:14:10.125Z",
        "dni": "12345678-9",
        "phone_number": "+56912345678",
        "name": "Alfa",
        "last_name": "Beta",
        "company_uid": "99",
        "status": True,
        "img": "https://robohash.org/12312312",
        "nationality": "CHL",
        "load_uuid": "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "confirmed": True,
    },
}
REQUEST = TrustCreateUserRequest(external_id="u-1", email="abeta@example.test", name="Alfa", last_name="Beta")


def _client(url: str, clock=lambda: 1_700_000_000.0) -> TrustClient:
    return TrustClient(ProviderHttp("trust", url, new_session()), lambda refresh=False: SECRET, clock=clock)


def test_create_fetches_a_client_credentials_token_and_sends_bearer():
    with recorded_server([Recorded(200, TOKEN), Recorded(201, CREATED)]) as (url, seen):
        user = _client(url).create_user(REQUEST.trust_body())

    assert user.id == 2866
    assert seen[0].path == "/oauth/token/"
    assert seen[0].body == {
        "client_id": "cid",
        "client_secret": "csecret",
        "grant_type": "client_credentials",
    }
    assert seen[1].path == "/users/create"
    assert seen[1].headers["authorization"] == "Bearer tok-1"
    assert seen[1].body == {"email": "abeta@example.test", "name": "Alfa", "last_name": "Beta"}


def test_token_is_reused_until_shortly_before_it_expires():
    now = [1_700_000_000.0]
    answers = [
        Recorded(200, TOKEN),
        Recorded(201, CREATED),
        Recorded(201, CREATED),
        Recorded(200, {**TOKEN, "access_token": "tok-2"}),
        Recorded(201, CREATED),
    ]
    with recorded_server(answers) as (url, seen):
        client = _client(url, clock=lambda: now[0])
        client.create_user(REQUEST.trust_body())
        now[0] += 7000  # still more than a minute left
        client.create_user(REQUEST.trust_body())
        now[0] += 150  # inside the refresh margin
        client.create_user(REQUEST.trust_body())

    assert [s.path for s in seen].count("/oauth/token/") == 2
    assert seen[-1].headers["authorization"] == "Bearer tok-2"


def test_404_missing_params_is_a_rejection_with_trusts_message():
    with (
        recorded_server(
            [Recorded(200, TOKEN), Recorded(404, {"status": False, "message": "Missing params"})]
        ) as (
            url,
            _,
        ),
        pytest.raises(ProviderRejected) as raised,
    ):
        _client(url).create_user({})
    assert raised.value.status == 404
    assert "Missing params" in raised.value.message


def test_422_user_already_exist_links_the_user_found_by_email():
    search = {
        "status": True,
        "message": "ok",
        "total": 2,
        "user": [
            {"id": 7, "email": "other@example.test", "name": "Alfa", "last_name": "Beta"},
            {"id": 2866, "email": "ABETA@example.test", "name": "alfa", "last_name": "BETA"},
        ],
    }
    answers = [
        Recorded(200, TOKEN),
        Recorded(422, {"status": False, "message": "User already exist"}),
        Recorded(200, search),
    ]
    with recorded_server(answers) as (url, seen):
        user, source = TrustCreateUser(_client(url)).create(REQUEST)

    assert (user.provider_user_id, source) == ("2866", LinkSource.EXISTING)
    assert seen[2].path.startswith("/users?search=abeta%40example.test")
    assert "page=1" in seen[2].path


def test_request_validation():
    with pytest.raises(ValidationError):
        TrustCreateUserRequest(external_id="u", email="x@", name="a", last_name="b")
    with pytest.raises(ValidationError):
        TrustCreateUserRequest(external_id="u", email="a@b.co", name="a", last_name="b", phone_number="123")
    assert "external_id" not in REQUEST.trust_body()
