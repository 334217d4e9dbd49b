"""Trust (Atenea): typed client (OAuth client credentials, POST /users/create, GET /users?search=)
and the create-user operation.

Contract: ../shared/providers/trust-create-user.md and NOTES.md. Missing fields answer 404
"Missing params" (final); a known email answers 422 "User already exist". Trust does not store our
id, so an existing user is linked only when it provably is this person: the same e-mail (exact, found
by paging through every search result), the same first and last name (and national id when both
have one), and no other person holding that Trust user (the store's claim). Anything else is a
conflict for an operator, never a link to the wrong person.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from provisioning.errors import Conflict, ProviderRejected, ProviderUnavailable
from provisioning.http import (
    ErrorVocabulary,
    ProviderHttp,
    SecretGetter,
    error_texts,
    malformed,
    parse_answer,
    raise_for_status,
)
from provisioning.models import CreateRequest, LinkSource, ProviderUser
from provisioning.providers.trust import INFO
from provisioning.spec import CreateUserSpec, ProviderDependencies, provider_secret
from provisioning.validation import E164Phone, Email, HttpUrlText, Text

if TYPE_CHECKING:
    from provisioning.person import Person  # signup events only: loaded when one comes

PROVIDER = INFO.name
TOKEN_REFRESH_MARGIN_S = 60
SEARCH_PAGE_SIZE = 50
MAX_SEARCH_PAGES = 40  # 2,000 users share a search term: beyond that the lookup gives up (retried)

# The messages Trust documents; anything else it says is free text and never travels.
VOCABULARY = ErrorVocabulary(
    messages=frozenset({"Missing params", "User already exist", "Unauthorized", "invalid_client"})
)


class TrustSecret(BaseModel):
    """The ``TRUST_SECRET_ID`` secret: ``{"client_id": "...", "client_secret": "..."}``."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

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
    model_config = ConfigDict(defer_build=True, extra="ignore")

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a token
    expires_in: int = 7200
    created_at: int | None = None


class TrustUser(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="ignore")

    id: int | str
    email: str | None = None
    # Identity, held in memory only to tell whether a user found by e-mail is this person.
    name: str | None = None
    last_name: str | None = None
    dni: str | None = None
    status: bool | None = None
    confirmed: bool | None = None
    company_uid: str | None = None
    created_at: str | None = None


