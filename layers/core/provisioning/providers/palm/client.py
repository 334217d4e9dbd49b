"""Palm: typed client (POST /v1/user, POST /v1/user/search) and the create-user operation.

Contract: ../shared/providers/palm-create-user.md and NOTES.md. Palm has no idempotency and does
not reject duplicates, so a person whose vault holds an email or phone is looked up first (every
page of the exact, hashed search). A user found is linked only when its ``metadata.external_id`` is
this person's; a user with this e-mail or phone that belongs to someone else is a conflict for an
operator, never a link. Vault values are personal data: sent to Palm, never stored nor logged.

A person with neither email nor phone in the vault cannot be looked up (``metadata.external_id`` is
not a search filter): after a create whose outcome is unknown, such a record is held for an operator
(``unknown_outcome``), never created a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import requests
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from provisioning.errors import Conflict, ProviderUnavailable
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
from provisioning.providers.palm import INFO
from provisioning.spec import CreateUserSpec, ProviderDependencies, provider_secret
from provisioning.validation import Country, DateOfBirth, E164Phone, Email, Text

if TYPE_CHECKING:
    from provisioning.person import Person  # signup events only: loaded when one comes

PROVIDER = INFO.name
MAX_METADATA_KEYS = 50
SEARCH_PAGE_SIZE = 100
MAX_SEARCH_PAGES = 20

# RFC 7807 titles Palm answers with; its ``detail`` is free text and never travels.
VOCABULARY = ErrorVocabulary(
    messages=frozenset(
        {
            "Bad Request",
            "Unauthorized",
            "Forbidden",
            "Not Found",
            "Conflict",
            "Unprocessable Entity",
            "Too Many Requests",
            "Internal Server Error",
            "Service Unavailable",
        }
    )
)


class PalmSecret(BaseModel):
    """The ``PALM_SECRET_ID`` secret: ``{"api_key": "sk_test_..." | "sk_live_..."}``."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    api_key: SecretStr

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("sk_test_", "sk_live_")):
            raise ValueError("must start with sk_test_ or sk_live_")
        return value


MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)] | int | float | bool | None


