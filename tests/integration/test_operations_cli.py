"""``provisioner status``, ``dlq show`` and ``dlq redrive`` against moto: the local stack's
resources, and a deployed stack found through CloudFormation."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from provisioner_cli.dlq import mask, peek, redrive
from provisioner_cli.main import cli
from provisioner_cli.stack import PROVIDER_DLQS, PROVIDER_QUEUES, StackTarget
from provisioner_cli.status import DrainEstimate, budget_parameter, drain_estimate
from provisioning import ratelimit
from provisioning.providers import PROVIDERS
from provisioning.registry import Budget, CreateFunction, ProviderInfo
from provisioning.store import Link, LinkStore

FAILURE = {
    "code": "provider_rejected",
    "message": "Trust rejected the request: Missing params",
    "transient": False,
    "provider": "trust",
    "provider_status": 404,
    "attempts": 1,
    "source_message_id": "0b3f1c2a",
}
BODY = {"external_id": "t-9", "email": "ana.perez@example.test", "name": "Ana", "last_name": "Perez"}


@pytest.fixture
def target(stack, admin_session) -> StackTarget:
    return StackTarget(
        dict(stack.refs),
        admin_session,
        description="test stack",
        parameters=dict(stack.parameters),
    )


@pytest.fixture
def use_target(monkeypatch, target):
    """Every command resolves to the test stack (as --local would)."""
    for module in ("provisioner_cli.status", "provisioner_cli.dlq", "provisioner_cli.main"):
        monkeypatch.setattr(f"{module}.resolve_target", lambda **kw: target)
    return target


def plant(sqs: Any, url: str) -> None:
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(BODY),
        MessageAttributes={"failure": {"DataType": "String", "StringValue": json.dumps(FAILURE)}},
    )
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"external_id": "t-10", "email": "x@example.test"}))


def depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_dlq_show_lists_reasons_masks_personal_data_and_leaves_messages(use_target, aws):
    sqs = aws("sqs")
    dlq = use_target.dlq_url("trust")
    plant(sqs, dlq)

    result = CliRunner().invoke(cli, ["dlq", "show", "--provider", "trust"])

    assert result.exit_code == 0, result.output
    assert (
        "provider_rejected (provider answered 404): Trust rejected the request: Missing params"
        in result.output
    )
    assert "retries_exhausted" in result.output
    assert '"external_id": "t-9"' in result.output
    for personal in ("ana.perez@example.test", "Ana", "Perez", "x@example.test"):
        assert personal not in result.output
    assert depth(sqs, dlq) == 2
    again = CliRunner().invoke(cli, ["dlq", "show", "--provider", "all", "--json"])
    shown = json.loads(again.output)
    assert sorted(letter["body"]["external_id"] for letter in shown) == ["t-10", "t-9"]
    assert {letter["queue"] for letter in shown} == {"trust"}


def test_dlq_redrive_moves_every_message_back_once(use_target, aws):
    sqs = aws("sqs")
    dlq, queue = use_target.dlq_url("trust"), use_target.queue_url("trust")
    plant(sqs, dlq)
    for n in range(12):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"external_id": f"r-{n}"}))

    dry = CliRunner().invoke(cli, ["dlq", "redrive", "--provider", "trust", "--dry-run"])
    assert "trust: 14 record(s) in TrustCreateUserDLQ" in dry.output
    assert depth(sqs, dlq) == 14

    result = CliRunner().invoke(cli, ["dlq", "redrive", "--provider", "trust", "--yes"])

    assert result.exit_code == 0, result.output
    assert "moved 14 to TrustCreateUserQueue" in result.output
    assert depth(sqs, dlq) == 0
    bodies, attributes = [], []
    while messages := sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages", []):
        bodies.extend(json.loads(m["Body"])["external_id"] for m in messages)
        attributes.extend(m.get("MessageAttributes", {}) for m in messages)
    assert sorted(bodies) == sorted(["t-9", "t-10", *(f"r-{n}" for n in range(12))])
    assert not any("failure" in a for a in attributes), "the failure report stays behind"


def test_redrive_uses_start_message_move_task_where_sqs_has_it():
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq_url = "https://sqs.us-east-1.amazonaws.com/123456789012/TrustCreateUserDLQ"
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/TrustCreateUserQueue"
    with Stubber(sqs) as stub:
        for url in (dlq_url, queue_url):
            name = url.rsplit("/", 1)[1]
            stub.add_response(
                "get_queue_attributes",
                {"Attributes": {"QueueArn": f"arn:aws:sqs:us-east-1:123456789012:{name}"}},
                {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
            )
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "task-1"},
            {
                "SourceArn": "arn:aws:sqs:us-east-1:123456789012:TrustCreateUserDLQ",
                "DestinationArn": "arn:aws:sqs:us-east-1:123456789012:TrustCreateUserQueue",
            },
        )
        result = redrive(sqs, dlq_url, queue_url)
        stub.assert_no_pending_responses()
    assert (result.method, result.task) == ("StartMessageMoveTask", "task-1")


def test_status_counts_links_and_queue_depths(use_target, aws):
    store = LinkStore(aws("dynamodb"), use_target.users_table)
    for n in range(3):
        store.save_link(Link(external_id=f"s-{n}", provider="palenca", provider_user_id=f"p-{n}"))
    store.save_link(Link(external_id="s-0", provider="validic", provider_user_id="v-0"))
    store.mark_pending("trust", "s-5")
    sqs = aws("sqs")
    for n in range(4):
        sqs.send_message(
            QueueUrl=use_target.queue_url("palm"), MessageBody=json.dumps({"external_id": f"q-{n}"})
        )
    plant(sqs, use_target.dlq_url("trust"))

    result = CliRunner().invoke(cli, ["status", "--json"])

    assert result.exit_code == 0, result.output
    status = json.loads(result.output)["providers"]
    assert status["palenca"]["links"] == {"linked": 3}
    assert status["validic"]["links"] == {"linked": 1}
    assert status["trust"]["links"] == {"pending": 1}
    assert status["palm"]["queue"]["visible"] == 4
    assert status["trust"]["dlq"]["visible"] == 2
    table = CliRunner().invoke(cli, ["status"])
    rows = {line.split()[0]: line.split()[1:] for line in table.output.splitlines()[2:6]}
    # linked, pending, queued, waiting, in flight, DLQ, drains in
    assert rows["palenca"] == ["3", "0", "0", "0", "0", "0", "-"]
    assert rows["palm"] == ["0", "0", "4", "0", "0", "0", "-"]
    assert rows["trust"] == ["0", "1", "0", "0", "0", "2", "-"]


def test_links_of_a_person(use_target, aws):
    store = LinkStore(aws("dynamodb"), use_target.users_table)
    store.save_link(Link(external_id="l-1", provider="palm", provider_user_id="usr_1"))

    result = CliRunner().invoke(cli, ["links", "l-1"])

    assert result.exit_code == 0, result.output
    assert "l-1" in result.output
    assert "usr_1" in result.output


def test_commands_work_against_a_deployed_stack(stack, aws, admin_session):
    cloudformation = aws("cloudformation")
    template = {
        "Resources": {
            "PalencaCreateUserQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"QueueName": "prod-palenca"},
            },
            "PalencaCreateUserDLQ": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"QueueName": "prod-palenca-dlq"},
            },
            "UsersTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": "prod-users",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [
                        {"AttributeName": "external_id", "AttributeType": "S"},
                        {"AttributeName": "provider", "AttributeType": "S"},
                    ],
                    "KeySchema": [
                        {"AttributeName": "external_id", "KeyType": "HASH"},
                        {"AttributeName": "provider", "KeyType": "RANGE"},
                    ],
                },
            },
        }
    }
    cloudformation.create_stack(StackName="provisioner-prod", TemplateBody=json.dumps(template))

    deployed = StackTarget.deployed("provisioner-prod", admin_session)

    assert deployed.queue_url("palenca").endswith("/prod-palenca")
    assert deployed.users_table == "prod-users"
    sqs = aws("sqs")
    plant(sqs, deployed.dlq_url("palenca"))
    letters = peek(sqs, deployed.dlq_url("palenca"), 10, queue="palenca")
    assert len(letters) == 2
    moved = redrive(sqs, deployed.dlq_url("palenca"), deployed.queue_url("palenca"))
    assert moved.moved == 2
    with pytest.raises(KeyError, match="TrustCreateUserQueue"):
        deployed.queue_url("trust")


def test_dlq_show_counts_attempts_of_a_redrive_policy_message_once(use_target, aws):
    """A message SQS's redrive policy moved: its attempts are the queue's maxReceiveCount, however
    often the DLQ is looked at (each look is itself a receive)."""
    sqs = aws("sqs")
    queue, dlq = use_target.queue_url("trust"), use_target.dlq_url("trust")
    sqs.send_message(
        QueueUrl=queue, MessageBody=json.dumps({"external_id": "t-11", "email": "y@example.test"})
    )
    for _ in range(4):  # three failed receives, then SQS moves it on the next receive
        sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)
    assert depth(sqs, dlq) == 1

    for _ in range(3):
        result = CliRunner().invoke(cli, ["dlq", "show", "--provider", "trust"])
        assert result.exit_code == 0, result.output
        assert "attempts 3" in result.output
        assert "reason: retries_exhausted: retries exhausted after 3 receives" in result.output
        assert "y@example.test" not in result.output
    assert depth(sqs, dlq) == 1


class ShortPollingSQS:
    """SQS as a small queue behaves on a short poll: a sampled server may hold none of the
    messages, so the answer is empty although the queue is not."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.short_polls = 0

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        if not kwargs.get("WaitTimeSeconds"):
            self.short_polls += 1
            return {}
        return dict(self._sqs.receive_message(**kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def test_dlq_show_and_safe_redrive_long_poll_so_no_message_is_missed(use_target, aws):
    sqs = ShortPollingSQS(aws("sqs"))
    dlq, queue = use_target.dlq_url("trust"), use_target.queue_url("trust")
    plant(sqs, dlq)

    assert len(peek(sqs, dlq, 10)) == 2
    moved = redrive(sqs, dlq, queue, use_move_task=False)

    assert (moved.method, moved.moved, moved.failed) == ("receive, send, delete", 2, 0)
    assert sqs.short_polls == 0
    assert depth(aws("sqs"), dlq) == 0
    assert depth(aws("sqs"), queue) == 2


def _deployed_template() -> dict[str, Any]:
    """A stack with template.yaml's logical ids and its own physical names."""
    resources: dict[str, Any] = {
        "UsersTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "live-users",
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "external_id", "AttributeType": "S"},
                    {"AttributeName": "provider", "AttributeType": "S"},
                ],
                "KeySchema": [
                    {"AttributeName": "external_id", "KeyType": "HASH"},
                    {"AttributeName": "provider", "KeyType": "RANGE"},
                ],
            },
        }
    }
    for provider, queue in PROVIDER_QUEUES.items():
        dlq = PROVIDER_DLQS[provider]
        resources[dlq] = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"live-{provider}-dlq"}}
        resources[queue] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": f"live-{provider}",
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 3},
            },
        }
    return {"Resources": resources}


