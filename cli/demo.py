"""``provisioner demo``: the hub end to end on a throwaway local stack.

Creates one person at every registered provider through API Gateway events, a batch per provider
through SQS (sent to the queue and polled like Lambda's event source mapping, with one malformed
message; each provider's requests mapped from the same people),
publishes UserSignedUp events to the signup bus (routed by rule to the provider queues), runs the
scheduled Palenca sync, lets providers misbehave (an HTML answer after a committed create, a shared
e-mail address, redirects to another host), and prints the dead-letter queues. Then the signups that come
from where people sign up: a Cognito post-confirmation (and a password reset, which provisions no one) and
a signed Clerk ``user.created`` delivery (and its replay, which publishes nothing); the outcome events that
come back on the hub's bus, drained from the users table's stream as Lambda's event source mapping does;
``GET /people/{id}`` for the Cognito person, and the stored links. Every invocation runs in a fresh
process, as ``provisioner invoke`` does.
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
from provisioner_cli.outcomes import FUNCTION as OUTCOMES_FUNCTION
from provisioner_cli.outcomes import Subscriber, drain_outcomes, summary
from provisioner_cli.person import render
from provisioner_cli.sync import SYNC_FUNCTION
from provisioner_cli.template import Template
from provisioner_cli.webhook import clerk_payload, local_secret, send_local, sign
from provisioning.people import PersonView
from provisioning.person import Person
from provisioning.providers import BY_NAME, NAMES, PROVIDERS, ProviderInfo

PERSON = "demo-0001"
MALFORMED = '{"external_id": ""'  # cut short: every batch carries one, dead-lettered at once


def batch_person(n: int) -> Person:
    """The n-th person of the batches: everything a provider may ask for, mapped to each provider's
    request with its own Person mapping."""
    return Person(
        external_id=f"batch-{n}",
        email=f"person{n}@example.test",
        first_name="Demo",
        last_name=f"Person{n}",
        phone=f"+5255123400{n:02d}",
        date_of_birth="1990-01-15",
        country="MX",
        gender="F",
    )


BATCH_PEOPLE = [batch_person(n) for n in range(1, 4)]

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

# The scheduled sync (``provisioner sync``) and the provider whose widget users it links.
SYNC_PROVIDER = "palenca"
WIDGET_USERS = ["widget-1", "widget-2"]

# Providers on a bad day (scenario data): who answers an HTML page after a committed create, who
# refuses a second person with a known e-mail address, who redirects every create to another host.
HTML_AFTER_CREATE = "palenca"
SHARED_EMAIL = "trust"
REDIRECTS = "validic"


# Where people sign up: a Cognito user pool (its PostConfirmation trigger) and Clerk (signed webhooks).
SIGNUP_TRIGGER = "SignupTriggerFunction"
PEOPLE_FUNCTION = "PeopleFunction"
CLERK_PERSON = "user_2demoClerk"
CLERK_PROVIDERS = ["palenca", "trust", "palm"]  # Validic Inform's uid takes no underscore, as Clerk ids have


def batch_bodies(info: ProviderInfo) -> list[Any]:
    """The provider's batch: its requests for the batch people, and one malformed message."""
    from_person = info.create.load_spec().from_person
    if from_person is None:
        raise click.ClickException(f"{info.name} has no Person mapping: no batch to send")
    bodies: list[Any] = [from_person(person) for person in BATCH_PEOPLE]
    bodies.insert(1, MALFORMED)
    return bodies


