"""Palm emulator: POST /v1/user and POST /v1/user/search with Bearer API keys and RFC 7807 errors.
Like Palm, it does not reject duplicates: callers must search first."""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from provisioner_sandbox.server import Reply, Request, Route, drop_ids, reason

API_KEY = "sk_test_sandboxpalmkey"
NON_ENCRYPTED = ("identity.first_name", "identity.last_name")


def _problem(status: int, title: str, detail: str) -> Reply:
    return Reply(
        status,
        {
            "type": f"https://docs.getpalm.com/errors/{status}",
            "title": title,
            "status": status,
            "detail": detail,
        },
    )


def _fingerprint(value: str | None) -> str | None:
    return hashlib.sha256(value.strip().lower().encode()).hexdigest() if value else None


class PalmEmulator:
    name = "palm"

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self.users: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []  # create bodies, for tests

    def reset(self) -> None:
        with self._lock:
            self.users.clear()
            self.received.clear()

    def credentials(self) -> dict[str, str]:
        return {"api_key": self.api_key}

    def users_for(self, external_id: str) -> int:
        """Palm keeps our id in the user's metadata (the hub always writes it)."""
        return len(self.users_with_external_id(external_id))

    def user_ids(self, external_id: str) -> list[str]:
        return [str(u["id"]) for u in self.users_with_external_id(external_id)]

    def users_with_external_id(self, external_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [u for u in self.users if u["metadata"].get("external_id") == external_id]

    def create_call(self) -> tuple[str, str]:
        return "POST", "/palm/v1/user"

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        body = {
            "vault": {"identity.email": f"{external_id}@example.test"},
            "metadata": {"external_id": external_id},
        }
        return body, {"Authorization": f"Bearer {self.api_key}"}

    def create_query(self) -> dict[str, str]:
        return {}

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/palm/v1/user"), self.create_user, write=True),
            Route("POST", re.compile(r"/palm/v1/user/search"), self.search),
        ]

    def error_body(self, status: int, message: str) -> Any:
        """An RFC 7807 problem, as Palm answers its errors."""
        return _problem(status, reason(status), message).body

    def without_id(self, body: Any) -> Any:
        return drop_ids(body)

    def seed_user(
        self, email: str | None = None, phone: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add a user as if created outside the hub (``metadata``: e.g. ``{"external_id": ...}``)."""
        with self._lock:
            vault = {"identity.email": email, "identity.phone": phone}
            return self._store({"vault": vault, "metadata": metadata or {}})

    def users_with_email(self, email: str) -> list[dict[str, Any]]:
        wanted = _fingerprint(email)
        with self._lock:
            return [u for u in self.users if u["email_fingerprint"] == wanted]

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        vault = {k: v for k, v in (body.get("vault") or {}).items() if v is not None}
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        user = {
            "id": str(uuid.uuid4()),
            "object": "user",
            "created_at": now,
            "updated_at": now,
            "metadata": body.get("metadata") or {},
            "status": "active",
            "verification": None,
            "display_name": body.get("display_name"),
            "email_fingerprint": _fingerprint(vault.get("identity.email")),
            "phone_fingerprint": _fingerprint(vault.get("identity.phone")),
            "vault": {k: v for k, v in vault.items() if k in NON_ENCRYPTED},
        }
        self.users.append(user)
        return user

    def _authorized(self, request: Request) -> bool:
        return request.header("authorization") == f"Bearer {self.api_key}"

    def create_user(self, request: Request) -> Reply:
        if not self._authorized(request):
            return _problem(401, "Unauthorized", "Invalid API key")
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _problem(400, "Bad Request", "Body must be a JSON object")
        if len(body.get("metadata") or {}) > 50:
            return _problem(400, "Bad Request", "metadata accepts at most 50 keys")
        with self._lock:
            self.received.append(body)
            user = self._store(body)
        return Reply(201, user)

    def search(self, request: Request) -> Reply:
        if not self._authorized(request):
            return _problem(401, "Unauthorized", "Invalid API key")
        body = request.json() or {}
        limit = int(body.get("limit", 25))
        if not 1 <= limit <= 100:
            return _problem(400, "Bad Request", "limit must be between 1 and 100")
        email, phone = _fingerprint(body.get("email")), _fingerprint(body.get("phone"))
        name = (body.get("display_name") or "").casefold()
        with self._lock:
            found = [
                u
                for u in self.users
                if (email is None or u["email_fingerprint"] == email)
                and (phone is None or u["phone_fingerprint"] == phone)
                and (not name or name in (u.get("display_name") or "").casefold())
            ]
        return Reply(
            200,
            {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "next_cursor": None},
        )