def test_cli_finds_a_deployed_stack_by_name(stack, aws, admin_session):
    """``--stack-name``: status, dlq show, dlq redrive and links address the stack's own resources
    through CloudFormation (the local stack's resources, also present, are not touched)."""
    aws("cloudformation").create_stack(StackName="live", TemplateBody=json.dumps(_deployed_template()))
    deployed = StackTarget.deployed("live", admin_session)
    assert deployed.dlq_url("trust").endswith("/live-trust-dlq")
    sqs = aws("sqs")
    plant(sqs, deployed.dlq_url("trust"))
    sqs.send_message(QueueUrl=deployed.queue_url("palm"), MessageBody=json.dumps({"external_id": "q-1"}))
    LinkStore(aws("dynamodb"), "live-users").save_link(
        Link(external_id="d-1", provider="palenca", provider_user_id="p-1")
    )
    target = ["--stack-name", "live", "--region", "us-east-1"]

    status = CliRunner().invoke(cli, ["status", "--json", *target])
    assert status.exit_code == 0, status.output
    providers = json.loads(status.output)["providers"]
    assert providers["palenca"]["links"] == {"linked": 1}
    assert providers["palm"]["queue"]["visible"] == 1
    assert providers["trust"]["dlq"]["visible"] == 2
    assert json.loads(status.output)["signup_dlq"] is None

    shown = CliRunner().invoke(cli, ["dlq", "show", "--provider", "trust", *target])
    assert shown.exit_code == 0, shown.output
    assert "provider_rejected (provider answered 404)" in shown.output
    assert "ana.perez@example.test" not in shown.output

    links = CliRunner().invoke(cli, ["links", "d-1", *target])
    assert links.exit_code == 0, links.output
    assert "p-1" in links.output

    moved = CliRunner().invoke(cli, ["dlq", "redrive", "--provider", "trust", "--yes", *target])
    assert moved.exit_code == 0, moved.output
    assert "moved 2 to TrustCreateUserQueue" in moved.output
    assert depth(sqs, deployed.dlq_url("trust")) == 0
    assert depth(sqs, deployed.queue_url("trust")) == 2
    assert depth(sqs, stack.refs["TrustCreateUserQueue"]) == 0


