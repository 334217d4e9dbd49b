"""Validic Inform (API v2): typed client (POST/GET /organizations/{org}/users) and the
provision-user operation.

Contract: ../shared/providers/validic-inform-provision-user.md. Our ``external_id`` is sent as
Validic's ``uid`` (4 to 254 letters, digits and single hyphens), which appears in Validic's URLs
and so must not carry identifying information: ids that look like an e-mail address, a phone
number or a person's name are refused, whatever the stack's AllowIdentifyingExternalIds says.

The organization token travels in the query string: a request URL is a credential. The HTTP layer
keeps query strings out of every log line and every error (``provisioning.http``); this module
never logs, stores or raises with a URL. A 422 on create is what an already-provisioned uid gets
(its text says nothing): the person is looked up by uid and linked when found. The marketplace
token, the marketplace URL (which embeds it) and the mobile token Validic returns are per-user
credentials: encrypted with KMS (``TOKEN_KMS_KEY_ID``) before they are stored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
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
from provisioning.providers.validic_inform import INFO
from provisioning.sealing import token_sealer
from provisioning.spec import CreateUserSpec, ProviderDependencies, provider_secret

if TYPE_CHECKING:
    from provisioning.person import Person  # signup events only: loaded when one comes

PROVIDER = INFO.name

# The messages Validic Inform's reference shows; anything else it says is free text and never travels.
VOCABULARY = ErrorVocabulary(
    messages=frozenset(
        {
            "Token is not authorized to access organization",
            "Invalid authentication credentials",
            "Forbidden",
            "Unauthorized",
            "Not Found",
        }
    )
)

# Validic's uid: letters, digits and single hyphens (none leading or trailing), 4 to 254 characters.
UID_PATTERN = r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$"
UID_MIN, UID_MAX = 4, 254
_UID = re.compile(UID_PATTERN)


def identifying_reason(uid: str) -> str | None:
    """Why a uid would reveal who the person is, or None (the rule is ``validation.identifying_reason``)."""
    reason = validation.identifying_reason(uid)
    return f"{reason}; Validic forbids identifying information in uid" if reason else None


class ValidicInformSecret(BaseModel):
    """The ``VALIDIC_INFORM_SECRET_ID`` secret: ``{"organization_id": "...", "token": "..."}``."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    organization_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    token: SecretStr = Field(min_length=1)


class ValidicInformLocation(StrictModel):
    timezone: validation.TimeZone | None = Field(
        default=None, description="IANA time zone, e.g. America/New_York"
    )
    country_code: validation.Country | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. US")

    @model_validator(mode="after")
    def _not_empty(self) -> ValidicInformLocation:
        if self.timezone is None and self.country_code is None:
            raise ValueError("must have a timezone or a country_code")
        return self


class ValidicInformProvisionUserRequest(CreateRequest):
    """Body of ``POST /validic-inform/users`` and of a ``ValidicInformProvisionUserQueue`` message.
    ``external_id`` is sent as Validic's ``uid``."""

    location: ValidicInformLocation | None = None

    @field_validator("external_id", mode="before")
    @classmethod
    def _validic_uid(cls, value: Any) -> Any:
        # Before the shared external_id rule: the answer then says why Validic refuses the id.
        if not isinstance(value, str):
            return value
        reason = identifying_reason(value) if len(value) <= UID_MAX else None
        if reason:
            raise ValueError(reason)
        if not (UID_MIN <= len(value) <= UID_MAX and _UID.match(value)):
            raise ValueError(
                f"Validic's uid must be {UID_MIN} to {UID_MAX} letters, digits and single hyphens "
                "(no hyphen first, last or doubled)"
            )
        return value


