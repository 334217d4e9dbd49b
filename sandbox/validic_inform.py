"""Validic Inform (API v2) emulator: provision (POST /organizations/{org}/users?token=), lookup by
uid (GET .../users/{uid}?token=) and list (GET .../users?token=) for one organization, with the
documented answers: 201 with the user and its marketplace and mobile tokens, 422 for a uid it
already holds, 401 without the organization's token, 403 for another organization, and an hourly
request budget counted per organization (429 once it is used up; Validic documents no headers)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from provisioner_sandbox.server import Reply, Request, Route, drop_ids

NAME = "validic_inform"
ORGANIZATION_ID = "sandbox-inform-org"
ORG_TOKEN = "sandbox-inform-org-token-5f2c9a"  # noqa: S105 - the sandbox's own test credential
MARKETPLACE = "https://syncmydevice.com/?token="
UID = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")

UNAUTHORIZED = {"errors": ["Token is not authorized to access organization"]}
FORBIDDEN = {"message": "Invalid authentication credentials"}
ALREADY = {"message": "An error occurred and an error response has been sent with details."}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ValidicInformEmulator:
    name = NAME

    def __init__(
        self, organization_id: str = ORGANIZATION_ID, token: str = ORG_TOKEN, requests_per_hour: int = 2000
    ) -> None:
        self.organization_id = organization_id
        self.token = token
        self.requests_per_hour = requests_per_hour  # the organization token's budget; set lower in tests
        self._lock = threading.Lock()
        self.users: dict[str, dict[str, Any]] = {}  # by uid
        self._window: tuple[int, int] = (0, 0)  # (hour, requests counted in it)

    # -- ProviderEmulator ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.users.clear()
            self._window = (0, 0)

    def routes(self) -> list[Route]:
        users = rf"/{NAME}/organizations/(?P<org>[^/]+)/users"
        return [
            Route("POST", re.compile(users), self.provision, write=True),
            Route("GET", re.compile(users), self.list_users),
            Route("GET", re.compile(users + r"/(?P<uid>[^/]+)"), self.lookup),
        ]

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def without_id(self, body: Any) -> Any:
        return drop_ids(body)

    # -- for the shared tooling ----------------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        """The secret the local stack stores for Validic Inform (VALIDIC_INFORM_SECRET_ID)."""
        return {"organization_id": self.organization_id, "token": self.token}

    def users_for(self, external_id: str) -> int:
        """How many users it holds for this person (our external_id is Validic's uid)."""
        with self._lock:
            return 1 if external_id in self.users else 0

    def user_ids(self, external_id: str) -> list[str]:
        with self._lock:
            user = self.users.get(external_id)
        return [str(user["id"])] if user else []

    def create_call(self) -> tuple[str, str]:
        return "POST", f"/{NAME}/organizations/{self.organization_id}/users"

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        return {"uid": external_id}, {}

    def create_query(self) -> dict[str, str]:
        return {"token": self.token}

    @property
    def budget(self) -> int:
        """Requests per hour for the organization token (429 past it), as the registry's Budget."""
        return self.requests_per_hour

    @budget.setter
    def budget(self, requests: int) -> None:
        self.requests_per_hour = requests

    def seed_user(self, uid: str, location: dict[str, Any] | None = None) -> dict[str, Any]:
        """Add a user as if provisioned earlier (by another system, or by a create whose answer was lost)."""
        with self._lock:
            return self._store(uid, location)

    @property
    def used_this_hour(self) -> int:
        with self._lock:
            hour, used = self._window
            return used if hour == int(time.time() // 3600) else 0

    # -- helpers -----------------------------------------------------------------------------------
    def _store(self, uid: str, location: Any) -> dict[str, Any]:
        marketplace_token = secrets.token_hex(24)
        now = _now()
        user: dict[str, Any] = {
            "id": secrets.token_hex(12),
            "uid": uid,
            "marketplace": {"token": marketplace_token, "url": f"{MARKETPLACE}{marketplace_token}"},
            "mobile": {"token": secrets.token_hex(16)},
            "location": location if isinstance(location, dict) else None,
            "sources": [],
            "status": "active",
            "created_at": now,
            "updated_at": now,
        }
        self.users[uid] = user
        return user

    def _guard(self, request: Request, org: str) -> Reply | None:
        """Count the request in the hour's budget; refuse a missing or wrong token, another
        organization, or a request over the budget."""
        hour = int(time.time() // 3600)
        with self._lock:
            window, used = self._window
            if window != hour:
                window, used = hour, 0
            used += 1
            self._window = (window, used)
        token = request.query.get("token")
        if not token or not secrets.compare_digest(token, self.token):
            return Reply(401, UNAUTHORIZED)
        if org != self.organization_id:
            return Reply(403, FORBIDDEN)
        if used > self.requests_per_hour:
            return Reply(429, {"message": "API rate limit exceeded"})
        return None

    # -- routes ----------------------------------------------------------------------------------
    def provision(self, request: Request, org: str) -> Reply:
        refused = self._guard(request, org)
        if refused:
            return refused
        try:
            body = request.json()
        except ValueError:
            return Reply(400, raw=b"Bad Request", content_type="text/plain")
        if not isinstance(body, dict):
            return Reply(400, raw=b"Bad Request", content_type="text/plain")
        uid = body.get("uid")
        if not isinstance(uid, str) or not 4 <= len(uid) <= 254 or not UID.match(uid):
            return Reply(422, {"errors": {"uid": ["is invalid"]}})
        with self._lock:
            if uid in self.users:
                return Reply(422, ALREADY)
            user = self._store(uid, body.get("location"))
        return Reply(201, user)

    def lookup(self, request: Request, org: str, uid: str) -> Reply:
        refused = self._guard(request, org)
        if refused:
            return refused
        with self._lock:
            user = self.users.get(uid)
        if user is None:
            return Reply(404, {"message": "Not Found"})
        return Reply(200, user)

    def list_users(self, request: Request, org: str) -> Reply:
        refused = self._guard(request, org)
        if refused:
            return refused
        with self._lock:
            return Reply(200, {"data": list(self.users.values())})
