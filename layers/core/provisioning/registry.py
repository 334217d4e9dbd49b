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
from typing import TYPE_CHECKING, Any

from provisioning.values import FrozenValue

if TYPE_CHECKING:
    from provisioning.spec import CreateUserSpec


class Budget(FrozenValue):
    """A request budget shared by every container that calls the provider: ``requests`` in each
    fixed window of ``window_seconds``, overridable with the environment variable ``setting``."""

    __slots__ = ("requests", "setting", "window_seconds")
    requests: int
    window_seconds: int
    setting: str

    def __init__(self, requests: int, window_seconds: int, setting: str) -> None:
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "window_seconds", window_seconds)
        object.__setattr__(self, "setting", setting)

    @property
    def per(self) -> str:
        return {60: "minute", 3600: "hour"}.get(self.window_seconds, f"{self.window_seconds} s")


class CreateFunction(FrozenValue):
    """The provider's create-user function in template.yaml, and where its spec lives."""

    __slots__ = ("dead_letter_queue", "folder", "function", "queue", "route", "spec")
    function: str  # logical id of the function
    queue: str  # logical id of the queue feeding it
    dead_letter_queue: str  # logical id of that queue's DLQ
    route: str  # its API Gateway route (POST)
    folder: str  # functions/<folder>/app.py and events/<folder>/
    spec: str  # "module:attribute" of its CreateUserSpec

    def __init__(
        self, function: str, queue: str, dead_letter_queue: str, route: str, folder: str, spec: str
    ) -> None:
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "dead_letter_queue", dead_letter_queue)
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "folder", folder)
        object.__setattr__(self, "spec", spec)

    def load_spec(self) -> CreateUserSpec[Any]:
        module, _, attribute = self.spec.partition(":")
        spec: CreateUserSpec[Any] = getattr(importlib.import_module(module), attribute)
        return spec


class ProviderInfo(FrozenValue):
    __slots__ = (
        "budget",
        "create",
        "credentials",
        "default_base_url",
        "name",
        "not_personal",
        "published_credentials",
        "published_details",
        "secret_keys",
        "title",
    )
    name: str  # as stored in the users table and listed in a Person's ``providers``
    title: str  # as people write it
    default_base_url: str
    create: CreateFunction
    budget: Budget | None
    # Keys of its answers and of our stored details that are credentials (sealed, always masked).
    credentials: frozenset[str]
    # Keys of its request bodies that are not personal (shown as they are in a DLQ report).
    not_personal: frozenset[str]
    # Keys of a link's details a client needs next (never personal, never credentials): published
    # in PersonProvisioned (provisioning/outcomes.py).
    published_details: frozenset[str]
    # Sealed credentials a client needs next: published decrypted in PersonProvisioned only when
    # the stack enables it (OutcomeEventsIncludeMarketplaceUrl).
    published_credentials: frozenset[str]
    # The secret's keys (SECRET_ID's JSON object), documented and checked by the local stack.
    secret_keys: tuple[str, ...]

    def __init__(
        self,
        name: str,
        title: str,
        default_base_url: str,
        create: CreateFunction,
        budget: Budget | None = None,
        credentials: frozenset[str] = frozenset(),
        not_personal: frozenset[str] = frozenset(),
        published_details: frozenset[str] = frozenset(),
        published_credentials: frozenset[str] = frozenset(),
        secret_keys: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "title", title)
        object.__setattr__(self, "default_base_url", default_base_url)
        object.__setattr__(self, "create", create)
        object.__setattr__(self, "budget", budget)
        object.__setattr__(self, "credentials", credentials)
        object.__setattr__(self, "not_personal", not_personal)
        object.__setattr__(self, "published_details", published_details)
        object.__setattr__(self, "published_credentials", published_credentials)
        object.__setattr__(self, "secret_keys", secret_keys)

    @property
    def env_prefix(self) -> str:
        """``PALENCA`` for ``PALENCA_SECRET_ID``, ``PALENCA_BASE_URL``."""
        return self.name.upper().replace("-", "_")

    @property
    def secret_id_variable(self) -> str:
        return f"{self.env_prefix}_SECRET_ID"

    @property
    def base_url_variable(self) -> str:
        return f"{self.env_prefix}_BASE_URL"
