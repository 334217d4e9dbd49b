"""The link store: the only code that reads or writes the users table.

Key design (one item per person and provider):
  partition key ``external_id``, sort key ``provider``   -> "every provider of one person" is one Query
  GSI ``ByProviderUserId``: ``provider_user_id`` + ``provider`` -> "who is provider id X" is one Query
A ``pending`` item (no ``provider_user_id``, so absent from the GSI) records that a create was sent
and its outcome is not yet known; the next attempt reconciles with the provider before creating again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BY_PROVIDER_USER_ID_INDEX = "ByProviderUserId"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class LinkStatus(StrEnum):
    PENDING = "pending"
    LINKED = "linked"


class LinkSource(StrEnum):
    CREATED = "created"  # we created the person at the provider
    EXISTING = "existing"  # the provider already knew the person; we linked them
    RECONCILED = "reconciled"  # an earlier create's answer was lost; found with the provider's lookup
    SYNCED = "synced"  # found by a scheduled sync of the provider's users


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


class LinkStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def get(self, provider: str, external_id: str) -> Link | None:
        answer = self._client.get_item(
            TableName=self._table,
            Key={"external_id": {"S": external_id}, "provider": {"S": provider}},
            ConsistentRead=True,
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

    def mark_pending(self, provider: str, external_id: str) -> Link:
        """Record that a create is about to be sent, in one conditional write that also tells what
        was there: the pending link as now stored (``attempts`` > 1 when an earlier create may have
        been sent), or, unchanged, the link of a person already linked (status ``linked``)."""
        now = utc_now()
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key={"external_id": {"S": external_id}, "provider": {"S": provider}},
                UpdateExpression=(
                    "SET #status = :pending, attempted_at = :now, updated_at = :now, "
                    "created_at = if_not_exists(created_at, :now) ADD attempts :one"
                ),
                ConditionExpression="attribute_not_exists(#status) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": {"S": LinkStatus.PENDING.value},
                    ":now": {"S": now},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if not item:  # pragma: no cover - an endpoint without ReturnValuesOnConditionCheckFailure
                linked = self.get(provider, external_id)
                if linked is None:
                    raise
                return linked
            return Link.from_item(item)
        return Link.from_item(answer["Attributes"])

    def save_link(self, link: Link) -> tuple[Link, bool]:
        """Write a linked person unless one is already linked. Returns the stored link and
        whether this call wrote it (False: someone else linked this person first)."""
        link = link.model_copy(update={"status": LinkStatus.LINKED, "updated_at": utc_now()})
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
            links.extend(Link.from_item(item) for item in page.get("Items", []))
        return links
