"""Validic v1 emulator: provision (POST users.json) and lookup by uid (GET users.json?uid=) for one
organization, with the documented 201, 409 and 422 answers."""

from __future__ import annotations

import re
import secrets
import threading
from typing import Any

from provisioner_sandbox.server import Reply, Request, Route, drop_ids, reason

ORGANIZATION_ID = "sandbox-org"
ORG_TOKEN = "sandbox-validic-org-token"  # noqa: S105 - the sandbox's own test credential


class ValidicEmulator:
    name = "validic"

    def __init__(self, organization_id: str = ORGANIZATION_ID, access_token: str = ORG_TOKEN) -> None:
        self.organization_id = organization_id
        self.access_token = access_token
        self._lock = threading.Lock()
        self.users: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        with self._lock:
            self.users.clear()

    def credentials(self) -> dict[str, str]:
        return {"organization_id": self.organization_id, "access_token": self.access_token}

    def users_for(self, external_id: str) -> int:
        """Validic holds our id as the user's ``uid``, one user per uid."""
        return len(self.user_ids(external_id))

    def user_ids(self, external_id: str) -> list[str]:
        with self._lock:
            user = self.users.get(external_id)
        return [str(user["_id"])] if user else []

    def create_call(self) -> tuple[str, str]:
        return "POST", f"/validic/v1/organizations/{self.organization_id}/users.json"

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        return {"access_token": self.access_token, "user": {"uid": external_id}}, {}

    def create_query(self) -> dict[str, str]:
        return {}

    def routes(self) -> list[Route]:
        users = r"/validic/v1/organizations/(?P<org>[^/]+)/users\.json"
        return [
            Route("POST", re.compile(users), self.provision, write=True),
            Route("GET", re.compile(users), self.lookup),
        ]

    def error_body(self, status: int, message: str) -> Any:
        return {"code": status, "message": reason(status), "errors": message}

    def without_id(self, body: Any) -> Any:
        return drop_ids(body)

    def seed_user(self, uid: str) -> dict[str, Any]:
        with self._lock:
            return self._store(uid, None)

    def _store(self, uid: str, profile: Any) -> dict[str, Any]:
        user = {
            "_id": secrets.token_hex(12),
            "uid": uid,
            "access_token": secrets.token_hex(32),
            "profile": profile,
        }
        self.users[uid] = user
        return user

    def _unauthorized(self, org: str, token: Any) -> Reply | None:
        if org != self.organization_id or token != self.access_token:
            return Reply(401, {"code": 401, "message": "Unauthorized", "errors": "Invalid access token"})
        return None

    def provision(self, request: Request, org: str) -> Reply:
        try:
            body = request.json() or {}
        except ValueError:
            body = {}
        refused = self._unauthorized(org, body.get("access_token"))
        if refused:
            return refused
        uid = (body.get("user") or {}).get("uid")
        if not uid:
            return Reply(422, {"code": 422, "message": "Unprocessable Entity", "errors": "uid is required"})
        with self._lock:
            if uid in self.users:
                return Reply(409, {"code": 409, "message": "Conflict", "errors": "User already exists"})
            user = self._store(uid, (body.get("user") or {}).get("profile"))
        return Reply(201, {"code": 201, "message": "Ok", "user": user})

    def lookup(self, request: Request, org: str) -> Reply:
        refused = self._unauthorized(org, request.query.get("access_token"))
        if refused:
            return refused
        uid = request.query.get("uid")
        with self._lock:
            found = [self.users[uid]] if uid in self.users else ([] if uid else list(self.users.values()))
        return Reply(200, {"users": [{"_id": u["_id"], "uid": u["uid"]} for u in found]})
