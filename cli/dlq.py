"""``provisioner dlq show | redrive``: the records that failed for good, with their reasons, and
moving them back to their queues.

It works on any StackTarget: the local stack or a deployed stack (resources by logical id). Every
provider of the registry has a DLQ (``ProviderInfo.create.dead_letter_queue``). Nothing printed
carries personal data: dead-lettered bodies are shown with every value masked except ids and
routing fields (``NOT_PERSONAL``), and a provider's credentials are masked wherever they appear.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import click
from botocore.exceptions import ClientError

from provisioner_cli.queues import SIGNUP_DLQ, SIGNUP_FALLBACK_DLQ, SYNC_DLQ, queue_depth
from provisioner_cli.stack import resolve_target, target_options
from provisioning.privacy import redact
from provisioning.providers import BY_NAME, NAMES, PROVIDERS

# Keys that are a provider's credentials (its registry entry): masked wherever they appear.
CREDENTIALS = frozenset().union(*(info.credentials for info in PROVIDERS))
# Values shown as they are in a dead-lettered body; every other value is masked. The keys of any
# body (events, routing, a sync's window), and those each provider declares not personal.
GENERIC_NOT_PERSONAL = frozenset(
    {
        "external_id",
        "provider",
        "providers",
        "source",
        "detail-type",
        "version",
        "id",
        "time",
        "region",
        "account",
        "since",  # a sync's window
        "until",
        "days",
    }
)
NOT_PERSONAL = GENERIC_NOT_PERSONAL.union(*(info.not_personal for info in PROVIDERS)) - CREDENTIALS


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
    if not isinstance(record, dict):
        return None
    context = record.get("requestContext")
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


PROVIDER_CHOICE = click.Choice([*NAMES, "all"])
# The DLQs ``dlq show`` reads besides the providers': signups EventBridge could not deliver, syncs
# that failed for good, Cognito signups that could not be mapped or published.
OTHER_DLQS = {"signups": SIGNUP_DLQ, "sync": SYNC_DLQ, "cognito": SIGNUP_FALLBACK_DLQ}


@click.group()
def dlq() -> None:
    """Dead-letter queues: show failed records and their reasons; redrive them."""


@dlq.command("show")
@click.option("--provider", type=click.Choice([*NAMES, *OTHER_DLQS, "all"]), required=True)
@click.option("--max", "limit", default=50, show_default=True, help="Most messages shown per queue.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@target_options
def dlq_show(provider: str, limit: int, as_json: bool, **target: Any) -> None:
    """The failed records of a provider's DLQ with their reasons (personal data masked); the
    messages stay in the queue. ``signups``: events EventBridge could not deliver; ``sync``:
    scheduled syncs that failed for good; ``cognito``: Cognito signups that could not be mapped or
    published."""
    stack = resolve_target(**target)
    queues = {**{info.name: info.create.dead_letter_queue for info in PROVIDERS}, **OTHER_DLQS}
    names = list(queues) if provider == "all" else [provider]
    letters = []
    sqs = stack.client("sqs")
    for name in names:
        if queues[name] not in stack.physical:
            continue
        source = BY_NAME[name].create.queue if name in BY_NAME else None
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
    infos = list(PROVIDERS) if provider == "all" else [BY_NAME[provider]]
    waiting = {
        info.name: queue_depth(sqs, stack.resource(info.create.dead_letter_queue)).visible for info in infos
    }
    for info in infos:
        click.echo(f"{info.name}: {waiting[info.name]} record(s) in {info.create.dead_letter_queue}")
    if dry_run or not any(waiting.values()):
        return
    if not yes:
        click.confirm("Move them back to their queues?", abort=True)
    for info in infos:
        name, queue, dead_letters = info.name, info.create.queue, info.create.dead_letter_queue
        if not waiting[name]:
            continue
        result = redrive(sqs, stack.resource(dead_letters), stack.resource(queue))
        if result.task:
            click.echo(f"{name}: redrive started with StartMessageMoveTask (task {result.task})")
        else:
            click.echo(f"{name}: moved {result.moved} to {queue} ({result.method})")
        if result.failed:
            raise click.ClickException(
                f"{name}: {result.failed} record(s) could not be sent; they stay in the DLQ"
            )


__all__ = ["CREDENTIALS", "NOT_PERSONAL", "dlq", "mask", "max_receive_count", "peek", "redrive"]
