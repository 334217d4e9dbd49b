"""Day-two commands: ``provisioner status`` and ``provisioner dlq show | redrive``.

They work on any StackTarget: the local stack or a deployed stack (resources by logical id).
Nothing they print carries personal data: dead-lettered bodies are shown with every value masked
except ids and routing fields.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
from botocore.exceptions import ClientError

from provisioner_cli.stack import PROVIDER_DLQS, PROVIDER_QUEUES, StackTarget, resolve_target, target_options
from provisioning import ratelimit
from provisioning.privacy import redact

SIGNUP_DLQ = "SignupEventsDLQ"
SYNC_DLQ = "PalencaSyncDLQ"  # Palenca syncs that failed for good (``provisioner sync`` reruns one)
# Values shown as they are in a dead-lettered body; every other value is masked.
NOT_PERSONAL = frozenset(
    {
        "external_id",
        "provider",
        "providers",
        "widget_id",
        "source",
        "detail-type",
        "version",
        "id",
        "time",
        "region",
        "account",
        "company_uid",
        "role",
        "load_uuid",
        "invitation",
        "since",  # a sync's window
        "until",
        "days",
    }
)
DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


def mask(value: Any, key: str = "") -> Any:
    """A body with personal values replaced by ``***`` (structure and ids kept)."""
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if key in NOT_PERSONAL or value is None or isinstance(value, bool):
        return value
    return "***"


def masked_body(body: str) -> Any:
    try:
        return mask(json.loads(body))
    except json.JSONDecodeError:
        return redact(body, limit=200)


# ---------------------------------------------------------------------------- status
@dataclass
class QueueDepth:
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0

    @property
    def total(self) -> int:
        """Every record the queue holds: visible, in flight and waiting (delayed)."""
        return self.visible + self.in_flight + self.delayed


@dataclass
class ProviderStatus:
    links: Counter[str] = field(default_factory=Counter)  # by link status
    queue: QueueDepth = field(default_factory=QueueDepth)
    dlq: QueueDepth = field(default_factory=QueueDepth)
    budget_per_minute: int | None = None  # the provider's shared request budget, when it has one
    drain_minutes: int | None = None  # how long the queue's backlog takes at that budget, at least


def drain_estimate(stack: StackTarget, provider: str, backlog: int) -> tuple[int | None, int | None]:
    """(budget per minute, minutes to drain) for a provider with a shared request budget: the
    backlog at the budget, or the last window its waiting records booked, whichever is later."""
    value = stack.parameters.get(f"{provider.capitalize()}RequestsPerMinute")
    if not value or "RateLimitTable" not in stack.physical:
        return None, None
    budget = int(value)
    minutes = ratelimit.minutes_to_drain(backlog, budget)
    limiter = ratelimit.SharedRateLimiter(
        stack.client("dynamodb"), stack.resource("RateLimitTable"), provider, budget
    )
    booked_until = limiter.booked_until()
    if booked_until is not None and backlog:
        minutes = max(minutes, math.ceil((booked_until - time.time()) / 60) + 1)
    return budget, minutes


def queue_depth(sqs: Any, url: str) -> QueueDepth:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(DEPTHS.values()))["Attributes"]
    return QueueDepth(**{name: int(attrs.get(attr, 0)) for name, attr in DEPTHS.items()})


def link_counts(dynamodb: Any, table: str) -> dict[str, Counter[str]]:
    """Links per provider and status: one paginated Scan reading only those two attributes (the
    claims that keep a provider user to one person have no status and are not counted)."""
    counts: dict[str, Counter[str]] = {}
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="#p, #s",
        ExpressionAttributeNames={"#p": "provider", "#s": "status"},
    )
    for page in pages:
        for item in page.get("Items", []):
            if "status" not in item:
                continue
            provider = item.get("provider", {}).get("S", "?")
            counts.setdefault(provider, Counter())[item["status"]["S"]] += 1
    return counts


def stack_status(stack: StackTarget, with_links: bool = True) -> dict[str, Any]:
    sqs = stack.client("sqs")
    links = link_counts(stack.client("dynamodb"), stack.users_table) if with_links else {}
    providers = {}
    for provider in PROVIDER_QUEUES:
        status = ProviderStatus(
            links=links.get(provider, Counter()),
            queue=queue_depth(sqs, stack.queue_url(provider)),
            dlq=queue_depth(sqs, stack.dlq_url(provider)),
        )
        status.budget_per_minute, status.drain_minutes = drain_estimate(stack, provider, status.queue.total)
        providers[provider] = status
    signups = queue_depth(sqs, stack.resource(SIGNUP_DLQ)) if SIGNUP_DLQ in stack.physical else None
    return {"providers": providers, "signup_dlq": signups}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-links", is_flag=True, help="Skip counting links (a scan of the users table).")
@target_options
def status(as_json: bool, no_links: bool, **target: Any) -> None:
    """Links per provider, queue depths (queued, waiting for a rate budget, in flight), dead-letter
    queue depths, and how long a rate-limited provider's backlog takes to drain."""
    result = stack_status(resolve_target(**target), with_links=not no_links)
    if as_json:
        out = {
            "providers": {
                name: {
                    "links": dict(s.links),
                    "queue": asdict(s.queue),
                    "dlq": asdict(s.dlq),
                    "budget_per_minute": s.budget_per_minute,
                    "drain_minutes": s.drain_minutes,
                }
                for name, s in result["providers"].items()
            },
            "signup_dlq": asdict(result["signup_dlq"]) if result["signup_dlq"] else None,
        }
        click.echo(json.dumps(out, indent=2))
        return
    header = (
        f"{'provider':<9} {'linked':>8} {'pending':>8} {'queued':>8} {'waiting':>8} {'in flight':>9} "
        f"{'DLQ':>6}  drains in"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for name, s in result["providers"].items():
        failed = s.dlq.visible + s.dlq.in_flight
        drain = f"~{s.drain_minutes} min at {s.budget_per_minute}/min" if s.drain_minutes else "-"
        click.echo(
            f"{name:<9} {s.links['linked']:>8} {s.links['pending']:>8} {s.queue.visible:>8} "
            f"{s.queue.delayed:>8} {s.queue.in_flight:>9} {failed:>6}  {drain}"
        )
    click.echo("waiting: records sent back to wait for a provider's rate budget (they use no attempt)")
    if result["signup_dlq"] is not None:
        click.echo(
            f"signup events EventBridge could not deliver (SignupEventsDLQ): {result['signup_dlq'].visible}"
        )


# ---------------------------------------------------------------------------- dlq show
@dataclass
class DeadLetter:
    queue: str
    message_id: str
    sent_at: str
    receives: int
    reason: dict[str, Any]
    body: Any


# ReceiveMessage waits up to this long: a long poll asks every SQS server, so a small queue never
# answers "empty" while it holds messages (a short poll samples some servers only).
RECEIVE_WAIT_SECONDS = 1


def max_receive_count(sqs: Any, queue_url: str) -> int | None:
    """The ``maxReceiveCount`` of a queue's redrive policy (receives before SQS dead-letters)."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    try:
        return int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
    except (KeyError, ValueError, TypeError):
        return None


def _reason(message: dict[str, Any], max_receives: int | None = None) -> dict[str, Any]:
    attributes = message.get("MessageAttributes", {})
    if "failure" in attributes:
        try:
            report = json.loads(attributes["failure"]["StringValue"])
        except (KeyError, json.JSONDecodeError):
            report = {"message": "unreadable failure report"}
        if isinstance(report.get("message"), str):
            report["message"] = redact(report["message"])
        return dict(report)
    if "ERROR_CODE" in attributes:  # EventBridge could not deliver an event to its target
        return {
            "code": attributes["ERROR_CODE"].get("StringValue", ""),
            "message": redact(attributes.get("ERROR_MESSAGE", {}).get("StringValue", "")),
            "target": attributes.get("TARGET_ARN", {}).get("StringValue", ""),
        }
    # SQS's redrive policy moved it: every receive failed (transient failures). The DLQ's own
    # receive count also counts every look at the DLQ (this one included), so the source
    # queue's maxReceiveCount is the number of attempts.
    if max_receives:
        return {
            "code": "retries_exhausted",
            "message": f"retries exhausted after {max_receives} receives",
            "attempts": max_receives,
        }
    return {"code": "retries_exhausted", "message": "retries exhausted (the queue's redrive policy)"}


def lambda_failure(body: str) -> dict[str, Any] | None:
    """Lambda's OnFailure record of an asynchronous invocation that failed for good (a scheduled
    sync), or None for any other body."""
    try:
        record = json.loads(body)
    except json.JSONDecodeError:
        return None
    context = record.get("requestContext") if isinstance(record, dict) else None
    if not isinstance(context, dict) or "condition" not in context:
        return None
    return record


def _failure_reason(record: dict[str, Any]) -> dict[str, Any]:
    context = record["requestContext"]
    response = record.get("responsePayload")
    response = response if isinstance(response, dict) else {}
    return {
        "code": str(response.get("errorType") or context["condition"]),
        "message": redact(str(response.get("errorMessage") or context["condition"])),
        "attempts": context.get("approximateInvokeCount"),
    }


def peek(
    sqs: Any, url: str, limit: int, queue: str = "", max_receives: int | None = None
) -> list[DeadLetter]:
    """Up to ``limit`` messages of a queue, left in it: received with a short visibility
    timeout, then made visible again at once. ``max_receives``: the source queue's
    ``maxReceiveCount``, the attempts of a message SQS's redrive policy dead-lettered."""
    found: list[DeadLetter] = []
    handles: list[str] = []
    try:
        while len(found) < limit:
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(found)),
                VisibilityTimeout=30,
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                handles.append(message["ReceiptHandle"])
                attributes = message.get("Attributes", {})
                sent = int(attributes.get("SentTimestamp", "0")) / 1000
                failure = lambda_failure(message.get("Body", ""))
                found.append(
                    DeadLetter(
                        queue=queue,
                        message_id=message["MessageId"],
                        sent_at=datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds"),
                        receives=int(attributes.get("ApproximateReceiveCount", "0")),
                        reason=_failure_reason(failure) if failure else _reason(message, max_receives),
                        # Of a failed invocation, what it was invoked with.
                        body=mask(failure.get("requestPayload"))
                        if failure
                        else masked_body(message.get("Body", "")),
                    )
                )
    finally:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for n, handle in enumerate(handles[start : start + 10])
            ]
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    return found