def signup_targets() -> int:
    """How many provider users the signups make: one per provider each person targets."""
    return sum(len(person.get("providers") or NAMES) for person in SIGNUPS)


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
        self, info: ProviderInfo, external_id: str, expect: tuple[int, ...] = (200, 201), **body: Any
    ) -> dict[str, Any]:
        event = json.loads((self.template.root / "events" / info.create.folder / "api.json").read_text())
        event["body"] = json.dumps({**json.loads(event["body"]), **body, "external_id": external_id})
        result = self.invoke(info.create.function, event)
        answer: dict[str, Any] = json.loads(result["body"])
        error = answer.get("error") or {}
        shown = answer.get("provider_user_id") or f"{error.get('code')}: {error.get('message')}"
        click.echo(
            f"  POST {event['path']:<16} -> {result['statusCode']} {answer.get('outcome', '')} {shown}"
        )
        self.ok &= result["statusCode"] in expect
        return answer

    def bad_day(self, stack: LocalStack) -> int:
        """Providers misbehaving as real ones do: the hub neither duplicates nor links the wrong person.
        Returns how many people it links."""
        sandbox = stack.sandbox
        emulator = sandbox.emulators[HTML_AFTER_CREATE]
        click.echo(
            f"  {HTML_AFTER_CREATE} creates the user, then answers an HTML error page instead of JSON:"
        )
        sandbox.script_fault(HTML_AFTER_CREATE, *emulator.create_call(), "html", html_status=502)
        answer = self.api(BY_NAME[HTML_AFTER_CREATE], "badday-1", expect=(201,))
        held = emulator.users_for("badday-1")
        click.echo(f"    looked up before creating again: {HTML_AFTER_CREATE} holds {held} user for badday-1")
        self.ok &= answer.get("outcome") == "reconciled" and held == 1

        click.echo(
            f"  a second person with batch-1's e-mail address at {SHARED_EMAIL} (same names, another id):"
        )
        first = BATCH_PEOPLE[0]
        self.api(
            BY_NAME[SHARED_EMAIL],
            "badday-2",
            expect=(409,),
            email=first.email,
            name=first.first_name,
            last_name=first.last_name,
        )

        click.echo(f"  {REDIRECTS} redirects every create to another host:")
        sandbox.script_fault(REDIRECTS, *sandbox.emulators[REDIRECTS].create_call(), "redirect", count=20)
        self.api(BY_NAME[REDIRECTS], "badday-3", expect=(504,))
        stolen = len(sandbox.thief.requests)
        click.echo(f"    requests that reached the other host: {stolen} (the provider's secret stayed home)")
        self.ok &= stolen == 0
        sandbox.clear_faults()  # the providers' bad day is over
        return 1  # badday-1

    def batch(self, info: ProviderInfo, bodies: list[Any]) -> None:
        sqs = aws_client(self.state, "sqs")
        queue_url = self.state.refs[info.create.queue]
        for body in bodies:
            sqs.send_message(
                QueueUrl=queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body)
            )
        report = drain_queue(
            sqs, queue_url, lambda event: self.invoke(info.create.function, event), max_batches=5
        )
        click.echo(
            f"  {info.create.queue:<26} batches {report.batches}, acknowledged {report.acknowledged}, "
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
        self.drain_provider_queues()

    def drain_provider_queues(self) -> None:
        sqs = aws_client(self.state, "sqs")
        for info in PROVIDERS:
            report = drain_queue(
                sqs,
                self.state.refs[info.create.queue],
                partial(self.invoke, info.create.function),
                max_batches=5,
            )
            counts = f"acknowledged {report.acknowledged}, reported failed {report.failed}"
            click.echo(f"  {info.create.queue:<32} {counts}")
            self.ok &= report.failed == 0

    def queued_for_providers(self) -> int:
        sqs = aws_client(self.state, "sqs")
        return sum(
            int(
                sqs.get_queue_attributes(
                    QueueUrl=self.state.refs[info.create.queue],
                    AttributeNames=["ApproximateNumberOfMessages"],
                )["Attributes"]["ApproximateNumberOfMessages"]
            )
            for info in PROVIDERS
        )

    def cognito(self) -> str:
        """A Cognito password reset (nothing published), then a confirmed signup (published).
        Returns the person's external_id (their ``sub``)."""
        folder = self.template.root / "events" / self.template.function(SIGNUP_TRIGGER).code_uri.name
        reset = json.loads((folder / "confirm_forgot_password.json").read_text())
        self.ok &= self.invoke(SIGNUP_TRIGGER, reset) == reset
        queued = self.queued_for_providers()
        click.echo(f"  Cognito {reset['triggerSource']}: event returned unchanged, {queued} queued (none)")
        self.ok &= queued == 0
        confirmed = json.loads((folder / "confirm_sign_up.json").read_text())
        self.ok &= self.invoke(SIGNUP_TRIGGER, confirmed) == confirmed
        queued = self.queued_for_providers()
        click.echo(
            f"  Cognito {confirmed['triggerSource']}: event returned unchanged, "
            f"UserSignedUp routed to {queued} provider queues"
        )
        self.ok &= queued == len(PROVIDERS)
        return str(confirmed["request"]["userAttributes"]["sub"])

    def clerk(self) -> None:
        """A signed Clerk user.created delivery, then the same delivery again (a sender's retry)."""
        body = json.dumps(clerk_payload(self.template.root, CLERK_PERSON, CLERK_PROVIDERS))
        delivery = sign(local_secret(self.template, self.state), body, svix=True)
        before = self.queued_for_providers()
        for attempt in ("delivered", "replayed"):
            answer = send_local(self.template, self.state, delivery)
            outcome = (
                "duplicate: nothing published" if json.loads(answer["body"]).get("duplicate") else "published"
            )
            queued = self.queued_for_providers() - before
            click.echo(
                f"  Clerk user.created {attempt} (svix-id {delivery.headers['svix-id']}): "
                f"{answer['statusCode']} {outcome}, {queued} queued in all"
            )
            self.ok &= answer["statusCode"] in (200, 202) and queued == len(CLERK_PROVIDERS)

    def outcomes(self, subscriber: Subscriber, people: list[str]) -> list[dict[str, Any]]:
        report = drain_outcomes(self.template, self.state, partial(self.invoke, OUTCOMES_FUNCTION))
        events = subscriber.events()
        click.echo(
            f"  the users table's stream: {report.records} changes passed to {OUTCOMES_FUNCTION} "
            f"({report.filtered} filtered out: pending marks, claims), {len(events)} events on the bus"
        )
        for event in events:
            if event["detail"].get("external_id") in people:
                click.echo(f"  {summary(event)}")
        self.ok &= not report.failures and not report.errors
        return events

    def person(self, external_id: str) -> PersonView:
        folder = self.template.root / "events" / self.template.function(PEOPLE_FUNCTION).code_uri.name
        event = json.loads((folder / "api.json").read_text())
        event["path"] = f"/people/{external_id}"
        event["pathParameters"] = {"external_id": external_id}
        answer = self.invoke(PEOPLE_FUNCTION, event)
        click.echo(f"  GET /people/{external_id} -> {answer['statusCode']}")
        self.ok &= answer["statusCode"] == 200
        view = PersonView.model_validate_json(answer["body"])
        for line in render(view):
            click.echo(f"    {line}")
        return view


def run_demo(template: Template) -> int:
    stack = LocalStack(template)
    with stack as state:
        demo = Demo(template, state)
        subscriber = Subscriber.create(state)  # a product listening for outcome events on the hub's bus
        click.echo(f"local stack: AWS (moto) {state.aws_endpoint}, provider sandbox {state.sandbox_url}")
        click.echo(f"IAM enforced: each of the {len(state.credentials)} functions runs under its own role\n")

        click.echo(f"1. One person ({PERSON}) at all {len(PROVIDERS)} providers through API Gateway events")
        for info in PROVIDERS:
            demo.api(info, PERSON)
        click.echo("   ...and again: answered from our table, the providers are not called")
        for info in PROVIDERS:
            demo.api(info, PERSON)

        click.echo("\n2. A batch per provider through its SQS queue (each with one malformed message)")
        for info in PROVIDERS:
            demo.batch(info, batch_bodies(info))

        click.echo(
            "\n3. UserSignedUp events on the signup bus, routed by rule to the providers each person targets"
        )
        demo.signups()

        title = BY_NAME[SYNC_PROVIDER].title
        click.echo(f"\n4. The scheduled {title} sync picks up people who connected through {title}'s widget")
        synced = stack.sandbox.emulators[SYNC_PROVIDER]
        for external_id in WIDGET_USERS:
            synced.seed_user(external_id)  # type: ignore[attr-defined]
        sync_folder = template.function(SYNC_FUNCTION).code_uri.name
        schedule = json.loads((template.root / "events" / sync_folder / "schedule.json").read_text())
        summary = demo.invoke(SYNC_FUNCTION, schedule)
        click.echo(
            f"  pages {summary['pages']}, seen {summary['seen']}, linked {summary['created']}, "
            f"already linked {summary['already_linked']}"
        )
        demo.ok &= summary["created"] == len(WIDGET_USERS)

        click.echo("\n5. Providers on a bad day")
        bad_day_links = demo.bad_day(stack)

        click.echo("\n6. Dead-letter queues: each holds its batch's malformed message")
        sqs = aws_client(state, "sqs")
        for info in PROVIDERS:
            dead = sqs.receive_message(
                QueueUrl=state.refs[info.create.dead_letter_queue],
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            click.echo(f"  {info.create.dead_letter_queue}: {len(dead)} record(s)")
            for message in dead:
                reason = json.loads(message["MessageAttributes"]["failure"]["StringValue"])
                click.echo(f"    body {message['Body']!r}")
                attempts = reason.get("attempts", 1)
                click.echo(f"    reason {reason['code']}: {reason['message']} (attempts {attempts})")
            demo.ok &= [m["Body"] for m in dead] == [MALFORMED]

        click.echo("\n7. Signups from where they happen: a Cognito user pool and Clerk's signed webhooks")
        cognito_person = demo.cognito()
        demo.clerk()
        demo.drain_provider_queues()

        click.echo("\n8. Outcome events back on the hub's bus (source provisioner), one per link")
        events = demo.outcomes(subscriber, [cognito_person, CLERK_PERSON])

        click.echo(f"\n9. One person at every provider: GET /people/{cognito_person}")
        view = demo.person(cognito_person)
        demo.ok &= all(shown.state == "linked" for shown in view.providers.values())

        click.echo("\n10. Stored provider links")
        from provisioning.store import LinkStore

        links = LinkStore(aws_client(state, "dynamodb"), state.refs["UsersTable"]).scan_links()
        print_links(links)
        linked = [link for link in links if link.provider_user_id]
        expected = (
            len(PROVIDERS)  # step 1
            + len(PROVIDERS) * len(BATCH_PEOPLE)  # step 2
            + signup_targets()  # step 3
            + len(WIDGET_USERS)  # step 4
            + bad_day_links  # step 5
            + len(PROVIDERS)  # step 7: the Cognito person
            + len(CLERK_PROVIDERS)  # step 7: the Clerk person
        )
        demo.ok &= len(linked) == expected
        provisioned = {
            (e["detail"]["external_id"], e["detail"]["provider"])
            for e in events
            if e["detail-type"] == "PersonProvisioned"
        }
        demo.ok &= provisioned == {(link.external_id, link.provider) for link in linked}
        click.echo(f"  {len(linked)} links, {len(provisioned)} PersonProvisioned events: one per link")
    click.echo("\ndemo " + ("succeeded" if demo.ok else "FAILED"))
    return 0 if demo.ok else 1
