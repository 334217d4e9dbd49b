"""Models shared by every operation: the base of create requests and the API answer."""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from provisioning.providers import NAMES
from provisioning.validation import no_personal_data

if TYPE_CHECKING:
    Provider = str
else:
    Provider = Literal[NAMES]  # the registered providers' names (provisioning/providers/__init__.py)

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"
ExternalId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=EXTERNAL_ID_PATTERN),
    AfterValidator(no_personal_data),
    Field(
        description=(
            "Our id for the person (1-128 characters, no spaces). It is the users table's key: ids that "
            "hold an e-mail address or look like a phone number or a person's name are refused, unless "
            "the stack's AllowIdentifyingExternalIds is true (Validic refuses them always)."
        ),
        examples=["u-1"],
    ),
]


@cache
def external_id_adapter() -> TypeAdapter[str]:
    """ExternalId's validator, built on first use (not at import)."""
    return TypeAdapter(ExternalId)


def build_deferred_models() -> None:
    """Build what ``defer_build`` left for first use: every loaded model of this package and the
    ExternalId validator (SnapStart's priming, so that a restored function builds none)."""
    external_id_adapter()
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            pending.append(model)
            if model.__module__.startswith("provisioning.") and not model.__pydantic_complete__:
                model.model_rebuild()


class StrictModel(BaseModel):
    """Unknown fields are rejected, strings are bounded, numbers are finite (JSON has no NaN or
    Infinity, and 1e999 would otherwise be read as infinity)."""

    # defer_build: a model's validator is built when it is first used (or when a snapshot is
    # primed, snapstart.py), not at import: a cold start builds only the models its path uses.
    model_config = ConfigDict(extra="forbid", str_max_length=2048, allow_inf_nan=False, defer_build=True)


class CreateRequest(StrictModel):
    """What every create operation takes: at least our id for the person."""

    external_id: ExternalId


class ProviderUser(BaseModel):
    """What a provider assigned to a person, split into what may be stored as is (``details``)
    and credentials that must be encrypted before they are stored (``sealed``)."""

    model_config = ConfigDict(defer_build=True)  # see StrictModel

    provider_user_id: str
    details: dict[str, Any] = Field(default_factory=dict)
    sealed: dict[str, str] = Field(default_factory=dict)


Outcome = Literal["created", "already_provisioned", "linked_existing", "reconciled"]


class ProvisionResult(BaseModel):
    """The API answer of a create operation (also the idempotency record's saved response)."""

    model_config = ConfigDict(defer_build=True)  # see StrictModel

    provider: str
    external_id: str
    provider_user_id: str
    outcome: Outcome
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 200 if self.outcome == "already_provisioned" else 201


class ErrorDetail(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see StrictModel

    code: str
    message: str
    provider: str | None = None
    provider_status: int | None = None
    fields: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see StrictModel

    error: ErrorDetail


class LinkSource(StrEnum):
    CREATED = "created"  # we created the person at the provider
    EXISTING = "existing"  # the provider already knew the person; we linked them
    RECONCILED = "reconciled"  # an earlier create's answer was lost; found with the provider's lookup
    SYNCED = "synced"  # found by a scheduled sync of the provider's users
    RESOLVED = "resolved"  # linked by an operator after an outcome no lookup could settle
