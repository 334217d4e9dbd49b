"""``provisioner demo``: the hub end to end on a throwaway local stack.

Creates one person at all four providers through API Gateway events, a batch per provider through
SQS (sent to the queue and polled like Lambda's event source mapping, with one malformed message),
publishes UserSignedUp events to the signup bus (routed by rule to the provider queues), runs the
scheduled Palenca sync, lets providers misbehave (an HTML answer after a committed create, a shared
e-mail address, redirects to another host), and prints the stored links and the dead-letter queue. Every
invocation runs in a fresh process, as ``provisioner invoke`` does.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import click

from provisioner_cli.invoke import invoke_function
from provisioner_cli.lambda_runtime import drain_queue
from provisioner_cli.local import LocalStack, StackState, aws_client
from provisioner_cli.main import print_links
from provisioner_cli.template import Template

CREATE_FUNCTIONS = {
    "PalencaCreateUserFunction": ("palenca_create_user", "PalencaCreateUserQueue"),
    "TrustCreateUserFunction": ("trust_create_user", "TrustCreateUserQueue"),
    "PalmCreateUserFunction": ("palm_create_user", "PalmCreateUserQueue"),
    "ValidicProvisionUserFunction": ("validic_provision_user", "ValidicProvisionUserQueue"),
}
PERSON = "demo-0001"
BATCH: dict[str, list[Any]] = {
    "PalencaCreateUserFunction": [{"external_id": f"batch-{n}"} for n in range(1, 4)],
    "TrustCreateUserFunction": [
        {
            "external_id": f"batch-{n}",
            "email": f"person{n}@example.test",
            "name": "Demo",
            "last_name": f"Person{n}",
        }
        for n in range(1, 4)
    ],
    "PalmCreateUserFunction": [
        {"external_id": f"batch-{n}", "vault": {"identity.email": f"person{n}@example.test"}}
        for n in range(1, 4)
    ],
    "ValidicProvisionUserFunction": [{"external_id": f"batch-{n}"} for n in range(1, 4)],
}

# Canonical persons, as a product would publish them in UserSignedUp events.
SIGNUPS: list[dict[str, Any]] = [
    {"external_id": "signup-1", "providers": ["palenca", "palm"]},
    {
        "external_id": "signup-2",
        "email": "signup2@example.test",
        "first_name": "Demo",
        "last_name": "Signup",
        "date_of_birth": "1991-05-17",
        "country": "MX",
    },
]


class Demo:
    def __init__(self, template: Template, state: StackState) -> None:
        self.template = template
        self.state = state
        self.ok = True

    def invoke(self, function_id: str, event: dict[str, Any]) -> Any:
        outcome = invoke_function(self.template, self.state, function_id, event)
        if not outcome.ok:
            raise click.ClickException(f"{function_id} failed: {outcome.error}\n{outcome.logs}")
        return outcome.result

    def api(
        self,
        function_id: str,
        folder: str,
        external_id: str,
        expect: tuple[int, ...] = (200, 201),
        **body: Any,
    ) -> dict[str, Any]:
        event = json.loads((self.template.root / "events" / folder / "api.json").read_text())
        event["body"] = json.dumps({**json.loads(event["body"]), **body, "external_id": external_id})
        result = self.invoke(function_id, event)
        answer: dict[str, Any] = json.loads(result["body"])
        error = answer.get("error") or {}
        shown = answer.get("provider_user_id") or f"{error.get('code')}: {error.get('message')}"
        click.echo(
            f"  POST {event['path']:<16} -> {result['statusCode']} {answer.get('outcome', '')} {shown}"
        )
        self.ok &= result["statusCode"] in expect
        return answer

    def bad_day(self, stack: LocalStack) -> None:
        """Providers misbehaving as real ones do: the hub neither duplicates nor links the wrong person."""
        sandbox = stack.sandbox
        click.echo("  palenca creates the user, then answers an HTML error page instead of JSON:")
        sandbox.script_fault("palenca", "POST", "/palenca/v1/users", "html", html_status=502)
        answer = self.api("PalencaCreateUserFunction", "palenca_create_user", "badday-1", expect=(201,))
        held = len(sandbox.emulators["palenca"].users_with_external_id("badday-1"))  # type: ignore[attr-defined]
        click.echo(f"    looked up before creating again: palenca holds {held} user for badday-1")
        self.ok &= answer.get("outcome") == "reconciled" and held == 1

        click.echo("  a second person with batch-1's e-mail address at trust (same names, another id):")
        self.api(
            "TrustCreateUserFunction",
            "trust_create_user",
            "badday-2",
            expect=(409,),
            email="person1@example.test",
            name="Demo",
            last_name="Person1",
        )

        click.echo("  validic redirects every create to another host:")
        validic_users = "/validic/v1/organizations/sandbox-org/users.json"
        sandbox.script_fault("validic", "POST", validic_users, "redirect", count=20)
        self.api("ValidicProvisionUserFunction", "validic_provision_user", "badday-3", expect=(504,))
        stolen = len(sandbox.thief.requests)
        click.echo(f"    requests that reached the other host: {stolen} (the organization token stayed home)")
        self.ok &= stolen == 0

    def batch(self, function_id: str, queue_id: str, bodies: list[Any]) -> None:
        sqs = aws_client(self.state, "sqs")
        queue_url = self.state.refs[queue_id]
        for body in bodies:
            sqs.send_message(
                QueueUrl=queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body)
            )
        report = drain_queue(sqs, queue_url, lambda event: self.invoke(function_id, event), max_batches=5)
        click.echo(
            f"  {queue_id:<26} batches {report.batches}, acknowledged {report.acknowledged}, "
            f"reported failed {report.failed}"
        )
        self.ok &= report.acknowledged + report.failed == len(bodies)

    def signups(self) -> None:
        events = aws_client(self.state, "events")
        bus = self.state.refs["SignupEventBus"]
        entries = [
            {"EventBusName": bus, "Source": "demo.app", "DetailType": "UserSignedUp", "Detail": json.dumps(p)}
            for p in SIGNUPS
        ]
        self.ok &= events.put_events(Entries=entries)["FailedEntryCount"] == 0
        click.echo(f"  published {len(entries)} events to {bus}")
        sqs = aws_client(self.state, "sqs")
        for function_id, (_, queue_id) in CREATE_FUNCTIONS.items():
            report = drain_queue(
                sqs,
                self.state.refs[queue_id],
                partial(self.invoke, function_id),
                max_batches=5,
            )
            click.echo(
                f"  {queue_id:<26} acknowledged {report.acknowledged}, reported failed {report.failed}"
            )
            self.ok &= report.failed == 0


def run_demo(template: Template) -> int:
    stack = LocalStack(template)
    with stack as state:
        demo = Demo(template, state)
        click.echo(f"local stack: AWS (moto) {state.aws_endpoint}, provider sandbox {state.sandbox_url}")
        click.echo(f"IAM enforced: each of the {len(state.credentials)} functions runs under its own role\n")

        click.echo(f"1. One person ({PERSON}) at all four providers through API Gateway events")
        for function_id, (folder, _) in CREATE_FUNCTIONS.items():
            demo.api(function_id, folder, PERSON)
        click.echo("   ...and again: answered from our table, the providers are not called")
        for function_id, (folder, _) in CREATE_FUNCTIONS.items():
            demo.api(function_id, folder, PERSON)

        click.echo("\n2. A batch per provider through its SQS queue (Palenca's with one malformed message)")
        for function_id, (_, queue_id) in CREATE_FUNCTIONS.items():
            bodies: list[Any] = list(BATCH[function_id])
            if function_id == "PalencaCreateUserFunction":
                bodies.insert(1, '{"external_id": ""')
            demo.batch(function_id, queue_id, bodies)

        click.echo(
            "\n3. UserSignedUp events on the signup bus, routed by rule to the providers each person targets"
        )
        demo.signups()

        click.echo("\n4. The scheduled Palenca sync picks up people who connected through Palenca's widget")
        palenca = stack.sandbox.emulators["palenca"]
        for n in (1, 2):
            palenca.seed_user(f"widget-{n}")  # type: ignore[attr-defined]
        schedule = json.loads((template.root / "events" / "palenca_list_users" / "schedule.json").read_text())
        summary = demo.invoke("PalencaListUsersFunction", schedule)
        click.echo(
            f"  pages {summary['pages']}, seen {summary['seen']}, linked {summary['created']}, "
            f"already linked {summary['already_linked']}"
        )
        demo.ok &= summary["created"] == 2

        click.echo("\n5. Providers on a bad day")
        demo.bad_day(stack)

        sqs = aws_client(state, "sqs")
        dead = sqs.receive_message(
            QueueUrl=state.refs["PalencaCreateUserDLQ"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        click.echo(f"\n6. Palenca dead-letter queue: {len(dead)} record(s)")
        for message in dead:
            reason = json.loads(message["MessageAttributes"]["failure"]["StringValue"])
            click.echo(f"  body {message['Body']!r}")
            attempts = reason.get("attempts", 1)
            click.echo(f"  reason {reason['code']}: {reason['message']} (attempts {attempts})")
        demo.ok &= len(dead) == 1

        click.echo("\n7. Stored provider links")
        from provisioning.store import LinkStore

        links = LinkStore(aws_client(state, "dynamodb"), state.refs["UsersTable"]).scan_links()
        print_links(links)
        expected = 4 + 4 * 3 + len(SIGNUPS[0]["providers"]) + 4 + 2 + 1  # + badday-1 at palenca
        demo.ok &= len([link for link in links if link.provider_user_id]) == expected
    click.echo("\ndemo " + ("succeeded" if demo.ok else "FAILED"))
    return 0 if demo.ok else 1
