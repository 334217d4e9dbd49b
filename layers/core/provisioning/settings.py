"""Configuration, read only from environment variables and validated once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from provisioning.errors import ConfigurationError

DEFAULT_BASE_URLS = {
    "palenca": "https://api.palenca.com",
    "trust": "https://atenea.trust.lat",
    "palm": "https://api.getpalm.com",
    "validic": "https://api.validic.com",
}


class Settings(BaseModel):
    """The environment of a function. Provider settings are optional: each function declares its own."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    users_table: str = Field(min_length=1)
    idempotency_table: str = Field(min_length=1)

    palenca_secret_id: str | None = None
    palenca_base_url: str = DEFAULT_BASE_URLS["palenca"]
    trust_secret_id: str | None = None
    trust_base_url: str = DEFAULT_BASE_URLS["trust"]
    palm_secret_id: str | None = None
    palm_base_url: str = DEFAULT_BASE_URLS["palm"]
    validic_secret_id: str | None = None
    validic_base_url: str = DEFAULT_BASE_URLS["validic"]

    rate_limit_table: str | None = None  # shared per-provider request budgets
    palenca_requests_per_minute: int = Field(default=120, ge=1)  # Palenca's account-wide limit
    # How long in all a queued record may wait for a request slot before it is dead-lettered.
    rate_limit_max_wait_seconds: float = Field(default=86400, gt=0, le=1209600)
    token_kms_key_id: str | None = None  # encrypts per-user provider tokens (Validic)
    dead_letter_queue_url: str | None = None
    queue_url: str | None = None  # the function's own queue (waiting records are sent back to it)

    secrets_max_age: int = Field(default=300, ge=0, alias="powertools_parameters_max_age")
    http_connect_timeout: float = Field(default=3.05, gt=0)
    http_read_timeout: float = Field(default=10.0, gt=0)
    # The whole of one provider call (connect, headers, body); a retry starts only while the
    # invocation has this much time left beyond its margin.
    http_call_timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("palenca_base_url", "trust_base_url", "palm_base_url", "validic_base_url", mode="after")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {key.lower(): value for key, value in env.items() if value != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            names = ", ".join(
                str(err["loc"][0]).upper() + f" ({err['msg']})" for err in exc.errors(include_input=False)
            )
            raise ConfigurationError(f"invalid environment: {names}") from None

    def secret_id(self, provider: str) -> str:
        value = getattr(self, f"{provider}_secret_id")
        if not value:
            raise ConfigurationError(f"{provider.upper()}_SECRET_ID is not set")
        return str(value)

    def requests_per_minute(self, provider: str) -> int | None:
        value = getattr(self, f"{provider}_requests_per_minute", None)
        return int(value) if value is not None else None

    def base_url(self, provider: str) -> str:
        return str(getattr(self, f"{provider}_base_url"))
