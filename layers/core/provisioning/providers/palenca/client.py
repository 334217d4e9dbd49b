"""Palenca: typed client (POST /v1/users, POST /v1/users/search) and the create-user operation.

Contract: ../shared/providers/palenca-create-user.md, palenca-list-users.md and NOTES.md.
Auth is the ``x-api-key`` header; answers are wrapped in ``{"success", "error", "data"}`` (one
documented error example names the error field ``mistake``: both are read).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from provisioning.http import (
    ErrorVocabulary,
    ProviderHttp,
    SecretGetter,
    malformed,
    raise_for_status,
    read_json,
    with_fresh_secret,
)
from provisioning.models import CreateRequest, LinkSource, ProviderUser
from provisioning.providers.palenca import INFO
from provisioning.spec import CreateUserSpec, ProviderDependencies, provider_secret

if TYPE_CHECKING:
    from provisioning.person import Person  # signup events only: loaded when one comes

PROVIDER = INFO.name

# Palenca's documented error codes; its messages are free text and never travel.
VOCABULARY = ErrorVocabulary(
    codes=frozenset(
        {
            "missing_api_key",
            "invalid_api_key",
            "bad_request",
            "platform_error",
            "platform_unavailable",
            "service_unavailable",
            "lambda_error",
            "request_timeout",
            "too_many_requests",
        }
    )
)


class PalencaSecret(BaseModel):
    """The ``PALENCA_SECRET_ID`` secret: ``{"api_key": "...", "widget_id": "..."}``."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    api_key: SecretStr = Field(min_length=1)
    widget_id: UUID


class PalencaCreateUserRequest(CreateRequest):
    """Body of ``POST /palenca/users`` and of a ``PalencaCreateUserQueue`` message."""

    widget_id: UUID | None = Field(
        default=None, description="Palenca widget; defaults to the widget_id of the secret."
    )


