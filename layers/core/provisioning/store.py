"""The link store: the only code that reads or writes the users table.

Key design (one item per person and provider):
  partition key ``external_id``, sort key ``provider``   -> "every provider of one person" is one Query
  GSI ``ByProviderUserId``: ``provider_user_id`` + ``provider`` -> "who is provider id X" is one Query
A ``pending`` item (no ``provider_user_id``, so absent from the GSI) records that an attempt started;
its ``unknown`` flag says a create may have been sent without a known outcome, so the next attempt
reconciles with the provider before creating again (an attempt that ends knowing nothing was
created clears the flag).

The same write claims the person for one attempt: it stores the request's ``fingerprint`` (a hash
of its payload) and a ``lease`` (``lease_owner``, a token of the attempt, and ``lease_until``, epoch
milliseconds past the invocation's deadline). Another attempt is refused while a lease of someone
else is live (``InProgress``); an attempt's last write (its link, or the release of its claim)
drops the lease, and a lease left by a crash expires with the invocation that held it. The link
keeps the fingerprint, so a repeat with another payload can be told from a replay.

One provider user is never linked to two people: next to each link, a claim item keyed
``#owner#<provider_user_id>`` + ``provider`` names its owner, written just before the link, on
condition that it is absent or already this person's. Claim keys cannot collide with
an ``external_id`` (which starts with a letter or digit); claims hold no ``status`` and no
``provider_user_id`` attribute, so they stay out of link counts and of the GSI.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from provisioning.errors import Conflict, InProgress
from provisioning.models import LinkSource as LinkSource  # a model, kept importable here
from provisioning.values import FrozenValue

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


def now_ms() -> int:
    return int(time.time() * 1000)


class Lease(FrozenValue):
    """One attempt's claim on a person: ``owner`` (a token of this attempt), ``until`` (epoch
    milliseconds after which another attempt may take over) and the request's ``fingerprint``."""

    __slots__ = ("fingerprint", "owner", "until")
    owner: str
    until: int
    fingerprint: str

    def __init__(self, owner: str, until: int, fingerprint: str) -> None:
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "until", until)
        object.__setattr__(self, "fingerprint", fingerprint)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Link(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

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
    # a hash of the request's payload (``provision.fingerprint_of``), never the payload itself: a
    # repeat with another payload is a conflict
    fingerprint: str | None = None
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

    def mark_pending(self, provider: str, external_id: str, lease: Lease | None = None) -> Pending: ...

    def release(self, provider: str, external_id: str, attempts: int, *, settled: bool) -> None: ...

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

    def mark_pending(self, provider: str, external_id: str, lease: Lease | None = None) -> Pending:
        """Record that an attempt starts (it may send a create; an earlier dead-letter report is
        cleared) and claim the person for it with ``lease`` (None: an attempt without one, as
        tooling makes), in one conditional write that also tells what was there: the person's link
        when already linked (left unchanged), or the pending record as now stored and whether an
        earlier attempt may have created the person. Raises InProgress while another attempt's
        lease is live (its own lease does not refuse an attempt: the engine's retry marks again)."""
        now = utc_now()
        at = now_ms()
        values: dict[str, Any] = {
            ":pending": {"S": LinkStatus.PENDING.value},
            ":now": {"S": now},
            ":one": {"N": "1"},
            ":true": {"BOOL": True},
            ":at": {"N": str(at)},
            ":me": {"S": lease.owner if lease else ""},
        }
        if lease is not None:
            claim = ", fingerprint = :fingerprint, lease_owner = :me, lease_until = :until"
            values[":fingerprint"] = {"S": lease.fingerprint}
            values[":until"] = {"N": str(lease.until)}
            remove = "failure"
        else:
            claim, remove = "", "failure, lease_owner, lease_until"
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression=(
                    "SET #status = :pending, attempted_at = :now, updated_at = :now, #unknown = :true, "
                    f"created_at = if_not_exists(created_at, :now){claim} ADD attempts :one REMOVE {remove}"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#status) OR (#status = :pending AND "
                    "(attribute_not_exists(lease_until) OR lease_until < :at OR lease_owner = :me))"
                ),
                ExpressionAttributeNames={"#status": "status", "#unknown": "unknown"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if not item:  # pragma: no cover - an endpoint without ReturnValuesOnConditionCheckFailure
                item = self._client.get_item(
                    TableName=self._table, Key=_key(provider, external_id), ConsistentRead=True
                ).get("Item")
                if item is None:
                    raise
            found = Link.from_item(item)
            if found.status == LinkStatus.LINKED:
                return Pending(found, may_exist=False)
            raise InProgress(
                "this person is being provisioned by another request", provider=provider
            ) from None
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
            fingerprint=lease.fingerprint if lease else (old.fingerprint if old else None),
        )
        # A pending record written before the flag existed counts as unknown.
        return Pending(link, may_exist=old is not None and old.unknown is not False)

    def release(self, provider: str, external_id: str, attempts: int, *, settled: bool) -> None:
        """The attempt numbered ``attempts`` ends without a link: drop its lease, so that the next
        delivery need not wait for it to expire, and when ``settled`` (it knows no create of it, or
        of an earlier one, exists) clear the unknown flag, so that the next attempt need not
        reconcile first. Skipped if another attempt has started since."""
        # On failure the lease expires with the invocation and the flag stays set: the next attempt
        # reconciles first, which is always safe.
        settle = ", #unknown = :false" if settled else ""
        names = {"#status": "status", **({"#unknown": "unknown"} if settled else {})}
        values: dict[str, Any] = {
            ":now": {"S": utc_now()},
            ":pending": {"S": LinkStatus.PENDING.value},
            ":attempts": {"N": str(attempts)},
        }
        if settled:
            values[":false"] = {"BOOL": False}
        with contextlib.suppress(ClientError):
            self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression=f"SET updated_at = :now{settle} REMOVE lease_owner, lease_until",
                ConditionExpression="#status = :pending AND attempts = :attempts",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def settle(self, provider: str, external_id: str, attempts: int) -> None:
        """Tooling (an operator checked at the provider): the attempt numbered ``attempts`` created
        nothing, so the next attempt need not reconcile first. Skipped if another attempt has started
        or holds a live lease (it may be creating right now)."""
        with contextlib.suppress(ClientError):
            self._client.update_item(
                TableName=self._table,
                Key=_key(provider, external_id),
                UpdateExpression="SET #unknown = :false, updated_at = :now",
                ConditionExpression=(
                    "#status = :pending AND attempts = :attempts AND "
                    "(attribute_not_exists(lease_until) OR lease_until < :at)"
                ),
                ExpressionAttributeNames={"#status": "status", "#unknown": "unknown"},
                ExpressionAttributeValues={
                    ":false": {"BOOL": False},
                    ":now": {"S": utc_now()},
                    ":pending": {"S": LinkStatus.PENDING.value},
                    ":attempts": {"N": str(attempts)},
                    ":at": {"N": str(now_ms())},
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


class Pending(FrozenValue):
    """What ``mark_pending`` found: ``link`` (status ``linked``: the person is already linked), and
    whether an earlier attempt may have created the person without a known outcome."""

    __slots__ = ("link", "may_exist")
    link: Link
    may_exist: bool

    def __init__(self, link: Link, may_exist: bool) -> None:
        object.__setattr__(self, "link", link)
        object.__setattr__(self, "may_exist", may_exist)


def _key(provider: str, external_id: str) -> dict[str, Any]:
    return {"external_id": {"S": external_id}, "provider": {"S": provider}}


def _claim_key(provider: str, provider_user_id: str) -> dict[str, Any]:
    return _key(provider, f"{CLAIM_PREFIX}{provider_user_id}")
