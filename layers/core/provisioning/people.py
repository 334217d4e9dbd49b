"""One person at every provider: what ``GET /people/{external_id}`` (``people_api.PeopleFunction``)
and ``provisioner person`` show.

:func:`person_view` reads the person's items with one Query (``Links.links_of``) and answers, for
every registered provider, its state: ``linked``; ``pending`` (an attempt started, or a create's
outcome is unknown); ``dead_lettered`` (pending, and its last record was dead-lettered: the item
keeps the report, without personal data); or ``not_requested`` (no item). Claim items (which keep
a provider user to one person) are never shown. Of a link's ``details`` only what is neither a
credential (``ProviderInfo.credentials``) nor derived from personal data is shown; ``sealed``
never is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioning.errors import InvalidRequest, ProvisioningError
from provisioning.models import LinkSource, external_id_adapter
from provisioning.providers import BY_NAME, PROVIDERS
from provisioning.registry import ProviderInfo
from provisioning.store import CLAIM_PREFIX, Link, LinkStatus
from provisioning.validation import field_errors

if TYPE_CHECKING:
    from provisioning.store import Links

# Keys of stored details derived from personal data (a provider's fingerprint of an e-mail address
# or a phone number): stored to match people, never shown.
_PERSONAL_SUFFIXES = ("_fingerprint",)


class ProviderState(StrEnum):
    LINKED = "linked"  # the person is linked to a provider user
    PENDING = "pending"  # an attempt started, or a create's outcome is unknown
    DEAD_LETTERED = "dead_lettered"  # pending, and its last record ended in the provider's DLQ
    NOT_REQUESTED = "not_requested"  # nothing was ever asked of this provider for this person


class FailureView(BaseModel):
    """Why the person's last record at this provider was dead-lettered (no personal data)."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    code: str = Field(
        description="The error code, e.g. provider_rejected, validation_error, unknown_outcome."
    )
    message: str = Field(default="", description="What went wrong, without request values.")
    attempts: int | None = Field(
        default=None, description="Deliveries of the record before it was dead-lettered."
    )
    at: str | None = Field(default=None, description="When it was dead-lettered (ISO 8601, UTC).")


class ProviderView(BaseModel):
    """The person at one provider."""

    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    state: ProviderState
    provider_user_id: str | None = Field(
        default=None, description="The provider's id for the person (linked)."
    )
    source: LinkSource | None = Field(
        default=None, description="How the link was made: created, existing, reconciled, synced or resolved."
    )
    created_at: str | None = Field(default=None, description="When the first attempt or the link was stored.")
    updated_at: str | None = Field(default=None, description="When the item last changed.")
    attempted_at: str | None = Field(default=None, description="When the last attempt started.")
    attempts: int = Field(default=0, description="Attempts to provision the person at this provider.")
    failure: FailureView | None = Field(default=None, description="Present when state is dead_lettered.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="The provider's non-secret, non-personal fields (e.g. Palenca's widget_id).",
    )


class PersonView(BaseModel):
    """Every registered provider's state for one person, and what still waits or failed."""

    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    external_id: str
    providers: dict[str, ProviderView] = Field(
        description="One entry per registered provider, by its name, in the registry's order."
    )
    pending: list[str] = Field(description="Providers where an attempt is under way or its outcome unknown.")
    dead_lettered: list[str] = Field(description="Providers whose last record was dead-lettered.")

    @property
    def known(self) -> bool:
        """Whether any provider holds an item for this person."""
        return any(view.state != ProviderState.NOT_REQUESTED for view in self.providers.values())


class PersonNotFound(ProvisioningError):
    """No provider holds anything for this external_id: 404."""

    code = "person_not_found"
    http_status = 404


def parse_external_id(value: str, *, percent_encoded: bool = True) -> str:
    """An external_id as the create routes take it, or a 400 naming ``external_id``. A URL path's
    is percent-decoded once first (``%`` is never part of an id, so once is unambiguous)."""
    try:
        return external_id_adapter().validate_python(unquote(value) if percent_encoded else value)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc, rename=lambda _: "external_id"), status=400) from None


def shown_details(info: ProviderInfo, details: dict[str, Any]) -> dict[str, Any]:
    """The details a reader may see: no credential, nothing derived from personal data, scalars only."""
    return {
        key: value
        for key, value in details.items()
        if key not in info.credentials
        and not key.endswith(_PERSONAL_SUFFIXES)
        and (value is None or isinstance(value, str | int | float | bool))
    }


def _failure(report: dict[str, Any] | None) -> FailureView:
    try:
        return FailureView.model_validate(report or {})
    except ValidationError:
        return FailureView(code=str((report or {}).get("code") or "failed"))


def provider_view(info: ProviderInfo, link: Link | None) -> ProviderView:
    if link is None:
        return ProviderView(state=ProviderState.NOT_REQUESTED)
    if link.status == LinkStatus.LINKED:
        state = ProviderState.LINKED
    elif link.failure:
        state = ProviderState.DEAD_LETTERED
    else:
        state = ProviderState.PENDING
    return ProviderView(
        state=state,
        provider_user_id=link.provider_user_id if state == ProviderState.LINKED else None,
        source=link.source,
        created_at=link.created_at,
        updated_at=link.updated_at,
        attempted_at=link.attempted_at,
        attempts=link.attempts,
        failure=_failure(link.failure) if state == ProviderState.DEAD_LETTERED else None,
        details=shown_details(info, link.details),
    )


def person_view(store: Links, external_id: str) -> PersonView:
    """The person at every registered provider, from one Query of their items."""
    found = {
        link.provider: link
        for link in store.links_of(external_id)
        if link.external_id == external_id
        and not link.external_id.startswith(CLAIM_PREFIX)
        and link.provider in BY_NAME
    }
    providers = {info.name: provider_view(info, found.get(info.name)) for info in PROVIDERS}
    return PersonView(
        external_id=external_id,
        providers=providers,
        pending=[name for name, view in providers.items() if view.state == ProviderState.PENDING],
        dead_lettered=[name for name, view in providers.items() if view.state == ProviderState.DEAD_LETTERED],
    )


__all__ = [
    "FailureView",
    "PersonNotFound",
    "PersonView",
    "ProviderState",
    "ProviderView",
    "parse_external_id",
    "person_view",
    "shown_details",
]
