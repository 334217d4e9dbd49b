"""Configuration, read only from environment variables and validated once per container.

This is the one place the environment is read. Each registered provider (``provisioning.providers``)
has its settings under its own prefix: ``<NAME>_SECRET_ID``, ``<NAME>_BASE_URL`` (its registry
entry's default) and, for a provider with a shared budget, the budget's variable (for example
``PALENCA_REQUESTS_PER_MINUTE``); a function's environment declares only its own provider's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from provisioning.errors import ConfigurationError
from provisioning.models import Provider
from provisioning.providers import PROVIDERS, provider
from provisioning.validation import Loc, field_errors


class ProviderSettings(BaseModel):
    # defer_build: each function builds the settings models it reads, on first use (or when a
    # SnapStart snapshot is primed), not every one of them at import.
    model_config = ConfigDict(frozen=True, defer_build=True)

    secret_id: str | None = None
    base_url: str
    requests_per_window: int | None = Field(default=None, ge=1)  # its shared budget, when it has one
    window_seconds: int | None = None

    @field_validator("base_url", mode="after")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value.rstrip("/")


class Settings(BaseModel):
    """The environment of a function. Provider settings are optional: each function declares its own."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)  # see ProviderSettings

    users_table: str = Field(min_length=1)
    idempotency_table: str = Field(min_length=1)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)

    rate_limit_table: str | None = None  # shared per-provider request budgets
    # How long in all a queued record may wait for a request slot before it is dead-lettered.
    rate_limit_max_wait_seconds: float = Field(default=86400, gt=0, le=1209600)
    token_kms_key_id: str | None = None  # encrypts per-user provider tokens (Validic, Validic Inform)
    dead_letter_queue_url: str | None = None
    # Signed signup webhooks (SignupWebhookFunction): the secret holding the live signing secrets,
    # and the bus their UserSignedUp events are published to (and the outcome events too).
    signup_webhook_secret_id: str | None = None
    signup_event_bus_name: str | None = None
    queue_url: str | None = None  # the function's own queue (waiting records are sent back to it)
    # How long after a person is linked the same external_id with another payload is a conflict
    # (later, any repeat is answered from the link).
    idempotency_ttl_seconds: int = Field(default=3600, ge=1)
    # PersonProvisioned carries Validic Inform's marketplace URL (a credential) only when true.
    outcome_events_include_marketplace_url: bool = False
    # How many records of one batch are provisioned at once; one per 64 MB of memory when unset.
    record_concurrency: int | None = Field(default=None, ge=1)
    aws_lambda_function_memory_size: int = Field(default=512, ge=128)

    secrets_max_age: int = Field(default=300, ge=0, alias="powertools_parameters_max_age")
    http_connect_timeout: float = Field(default=3.05, gt=0)
    http_read_timeout: float = Field(default=10.0, gt=0)
    # The whole of one provider call (connect, headers, body); a retry starts only while the
    # invocation has this much time left beyond its margin.
    http_call_timeout: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="before")
    @classmethod
    def _provider_variables(cls, values: Any) -> Any:
        """Gather each registered provider's variables (lower-cased) into ``providers``."""
        if not isinstance(values, dict) or "providers" in values:
            return values
        values = dict(values)
        providers: dict[str, dict[str, Any]] = {}
        for info in PROVIDERS:
            prefix = info.env_prefix.lower()
            entry: dict[str, Any] = {"base_url": values.pop(f"{prefix}_base_url", info.default_base_url)}
            secret_id = values.pop(f"{prefix}_secret_id", None)
            if secret_id is not None:
                entry["secret_id"] = secret_id
            if info.budget is not None:
                entry["requests_per_window"] = values.pop(info.budget.setting.lower(), info.budget.requests)
                entry["window_seconds"] = info.budget.window_seconds
            providers[info.name] = entry
        values["providers"] = providers
        return values

    @property
    def workers(self) -> int:
        """Records of one batch provisioned at once: ``RECORD_CONCURRENCY``, or one per 64 MB of
        function memory (512 MB -> 8), at most 10 (SQS's largest standard batch)."""
        if self.record_concurrency is not None:
            return self.record_concurrency
        return max(1, min(10, self.aws_lambda_function_memory_size // 64))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {key.lower(): value for key, value in env.items() if value != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid environment: {_variables(exc)}") from None

    def _provider(self, name: str) -> ProviderSettings:
        return self.providers.get(name) or ProviderSettings(base_url=provider(name).default_base_url)

    def secret_id(self, name: str) -> str:
        value = self._provider(name).secret_id
        if not value:
            raise ConfigurationError(f"{provider(name).secret_id_variable} is not set")
        return value

    def budget(self, name: str) -> tuple[int, int] | None:
        """(requests, window in seconds) of the provider's shared budget, or None."""
        entry = self._provider(name)
        if entry.requests_per_window is None or entry.window_seconds is None:
            return None
        return entry.requests_per_window, entry.window_seconds

    def base_url(self, name: str) -> str:
        return self._provider(name).base_url


# A Cognito attribute name: standard (sub, email) or custom (custom:user_id).
ATTRIBUTE_PATTERN = r"^(?:custom:|dev:)?[A-Za-z0-9_.:-]{1,64}$"


class SignupSettings(BaseModel):
    """The environment of the Cognito post-confirmation trigger (``SignupTriggerFunction``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)  # see ProviderSettings

    signup_event_bus_name: str = Field(min_length=1)
    signup_fallback_queue_url: str | None = None  # a Person the bus did not take waits here
    signup_fallback_dlq_url: str | None = None  # a person that cannot be mapped, with the reason
    # The attribute that holds the person's external_id (empty: Cognito's ``sub``).
    signup_external_id_attribute: str = Field(default="sub", pattern=ATTRIBUTE_PATTERN)
    # Where to provision everyone (empty: every provider), unless the attribute below says otherwise.
    signup_providers: tuple[Provider, ...] | None = Field(default=None, min_length=1)
    signup_providers_attribute: str | None = Field(default="custom:providers", pattern=ATTRIBUTE_PATTERN)

    @field_validator("signup_providers_attribute", mode="before")
    @classmethod
    def _none_when_empty(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("signup_providers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip()) or None
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SignupSettings:
        env = os.environ if environ is None else environ
        # An empty SIGNUP_PROVIDERS_ATTRIBUTE means no attribute (an empty variable is otherwise unset).
        keep = {"signup_providers_attribute"}
        values = {key.lower(): value for key, value in env.items() if value != "" or key.lower() in keep}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid environment: {_variables(exc)}") from None


class ImportSettings(BaseModel):
    """The environment of the S3 import (``ImportFunction``): each provider's create queue, from
    ``<NAME>_IMPORT_QUEUE_URL`` (``PALENCA_IMPORT_QUEUE_URL``...)."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)  # see ProviderSettings

    queue_urls: dict[str, str] = Field(min_length=1)
    # SendMessageBatch calls in flight, as ``provisioner import --concurrency``.
    import_concurrency: int = Field(default=8, ge=1, le=64)
    # The import stops this long before the invocation's deadline: the calls in flight finish and
    # the summary is written.
    import_deadline_margin_seconds: float = Field(default=30, ge=1, le=900)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ImportSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {key.lower(): value for key, value in env.items() if value != ""}
        values["queue_urls"] = {
            info.name: env[f"{info.env_prefix}_IMPORT_QUEUE_URL"]
            for info in PROVIDERS
            if env.get(f"{info.env_prefix}_IMPORT_QUEUE_URL")
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid environment: {_variables(exc)}") from None


def flag(variable: str, environ: Mapping[str, str] | None = None) -> bool:
    """A true/false variable read where it is used rather than once per container: the stack's
    ``ALLOW_IDENTIFYING_EXTERNAL_IDS`` is checked by request models' validators, which have no
    Settings (and a CLI validates without a function's environment)."""
    env = os.environ if environ is None else environ
    return env.get(variable, "").strip().lower() == "true"


def _variable(loc: Loc) -> str:
    """The environment variable of a setting's location: ``("providers", "palenca", "base_url")``
    is ``PALENCA_BASE_URL``, ``("users_table",)`` is ``USERS_TABLE``."""
    parts = [str(part) for part in loc]
    if parts[:1] == ["providers"] and len(parts) >= 3:
        info = provider(parts[1])
        field = parts[2]
        return {
            "base_url": info.base_url_variable,
            "secret_id": info.secret_id_variable,
            "requests_per_window": info.budget.setting if info.budget else field.upper(),
        }.get(field, f"{info.env_prefix}_{field.upper()}")
    return parts[0].upper() if parts else ""


def _variables(exc: ValidationError) -> str:
    """The environment variables a validation error names, with pydantic's reason (never a value)."""
    return ", ".join(
        f"{e.field} ({e.message})" for e in field_errors(exc, rename=_variable, root="environment")
    )
