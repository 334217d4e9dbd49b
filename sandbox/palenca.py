"""Palenca emulator: POST /v1/users and POST /v1/users/search as documented, with the
``{"success", "error", "data"}`` envelope, ``x-api-key`` auth and the account-wide rate limit."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from provisioner_sandbox.server import Reply, Request, Route

DEFAULT_API_KEY = "sandbox-palenca-key"
DEFAULT_WIDGET_ID = "feecb679-a3cc-47ef-8fd4-600799f12a39"


ERROR_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    404: "not_found",
    422: "bad_request",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def _error(status: int, code: str, message: str, field: str = "error") -> Reply:
    return Reply(status, {"success": False, field: {"error_code": code, "message": message}, "data": None})


@dataclass
class StoredUser:
    user_id: str
    external_id: str | None
    widget_id: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "external_id": self.external_id, "widget_id": self.widget_id}


class PalencaEmulator:
    name = "palenca"

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        requests_per_minute: int = 120,
        widget_id: str = DEFAULT_WIDGET_ID,
    ) -> None:
        self.api_key = api_key
        self.widget_id = widget_id
        self.requests_per_minute = requests_per_minute
        self._lock = threading.Lock()
        self.users: list[StoredUser] = []
        self.disabled_widgets: set[str] = set()
        self.before_search: Callable[[], None] | None = None  # e.g. users arriving between page reads
        self._window: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        with self._lock:
            self.users.clear()
            self.disabled_widgets.clear()
            self.before_search = None
            self._window = (0, 0)

    @property
    def budget(self) -> int:
        """Requests per minute, account-wide (429 past it), as the registry's Palenca Budget."""
        return self.requests_per_minute

    @budget.setter
    def budget(self, requests: int) -> None:
        self.requests_per_minute = requests

    def credentials(self) -> dict[str, str]:
        return {"api_key": self.api_key, "widget_id": self.widget_id}

    def users_for(self, external_id: str) -> int:
        return len(self.users_with_external_id(external_id))

    def user_ids(self, external_id: str) -> list[str]:
        return [u.user_id for u in self.users_with_external_id(external_id)]

    def create_call(self) -> tuple[str, str]:
        return "POST", "/palenca/v1/users"

    def create_request(self, external_id: str) -> tuple[Any, dict[str, str]]:
        return {"widget_id": self.widget_id, "external_id": external_id}, {"x-api-key": self.api_key}

    def create_query(self) -> dict[str, str]:
        return {}

    def routes(self) -> list[Route]:
        return [
            Route("POST", re.compile(r"/palenca/v1/users"), self.create_user, write=True),
            Route("POST", re.compile(r"/palenca/v1/users/search"), self.search_users),
        ]

    def error_body(self, status: int, message: str) -> Any:
        """An error in Palenca's envelope, with the error code Palenca uses for ``status``."""
        code = ERROR_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        return _error(status, code, message).body

    def without_id(self, body: Any) -> Any:
        """Palenca's answer without the user: an envelope saying success, without data."""
        return {"success": True, "error": None, "data": None}

    # -- helpers -----------------------------------------------------------------------------------
    def seed_user(
        self, external_id: str | None, created_at: datetime | None = None, widget_id: str = DEFAULT_WIDGET_ID
    ) -> StoredUser:
        """Add a user as if created through the Palenca widget."""
        user = StoredUser(str(uuid.uuid4()), external_id, widget_id, created_at or datetime.now(UTC))
        with self._lock:
            self.users.append(user)
        return user

    def users_with_external_id(self, external_id: str) -> list[StoredUser]:
        with self._lock:
            return [u for u in self.users if u.external_id == external_id]

    def _guard(self, request: Request) -> tuple[Reply | None, dict[str, str]]:
        minute = int(time.time() // 60)
        with self._lock:
            window, used = self._window
            if window != minute:
                window, used = minute, 0
            used += 1
            self._window = (window, used)
        remaining = max(0, self.requests_per_minute - used)
        headers = {
            "X-RateLimit-Limit": str(self.requests_per_minute),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str((minute + 1) * 60),
            "x-request-id": str(uuid.uuid4()),
        }
        key = request.header("x-api-key")
        if not key:
            return _error(401, "missing_api_key", "API key is missing"), headers
        if key != self.api_key:
            return _error(401, "invalid_api_key", "API key is invalid"), headers
        if used > self.requests_per_minute:
            return _error(429, "too_many_requests", "Too many requests"), headers
        return None, headers

    @staticmethod
    def _body(request: Request) -> dict[str, Any] | None:
        try:
            body = request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # -- routes ----------------------------------------------------------------------------------
    def create_user(self, request: Request) -> Reply:
        refused, headers = self._guard(request)
        if refused:
            refused.headers.update(headers)
            return refused
        body = self._body(request)
        if body is None:
            return Reply(422, _error(422, "bad_request", "Body must be a JSON object").body, headers)
        widget_id = body.get("widget_id")
        try:
            uuid.UUID(str(widget_id))
        except ValueError:
            return Reply(422, _error(422, "bad_request", "widget_id must be a valid uuid").body, headers)
        if str(widget_id) in self.disabled_widgets:  # the documented example uses "mistake"
            return Reply(422, _error(422, "bad_request", "widget is disabled", field="mistake").body, headers)
        external_id = body.get("external_id")
        user = StoredUser(
            str(uuid.uuid4()),
            str(external_id) if external_id is not None else None,
            str(widget_id),
            datetime.now(UTC),
        )
        with self._lock:
            self.users.append(user)
        return Reply(200, {"success": True, "error": None, "data": user.public()}, headers)

    def search_users(self, request: Request) -> Reply:
        if self.before_search is not None:
            self.before_search()
        refused, headers = self._guard(request)
        if refused:
            refused.headers.update(headers)
            return refused
        body = self._body(request) or {}
        try:
            latest = date.fromisoformat(str(body["start_date"]))
            earliest = date.fromisoformat(str(body["end_date"]))
        except (KeyError, ValueError):
            return Reply(
                422,
                _error(422, "bad_request", "start_date and end_date are required (YYYY-MM-DD)").body,
                headers,
            )
        options = body.get("options") or {}
        per_page = int(options.get("items_per_page", 100))
        page = int(options.get("page", 1))
        if not 1 <= per_page <= 150 or page < 1:
            return Reply(
                422, _error(422, "bad_request", "items_per_page must be 1..150 and page >= 1").body, headers
            )
        with self._lock:
            matching = [u for u in self.users if earliest <= u.created_at.date() <= latest]
        matching.sort(key=lambda u: u.created_at, reverse=True)  # newest first, as documented
        total = len(matching)
        pages = max(1, -(-total // per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]
        return Reply(
            200,
            {
                "success": True,
                "error": None,
                "data": {"users": [u.public() for u in chunk]},
                "pagination": {
                    "page": page,
                    "items_per_page": per_page,
                    "total_items": total,
                    "total_pages": pages,
                },
            },
            headers,
        )
