"""``Dependencies``: what a function's operations are built from (configuration, boto3 clients, the
HTTP session, secrets, the link store), each created once per container on first use.

Importing it loads what every function with clients needs (the settings, boto3, the HTTP layer with
its log redaction); what only some paths use (secrets with Powertools' parameters, the link store, a
shared budget's limiter) is imported by the member that creates it."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from provisioning.http import ProviderHttp, Timeouts, new_session
from provisioning.settings import Settings

if TYPE_CHECKING:
    import requests

    from provisioning.ratelimit import SharedRateLimiter
    from provisioning.secrets import SecretSource
    from provisioning.store import LinkStore


BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


class Dependencies:
    """What operations are built from; every member is created once per container, on first use
    (a client an invocation does not need, such as SQS for dead letters, is never created)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        # boto3's default session is not safe for creating clients from several threads at once,
        # and the records of a batch may need a client for the first time together.
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._limiters: dict[str, SharedRateLimiter | None] = {}

    @cached_property
    def settings(self) -> Settings:
        return self._settings or Settings.from_env()

    def client(self, service: str) -> Any:
        """The container's boto3 client for ``service`` (of the default session: Powertools would
        otherwise build a new session, which reloads botocore's data)."""
        with self._lock:
            return self._client(service)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, config=BOTO_CONFIG)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def kms(self) -> Any:
        return self.client("kms")

    @cached_property
    def secrets(self) -> SecretSource:
        from provisioning.secrets import SecretSource  # loaded by the functions that read one

        return SecretSource(
            max_age=self.settings.secrets_max_age, client=lambda: self.client("secretsmanager")
        )

    @cached_property
    def session(self) -> requests.Session:
        return new_session()

    @cached_property
    def store(self) -> LinkStore:
        from provisioning.store import LinkStore

        return LinkStore(self.dynamodb, self.settings.users_table)

    def limiter(self, provider: str) -> SharedRateLimiter | None:
        """The shared request budget of a provider, when the deployment declares one (one per
        container: the queue adapter takes a record's slot, its first request uses it)."""
        with self._lock:
            if provider not in self._limiters:
                budget = self.settings.budget(provider)
                table = self.settings.rate_limit_table
                limiter = None
                if budget is not None and table:
                    # Loaded here: a provider without a shared budget never needs it.
                    from provisioning.ratelimit import SharedRateLimiter

                    limiter = SharedRateLimiter(
                        self._client("dynamodb"), table, provider, budget[0], window_s=budget[1]
                    )
                self._limiters[provider] = limiter
            return self._limiters[provider]

    def http(self, provider: str) -> ProviderHttp:
        timeouts = Timeouts(
            self.settings.http_connect_timeout,
            self.settings.http_read_timeout,
            self.settings.http_call_timeout,
        )
        limiter = self.limiter(provider)
        return ProviderHttp(
            provider,
            self.settings.base_url(provider),
            self.session,
            timeouts,
            before_request=limiter.acquire if limiter else None,
        )


__all__ = ["BOTO_CONFIG", "Dependencies"]
