"""``provisioner demo``: the hub end to end on a throwaway local stack.

Creates people through the API event and through an SQS batch (sent to the queue, polled like
Lambda's event source mapping), each invocation in a fresh process as ``invoke`` does, then prints
the stored links and what reached the dead-letter queue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from provisioner_cli.invoke import invoke_function
from provisioner_cli.lambda_runtime import drain_queue
from provisioner_cli.local import LocalStack, StackState, aws_client
from provisioner_cli.main import print_links
from provisioner_cli.template import Template


def _api(template: Template, state: StackState, function_id: str, event_file: Path) -> bool:
    event = json.loads(event_file.read_text())
    outcome = invoke_function(template, state, function_id, event)
    if not outcome.ok:
        click.echo(f"  {event_file}: invocation failed: {outcome.error}\n{outcome.logs}", err=True)
        return False
    result = outcome.result
    click.echo(f"  POST {event['path']} ({event_file.name}) -> {result['statusCode']} {result['body']}")
    return bool(result["statusCode"] < 300)


def run_demo(template: Template) -> int:
    ok = True
    with LocalStack(template) as state:
        click.echo(f"local stack: AWS (moto) {state.aws_endpoint}, provider sandbox {state.sandbox_url}\n")
        function_id = "PalencaCreateUserFunction"
        events = template.root / "events" / "palenca_create_user"

        click.echo("1. API Gateway events (the second repeats the first person: answered from our table)")
        ok &= _api(template, state, function_id, events / "api.json")
        ok &= _api(template, state, function_id, events / "api.json")
        ok &= _api(template, state, function_id, events / "api_base64.json")

        click.echo("\n2. An SQS batch: five people and one malformed message")
        sqs = aws_client(state, "sqs")
        queue_url = state.refs["PalencaCreateUserQueue"]
        bodies: list[Any] = [{"external_id": f"batch-{n}"} for n in range(1, 6)]
        bodies.insert(2, {"external_id": "", "widget_id": "not-a-uuid"})
        for body in bodies:
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))

        def invoke(event: dict[str, Any]) -> Any:
            outcome = invoke_function(template, state, function_id, event)
            if not outcome.ok:
                raise click.ClickException(f"invocation failed: {outcome.error}\n{outcome.logs}")
            return outcome.result

        report = drain_queue(sqs, queue_url, invoke, max_batches=3)
        click.echo(
            f"  batches: {report.batches}, acknowledged: {report.acknowledged}, "
            f"reported failed: {report.failed}"
        )
        for response in report.responses:
            click.echo(f"  batch response: {json.dumps(response)}")
        ok &= report.acknowledged == 5 and report.failed == 1

        dlq_url = state.refs["PalencaCreateUserDLQ"]
        dead = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        click.echo(f"\n3. Dead-letter queue: {len(dead)} record(s)")
        for message in dead:
            reason = json.loads(message["MessageAttributes"]["failure"]["StringValue"])
            click.echo(f"  {message['Body']} -> {reason['code']}: {reason['message']}")
        ok &= len(dead) == 1

        click.echo("\n4. Stored provider links")
        from provisioning.store import LinkStore

        store = LinkStore(aws_client(state, "dynamodb"), state.refs["UsersTable"])
        links = store.scan_links()
        print_links(links)
        ok &= len([link for link in links if link.provider_user_id]) == 7
    click.echo("\ndemo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1
