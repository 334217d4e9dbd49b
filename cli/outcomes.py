"""Outcome events on the local stack: drain the users table's stream into OutcomeEventsFunction as
Lambda's event source mapping would, and subscribe to the hub's bus as a product team would (an
EventBridge rule on source ``provisioner`` with an SQS queue as its target)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from provisioner_cli.lambda_runtime import StreamReport, StreamSource, stream_source
from provisioner_cli.local import REGION, StackState, aws_client
from provisioner_cli.template import Template

FUNCTION = "OutcomeEventsFunction"
SOURCE = "provisioner"


def function_session(state: StackState, function_id: str = FUNCTION) -> boto3.Session:
    """The session of the function's role (the stream is read and OnFailure records are sent with
    it, as Lambda does); the tooling's own when IAM is not enforced."""
    credentials = state.credentials.get(function_id)
    if not credentials:
        return state.harness_session()
    return boto3.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        region_name=REGION,
    )


def outcome_source(template: Template, state: StackState) -> StreamSource:
    """OutcomeEventsFunction's stream event source (keep it to drain again from its checkpoints)."""
    return stream_source(template, state, FUNCTION)


def drain_outcomes(
    template: Template,
    state: StackState,
    invoke: Callable[[dict[str, Any]], Any],
    source: StreamSource | None = None,
) -> StreamReport:
    """Pass every new change of the users table to ``invoke`` (OutcomeEventsFunction's handler),
    as its event source mapping does. ``source`` carries the checkpoints between drains."""
    source = source or outcome_source(template, state)
    return source.drain(function_session(state), invoke, state.aws_endpoint)


@dataclass
class Subscriber:
    """An EventBridge rule on the hub's bus matching ``pattern`` (by default every outcome event),
    delivering to its own SQS queue."""

    events_client: Any
    sqs: Any
    bus: str
    rule: str
    queue_url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(
        cls, state: StackState, name: str = "outcome-subscriber", pattern: dict[str, Any] | None = None
    ) -> Subscriber:
        events_client, sqs = aws_client(state, "events"), aws_client(state, "sqs")
        bus = state.refs.get("SignupEventBus") or state.parameters.get("EventBusName") or "default"
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events_client.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(pattern or {"source": [SOURCE]}),
            State="ENABLED",
        )
        events_client.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": name, "Arn": arn}])
        return cls(events_client, sqs, bus, name, queue_url)

    def events(self) -> list[dict[str, Any]]:
        """Every event delivered so far (EventBridge's envelope: id, detail-type, source, time,
        detail), in the order they arrived."""
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return list(self.received)
            for message in messages:
                self.received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def details(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """The ``detail`` of every event received (of ``detail_type`` only, when given)."""
        return [e["detail"] for e in self.events() if detail_type is None or e["detail-type"] == detail_type]


def summary(event: dict[str, Any]) -> str:
    """One line for an outcome event (the demo's), without its event_id."""
    detail = event.get("detail") or {}
    who = f"{detail.get('provider')} {detail.get('external_id')}"
    if event.get("detail-type") == "PersonProvisioned":
        details = " ".join(f"{key}={value}" for key, value in sorted((detail.get("details") or {}).items()))
        line = f"PersonProvisioned  {who} -> {detail.get('provider_user_id')} ({detail.get('outcome')})"
        return f"{line} {details}".rstrip()
    return f"{event.get('detail-type')} {who}: {detail.get('code')}: {detail.get('message')}"
