"""What a provider module declares, and the little it may ask of the Lambda assembly.

Providers depend on this module, the HTTP layer, the models and the errors, never on
``provisioning.runtime`` (boto3 clients): the assembly satisfies
:class:`ProviderDependencies` and builds each operation from its :class:`CreateUserSpec`. Nothing
heavy is imported here at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from provisioning.values import FrozenValue

if TYPE_CHECKING:
    from pydantic import BaseModel

    from provisioning.http import ProviderHttp, SecretGetter
    from provisioning.models import CreateRequest
    from provisioning.person import PersonMapping
    from provisioning.provision import CreateOperation
    from provisioning.settings import Settings


class SecretReader(Protocol):
    def get[T: BaseModel](self, secret_id: str, model: type[T], refresh: bool = False) -> T:
        """The secret as ``model``; ``refresh`` bypasses the cache (a refused, rotated credential)."""
        ...


class ProviderDependencies(Protocol):
    """What a provider's operation is built from (``provisioning.runtime.Dependencies`` in Lambda)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def secrets(self) -> SecretReader: ...

    @property
    def kms(self) -> Any: ...

    def http(self, provider: str) -> ProviderHttp: ...


def provider_secret[S: BaseModel](
    deps: ProviderDependencies, provider: str, model: type[S]
) -> SecretGetter[S]:
    """The provider's secret (its ``<NAME>_SECRET_ID``) as ``model``, read through the container's
    cache; ``refresh=True`` bypasses it (a refused, rotated credential)."""

    def secret(refresh: bool = False) -> S:
        return deps.secrets.get(deps.settings.secret_id(provider), model, refresh=refresh)

    return secret


class CreateUserSpec[RequestT: CreateRequest](FrozenValue):
    """Everything provider-specific about one create-user Lambda."""

    __slots__ = (
        "build_operation",
        "build_sealer",
        "extra",
        "from_person",
        "provider",
        "request_model",
        "route",
        "summary",
    )
    provider: str
    route: str
    request_model: type[RequestT]
    build_operation: Callable[[ProviderDependencies], CreateOperation[RequestT]]
    summary: str
    # Maps a canonical Person (UserSignedUp events, imports) to this provider's request body.
    from_person: PersonMapping | None
    # Encrypts credentials a provider returns (ProviderUser.sealed) before they are stored.
    build_sealer: Callable[[ProviderDependencies], Callable[[dict[str, str]], dict[str, str]]] | None
    extra: dict[str, Any]

    def __init__(
        self,
        provider: str,
        route: str,
        request_model: type[RequestT],
        build_operation: Callable[[ProviderDependencies], CreateOperation[RequestT]],
        summary: str = "",
        from_person: PersonMapping | None = None,
        build_sealer: Callable[[ProviderDependencies], Callable[[dict[str, str]], dict[str, str]]]
        | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "provider", provider)
        object.__setattr__(self, "route", route)
        object.__setattr__(self, "request_model", request_model)
        object.__setattr__(self, "build_operation", build_operation)
        object.__setattr__(self, "summary", summary)
        object.__setattr__(self, "from_person", from_person)
        object.__setattr__(self, "build_sealer", build_sealer)
        object.__setattr__(self, "extra", {} if extra is None else extra)
