"""Validic (v1): typed client (POST/GET /v1/organizations/{org}/users.json) and the provision-user
operation.

Contract: ../shared/providers/validic-provision-user.md and NOTES.md. Our ``external_id`` is sent
as Validic's ``uid``, which must not carry identifying information: ids that look like an e-mail
address, a formatted phone number or a person's name are refused. A 409 means Validic already knows
the uid: the existing user is looked up and linked. The per-user ``access_token`` Validic returns is
a credential: it is encrypted with KMS (``TOKEN_KMS_KEY_ID``) before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from provisioning.errors import ConfigurationError, ProviderRejected
from provisioning.http import ProviderHttp, error_message, parse_answer, raise_for_status
from provisioning.models import CreateRequest, ProviderUser, StrictModel
from provisioning.person import Person
from provisioning.runtime import CreateUserSpec, Dependencies
from provisioning.sealing import KmsSealer
from provisioning.store import LinkSource

PROVIDER = "validic"

_EMAIL_LIKE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().-]+$")


def _phone_like(uid: str) -> bool:
    """Digits with phone punctuation (or a leading +), 9 to 15 digits: plain numeric ids pass."""
    digits = sum(c.isdigit() for c in uid)
    punctuated = uid.startswith("+") or any(c in " ().-" for c in uid)
    return bool(_PHONE_CHARS.match(uid)) and punctuated and 9 <= digits <= 15


_NAME_LIKE = re.compile(r"^[A-Z][a-z]+(?:[._-][A-Z][a-z]+)+$")


def identifying_reason(uid: str) -> str | None:
    """Why a uid would reveal who the person is, or None. Validic forbids identifying uids."""
    if _EMAIL_LIKE.match(uid):
        return "looks like an e-mail address; Validic forbids identifying information in uid"
    if _phone_like(uid):
        return "looks like a phone number; Validic forbids identifying information in uid"
    if _NAME_LIKE.match(uid):
        return "looks like a person's name; Validic forbids identifying information in uid"
    return None


class ValidicSecret(BaseModel):
    """The ``VALIDIC_SECRET_ID`` secret: ``{"organization_id": "...", "access_token": "..."}``."""

    model_config = ConfigDict(extra="ignore")

    organization_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    access_token: SecretStr = Field(min_length=1)


class ValidicProfile(StrictModel):
    gender: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    location: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    country: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    birth_year: int | None = Field(default=None, ge=1900)
    height: float | None = Field(default=None, ge=30, le=300, description="cm")
    weight: float | None = Field(default=None, ge=2, le=700, description="kg")

    @field_validator("birth_year")
    @classmethod
    def _not_future(cls, value: int | None) -> int | None:
        if value is not None and value > datetime.now(UTC).year:
            raise ValueError("must not be in the future")
        return value


class ValidicProvisionUserRequest(CreateRequest):
    """Body of ``POST /validic/users`` and of a ``ValidicProvisionUserQueue`` message."""

    profile: ValidicProfile | None = None

    @field_validator("external_id")
    @classmethod
    def _not_identifying(cls, value: str) -> str:
        reason = identifying_reason(value)
        if reason:
            raise ValueError(reason)
        return value


class ValidicUser(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id")
    uid: str | None = None
    access_token: SecretStr | None = None


class ValidicCreated(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user: ValidicUser


class ValidicUsers(BaseModel):
    model_config = ConfigDict(extra="ignore")

    users: list[ValidicUser] = Field(default_factory=list)


class ValidicClient:
    def __init__(self, http: ProviderHttp, secret: Callable[[], ValidicSecret]) -> None:
        self._http = http
        self._secret = secret

    def _path(self) -> str:
        return f"/v1/organizations/{self._secret().organization_id}/users.json"

    def provision(self, uid: str, profile: dict[str, Any] | None) -> ValidicUser:
        user: dict[str, Any] = {"uid": uid}
        if profile:
            user["profile"] = profile
        body = {"user": user, "access_token": self._secret().access_token.get_secret_value()}
        response = self._http.send("POST", self._path(), write=True, json=body)
        raise_for_status(PROVIDER, response, write=True, message=error_message(response, "errors", "message"))
        return parse_answer(PROVIDER, ValidicCreated, response).user

    def find(self, uid: str) -> ValidicUser | None:
        params = {"access_token": self._secret().access_token.get_secret_value(), "uid": uid}
        response = self._http.send("GET", self._path(), write=False, params=params)
        raise_for_status(
            PROVIDER, response, write=False, message=error_message(response, "errors", "message")
        )
        return next((u for u in parse_answer(PROVIDER, ValidicUsers, response).users if u.uid == uid), None)


def _provider_user(user: ValidicUser) -> ProviderUser:
    sealed = {"access_token": user.access_token.get_secret_value()} if user.access_token else {}
    return ProviderUser(provider_user_id=user.id, details={}, sealed=sealed)


class ValidicProvisionUser:
    provider = PROVIDER

    def __init__(self, client: ValidicClient) -> None:
        self.client = client

    def create(self, request: ValidicProvisionUserRequest) -> tuple[ProviderUser, LinkSource]:
        profile = request.profile.model_dump(exclude_none=True) if request.profile else None
        try:
            return _provider_user(self.client.provision(request.external_id, profile)), LinkSource.CREATED
        except ProviderRejected as exc:
            if exc.status != 409:
                raise
            existing = self.client.find(request.external_id)
            if existing is None:
                raise
            return _provider_user(existing), LinkSource.EXISTING

    def find_existing(self, request: ValidicProvisionUserRequest, since: datetime) -> ProviderUser | None:
        existing = self.client.find(request.external_id)
        return _provider_user(existing) if existing else None


def build_create_user(deps: Dependencies) -> ValidicProvisionUser:
    def secret() -> ValidicSecret:
        return deps.secrets.get(deps.settings.secret_id(PROVIDER), ValidicSecret)

    return ValidicProvisionUser(ValidicClient(deps.http(PROVIDER), secret))


def build_sealer(deps: Dependencies) -> Callable[[dict[str, str]], dict[str, str]]:
    key_id = deps.settings.token_kms_key_id
    if not key_id:
        raise ConfigurationError(
            "TOKEN_KMS_KEY_ID is not set: Validic user tokens cannot be stored encrypted"
        )
    return KmsSealer(deps.kms, key_id).seal


def from_person(person: Person) -> dict[str, Any]:
    """Validic needs a non-identifying uid (our id); the profile carries no name or contact."""
    profile = {
        "gender": person.gender,
        "country": person.country,
        "birth_year": int(person.date_of_birth[:4]) if person.date_of_birth else None,
        "height": person.height_cm,
        "weight": person.weight_kg,
    }
    body: dict[str, Any] = {"external_id": person.external_id}
    profile = {key: value for key, value in profile.items() if value is not None}
    if profile:
        body["profile"] = profile
    return body


CREATE_USER = CreateUserSpec(
    provider=PROVIDER,
    route="/validic/users",
    request_model=ValidicProvisionUserRequest,
    build_operation=build_create_user,
    build_sealer=build_sealer,
    summary="Provision a Validic user for external_id (sent as uid)",
    from_person=from_person,
)