class TrustAnswer(BaseModel):
    """Trust's envelope: ``{"status", "message", ...}``; ``user`` is one user on create, a list on search."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    status: bool | str | None = None
    message: str | None = None
    total: int | None = None
    user: TrustUser | list[TrustUser] | None = None


class TrustClient:
    def __init__(
        self, http: ProviderHttp, secret: SecretGetter[TrustSecret], clock: Callable[[], float] = time.time
    ):
        self._http = http
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None
        self.token_requests = 0

    # -- token -------------------------------------------------------------------------------------
    def _request_token(self, secret: TrustSecret) -> requests.Response:
        self.token_requests += 1
        return self._http.send(
            "POST",
            "/oauth/token/",
            write=False,
            json={
                "client_id": secret.client_id,
                "client_secret": secret.client_secret.get_secret_value(),
                "grant_type": "client_credentials",
            },
        )

    def _access_token(self, force: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if not force and self._token and now < self._token[1] - TOKEN_REFRESH_MARGIN_S:
                return self._token[0]
            secret = self._secret()
            response = self._request_token(secret)
            if response.status_code in (401, 403):  # the client secret may have been rotated
                fresh = self._secret(refresh=True)
                if fresh != secret:
                    response = self._request_token(fresh)
            self._raise_for_status(response, write=False)
            token = parse_answer(PROVIDER, TrustToken, response, write=False)
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

    @staticmethod
    def _raise_for_status(response: requests.Response, *, write: bool) -> None:
        messages = error_texts(response, "message", "error")
        raise_for_status(PROVIDER, response, write=write, messages=messages, vocabulary=VOCABULARY)

    # -- operations --------------------------------------------------------------------------------
    def create_user(self, body: dict[str, Any]) -> TrustUser:
        response = self._send("POST", "/users/create", write=True, json=body)
        self._raise_for_status(response, write=True)
        answer = parse_answer(PROVIDER, TrustAnswer, response, write=True)
        if not isinstance(answer.user, TrustUser):
            raise malformed(
                PROVIDER, "a success without the created user", write=True, status=response.status_code
            )
        return answer.user

    def search(self, term: str, page: int = 1, per_page: int = SEARCH_PAGE_SIZE) -> TrustAnswer:
        params = {"search": term, "page": str(page), "per_page": str(per_page)}
        response = self._send("GET", "/users", write=False, params=params)
        self._raise_for_status(response, write=False)
        return parse_answer(PROVIDER, TrustAnswer, response, write=False)

    def iter_search(self, term: str) -> Iterator[TrustUser]:
        """Every user Trust's (substring) search returns for ``term``, page after page."""
        seen = 0
        for page in range(1, MAX_SEARCH_PAGES + 1):
            answer = self.search(term, page)
            users = answer.user if isinstance(answer.user, list) else [answer.user] if answer.user else []
            yield from users
            seen += len(users)
            if (
                not users
                or len(users) < SEARCH_PAGE_SIZE
                or (answer.total is not None and seen >= answer.total)
            ):
                return
        raise ProviderUnavailable(
            f"trust search matched over {MAX_SEARCH_PAGES * SEARCH_PAGE_SIZE} users; lookup not finished",
            provider=PROVIDER,
        )

    def find_by_email(self, email: str) -> TrustUser | None:
        wanted = email.casefold()
        return next((u for u in self.iter_search(email) if (u.email or "").casefold() == wanted), None)


def _normalized(text: str | None) -> str:
    decomposed = unicodedata.normalize("NFKD", text or "")
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def is_same_person(user: TrustUser, request: TrustCreateUserRequest) -> bool:
    """Whether a Trust user found by e-mail is this person: the same first and last name (accents,
    case and spacing aside) and, when both have one, the same national id."""
    if _normalized(user.name) != _normalized(request.name):
        return False
    if _normalized(user.last_name) != _normalized(request.last_name):
        return False
    return not (user.dni and request.dni and _normalized(user.dni) != _normalized(request.dni))


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

    def can_look_up(self, request: TrustCreateUserRequest) -> bool:
        return True  # the users search, matched on the exact e-mail

    def create(self, request: TrustCreateUserRequest) -> tuple[ProviderUser, LinkSource]:
        try:
            return _provider_user(self.client.create_user(request.trust_body())), LinkSource.CREATED
        except ProviderRejected as exc:
            if exc.status != 422:
                raise
            existing = self._find(request)
            if existing is None:
                raise
            return existing, LinkSource.EXISTING

    def find_existing(self, request: TrustCreateUserRequest, since: datetime) -> ProviderUser | None:
        return self._find(request)

    def _find(self, request: TrustCreateUserRequest) -> ProviderUser | None:
        existing = self.client.find_by_email(request.email)
        if existing is None:
            return None
        if not is_same_person(existing, request):
            raise Conflict(
                "trust already holds this e-mail address for a person with other identity data; not linked",
                provider=PROVIDER,
            )
        return _provider_user(existing)


def build_create_user(deps: ProviderDependencies) -> TrustCreateUser:
    secret = provider_secret(deps, PROVIDER, TrustSecret)
    return TrustCreateUser(TrustClient(deps.http(PROVIDER), secret))


def from_person(person: Person) -> dict[str, Any]:
    """Trust requires an e-mail address, a first and a last name."""
    from provisioning.person import require  # signup events only: not loaded for a plain request

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
    route=INFO.create.route,
    request_model=TrustCreateUserRequest,
    build_operation=build_create_user,
    summary="Create a Trust (Atenea) user for external_id",
    from_person=from_person,
)