class PalmVault(StrictModel):
    """Vault fields by their Palm field id; unknown field ids are rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    first_name: Text | None = Field(default=None, alias="identity.first_name")
    middle_name: Text | None = Field(default=None, alias="identity.middle_name")
    last_name: Text | None = Field(default=None, alias="identity.last_name")
    email: Email | None = Field(default=None, alias="identity.email")
    phone: E164Phone | None = Field(default=None, alias="identity.phone")
    date_of_birth: DateOfBirth | None = Field(default=None, alias="identity.date_of_birth")
    ssn: Annotated[str, StringConstraints(pattern=r"^\d{3}-?\d{2}-?\d{4}$")] | None = Field(
        default=None, alias="identity.ssn"
    )
    line1: Text | None = Field(default=None, alias="address.line1")
    city: Text | None = Field(default=None, alias="address.city")
    postal_code: Annotated[str, StringConstraints(max_length=16)] | None = Field(
        default=None, alias="address.postal_code"
    )
    country: Country | None = Field(default=None, alias="address.country")

    def palm_body(self) -> dict[str, str]:
        return self.model_dump(by_alias=True, exclude_none=True)


class PalmCreateUserRequest(CreateRequest):
    """Body of ``POST /palm/users`` and of a ``PalmCreateUserQueue`` message."""

    display_name: Text | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict)
    vault: PalmVault = Field(default_factory=PalmVault)

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, metadata: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if len(set(metadata) | {"external_id"}) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys, external_id included")
        if "external_id" in metadata and metadata["external_id"] != info.data.get("external_id"):
            raise ValueError("external_id must equal the request's external_id (it is always written)")
        return metadata

    def palm_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"metadata": {**self.metadata, "external_id": self.external_id}}
        if self.display_name:
            body["display_name"] = self.display_name
        vault = self.vault.palm_body()
        if vault:
            body["vault"] = vault
        return body


class PalmUser(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    id: str
    status: str | None = None
    created_at: str | None = None
    email_fingerprint: str | None = None
    phone_fingerprint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PalmUserList(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    data: list[PalmUser] = Field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None


class PalmClient:
    def __init__(self, http: ProviderHttp, secret: SecretGetter[PalmSecret]) -> None:
        self._http = http
        self._secret = secret

    def _post(self, path: str, body: dict[str, Any], *, write: bool) -> requests.Response:
        def send(secret: PalmSecret) -> requests.Response:
            headers = {"Authorization": f"Bearer {secret.api_key.get_secret_value()}"}
            return self._http.send("POST", path, write=write, json=body, headers=headers)

        response = with_fresh_secret(self._secret, send)
        messages = error_texts(response, "title")
        raise_for_status(PROVIDER, response, write=write, messages=messages, vocabulary=VOCABULARY)
        return response

    def create_user(self, body: dict[str, Any]) -> PalmUser:
        response = self._post("/v1/user", body, write=True)
        user = parse_answer(PROVIDER, PalmUser, response, write=True)
        written = body.get("metadata", {}).get("external_id")
        if user.metadata and user.metadata.get("external_id") != written:
            raise malformed(
                PROVIDER, "a user carrying another external_id", write=True, status=response.status_code
            )
        return user

    def search(
        self,
        *,
        email: str | None = None,
        phone: str | None = None,
        limit: int = SEARCH_PAGE_SIZE,
        cursor: str | None = None,
    ) -> PalmUserList:
        query: dict[str, Any] = {"limit": limit}
        if email:
            query["email"] = email
        if phone:
            query["phone"] = phone
        if cursor:
            query["cursor"] = cursor
        response = self._post("/v1/user/search", query, write=False)
        return parse_answer(PROVIDER, PalmUserList, response, write=False)

    def iter_search(self, *, email: str | None = None, phone: str | None = None) -> Iterator[PalmUser]:
        """Every user of an exact e-mail or phone search, page after page."""
        cursor: str | None = None
        for _ in range(MAX_SEARCH_PAGES):
            page = self.search(email=email, phone=phone, cursor=cursor)
            yield from page.data
            if not page.has_more or not page.next_cursor or not page.data:
                return
            cursor = page.next_cursor
        raise ProviderUnavailable("palm search did not end; lookup not finished", provider=PROVIDER)


def _provider_user(user: PalmUser) -> ProviderUser:
    details = {
        "status": user.status,
        "email_fingerprint": user.email_fingerprint,
        "phone_fingerprint": user.phone_fingerprint,
        "palm_created_at": user.created_at,
    }
    return ProviderUser(provider_user_id=user.id, details={k: v for k, v in details.items() if v is not None})


class PalmCreateUser:
    provider = PROVIDER

    def __init__(self, client: PalmClient) -> None:
        self.client = client

    def can_look_up(self, request: PalmCreateUserRequest) -> bool:
        return bool(request.vault.email or request.vault.phone)

    def _found(self, request: PalmCreateUserRequest) -> tuple[PalmUser | None, bool]:
        """This person's Palm user (its ``metadata.external_id`` is ours), and whether users with
        this e-mail or phone exist that belong to someone else."""
        vault = request.vault
        others = False
        searches = [{"email": vault.email}] if vault.email else []
        searches += [{"phone": vault.phone}] if vault.phone else []
        for search in searches:
            for user in self.client.iter_search(**search):
                if user.metadata.get("external_id") == request.external_id:
                    return user, others
                others = True
        return None, others

    def create(self, request: PalmCreateUserRequest) -> tuple[ProviderUser, LinkSource]:
        if self.can_look_up(request):
            mine, others = self._found(request)
            if mine is not None:
                return _provider_user(mine), LinkSource.EXISTING
            if others:
                raise Conflict(
                    "palm already holds a user with this person's e-mail or phone for another external_id; "
                    "not linked",
                    provider=PROVIDER,
                )
        return _provider_user(self.client.create_user(request.palm_body())), LinkSource.CREATED

    def find_existing(self, request: PalmCreateUserRequest, since: datetime) -> ProviderUser | None:
        mine, _ = self._found(request)
        return _provider_user(mine) if mine else None


def build_create_user(deps: ProviderDependencies) -> PalmCreateUser:
    secret = provider_secret(deps, PROVIDER, PalmSecret)
    return PalmCreateUser(PalmClient(deps.http(PROVIDER), secret))


def from_person(person: Person) -> dict[str, Any]:
    """Palm requires nothing beyond our id; what the person has goes to the vault."""
    vault = {
        "identity.first_name": person.first_name,
        "identity.last_name": person.last_name,
        "identity.email": person.email,
        "identity.phone": person.phone,
        "identity.date_of_birth": person.date_of_birth,
        "address.country": person.country,
    }
    body: dict[str, Any] = {
        "external_id": person.external_id,
        "vault": {key: value for key, value in vault.items() if value is not None},
    }
    name = " ".join(part for part in (person.first_name, person.last_name) if part)
    if name:
        body["display_name"] = name
    return body


CREATE_USER = CreateUserSpec(
    provider=PROVIDER,
    route=INFO.create.route,
    request_model=PalmCreateUserRequest,
    build_operation=build_create_user,
    summary="Create a Palm user for external_id",
    from_person=from_person,
)
