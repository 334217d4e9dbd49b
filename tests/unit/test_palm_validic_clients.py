"""The Palm and Validic clients against the providers' documented payloads, served on loopback."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr, ValidationError

from provisioning.errors import ProviderRejected, RateLimited
from provisioning.http import ProviderHttp, new_session
from provisioning.providers.palm.client import PalmClient, PalmSecret
from provisioning.providers.validic.client import (
    ValidicClient,
    ValidicProvisionUser,
    ValidicProvisionUserRequest,
    ValidicSecret,
    identifying_reason,
)
from provisioning.sealing import KmsSealer
from provisioning.store import LinkSource
from tests.support import Recorded, recorded_server

# From palm-create-user.md
PALM_USER = {
    "id": "123e4567-e89b-12d3-a456-426614174000",
    "object": "user",
    "created_at": "2025-10-24T10:30:00Z",
    "updated_at": "2025-10-24T15:45:00Z",
    "metadata": {
        "external_id": "user_123_in_my_system",
        "customer_tier": "premium",
        "signup_source": "mobile_app",
    },
    "status": "active",
    "verification": None,
    "display_name": "John Doe",
    "email_fingerprint": "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
    "phone_fingerprint": "a8d4bc2e919f15843beg890076ddd45db8bf4552",
    "vault": {"identity.first_name": "John", "identity.last_name": "Doe"},
}
VALIDIC_CREATED = {
    "code": 201,
    "message": "Ok",
    "user": {
        "_id": "51552cd7fdeSAMPLE00017",
        "uid": "123467890",
        "access_token": "d18397e3845e8b66SAMPLEea3fc445d1b879aSAMPLE7b243badabce08c98",
        "profile": None,
    },
}
VALIDIC_SECRET = ValidicSecret(organization_id="55f6dd49376SAMPLE000088", access_token=SecretStr("org-token"))


def _palm(url: str) -> PalmClient:
    return PalmClient(
        ProviderHttp("palm", url, new_session()),
        lambda refresh=False: PalmSecret(api_key=SecretStr("sk_test_x")),
    )


def _validic(url: str) -> ValidicClient:
    return ValidicClient(ProviderHttp("validic", url, new_session()), lambda refresh=False: VALIDIC_SECRET)


def test_palm_create_sends_bearer_key_and_reads_the_user():
    with recorded_server([Recorded(201, PALM_USER)]) as (url, seen):
        user = _palm(url).create_user({"metadata": {"external_id": "user_123_in_my_system"}})
    assert user.id == PALM_USER["id"]
    assert user.email_fingerprint == PALM_USER["email_fingerprint"]
    assert seen[0].headers["authorization"] == "Bearer sk_test_x"


def test_palm_problem_title_travels_its_detail_does_not_and_429_is_rate_limited():
    problem = {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "metadata has too many keys",
    }
    with recorded_server([Recorded(400, problem)]) as (url, _), pytest.raises(ProviderRejected) as raised:
        _palm(url).create_user({})
    assert raised.value.message == "palm rejected the request as malformed (400): Bad Request"
    with (
        recorded_server(
            [Recorded(429, {"title": "Too Many Requests", "status": 429}, {"Retry-After": "2"})]
        ) as (
            url,
            _,
        ),
        pytest.raises(RateLimited),
    ):
        _palm(url).search(email="a@b.co")


def test_palm_search_reads_the_list_envelope():
    listing = {"object": "list", "data": [PALM_USER], "has_more": False, "next_cursor": None}
    with recorded_server([Recorded(200, listing)]) as (url, seen):
        found = _palm(url).search(email="john.doe@example.com").data
    assert [u.id for u in found] == [PALM_USER["id"]]
    assert seen[0].path == "/v1/user/search"
    assert seen[0].body["email"] == "john.doe@example.com"


def test_palm_secret_must_be_a_test_or_live_key():
    PalmSecret.model_validate({"api_key": "sk_live_abc"})
    with pytest.raises(ValidationError) as raised:
        PalmSecret.model_validate({"api_key": "pk_abc"})
    assert "pk_abc" not in str(raised.value.errors(include_input=False))


def test_validic_provision_sends_uid_and_org_token_and_reads_id_and_token():
    with recorded_server([Recorded(201, VALIDIC_CREATED)]) as (url, seen):
        user = _validic(url).provision("123467890", {"gender": "F"})
    assert user.id == "51552cd7fdeSAMPLE00017"
    assert user.access_token.get_secret_value().startswith("d18397e3")
    assert seen[0].path == "/v1/organizations/55f6dd49376SAMPLE000088/users.json"
    assert seen[0].body == {
        "user": {"uid": "123467890", "profile": {"gender": "F"}},
        "access_token": "org-token",
    }


def test_validic_409_links_the_user_found_by_uid():
    conflict = {"code": 409, "message": "Conflict", "errors": "User already exists"}
    lookup = {"users": [{"_id": "51552cd7fdeSAMPLE00017", "uid": "123467890"}]}
    with recorded_server([Recorded(409, conflict), Recorded(200, lookup)]) as (url, seen):
        user, source = ValidicProvisionUser(_validic(url)).create(
            ValidicProvisionUserRequest(external_id="123467890")
        )
    assert (user.provider_user_id, source) == ("51552cd7fdeSAMPLE00017", LinkSource.EXISTING)
    assert "uid=123467890" in seen[1].path


def test_validic_422_is_a_rejection_without_its_free_text():
    body = {"code": 422, "message": "Unprocessable Entity", "errors": "uid is invalid"}
    with recorded_server([Recorded(422, body)]) as (url, _), pytest.raises(ProviderRejected) as raised:
        _validic(url).provision("x", None)
    assert raised.value.message == "validic rejected the person's data (422): Unprocessable Entity"


def test_identifying_uids_are_recognised():
    assert identifying_reason("ana@example.com")
    assert identifying_reason("+1 555 555 0123")
    assert identifying_reason("Maria_Lopez")
    assert identifying_reason("u-123") is None
    assert identifying_reason("1234567890") is None  # plain numeric ids are fine


def test_kms_sealer_round_trip():
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        sealer = KmsSealer(kms, key)
        sealed = sealer.seal({"access_token": "plain"})
        assert sealed["access_token"] != "plain"
        assert sealer.unseal(sealed) == {"access_token": "plain"}