def test_links_with_an_explicit_table(use_target, aws):
    LinkStore(aws("dynamodb"), use_target.users_table).save_link(
        Link(external_id="l-2", provider="trust", provider_user_id="2866")
    )

    result = CliRunner().invoke(cli, ["links", "--table", use_target.users_table, "--region", "us-east-1"])

    assert result.exit_code == 0, result.output
    assert "2866" in result.output


def test_resolve_links_a_held_person_to_the_user_found_at_the_provider(use_target, aws):
    store = LinkStore(aws("dynamodb"), use_target.users_table)
    store.mark_pending("palm", "r-1")  # held: its create's outcome is unknown and palm has no lookup

    result = CliRunner().invoke(cli, ["resolve", "r-1", "--provider", "palm", "--provider-user-id", "usr_9"])

    assert result.exit_code == 0, result.output
    link = store.get("palm", "r-1")
    assert (link.status.value, link.source.value, link.provider_user_id) == ("linked", "resolved", "usr_9")
    taken = CliRunner().invoke(cli, ["resolve", "r-1", "--provider", "palm", "--not-created"])
    assert taken.exit_code != 0
    assert "already linked" in taken.output


def test_resolve_not_created_lets_the_next_delivery_create_without_holding(use_target, aws):
    store = LinkStore(aws("dynamodb"), use_target.users_table)
    store.mark_pending("palm", "r-2")

    result = CliRunner().invoke(cli, ["resolve", "r-2", "--provider", "palm", "--not-created"])

    assert result.exit_code == 0, result.output
    assert store.mark_pending("palm", "r-2").may_exist is False


