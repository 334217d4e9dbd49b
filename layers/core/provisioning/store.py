"""The link store: the only code that reads or writes the users table.

Key design (one item per person and provider):
  partition key ``external_id``, sort key ``provider``   -> "every provider of one person" is one Query
  GSI ``ByProviderUserId``: ``provider_user_id`` + ``provider`` -> "who is provider id X" is one Query
A ``pending`` item (no ``provider_user_id``, so absent from the GSI) records that an attempt started;
its ``unknown`` flag says a create may have been sent without a known outcome, so the next attempt
reconciles with the provider before creating again (an attempt that ends knowing nothing was
created clears the flag).

One provider user is never linked to two people: next to each link, a claim item keyed
``#owner#<provider_user_id>`` + ``provider`` names its owner, written just before the link, on
condition that it is absent or already this person's. Claim keys cannot collide with
an ``external_id`` (which starts with a letter or digit); claims hold no ``status`` and no
``provider_user_id`` attribute, so they stay out of link counts and of the GSI.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from provisioning.errors import Conflict
from provisioning.models import LinkSource as LinkSource  # a model, kept importable here

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BY_PROVIDER_USER_ID_INDEX = "ByProviderUserId"
CLAIM_PREFIX = "#owner#"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class LinkStatus(StrEnum):
    PENDING = "pending"
    LINKED = "linked"


def failure_of(report: dict[str, Any], at: str) -> dict[str, Any]:
    """The ``failure`` kept on a person's item for a dead-letter report: its code, message and
    attempts (nothing personal), and when it was recorded."""
    return {
        "code": str(report.get("code") or "failed"),
        "message": str(report.get("message") or ""),
        "attempts": int(report.get("attempts") or 0),
        "at": at,
    }


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Link(BaseModel):
    external_id: str
    provider: str
    status: LinkStatus = LinkStatus.LINKED
    provider_user_id: str | None = None
    source: LinkSource | None = None
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    attempted_at: str | None = None
    attempts: int = 0
    unknown: bool | None = None  # pending: a create may have been sent without a known outcome
    # pending: its last record was dead-lettered with this report (code, message, attempts, at),
    # without personal data; cleared when an attempt starts again or the person is linked.
    failure: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    sealed: dict[str, str] = Field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True, mode="json")
        if not data.get("details"):
            data.pop("details", None)
        if not data.get("sealed"):
            data.pop("sealed", None)
        return {key: _serializer.serialize(value) for key, value in data.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Link:
        return cls.model_validate({key: _deserializer.deserialize(value) for key, value in item.items()})


class Links(Protocol):
    """What the engine and the tooling ask of a link store. ``LinkStore`` is the one on DynamoDB;
    the tests' in-memory one (``tests/fakes.py``) is held to the same behaviour by a contract test."""

    def get(self, provider: str, external_id: str) -> Link | None: ...

    def links_of(self, external_id: str) -> list[Link]: ...

    def find_by_provider_user_id(self, provider: str, provider_user_id: str) -> Link | None: ...

    def mark_pending(self, provider: str, external_id: str) -> Pending: ...

    def settle(self, provider: str, external_id: str, attempts: int) -> None: ...

    def record_failure(self, provider: str, external_id: str, report: dict[str, Any]) -> bool: ...

    def owner_of(self, provider: str, provider_user_id: str) -> str | None: ...

    def save_link(self, link: Link) -> tuple[Link, bool]: ...

    def scan_links(self, page_size: int = 200) -> list[Link]: ...


class LinkStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, provider: str, external_id: str) -> Link | None:
        answer = self._client.get_item(
            TableName=self._table, Key=_key(provider, external_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return Link.from_item(item) if item else None

    def links_of(self, external_id: str) -> list[Link]:
        answer = self._client.query(
            TableName=self._table,
            KeyConditionExpression="external_id = :e",
            ExpressionAttributeValues={":e": {"S": external_id}},
            ConsistentRead=True,
        )
        return [Link.from_item(item) for item in answer.get("Items", [])]

    def find_by_provider_user_id(self, provider: str, provider_user_id: str) -> Link | None:
        answer = self._client.query(
            TableName=self._table,
            IndexName=BY_PROVIDER_USER_ID_INDEX,
            KeyConditionExpression="provider_user_id = :u AND provider = :p",
            ExpressionAttributeValues={":u": {"S": provider_user_id}, ":p": {"S": provider}},
        )
        items = answer.get("Items", [])
        return Link.from_item(items[0]) if items else None

    def mark_pending(self, provider: str, external_id: str) -> Pending:
        """Record that an attempt starts (it may send a create; an earlier dead-letter report is
        cleared), in one conditional write that also tells what was there: the person's link when
        already linked (left unchanged), or the pending record as now stored and whether an
        earlier attempt may have created the person."""
        now = utc_now()
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression=(
                    "SET #status = :pending, attempted_at = :now, updated_at = :now, #unknown = :true, "
                    "created_at = if_not_exists(created_at, :now) ADD attempts :one REMOVE failure"
                ),
                ConditionExpression="attribute_not_exists(#status) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status", "#unknown": "unknown"},
                ExpressionAttributeValues={
                    ":pending": {"S": LinkStatus.PENDING.value},
                    ":now": {"S": now},
                    ":one": {"N": "1"},
                    ":true": {"BOOL": True},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if not item:  # pragma: no cover - an endpoint without ReturnValuesOnConditionCheckFailure
                linked = self.get(provider, external_id)
                if linked is None:
                    raise
                return Pending(linked, may_exist=False)
            return Pending(Link.from_item(item), may_exist=False)
        old = Link.from_item(answer["Attributes"]) if answer.get("Attributes") else None
        link = Link(
            external_id=external_id,
            provider=provider,
            status=LinkStatus.PENDING,
            created_at=old.created_at if old else now,
            updated_at=now,
            attempted_at=now,
            attempts=(old.attempts if old else 0) + 1,
            unknown=True,
        )
        # A pending record written before the flag existed counts as unknown.
        return Pending(link, may_exist=old is not None and old.unknown is not False)

    def settle(self, provider: str, external_id: str, attempts: int) -> None:
        """The attempt numbered ``attempts`` ended knowing no create of it (or of an earlier one)
        exists: the next attempt need not reconcile first. Skipped if another attempt has started."""
        # On failure the flag stays set: the next attempt reconciles first, which is always safe.
        with contextlib.suppress(ClientError):
            self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression="SET #unknown = :false, updated_at = :now",
                ConditionExpression="#status = :pending AND attempts = :attempts",
                ExpressionAttributeNames={"#status": "status", "#unknown": "unknown"},
                ExpressionAttributeValues={
                    ":false": {"BOOL": False},
                    ":now": {"S": utc_now()},
                    ":pending": {"S": LinkStatus.PENDING.value},
                    ":attempts": {"N": str(attempts)},
                },
            )

    def record_failure(self, provider: str, external_id: str, report: dict[str, Any]) -> bool:
        """Keep on the person's item the report of a record that was dead-lettered (``failure``:
        code, message, attempts, at; without personal data), marking the person pending when there
        was no item yet. A linked person is never touched. Returns whether it was written.

        The write is what publishes ``ProvisioningFailed``: the table's stream carries it to the
        outcome events function."""
        now = utc_now()
        failure = failure_of(report, now)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression=(
                    "SET failure = :failure, #status = if_not_exists(#status, :pending), "
                    "#unknown = if_not_exists(#unknown, :false), "
                    "created_at = if_not_exists(created_at, :now), updated_at = :now"
                ),
                ConditionExpression="attribute_not_exists(#status) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status", "#unknown": "unknown"},
                ExpressionAttributeValues={
                    ":failure": _serializer.serialize(failure),
                    ":pending": {"S": LinkStatus.PENDING.value},
                    ":false": {"BOOL": False},  # no item yet: no attempt sent anything
                    ":now": {"S": now},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def owner_of(self, provider: str, provider_user_id: str) -> str | None:
        """The external_id a provider user is linked to, if any (its claim, or a link stored before
        claims existed, found through the GSI)."""
        claim = self._client.get_item(
            TableName=self._table, Key=_claim_key(provider, provider_user_id), ConsistentRead=True
        ).get("Item")
        if claim:
            return str(claim["owner"]["S"])
        linked = self.find_by_provider_user_id(provider, provider_user_id)
        return linked.external_id if linked else None

    def save_link(self, link: Link) -> tuple[Link, bool]:
        """Claim the link's provider user for this person, then write the link unless the person is
        already linked. Returns the stored link and whether this call wrote it (False: someone else
        linked this person first). Raises Conflict when the provider user is another person's.

        Two conditional writes rather than a transaction (which costs twice the write units): a claim
        left without its link (a crash in between) names the person that provider user was created or
        found for, so it still refuses everyone else, and the next attempt passes it."""
        user_id = link.provider_user_id
        assert user_id, "a link needs the provider's id"
        link = link.model_copy(update={"status": LinkStatus.LINKED, "updated_at": utc_now(), "unknown": None})
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **_claim_key(link.provider, user_id),
                    "owner": {"S": link.external_id},
                    "created_at": {"S": link.updated_at},
                },
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": link.external_id}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise Conflict(
                f"this {link.provider} user is already linked to another person; not linked",
                provider=link.provider,
            ) from None
        try:
            self._client.put_item(
                TableName=self._table,
                Item=link.to_item(),
                ConditionExpression="attribute_not_exists(#status) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pending": {"S": LinkStatus.PENDING.value}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            existing = self.get(link.provider, link.external_id)
            if existing is None:  # pragma: no cover - deleted between the two calls
                raise
            return existing, False
        return link, True

    def scan_links(self, page_size: int = 200) -> list[Link]:
        """Every stored link (operations tooling; not used by the functions)."""
        links: list[Link] = []
        paginator = self._client.get_paginator("scan")
        for page in paginator.paginate(TableName=self._table, PaginationConfig={"PageSize": page_size}):
            links.extend(Link.from_item(item) for item in page.get("Items", []) if "status" in item)
        return links


@dataclass(frozen=True)
class Pending:
    """What ``mark_pending`` found: ``link`` (status ``linked``: the person is already linked), and
    whether an earlier attempt may have created the person without a known outcome."""

    link: Link
    may_exist: bool


def _key(provider: str, external_id: str) -> dict[str, Any]:
    return {"external_id": {"S": external_id}, "provider": {"S": provider}}


def _claim_key(provider: str, provider_user_id: str) -> dict[str, Any]:
    return _key(provider, f"{CLAIM_PREFIX}{provider_user_id}")
