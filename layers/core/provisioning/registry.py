"""What the hub knows about a provider without loading its client: names, settings, logical ids,
budget and which fields of its answers are credentials.

Each provider's folder (``provisioning/providers/<name>/``) declares one :class:`ProviderInfo` in its
``__init__.py`` (nothing heavy imported there), and ``provisioning/providers/__init__.py`` lists
them. Everything that names providers (the ``Provider`` type, Person targets, settings, OpenAPI,
the CLI, the sandbox, the bench and the tests) derives from that list. A function loads only its
own provider's client, through :meth:`CreateFunction.load_spec`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioning.spec import CreateUserSpec


@dataclass(frozen=True)
class Budget:
    """A request budget shared by every container that calls the provider: ``requests`` in each
    fixed window of ``window_seconds``, overridable with the environment variable ``setting``."""

    requests: int
    window_seconds: int
    setting: str

    @property
    def per(self) -> str:
        return {60: "minute", 3600: "hour"}.get(self.window_seconds, f"{self.window_seconds} s")


@dataclass(frozen=True)
class CreateFunction:
    """The provider's create-user function in template.yaml, and where its spec lives."""

    function: str  # logical id of the function
    queue: str  # logical id of the queue feeding it
    dead_letter_queue: str  # logical id of that queue's DLQ
    route: str  # its API Gateway route (POST)
    folder: str  # functions/<folder>/app.py and events/<folder>/
    spec: str  # "module:attribute" of its CreateUserSpec

    def load_spec(self) -> CreateUserSpec[Any]:
        module, _, attribute = self.spec.partition(":")
        spec: CreateUserSpec[Any] = getattr(importlib.import_module(module), attribute)
        return spec


@dataclass(frozen=True)
class ProviderInfo:
    name: str  # as stored in the users table and listed in a Person's ``providers``
    title: str  # as people write it
    default_base_url: str
    create: CreateFunction
    budget: Budget | None = None
    # Keys of its answers and of our stored details that are credentials (sealed, always masked).
    credentials: frozenset[str] = frozenset()
    # Keys of its request bodies that are not personal (shown as they are in a DLQ report).
    not_personal: frozenset[str] = frozenset()
    # Keys of a link's details a client needs next (never personal, never credentials): published
    # in PersonProvisioned (provisioning/outcomes.py).
    published_details: frozenset[str] = frozenset()
    # Sealed credentials a client needs next: published decrypted in PersonProvisioned only when
    # the stack enables it (OutcomeEventsIncludeMarketplaceUrl).
    published_credentials: frozenset[str] = frozenset()
    # The secret's keys (SECRET_ID's JSON object), documented and checked by the local stack.
    secret_keys: tuple[str, ...] = field(default_factory=tuple)

    @cached_property
    def env_prefix(self) -> str:
        """``PALENCA`` for ``PALENCA_SECRET_ID``, ``PALENCA_BASE_URL``."""
        return self.name.upper().replace("-", "_")

    @property
    def secret_id_variable(self) -> str:
        return f"{self.env_prefix}_SECRET_ID"

    @property
    def base_url_variable(self) -> str:
        return f"{self.env_prefix}_BASE_URL"