def test_resolve_refuses_a_provider_user_another_person_holds(use_target, aws):
    store = LinkStore(aws("dynamodb"), use_target.users_table)
    store.save_link(Link(external_id="r-3", provider="palm", provider_user_id="usr_7"))
    store.mark_pending("palm", "r-4")

    result = CliRunner().invoke(cli, ["resolve", "r-4", "--provider", "palm", "--provider-user-id", "usr_7"])

    assert result.exit_code != 0
    assert "already linked to another person" in result.output


def test_status_shows_records_waiting_for_palencas_budget_and_when_the_backlog_drains(use_target, aws):
    sqs = aws("sqs")
    url = use_target.queue_url("palenca")
    for n in range(30):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"external_id": f"w-{n}"}), DelaySeconds=600)
    for n in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"external_id": f"v-{n}"}))
    budget = int(use_target.parameters["PalencaRequestsPerMinute"])

    result = CliRunner().invoke(cli, ["status", "--json"])

    assert result.exit_code == 0, result.output
    palenca = json.loads(result.output)["providers"]["palenca"]
    assert palenca["queue"]["delayed"] == 30
    assert palenca["queue"]["visible"] == 6
    assert palenca["budget_per_minute"] == budget
    assert palenca["drain_minutes"] == -(-36 // budget)
    assert palenca["budget"] == {"requests": budget, "window_seconds": 60}
    assert palenca["drain_seconds"] == 60 * palenca["drain_minutes"]
    trust = json.loads(result.output)["providers"]["trust"]
    assert trust["drain_minutes"] is trust["budget"] is trust["drain_seconds"] is None

    text = CliRunner().invoke(cli, ["status"]).output
    assert "waiting" in text.splitlines()[0]
    assert f"min at {budget}/min" in text


def _stubbed_lambda(monkeypatch, target: StackTarget) -> Stubber:
    from provisioner_cli import sync

    client = boto3.client("lambda", region_name="us-east-1")
    monkeypatch.setattr(sync, "lambda_client", lambda stack: client if stack is target else None)
    return Stubber(client)


@pytest.fixture
def deployed_target(monkeypatch) -> StackTarget:
    target = StackTarget(
        {"PalencaListUsersFunction": "provisioner-PalencaListUsersFunction-AbC123"},
        boto3.Session(region_name="us-east-1"),
        description="stack provisioner",
    )
    monkeypatch.setattr("provisioner_cli.sync.resolve_target", lambda **kw: target)
    return target


def test_sync_invokes_the_deployed_function_with_the_schedules_payload(monkeypatch, deployed_target):
    import io

    summary = {"start_date": "2026-10-31", "end_date": "2026-10-01", "created": 3, "complete": True}
    with _stubbed_lambda(monkeypatch, deployed_target) as stub:
        for window in ({"since": "2026-10-01", "until": "2026-10-31"}, {}):
            stub.add_response(
                "invoke",
                {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(summary).encode())},
                {
                    "FunctionName": "provisioner-PalencaListUsersFunction-AbC123",
                    "InvocationType": "RequestResponse",
                    "Payload": json.dumps({"sync": window}).encode(),
                },
            )
        result = CliRunner().invoke(cli, ["sync", "--since", "2026-10-01", "--until", "2026-10-31"])
        default = CliRunner().invoke(cli, ["sync"])
        stub.assert_no_pending_responses()

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == summary
    assert default.exit_code == 0, default.output