PROVIDER_CHOICE = click.Choice([*PROVIDER_QUEUES, "all"])


@click.group()
def dlq() -> None:
    """Dead-letter queues: show failed records and their reasons; redrive them."""


@dlq.command("show")
@click.option("--provider", type=click.Choice([*PROVIDER_QUEUES, "signups", "sync", "all"]), required=True)
@click.option("--max", "limit", default=50, show_default=True, help="Most messages shown per queue.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@target_options
def dlq_show(provider: str, limit: int, as_json: bool, **target: Any) -> None:
    """The failed records of a provider's DLQ with their reasons (personal data masked); the
    messages stay in the queue. ``signups``: events EventBridge could not deliver; ``sync``:
    Palenca syncs that failed for good."""
    stack = resolve_target(**target)
    queues = {**PROVIDER_DLQS, "signups": SIGNUP_DLQ, "sync": SYNC_DLQ}
    names = list(queues) if provider == "all" else [provider]
    letters = []
    sqs = stack.client("sqs")
    for name in names:
        if queues[name] not in stack.physical:
            continue
        source = PROVIDER_QUEUES.get(name)
        max_receives = max_receive_count(sqs, stack.resource(source)) if source in stack.physical else None
        letters.extend(peek(sqs, stack.resource(queues[name]), limit, queue=name, max_receives=max_receives))
    if as_json:
        click.echo(json.dumps([asdict(letter) for letter in letters], indent=2))
        return
    if not letters:
        click.echo("no failed records")
        return
    for letter in letters:
        reason = letter.reason
        status = f" (provider answered {reason['provider_status']})" if reason.get("provider_status") else ""
        attempts = reason.get("attempts", letter.receives)
        click.echo(f"{letter.queue} {letter.message_id} sent {letter.sent_at}, attempts {attempts}")
        click.echo(f"  reason: {reason.get('code', '?')}{status}: {reason.get('message', '')}")
        click.echo(f"  body:   {json.dumps(letter.body)}")


# ---------------------------------------------------------------------------- dlq redrive
@dataclass
class Redrive:
    method: str
    moved: int = 0
    failed: int = 0
    task: str | None = None


# Endpoints without StartMessageMoveTask (moto answers 500); the safe move is correct anywhere.
UNSUPPORTED = {"InvalidAction", "UnsupportedOperation", "NotImplemented", "UnknownOperationException", "500"}


def _arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def redrive(sqs: Any, dlq_url: str, queue_url: str, use_move_task: bool = True) -> Redrive:
    """Every message of ``dlq_url`` back to ``queue_url``: SQS's StartMessageMoveTask where the
    endpoint has it, else a safe move (send, then delete only what was sent)."""
    if use_move_task:
        try:
            answer = sqs.start_message_move_task(
                SourceArn=_arn(sqs, dlq_url), DestinationArn=_arn(sqs, queue_url)
            )
            return Redrive("StartMessageMoveTask", task=answer.get("TaskHandle"))
        except NotImplementedError:
            pass
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in UNSUPPORTED:
                raise
    result = Redrive("receive, send, delete")
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return result
        entries = []
        for n, message in enumerate(messages):
            attributes = {k: v for k, v in message.get("MessageAttributes", {}).items() if k != "failure"}
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": message["Body"]}
            if attributes:
                entry["MessageAttributes"] = {
                    k: {key: v[key] for key in ("DataType", "StringValue", "BinaryValue") if key in v}
                    for k, v in attributes.items()
                }
            entries.append(entry)
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = {item["Id"] for item in answer.get("Successful", [])}
        result.failed += len(messages) - len(sent)
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
            if str(n) in sent
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=done)
            result.moved += len(done)
        if not done:  # nothing could be sent: stop rather than spin; the messages stay in the DLQ
            return result


