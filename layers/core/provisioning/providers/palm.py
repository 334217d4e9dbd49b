"""Palm: typed client (POST /v1/user, POST /v1/user/search) and the create-user operation.

Contract: ../shared/providers/palm-create-user.md and NOTES.md. Palm has no idempotency and does
not reject duplicates, so a person whose vault holds an email or phone is looked up first and the
existing user linked. Vault values are personal data: sent to Palm, never stored nor logged.

Limitation: after a lost answer, a person with neither email nor phone in the vault cannot be found
again (``metadata.external_id`` is not a search filter); such a record is retried as a new create.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from provisioning.http import ProviderHttp, error_message, parse_answer, raise_for_status
from provisioning.models import CreateRequest, ProviderUser, StrictModel
from provisioning.person import Person
from provisioning.runtime import CreateUserSpec, Dependencies
from provisioning.store import LinkSource
from provisioning.validation import Country, DateOfBirth, E164Phone, Email, Text

PROVIDER = "palm"
MAX_METADATA_KEYS = 50


class PalmSecret(BaseModel):
    """The ``PALM_SECRET_ID`` secret: ``{"api_key": "sk_test_..." | "sk_live_..."}``."""

    model_config = ConfigDict(extra="ignore")

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
    model_config = ConfigDict(extra="ignore")

    id: str
    status: str | None = None
    created_at: str | None = None
    email_fingerprint: str | None = None
    phone_fingerprint: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PalmUserList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[PalmUser] = Field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None


class PalmClient:
    def __init__(self, http: ProviderHttp, secret: Callable[[], PalmSecret]) -> None:
        self._http = http
        self._secret = secret

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secret().api_key.get_secret_value()}"}

    def create_user(self, body: dict[str, Any]) -> PalmUser:
        response = self._http.send("POST", "/v1/user", write=True, json=body, headers=self._headers())
        raise_for_status(PROVIDER, response, write=True, message=error_message(response, "detail", "title"))
        return parse_answer(PROVIDER, PalmUser, response)

    def search(
        self, *, email: str | None = None, phone: str | None = None, limit: int = 10
    ) -> list[PalmUser]:
        query: dict[str, Any] = {"limit": limit}
        if email:
            query["email"] = email
        if phone:
            query["phone"] = phone
        response = self._http.send(
            "POST", "/v1/user/search", write=False, json=query, headers=self._headers()
        )
        raise_for_status(PROVIDER, response, write=False, message=error_message(response, "detail", "title"))
        return parse_answer(PROVIDER, PalmUserList, response).data


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

    def _lookup(self, request: PalmCreateUserRequest) -> PalmUser | None:
        vault = request.vault
        if vault.email:
            found = self.client.search(email=vault.email)
            if found:
                return found[0]
        if vault.phone:
            found = self.client.search(phone=vault.phone)
            if found:
                return found[0]
        return None

    def create(self, request: PalmCreateUserRequest) -> tuple[ProviderUser, LinkSource]:
        existing = self._lookup(request)
        if existing is not None:
            return _provider_user(existing), LinkSource.EXISTING
        return _provider_user(self.client.create_user(request.palm_body())), LinkSource.CREATED

    def find_existing(self, request: PalmCreateUserRequest, since: datetime) -> ProviderUser | None:
        existing = self._lookup(request)
        return _provider_user(existing) if existing else None


def build_create_user(deps: Dependencies) -> PalmCreateUser:
    def secret() -> PalmSecret:
        return deps.secrets.get(deps.settings.secret_id(PROVIDER), PalmSecret)

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
    route="/palm/users",
    request_model=PalmCreateUserRequest,
    build_operation=build_create_user,
    summary="Create a Palm user for external_id",
    from_person=from_person,
)
