"""Encryption of credentials a provider returns for one user (Validic's per-user access_token)
before they are stored, and the decrypting read."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        return {
            name: self._kms.decrypt(
                CiphertextBlob=base64.b64decode(value), EncryptionContext=ENCRYPTION_CONTEXT
            )["Plaintext"].decode()
            for name, value in values.items()
        }


def read_token(
    store: LinkStore, sealer: KmsSealer, provider: str, external_id: str, name: str = "access_token"
) -> str | None:
    """The plaintext per-user token stored (encrypted) for a linked person, or None."""
    link = store.get(provider, external_id)
    if link is None or name not in link.sealed:
        return None
    return sealer.unseal({name: link.sealed[name]})[name]
