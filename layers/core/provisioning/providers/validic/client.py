"""Validic (v1): typed client (POST/GET /v1/organizations/{org}/users.json) and the provision-user
operation.

Contract: ../shared/providers/validic-provision-user.md and NOTES.md. Our ``external_id`` is sent
as Validic's ``uid``, which must not carry identifying information: ids that look like an e-mail
address, a formatted phone number or a person's name are refused. A 409 means Validic already knows
the uid: the existing user is looked up and linked. The per-user ``access_token`` Validic returns is
a credential: it is encrypted with KMS (``TOKEN_KMS_KEY_ID``) before it is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import requests
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
)

from provisioning import validation
from provisioning.errors import ProviderRejected
from provisioning.http import (
    ErrorVocabulary,
    ProviderHttp,
    SecretGetter,
    error_texts,
    malformed,
    parse_answer,
    raise_for_status,
    with_fresh_secret,
)
from provisioning.models import CreateRequest, LinkSource, ProviderUser, StrictModel
from provisioning.providers.validic import INFO
from provisioning.sealing import token_sealer
from provisioning.spec import CreateUserSpec, ProviderDependencies, provider_secret

if TYPE_CHECKING:
    from provisioning.person import Person  # signup events only: loaded when one comes

PROVIDER = INFO.name

# The messages Validic v1 documents; anything else it says is free text and never travels.
VOCABULARY = ErrorVocabulary(
    messages=frozenset(
        {"User already exists", "Conflict", "Unprocessable Entity", "Unauthorized", "Invalid access token"}
    )
)


def identifying_reason(uid: str) -> str | None:
    """Why a uid would reveal who the person is, or None. Validic forbids identifying uids, whatever
    the stack's AllowIdentifyingExternalIds says (the rule is ``validation.identifying_reason``)."""
    reason = validation.identifying_reason(uid)
    return f"{reason}; Validic forbids identifying information in uid" if reason else None


class ValidicSecret(BaseModel):
    """The ``VALIDIC_SECRET_ID`` secret: ``{"organization_id": "...", "access_token": "..."}``."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

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

    @field_validator("external_id", mode="before")
    @classmethod
    def _not_identifying(cls, value: Any) -> Any:
        # Before the shared external_id rule: the answer then says why Validic refuses the id.
        if isinstance(value, str) and len(value) <= 128:
            reason = identifying_reason(value)
            if reason:
                raise ValueError(reason)
        return value


class ValidicUser(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id")
    uid: str | None = None
    access_token: SecretStr | None = None


class ValidicCreated(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    user: ValidicUser


class ValidicUsers(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    users: list[ValidicUser] = Field(default_factory=list)


class ValidicClient:
    def __init__(self, http: ProviderHttp, secret: SecretGetter[ValidicSecret]) -> None:
        self._http = http
        self._secret = secret

    @staticmethod
    def _path(secret: ValidicSecret) -> str:
        return f"/v1/organizations/{secret.organization_id}/users.json"

    @staticmethod
    def _raise_for_status(response: requests.Response, *, write: bool) -> None:
        messages = error_texts(response, "errors", "message")
        raise_for_status(PROVIDER, response, write=write, messages=messages, vocabulary=VOCABULARY)

    def provision(self, uid: str, profile: dict[str, Any] | None) -> ValidicUser:
        user: dict[str, Any] = {"uid": uid}
        if profile:
            user["profile"] = profile

        def send(secret: ValidicSecret) -> requests.Response:
            body = {"user": user, "access_token": secret.access_token.get_secret_value()}
            return self._http.send("POST", self._path(secret), write=True, json=body)

        response = with_fresh_secret(self._secret, send)
        self._raise_for_status(response, write=True)
        created = parse_answer(PROVIDER, ValidicCreated, response, write=True).user
        if created.uid is not None and created.uid != uid:
            raise malformed(PROVIDER, "a user carrying another uid", write=True, status=response.status_code)
        return created

    def find(self, uid: str) -> ValidicUser | None:
        def send(secret: ValidicSecret) -> requests.Response:
            params = {"access_token": secret.access_token.get_secret_value(), "uid": uid}
            return self._http.send("GET", self._path(secret), write=False, params=params)

        response = with_fresh_secret(self._secret, send)
        self._raise_for_status(response, write=False)
        users = parse_answer(PROVIDER, ValidicUsers, response, write=False).users
        return next((u for u in users if u.uid == uid), None)


def _provider_user(user: ValidicUser) -> ProviderUser:
    sealed = {"access_token": user.access_token.get_secret_value()} if user.access_token else {}
    return ProviderUser(provider_user_id=user.id, details={}, sealed=sealed)


class ValidicProvisionUser:
    provider = PROVIDER

    def __init__(self, client: ValidicClient) -> None:
        self.client = client

    def can_look_up(self, request: ValidicProvisionUserRequest) -> bool:
        return True  # the users lookup by uid

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


def build_create_user(deps: ProviderDependencies) -> ValidicProvisionUser:
    secret = provider_secret(deps, PROVIDER, ValidicSecret)
    return ValidicProvisionUser(ValidicClient(deps.http(PROVIDER), secret))


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
    route=INFO.create.route,
    request_model=ValidicProvisionUserRequest,
    build_operation=build_create_user,
    build_sealer=token_sealer(INFO.title),
    summary="Provision a Validic user for external_id (sent as uid)",
    from_person=from_person,
)
