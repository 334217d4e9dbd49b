"""Trust (Atenea) emulator: OAuth client credentials, POST /users/create and GET /users?search=,
with the documented answers (201, 404 "Missing params", 422 "User already exist")."""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from provisioner_sandbox.server import Reply, Request, Route, drop_ids

CLIENT_ID = "sandbox-trust-client"
CLIENT_SECRET = "sandbox-trust-secret"  # noqa: S105 - the sandbox's own test credential


class TrustEmulator:
    name = "trust"

    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.users: list[dict[str, Any]] = []
            self.tokens: set[str] = set()
            self.token_requests = 0
            self._next_id = 2866

    def error_body(self, status: int, message: str) -> Any:
        return {"status": False, "message": message}

    def without_id(self, body: Any) -> Any:
        return drop_ids(body)

    def credentials(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    def users_for(self, external_id: str) -> int:
        """Trust keeps no id of ours: the sandbox knows a person by the national id (``dni``) the
        tests give them, their external_id (a Person's ``national_id``, which Trust's mapping sends)."""
        return len(self.users_with_dni(external_id))

    def user_ids(self, external_id: str) -> list[str]:
        return [str(u["id"]) for u in self.users_with_dni(external_id)]

    def users_with_dni(self, dni: str) -> list[dict[str, Any]]:
        with self._lock:
            return [u for u in self.users if u["dni"] == dni]

    def create_call(self) -> tuple[str, str]:
        return "POST", "/trust/users/create"

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        token = secrets.token_hex(20)  # as granted to the sandbox's own client
        with self._lock:
            self.tokens.add(token)
        body = {
            "email": f"{external_id}@example.test",
            "name": "Pepa",
            "last_name": "Pérez",
            "dni": external_id,
        }
        return body, {"Authorization": f"Bearer {token}"}

    def create_query(self) -> dict[str, str]:
        return {}

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def seed_user(self, email: str, name: str = "Seed", last_name: str = "User") -> dict[str, Any]:
        with self._lock:
            return self._store({"email": email, "name": name, "last_name": last_name})

    def users_with_email(self, email: str) -> list[dict[str, Any]]:
        with self._lock:
            return [u for u in self.users if u["email"].casefold() == email.casefold()]

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/trust/oauth/token/?"), self.token),
            Route("POST", re.compile(r"/trust/users/create"), self.create_user, write=True),
            Route("GET", re.compile(r"/trust/users"), self.search),
        ]

    def _authorized(self, request: Request) -> bool:
        header = request.header("authorization") or ""
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in self.tokens

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        user = {
            "id": self._next_id,
            "email": body["email"],
            "created_at": now,
            "updated_at": now,
            "dni": body.get("dni"),
            "phone_number": body.get("phone_number"),
            "name": body["name"],
            "last_name": body["last_name"],
            "company_uid": body.get("company_uid"),
            "status": True,
            "img": body.get("img"),
            "nationality": body.get("nationality"),
            "load_uuid": body.get("load_uuid"),
            "confirmed": not body.get("invitation", False),
        }
        self._next_id += 1
        self.users.append(user)
        return user

    def token(self, request: Request) -> Reply:
        try:
            body = request.json() or {}
        except ValueError:
            body = {}
        if (
            body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
            or body.get("grant_type") != "client_credentials"
        ):
            return Reply(401, {"error": "invalid_client"})
        token = secrets.token_hex(20)
        with self._lock:
            self.tokens.add(token)
            self.token_requests += 1
        return Reply(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 7200,
                "created_at": int(time.time()),
            },
        )

    def create_user(self, request: Request) -> Reply:
        if not self._authorized(request):
            return Reply(401, {"status": False, "message": "Unauthorized"})
        try:
            body = request.json() or {}
        except ValueError:
            body = {}
        if not all(body.get(k) for k in ("email", "name", "last_name")):
            return Reply(404, {"status": False, "message": "Missing params"})
        with self._lock:
            if any(u["email"].casefold() == str(body["email"]).casefold() for u in self.users):
                return Reply(422, {"status": False, "message": "User already exist"})
            user = self._store(body)
        return Reply(201, {"status": True, "message": "Created", "user": user})

    def search(self, request: Request) -> Reply:
        if not self._authorized(request):
            return Reply(401, {"status": False, "message": "Unauthorized"})
        term = (request.query.get("search") or "").casefold()
        per_page = int(request.query.get("per_page", "5"))
        page = int(request.query.get("page", "1"))
        with self._lock:
            found = [
                u
                for u in self.users
                if term
                and any(term in str(u.get(f) or "").casefold() for f in ("email", "dni", "name", "last_name"))
            ]
        chunk = found[(page - 1) * per_page : page * per_page]
        return Reply(200, {"status": True, "message": "ok", "total": len(found), "user": chunk})
