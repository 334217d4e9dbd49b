"""The Palenca client against Palenca's documented payloads, served on loopback."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest
from pydantic import SecretStr, ValidationError

from provisioning.errors import ProviderAuthFailed, ProviderRejected, RateLimited, UnknownOutcome
from provisioning.http import ProviderHttp, new_session
from provisioning.providers.palenca.client import PalencaClient, PalencaCreateUserRequest, PalencaSecret
from tests.support import Recorded, recorded_server

WIDGET = UUID("feecb679-a3cc-47ef-8fd4-600799f12a39")
SECRET = PalencaSecret(api_key=SecretStr("private_api_key"), widget_id=WIDGET)

# From palenca-create-user.md
CREATED = {
    "success": True,
    "error": None,
    "data": {
        "user_id": "054d0a9d-38ec-40cb-a31c-09b483242e4a",
        "external_id": "4a0e32bd-c3df-4172-a89d-f173d6816926",
        "widget_id": "feecb679-a3cc-47ef-8fd4-600799f12a39",
    },
}


def _client(url: str) -> PalencaClient:
    return PalencaClient(ProviderHttp("palenca", url, new_session()), lambda refresh=False: SECRET)


def test_create_user_sends_key_widget_and_external_id_and_reads_user_id():
    with recorded_server([Recorded(200, CREATED)]) as (url, seen):
        user = _client(url).create_user("4a0e32bd-c3df-4172-a89d-f173d6816926", WIDGET)

    assert user.user_id == "054d0a9d-38ec-40cb-a31c-09b483242e4a"
    assert seen[0].path == "/v1/users"
    assert seen[0].headers["x-api-key"] == "private_api_key"
    assert seen[0].body == {"external_id": "4a0e32bd-c3df-4172-a89d-f173d6816926", "widget_id": str(WIDGET)}


@pytest.mark.parametrize("field", ["error", "mistake"])
def test_error_envelope_is_read_from_error_or_mistake(field):
    body = {
        "success": False,
        field: {"error_code": "bad_request", "message": "widget_id is invalid"},
        "data": None,
    }
    with recorded_server([Recorded(422, body)]) as (url, _), pytest.raises(ProviderRejected) as raised:
        _client(url).create_user("u-1", WIDGET)

    assert raised.value.message == "palenca rejected the person's data (422)"  # its free text stays behind
    assert raised.value.provider_code == "bad_request"


def test_invalid_key_is_an_auth_failure_and_429_carries_the_reset():
    invalid = {"success": False, "error": {"error_code": "invalid_api_key"}, "data": None}
    with recorded_server([Recorded(401, invalid)]) as (url, _), pytest.raises(ProviderAuthFailed):
        _client(url).create_user("u-1", WIDGET)

    limited = {"success": False, "error": {"error_code": "too_many_requests"}, "data": None}
    with recorded_server([Recorded(429, limited, {"X-RateLimit-Reset": "4102444800"})]) as (url, _):
        with pytest.raises(RateLimited) as raised:
            _client(url).search_users(date(2026, 1, 2), date(2026, 1, 1))
    assert raised.value.retry_after is not None
    assert raised.value.retry_after > 0


@pytest.mark.parametrize("data", [{}, None, {"external_id": "u-1"}])
def test_success_without_user_id_is_an_unknown_outcome_not_a_user(data):
    with recorded_server([Recorded(200, {"success": True, "error": None, "data": data})]) as (url, _):
        with pytest.raises(UnknownOutcome):
            _client(url).create_user("u-1", WIDGET)


def test_a_created_user_carrying_another_external_id_is_an_unknown_outcome():
    with recorded_server([Recorded(200, CREATED)]) as (url, _), pytest.raises(UnknownOutcome):
        _client(url).create_user("u-1", WIDGET)


def test_secret_and_request_models_validate():
    with pytest.raises(ValidationError):
        PalencaSecret.model_validate({"api_key": "k"})
    with pytest.raises(ValidationError):
        PalencaCreateUserRequest.model_validate({"external_id": "u-1", "widget_id": "nope"})
    with pytest.raises(ValidationError):
        PalencaCreateUserRequest.model_validate({"external_id": "u-1", "extra": True})
    assert PalencaCreateUserRequest.model_validate({"external_id": "u-1"}).widget_id is None
