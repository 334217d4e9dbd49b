"""Encryption of credentials a provider returns for one user (Validic's per-user access_token,
Validic Inform's marketplace and mobile tokens) before they are stored, and the decrypting read."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provisioning.errors import ConfigurationError

if TYPE_CHECKING:
    from provisioning.spec import ProviderDependencies
    from provisioning.store import LinkStore

ENCRYPTION_CONTEXT = {"purpose": "provider-user-token"}


class KmsSealer:
    def __init__(self, kms: Any, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id

    def seal(self, values: dict[str, str]) -> dict[str, str]:
        sealed = {}
        for name, value in values.items():
            blob = self._kms.encrypt(
                KeyId=self._key_id, Plaintext=value.encode(), EncryptionContext=ENCRYPTION_CONTEXT
            )["CiphertextBlob"]
            sealed[name] = base64.b64encode(blob).decode()
        return sealed

    def unseal(self, values: dict[str, str]) -> dict[str, str]:
        # The key is named although a symmetric ciphertext carries it: the call is then authorised
        # on that key alone, and refused for a ciphertext of any other.
        return {
            name: self._kms.decrypt(
                KeyId=self._key_id,
                CiphertextBlob=base64.b64decode(value),
                EncryptionContext=ENCRYPTION_CONTEXT,
            )["Plaintext"].decode()
            for name, value in values.items()
        }


def token_sealer(title: str) -> Callable[[ProviderDependencies], Callable[[dict[str, str]], dict[str, str]]]:
    """A spec's ``build_sealer`` for a provider whose answers carry per-user credentials: they are
    encrypted with the token key (``TOKEN_KMS_KEY_ID``), without which nothing is stored."""

    def build(deps: ProviderDependencies) -> Callable[[dict[str, str]], dict[str, str]]:
        key_id = deps.settings.token_kms_key_id
        if not key_id:
            raise ConfigurationError(
                f"TOKEN_KMS_KEY_ID is not set: {title} user tokens cannot be stored encrypted"
            )
        return KmsSealer(deps.kms, key_id).seal

    return build


def read_token(
    store: LinkStore, sealer: KmsSealer, provider: str, external_id: str, name: str = "access_token"
) -> str | None:
    """The plaintext per-user token stored (encrypted) for a linked person, or None."""
    link = store.get(provider, external_id)
    if link is None or name not in link.sealed:
        return None
    return sealer.unseal({name: link.sealed[name]})[name]