@dlq.command("redrive")
@click.option("--provider", type=PROVIDER_CHOICE, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only count the messages that would move.")
@target_options
def dlq_redrive(provider: str, yes: bool, dry_run: bool, **target: Any) -> None:
    """Move a provider's failed records back to its queue (after fixing their cause)."""
    stack = resolve_target(**target)
    sqs = stack.client("sqs")
    names = list(PROVIDER_QUEUES) if provider == "all" else [provider]
    waiting = {name: queue_depth(sqs, stack.dlq_url(name)).visible for name in names}
    for name, count in waiting.items():
        click.echo(f"{name}: {count} record(s) in {PROVIDER_DLQS[name]}")
    if dry_run or not any(waiting.values()):
        return
    if not yes:
        click.confirm("Move them back to their queues?", abort=True)
    for name in names:
        if not waiting[name]:
            continue
        result = redrive(sqs, stack.dlq_url(name), stack.queue_url(name))
        if result.task:
            click.echo(f"{name}: redrive started with StartMessageMoveTask (task {result.task})")
        else:
            click.echo(f"{name}: moved {result.moved} to {PROVIDER_QUEUES[name]} ({result.method})")
        if result.failed:
            raise click.ClickException(
                f"{name}: {result.failed} record(s) could not be sent; they stay in the DLQ"
            )


__all__ = ["dlq", "mask", "max_receive_count", "peek", "redrive", "stack_status", "status"]