class PalencaUser(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    user_id: str
    external_id: str | None = None
    widget_id: str | None = None


class PalencaErrorDetail(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    error_code: str | None = None
    code: str | None = None
    message: str | None = None


class PalencaPagination(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    page: int
    items_per_page: int
    total_items: int
    total_pages: int


class PalencaEnvelope(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    success: bool = False
    error: PalencaErrorDetail | None = None
    mistake: PalencaErrorDetail | None = None
    data: Any = None
    pagination: PalencaPagination | None = None

    @property
    def problem(self) -> PalencaErrorDetail | None:
        return self.error or self.mistake


class PalencaUserPage(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on first use

    users: list[PalencaUser]
    pagination: PalencaPagination


class PalencaClient:
    def __init__(self, http: ProviderHttp, secret: SecretGetter[PalencaSecret]) -> None:
        self._http = http
        self._secret = secret

    @property
    def call_timeout(self) -> float:
        return self._http.call_timeout

    def _post(self, path: str, body: dict[str, Any], *, write: bool) -> requests.Response:
        def send(secret: PalencaSecret) -> requests.Response:
            headers = {"x-api-key": secret.api_key.get_secret_value(), "Content-Type": "application/json"}
            return self._http.send("POST", path, write=write, json=body, headers=headers)

        return with_fresh_secret(self._secret, send)

    def _envelope(self, response: requests.Response, *, write: bool) -> PalencaEnvelope:
        try:
            envelope: PalencaEnvelope | None = PalencaEnvelope.model_validate(read_json(response))
        except (ValueError, ValidationError):
            envelope = None
        problem = envelope.problem if envelope else None
        code = (problem.error_code or problem.code) if problem else None
        raise_for_status(PROVIDER, response, write=write, provider_code=code, vocabulary=VOCABULARY)
        if envelope is None or not envelope.success:
            raise malformed(
                PROVIDER, "a body without a success envelope", write=write, status=response.status_code
            )
        return envelope

    def create_user(self, external_id: str, widget_id: UUID) -> PalencaUser:
        body = {"external_id": external_id, "widget_id": str(widget_id)}
        response = self._post("/v1/users", body, write=True)
        envelope = self._envelope(response, write=True)
        try:
            user = PalencaUser.model_validate(envelope.data)
        except ValidationError:
            raise malformed(
                PROVIDER, "a success envelope without data.user_id", write=True, status=response.status_code
            ) from None
        if user.external_id is not None and user.external_id != external_id:
            raise malformed(
                PROVIDER, "a user carrying another external_id", write=True, status=response.status_code
            )
        return user

    def search_users(
        self, start_date: date, end_date: date, page: int = 1, items_per_page: int = 100
    ) -> PalencaUserPage:
        """One page of users; ``start_date`` is the latest day, ``end_date`` the earliest."""
        body = {
            "start_date": start_date.isoformat(),
            "end_date": end_date.isoformat(),
            "options": {"items_per_page": items_per_page, "page": page},
        }
        response = self._post("/v1/users/search", body, write=False)
        envelope = self._envelope(response, write=False)
        data = envelope.data if isinstance(envelope.data, dict) else {}
        pagination = envelope.pagination or data.get("pagination")
        try:
            return PalencaUserPage.model_validate({"users": data.get("users", []), "pagination": pagination})
        except ValidationError:
            raise malformed(
                PROVIDER, "a malformed user page", write=False, status=response.status_code
            ) from None

    def iter_users(
        self, start_date: date, end_date: date, items_per_page: int = 150
    ) -> Iterator[PalencaUser]:
        page = 1
        while True:
            result = self.search_users(start_date, end_date, page=page, items_per_page=items_per_page)
            yield from result.users
            if page >= result.pagination.total_pages or not result.users:
                return
            page += 1


class PalencaCreateUser:
    """Creates a Palenca user for ``external_id``; Palenca has no uniqueness, so de-duplication is ours."""

    provider = PROVIDER

    def __init__(self, client: PalencaClient, secret: SecretGetter[PalencaSecret]) -> None:
        self._client = client
        self._secret = secret

    def can_look_up(self, request: PalencaCreateUserRequest) -> bool:
        return True  # the users search, matched on external_id

    def create(self, request: PalencaCreateUserRequest) -> tuple[ProviderUser, LinkSource]:
        widget_id = request.widget_id or self._secret().widget_id
        user = self._client.create_user(request.external_id, widget_id)
        return _provider_user(user, widget_id), LinkSource.CREATED

    def find_existing(self, request: PalencaCreateUserRequest, since: datetime) -> ProviderUser | None:
        # Dates are widened by a day on each side: Palenca's day boundaries are not documented.
        latest = datetime.now(UTC).date() + timedelta(days=1)
        earliest = since.astimezone(UTC).date() - timedelta(days=1)
        for user in self._client.iter_users(latest, earliest):
            if user.external_id == request.external_id:
                return _provider_user(user, request.widget_id)
        return None


def _provider_user(user: PalencaUser, widget_id: UUID | str | None) -> ProviderUser:
    return ProviderUser(
        provider_user_id=user.user_id,
        details={"widget_id": user.widget_id or (str(widget_id) if widget_id else None)},
    )


def build_create_user(deps: ProviderDependencies) -> PalencaCreateUser:
    """The operation, wired to this container's settings, session and cached secret."""

    secret = provider_secret(deps, PROVIDER, PalencaSecret)
    return PalencaCreateUser(PalencaClient(deps.http(PROVIDER), secret), secret)


def from_person(person: Person) -> dict[str, Any]:
    """Palenca needs only our id (the widget is the secret's)."""
    return {"external_id": person.external_id}


CREATE_USER = CreateUserSpec(
    provider=PROVIDER,
    route=INFO.create.route,
    request_model=PalencaCreateUserRequest,
    build_operation=build_create_user,
    summary="Create a Palenca user for external_id",
    from_person=from_person,
)
