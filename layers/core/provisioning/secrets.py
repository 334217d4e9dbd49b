"""Provider credentials from Secrets Manager, cached per container by Powertools Parameters."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from provisioning.errors import ConfigurationError
from provisioning.http import RedactingFilter, redact_in
from provisioning.validation import field_errors

# botocore logs every response body at DEBUG ("Response body: ..."): GetSecretValue's holds the secret.
_SECRET_VALUE = re.compile(r'("Secret(?:String|Binary)"\s*+:\s*+)"(?:[^"\\]|\\.)*+"')


def redact_secret_values(text: str) -> str:
    """``text`` with the value of every ``SecretString``/``SecretBinary`` it holds replaced."""
    return _SECRET_VALUE.sub(r'\1"[redacted]"', text) if "Secret" in text else text


redact_in(RedactingFilter(redact_secret_values), "botocore.parsers", "botocore.endpoint")

# Why a secret could not be read, by Secrets Manager's error code (never the secret's value).
_REASONS = {
    "ResourceNotFoundException": "it does not exist (create it, or fix the function's secret id)",
    "AccessDeniedException": "access denied (the function's role may not read it, or its KMS key)",
    "DecryptionFailure": "it cannot be decrypted with its KMS key",
    "InvalidRequestException": "it is scheduled for deletion or has no current version",
    "InvalidParameterException": "its id is malformed",
    "InternalServiceError": "Secrets Manager failed (retried later)",
    "ThrottlingException": "Secrets Manager throttled the request (retried later)",
}

# A forced re-read (after a provider refused the credential) is skipped when the last forced re-read
# is this recent: a batch whose records are all refused reads the secret again once, not per record.
REFRESH_AFTER_S = 5.0


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    code = None
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code")
    elif cause is not None:
        code = type(cause).__name__
    if code is None:
        return "it could not be fetched"
    return f"{_REASONS.get(code, 'Secrets Manager refused it')} ({code})"


class SecretSource:
    """Fetches a JSON secret and validates its shape, never echoing its values in errors."""

    def __init__(
        self,
        max_age: int = 300,
        provider: parameters.SecretsProvider | None = None,
        client: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``client``: makes the Secrets Manager client, on the first fetch."""
        self._max_age = max_age
        self._provider = provider
        self._client = client
        self._clock = clock
        self._refreshed_at: dict[str, float] = {}
        # One fetch per secret and cache period, even when a batch's records ask at once.
        self._lock = threading.Lock()

    def _fetch(self, secret_id: str, refresh: bool) -> Any:
        with self._lock:
            if self._provider is None:
                self._provider = parameters.SecretsProvider(
                    boto3_client=self._client() if self._client else None
                )
            now = self._clock()
            force = refresh and now - self._refreshed_at.get(secret_id, float("-inf")) >= REFRESH_AFTER_S
            try:
                value = self._provider.get(
                    secret_id, transform="json", max_age=self._max_age, force_fetch=force
                )
            except parameters.exceptions.TransformParameterError:
                raise ConfigurationError(f"secret {secret_id} is not a JSON object") from None
            except parameters.exceptions.GetParameterError as exc:
                raise ConfigurationError(f"secret {secret_id} could not be read: {_reason(exc)}") from None
            if force:
                self._refreshed_at[secret_id] = now
            if value is None:
                raise ConfigurationError(f"secret {secret_id} could not be read: it holds no string value")
            return value

    def get[T: BaseModel](self, secret_id: str, model: type[T], refresh: bool = False) -> T:
        """The secret as ``model``. ``refresh``: bypass the cache (a provider refused the cached
        credential; it may have been rotated)."""
        raw = self._fetch(secret_id, refresh)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = ", ".join(f"{e.field}: {e.message}" for e in field_errors(exc, root="value"))
            raise ConfigurationError(f"secret {secret_id} has the wrong shape ({problems})") from None
