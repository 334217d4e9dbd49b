"""Provider credentials from Secrets Manager, cached per container by Powertools Parameters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ValidationError

from provisioning.errors import ConfigurationError


class SecretSource:
    """Fetches a JSON secret and validates its shape, never echoing its values in errors."""

    def __init__(
        self,
        max_age: int = 300,
        provider: parameters.SecretsProvider | None = None,
        client: Callable[[], Any] | None = None,
    ) -> None:
        """``client``: makes the Secrets Manager client, on the first fetch."""
        self._max_age = max_age
        self._provider = provider
        self._client = client
        # One fetch per secret and cache period, even when a batch's records ask at once.
        self._lock = threading.Lock()

    def _fetch(self, secret_id: str) -> Any:
        with self._lock:
            if self._provider is None:
                self._provider = parameters.SecretsProvider(
                    boto3_client=self._client() if self._client else None
                )
            try:
                return self._provider.get(secret_id, transform="json", max_age=self._max_age)
            except parameters.exceptions.TransformParameterError:
                raise ConfigurationError(f"secret {secret_id} is not a JSON object") from None
            except parameters.exceptions.GetParameterError as exc:
                raise ConfigurationError(
                    f"secret {secret_id} could not be read: {type(exc.__cause__).__name__}"
                ) from None

    def get[T: BaseModel](self, secret_id: str, model: type[T]) -> T:
        raw = self._fetch(secret_id)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = ", ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise ConfigurationError(f"secret {secret_id} has the wrong shape ({problems})") from None