class _Marketplace(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    token: SecretStr | None = None
    url: SecretStr | None = None  # embeds the token


class _Mobile(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    token: SecretStr | None = None


class ValidicInformUser(BaseModel):
    """A user as Validic Inform answers it (create and lookup); its credentials stay SecretStr."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    id: str = Field(min_length=1, max_length=256)  # Validic's id: stored, never put in a URL
    uid: str | None = None
    marketplace: _Marketplace | None = None
    mobile: _Mobile | None = None

    def credentials(self) -> dict[str, str]:
        """The per-user credentials it carries, by the names they are stored (sealed) under."""
        values = {
            "marketplace_token": self.marketplace.token if self.marketplace else None,
            "marketplace_url": self.marketplace.url if self.marketplace else None,
            "mobile_token": self.mobile.token if self.mobile else None,
        }
        return {name: value.get_secret_value() for name, value in values.items() if value is not None}


class ValidicInformUsers(BaseModel):
    """The list answer: ``{"data": [...]}`` as served, ``{"users": [...]}`` as the reference says."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    data: list[ValidicInformUser] | None = None
    users: list[ValidicInformUser] | None = None

    @property
    def all(self) -> list[ValidicInformUser]:
        return self.data if self.data is not None else (self.users or [])


class ValidicInformClient:
    def __init__(self, http: ProviderHttp, secret: SecretGetter[ValidicInformSecret]) -> None:
        self._http = http
        self._secret = secret

    @staticmethod
    def _users(secret: ValidicInformSecret) -> str:
        return f"/organizations/{secret.organization_id}/users"

    @staticmethod
    def _auth(secret: ValidicInformSecret) -> dict[str, str]:
        return {"token": secret.token.get_secret_value()}

    @staticmethod
    def _raise_for_status(response: requests.Response, *, write: bool) -> None:
        # Four envelopes: {"errors": [..]}, {"errors": {field: [..]}} (free text: left behind),
        # {"status": 403, "error": ".."} and {"message": ".."}; a text/plain 400 has none.
        messages = error_texts(response, "errors", "error", "message")
        raise_for_status(PROVIDER, response, write=write, messages=messages, vocabulary=VOCABULARY)

    def provision(self, uid: str, location: dict[str, str] | None) -> ValidicInformUser:
        body: dict[str, Any] = {"uid": uid}
        if location:
            body["location"] = location

        def send(secret: ValidicInformSecret) -> requests.Response:
            return self._http.send(
                "POST", self._users(secret), write=True, json=body, params=self._auth(secret)
            )

        response = with_fresh_secret(self._secret, send)
        self._raise_for_status(response, write=True)
        if response.status_code not in (200, 201):
            raise malformed(PROVIDER, f"an unexpected status ({response.status_code})", write=True)
        created = parse_answer(PROVIDER, ValidicInformUser, response, write=True)
        if created.uid is not None and created.uid != uid:
            raise malformed(PROVIDER, "a user carrying another uid", write=True, status=response.status_code)
        return created

    def find(self, uid: str) -> ValidicInformUser | None:
        """The user with this uid, or None (404)."""

        def send(secret: ValidicInformSecret) -> requests.Response:
            path = f"{self._users(secret)}/{uid}"
            return self._http.send("GET", path, write=False, params=self._auth(secret))

        response = with_fresh_secret(self._secret, send)
        if response.status_code == 404:
            return None
        self._raise_for_status(response, write=False)
        user = parse_answer(PROVIDER, ValidicInformUser, response, write=False)
        if user.uid is not None and user.uid != uid:
            raise malformed(PROVIDER, "a user carrying another uid", write=False, status=response.status_code)
        return user

    def list_users(self) -> list[ValidicInformUser]:
        """Every user of the organization (``GET /users``), as far as one answer holds them."""

        def send(secret: ValidicInformSecret) -> requests.Response:
            return self._http.send("GET", self._users(secret), write=False, params=self._auth(secret))

        response = with_fresh_secret(self._secret, send)
        self._raise_for_status(response, write=False)
        return parse_answer(PROVIDER, ValidicInformUsers, response, write=False).all


def _provider_user(user: ValidicInformUser) -> ProviderUser:
    return ProviderUser(provider_user_id=user.id, details={}, sealed=user.credentials())


class ValidicInformProvisionUser:
    provider = PROVIDER

    def __init__(self, client: ValidicInformClient) -> None:
        self.client = client

    def can_look_up(self, request: ValidicInformProvisionUserRequest) -> bool:
        return True  # GET /users/{uid}: the uid is unique per organization

    def create(self, request: ValidicInformProvisionUserRequest) -> tuple[ProviderUser, LinkSource]:
        location = request.location.model_dump(exclude_none=True) if request.location else None
        try:
            created = self.client.provision(request.external_id, location)
        except ProviderRejected as exc:
            if exc.status != 422:  # what an already-provisioned uid gets; its text says nothing
                raise
            existing = self.client.find(request.external_id)
            if existing is None:
                raise
            return _provider_user(existing), LinkSource.EXISTING
        return _provider_user(created), LinkSource.CREATED

    def find_existing(
        self, request: ValidicInformProvisionUserRequest, since: datetime
    ) -> ProviderUser | None:
        existing = self.client.find(request.external_id)
        return _provider_user(existing) if existing else None


def build_create_user(deps: ProviderDependencies) -> ValidicInformProvisionUser:
    secret = provider_secret(deps, PROVIDER, ValidicInformSecret)
    return ValidicInformProvisionUser(ValidicInformClient(deps.http(PROVIDER), secret))


def from_person(person: Person) -> dict[str, Any]:
    """Validic needs a non-identifying uid (our id) and, optionally, where the person lives (their
    country and IANA time zone)."""
    body: dict[str, Any] = {"external_id": person.external_id}
    location: dict[str, str] = {}
    if person.country:
        location["country_code"] = person.country
    if person.timezone:
        location["timezone"] = person.timezone
    if location:
        body["location"] = location
    return body


CREATE_USER = CreateUserSpec(
    provider=PROVIDER,
    route=INFO.create.route,
    request_model=ValidicInformProvisionUserRequest,
    build_operation=build_create_user,
    build_sealer=token_sealer(INFO.title),
    summary="Provision a Validic Inform (v2) user for external_id (sent as uid)",
    from_person=from_person,
)