def test_sync_reports_the_deployed_functions_error(monkeypatch, deployed_target):
    import io

    error = {"errorType": "ProviderError", "errorMessage": "palenca answered 503"}
    with _stubbed_lambda(monkeypatch, deployed_target) as stub:
        stub.add_response(
            "invoke",
            {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "Payload": io.BytesIO(json.dumps(error).encode()),
            },
        )
        result = CliRunner().invoke(cli, ["sync", "--days", "3"])

    assert result.exit_code == 1
    assert "provisioner-PalencaListUsersFunction-AbC123 failed: ProviderError: palenca answered 503" in (
        result.output
    )


HOURLY = ProviderInfo(
    name="validic-inform",
    title="Validic Inform",
    default_base_url="https://inform.example.test",
    create=CreateFunction(
        function="ValidicInformCreateUserFunction",
        queue="ValidicInformCreateUserQueue",
        dead_letter_queue="ValidicInformCreateUserDLQ",
        route="/validic-inform/users",
        folder="validic_inform_create_user",
        spec="provisioning.providers.validic.client:CREATE_USER",
    ),
    budget=Budget(requests=2000, window_seconds=3600, setting="VALIDIC_INFORM_REQUESTS_PER_HOUR"),
)


def test_a_budgets_stack_parameter_is_its_setting_in_camel_case(template):
    assert budget_parameter(HOURLY.budget) == "ValidicInformRequestsPerHour"
    budgets = [info.budget for info in PROVIDERS if info.budget]
    assert budgets, "a provider of the registry has a budget"
    for budget in budgets:
        assert budget_parameter(budget) in template.parameters


def test_drain_estimate_of_an_hourly_budget_counts_hours_and_the_windows_booked(target):
    target.parameters["ValidicInformRequestsPerHour"] = "2000"

    drain = drain_estimate(target, HOURLY, 4500)

    assert drain == DrainEstimate(requests=2000, window_seconds=3600, windows=3)
    assert drain.describe() == "~3 h at 2000/hour"
    assert drain.seconds == 3 * 3600
    limiter = ratelimit.SharedRateLimiter(
        target.client("dynamodb"), target.resource("RateLimitTable"), HOURLY.name, 2000, window_s=3600
    )
    # Bookings reach five windows ahead: the backlog drains when the last of them opens.
    limiter._advance_frontier("bulk", limiter.window_of(time.time()) + 5)
    assert drain_estimate(target, HOURLY, 10).windows == 6
    assert drain_estimate(target, HOURLY, 0).windows == 0
    del target.parameters["ValidicInformRequestsPerHour"]
    assert drain_estimate(target, HOURLY, 4500) is None


def test_status_describes_drains_in_the_budgets_own_window():
    assert DrainEstimate(120, 60, 4).describe() == "~4 min at 120/min"
    assert DrainEstimate(50, 10, 4).describe() == "~40 s at 50 per 10 s"


def test_dlq_masking_shows_what_the_registry_declares_not_personal_and_never_credentials():
    body = {
        "external_id": "m-1",
        "widget_id": "w-1",  # palenca's
        "company_uid": "c-1",  # trust's
        "email": "ana@example.test",
        "access_token": "secret-token",  # validic's credential
        "detail": {"external_id": "m-1", "phone": "+52 55 1234 5678", "role": "user"},
    }

    masked = mask(body)

    assert masked == {
        "external_id": "m-1",
        "widget_id": "w-1",
        "company_uid": "c-1",
        "email": "***",
        "access_token": "***",
        "detail": {"external_id": "m-1", "phone": "***", "role": "user"},
    }
