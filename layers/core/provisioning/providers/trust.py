"""Trust (Atenea): typed client (OAuth client credentials, POST /users/create, GET /users?search=)
and the create-user operation.

Contract: ../shared/providers/trust-create-user.md and NOTES.md. Missing fields answer 404
"Missing params" (final); a known email answers 422 "User already exist", which is not a failure for
a person we are provisioning: the existing user is found by email and linked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from provisioning.errors import ProviderRejected, ProviderUnavailable
from provisioning.http import ProviderHttp, error_message, parse_answer, raise_for_status
from provisioning.models import CreateRequest, ProviderUser
from provisioning.person import Person, require
from provisioning.runtime import CreateUserSpec, Dependencies
from provisioning.store import LinkSource
from provisioning.validation import E164Phone, Email, HttpUrlText, Text

PROVIDER = "trust"
TOKEN_REFRESH_MARGIN_S = 60


class TrustSecret(BaseModel):
    """The ``TRUST_SECRET_ID`` secret: ``{"client_id": "...", "client_secret": "..."}``."""

    model_config = ConfigDict(extra="ignore")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)


class TrustCreateUserRequest(CreateRequest):
    """Body of ``POST /trust/users`` and of a ``TrustCreateUserQueue`` message."""

    email: Email
    name: Text
    last_name: Text
    dni: Text | None = None
    company_uid: Text | None = None
    role: Text | None = None
    nationality: Text | None = None
    img: HttpUrlText | None = None
    invitation: bool | None = None
    load_uuid: Text | None = None
    phone_number: E164Phone | None = None

    def trust_body(self) -> dict[str, Any]:
        return self.model_dump(exclude={"external_id"}, exclude_none=True)


class TrustToken(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a token
    expires_in: int = 7200
    created_at: int | None = None


class TrustUser(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | str
    email: str | None = None
    status: bool | None = None
    confirmed: bool | None = None
    company_uid: str | None = None
    created_at: str | None = None


class TrustAnswer(BaseModel):
    """Trust's envelope: ``{"status", "message", ...}``; ``user`` is one user on create, a list on search."""

    model_config = ConfigDict(extra="ignore")

    status: bool | str | None = None
    message: str | None = None
    total: int | None = None
    user: TrustUser | list[TrustUser] | None = None


class TrustClient:
    def __init__(
        self, http: ProviderHttp, secret: Callable[[], TrustSecret], clock: Callable[[], float] = time.time
    ):
        self._http = http
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None
        self.token_requests = 0

    # -- token -------------------------------------------------------------------------------------
    def _access_token(self, force: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if not force and self._token and now < self._token[1] - TOKEN_REFRESH_MARGIN_S:
                return self._token[0]
            secret = self._secret()
            response = self._http.send(
                "POST",
                "/oauth/token/",
                write=False,
                json={
                    "client_id": secret.client_id,
                    "client_secret": secret.client_secret.get_secret_value(),
                    "grant_type": "client_credentials",
                },
            )
            self.token_requests += 1
            raise_for_status(PROVIDER, response, write=False, message=error_message(response, "message"))
            token = parse_answer(PROVIDER, TrustToken, response)
            self._token = (token.access_token.get_secret_value(), now + token.expires_in)
            return self._token[0]

    def _send(self, method: str, path: str, *, write: bool, **kw: Any) -> requests.Response:
        """Send with the cached token; on a 401 fetch a new token once and replay the call once."""
        response = self._http.send(
            method, path, write=write, headers={"Authorization": f"Bearer {self._access_token()}"}, **kw
        )
        if response.status_code == 401:
            token = self._access_token(force=True)
            response = self._http.send(
                method, path, write=write, headers={"Authorization": f"Bearer {token}"}, **kw
            )
        return response

    # -- operations --------------------------------------------------------------------------------
    def create_user(self, body: dict[str, Any]) -> TrustUser:
        response = self._send("POST", "/users/create", write=True, json=body)
        raise_for_status(PROVIDER, response, write=True, message=error_message(response, "message"))
        answer = parse_answer(PROVIDER, TrustAnswer, response)
        if not isinstance(answer.user, TrustUser):
            raise ProviderUnavailable("trust answered without the created user", provider=PROVIDER)
        return answer.user

    def search(self, term: str, per_page: int = 20) -> list[TrustUser]:
        response = self._send(
            "GET", "/users", write=False, params={"search": term, "per_page": str(per_page)}
        )
        raise_for_status(PROVIDER, response, write=False, message=error_message(response, "message"))
        users = parse_answer(PROVIDER, TrustAnswer, response).user
        if users is None:
            return []
        return users if isinstance(users, list) else [users]

    def find_by_email(self, email: str) -> TrustUser | None:
        wanted = email.casefold()
        return next((u for u in self.search(email) if (u.email or "").casefold() == wanted), None)


def _provider_user(user: TrustUser) -> ProviderUser:
    details = {
        "status": user.status,
        "confirmed": user.confirmed,
        "company_uid": user.company_uid,
        "trust_created_at": user.created_at,
    }
    return ProviderUser(
        provider_user_id=str(user.id), details={k: v for k, v in details.items() if v is not None}
    )


class TrustCreateUser:
    provider = PROVIDER

    def __init__(self, client: TrustClient) -> None:
        self.client = client

    def create(self, request: TrustCreateUserRequest) -> tuple[ProviderUser, LinkSource]:
        try:
            return _provider_user(self.client.create_user(request.trust_body())), LinkSource.CREATED
        except ProviderRejected as exc:
            if exc.status != 422:
                raise
            existing = self.client.find_by_email(request.email)
            if existing is None:
                raise
            return _provider_user(existing), LinkSource.EXISTING

    def find_existing(self, request: TrustCreateUserRequest, since: datetime) -> ProviderUser | None:
        existing = self.client.find_by_email(request.email)
        return _provider_user(existing) if existing else None


def build_create_user(deps: Dependencies) -> TrustCreateUser:
    def secret() -> TrustSecret:
        return deps.secrets.get(deps.settings.secret_id(PROVIDER), TrustSecret)

    return TrustCreateUser(TrustClient(deps.http(PROVIDER), secret))


def from_person(person: Person) -> dict[str, Any]:
    """Trust requires an e-mail address, a first and a last name."""
    require(person, PROVIDER, "email", "first_name", "last_name")
    body: dict[str, Any] = {
        "external_id": person.external_id,
        "email": person.email,
        "name": person.first_name,
        "last_name": person.last_name,
    }
    optional = {"dni": person.national_id, "nationality": person.nationality, "phone_number": person.phone}
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


CREATE_USER = CreateUserSpec(
    provider=PROVIDER,
    route="/trust/users",
    request_model=TrustCreateUserRequest,
    build_operation=build_create_user,
    summary="Create a Trust (Atenea) user for external_id",
    from_person=from_person,
)
