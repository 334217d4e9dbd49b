"""The Docker-free tooling: a local stack built from template.yaml, ``provisioner invoke`` running a
handler in a fresh process against it, and ``provisioner links``."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from provisioner_cli.iam import CALLS
from provisioner_cli.local import REGION, STATE_FILE, LocalStack, aws_client
from provisioner_cli.main import cli
from tests.conftest import EVENTS, ROOT


@pytest.fixture(scope="module")
def local_stack(template):
    stack = LocalStack(template)
    state = stack.start()
    yield stack, state
    stack.stop()


@pytest.fixture
def in_project(tmp_path, monkeypatch, local_stack):
    monkeypatch.chdir(tmp_path)
    local_stack[1].save(STATE_FILE)
    return local_stack


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_local_stack_creates_what_the_template_declares(local_stack):
    _, state = local_stack
    for logical_id in ("UsersTable", "IdempotencyTable", "PalencaCreateUserQueue", "PalencaCreateUserDLQ"):
        assert logical_id in state.refs
    assert state.parameters["PalencaBaseUrl"] == f"{state.sandbox_url}/palenca"
    assert state.aws_endpoint.startswith("http://127.0.0.1:")


def test_local_stack_runs_each_function_under_its_own_enforced_role(local_stack):
    _, state = local_stack
    credentials = {
        key.lower(): value for key, value in state.credentials["PalencaCreateUserFunction"].items()
    }
    secrets = boto3.client(
        "secretsmanager", endpoint_url=state.aws_endpoint, region_name=REGION, **credentials
    )

    secrets.get_secret_value(SecretId=state.parameters["PalencaSecretId"])
    with CALLS.denials_expected(), pytest.raises(ClientError) as denied:
        secrets.get_secret_value(SecretId=state.parameters["TrustSecretId"])

    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    tooling = aws_client(state, "secretsmanager")  # the tooling is the account's administrator
    assert tooling.get_secret_value(SecretId=state.parameters["TrustSecretId"])["SecretString"]


def test_invoke_runs_the_api_event_against_the_local_stack(in_project):
    template = str(ROOT / "template.yaml")
    event = str(EVENTS / "palenca_create_user" / "api.json")

    first = _run("invoke", "PalencaCreateUserFunction", "--event", event, "--template", template)
    second = _run("invoke", "PalencaCreateUserFunction", "--event", event, "--template", template)

    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["statusCode"] in (200, 201)
    assert json.loads(second.stdout)["statusCode"] == 200
    listed = _run("links", "u-1")
    assert "palenca" in listed.stdout
    assert json.loads(json.loads(second.stdout)["body"])["provider_user_id"] in listed.stdout


def test_invoke_runs_the_ready_sqs_event(in_project):
    result = _run(
        "invoke",
        "PalencaCreateUserFunction",
        "--event",
        str(EVENTS / "palenca_create_user" / "sqs.json"),
        "--template",
        str(ROOT / "template.yaml"),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"batchItemFailures": []}


def test_invoke_names_an_unknown_function(in_project):
    result = CliRunner().invoke(
        cli,
        [
            "invoke",
            "NopeFunction",
            "--event",
            str(EVENTS / "palenca_create_user" / "api.json"),
            "--template",
            str(ROOT / "template.yaml"),
        ],
    )
    assert result.exit_code != 0
    assert "NopeFunction" in result.output


def test_webhook_send_delivers_a_signed_clerk_signup_to_the_local_stack(in_project):
    _, state = in_project
    template = str(ROOT / "template.yaml")
    args = ["webhook", "send", "--clerk", "--external-id", "user_2cliSignup", "--providers", "palenca"]

    first = _run(*args, "--webhook-id", "msg_cli_1", "--template", template)
    replay = _run(*args, "--webhook-id", "msg_cli_1", "--template", template)

    assert first.exit_code == 0, first.output
    status, body = first.stdout.strip().split(" ", 1)
    assert (status, json.loads(body)["external_id"], json.loads(body)["published"]) == (
        "202",
        "user_2cliSignup",
        True,
    )
    assert replay.stdout.startswith("200 ")
    assert json.loads(replay.stdout[4:])["duplicate"] is True
    sqs = aws_client(state, "sqs")  # the signup rule routed the one event to Palenca's queue
    queued = sqs.receive_message(QueueUrl=state.refs["PalencaCreateUserQueue"], MaxNumberOfMessages=10)
    people = [json.loads(m["Body"])["detail"]["external_id"] for m in queued.get("Messages", [])]
    assert people.count("user_2cliSignup") == 1
    assert sqs.receive_message(QueueUrl=state.refs["TrustCreateUserQueue"]).get("Messages", []) == []


def test_a_signed_clerk_delivery_for_the_demo_is_published(local_stack, template):
    from provisioner_cli.webhook import send_signed_clerk_delivery

    _, state = local_stack
    answer = send_signed_clerk_delivery(template, state, external_id="user_2demoSignup", providers=["palm"])

    assert answer["statusCode"] == 202, answer
    assert json.loads(answer["body"])["external_id"] == "user_2demoSignup"
    sqs = aws_client(state, "sqs")
    queued = sqs.receive_message(QueueUrl=state.refs["PalmCreateUserQueue"], MaxNumberOfMessages=10)
    assert [json.loads(m["Body"])["detail"]["external_id"] for m in queued.get("Messages", [])] == [
        "user_2demoSignup"
    ]


def test_webhook_send_posts_a_delivery_the_library_verifies_to_a_url():
    from standardwebhooks import Webhook

    from provisioner_cli.local import new_webhook_secret
    from tests.support import Recorded, recorded_server

    secret = new_webhook_secret()
    with recorded_server([Recorded(202, {"published": True})]) as (url, seen):
        result = _run(
            "webhook",
            "send",
            "--url",
            f"{url}/v1/signups/webhook",
            "--secret",
            secret,
            "--external-id",
            "u-url-1",
        )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("202 ")
    (request,) = seen
    assert request.path == "/v1/signups/webhook"
    assert set(request.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
    # The recorder keeps the parsed body; the command sent json.dumps of it, the same bytes again.
    Webhook(secret).verify(json.dumps(request.body), request.headers)
    assert request.body["data"]["external_id"] == "u-url-1"


def test_local_env_resolves_the_function_environment(in_project):
    result = _run("local", "env", "PalencaCreateUserFunction", "--template", str(ROOT / "template.yaml"))
    env = json.loads(result.stdout)
    assert env["USERS_TABLE"] == "UsersTable"
    assert env["PALENCA_BASE_URL"].endswith("/palenca")
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_sync_runs_the_palenca_sync_on_the_local_stack_with_the_schedules_payload(in_project):
    from datetime import UTC, datetime, timedelta

    stack, _ = in_project
    palenca = stack.sandbox.emulators["palenca"]
    palenca.seed_user("sync-recent")
    palenca.seed_user("sync-old", created_at=datetime.now(UTC) - timedelta(days=40))
    today = datetime.now(UTC).date()
    since, until = (today - timedelta(days=45)).isoformat(), (today - timedelta(days=30)).isoformat()
    template = str(ROOT / "template.yaml")

    window = _run("sync", "--since", since, "--until", until, "--template", template)
    assert window.exit_code == 0, window.output
    summary = json.loads(window.stdout)
    assert (summary["start_date"], summary["end_date"], summary["created"]) == (until, since, 1)
    assert "sync-old" in _run("links", "sync-old").stdout
    assert "no links" in _run("links", "sync-recent").stdout

    default = _run("sync", "--template", template)
    assert default.exit_code == 0, default.output
    summary = json.loads(default.stdout)
    assert summary["end_date"] == (today - timedelta(days=7)).isoformat()
    assert "sync-recent" in _run("links", "sync-recent").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-02-10", "--until", "2026-02-01"], "--until: must not be before since"),
        (["--days", "0"], "--days: Input should be greater than or equal to 1"),
        (["--days", "7", "--since", "2026-02-01"], "--since: must not be given with days"),
        (["--since", "2026-02-30"], "'2026-02-30' does not match the format"),
    ],
)
def test_sync_refuses_a_window_the_function_would_refuse_before_running_it(in_project, args, message):
    result = CliRunner().invoke(cli, ["sync", *args, "--template", str(ROOT / "template.yaml")])

    assert result.exit_code == 2, result.output
    assert message in result.output


def test_env_json_runs_the_functions_against_the_local_stack(local_stack, template):
    """env.json's variables, generated for this stack's addresses (env.json itself has the ports
    `provisioner local up` uses, seen from a container), are all a function needs: with them and the
    function's own credentials (`provisioner local env` prints them; `sam local` passes the shell's),
    its AWS calls (DynamoDB, Secrets Manager, KMS by alias, SQS) and provider calls reach the local
    stack, under its enforced role."""
    from provisioner_cli.invoke import invoke_function
    from provisioner_cli.local import REGION, aws_client, sam_local_env

    _, state = local_stack
    env = sam_local_env(template, aws_endpoint=state.aws_endpoint, sandbox_url=state.sandbox_url)
    region = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
    event = json.loads((EVENTS / "validic_provision_user" / "api.json").read_text())
    body = json.loads(event["body"])
    body["external_id"] = "env-json-1"
    event["body"] = json.dumps(body)

    validic = invoke_function(
        template,
        state,
        "ValidicProvisionUserFunction",
        event,
        {
            **region,
            **state.credentials["ValidicProvisionUserFunction"],
            **env["ValidicProvisionUserFunction"],
        },
    )
    assert validic.ok, validic.logs
    assert validic.result["statusCode"] == 201, validic.result
    sync = invoke_function(
        template,
        state,
        "PalencaListUsersFunction",
        {"sync": {}},
        {**region, **state.credentials["PalencaListUsersFunction"], **env["PalencaListUsersFunction"]},
    )
    assert sync.ok, sync.logs
    assert sync.result["complete"]

    item = aws_client(state, "dynamodb").get_item(
        TableName=state.refs["UsersTable"],
        Key={"external_id": {"S": "env-json-1"}, "provider": {"S": "validic"}},
    )["Item"]
    assert item["status"]["S"] == "linked"
    key = env["ValidicProvisionUserFunction"]["TOKEN_KMS_KEY_ID"]
    assert (
        aws_client(state, "kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"]
        == state.attrs["TokenEncryptionKey.Arn"]
    )


def test_import_in_cloud_runs_the_import_function_under_its_role_on_the_local_stack(in_project, tmp_path):
    """The local stack has no S3 notifications: the command invokes ImportFunction in a fresh process
    with S3's put event, as its own enforced role (GetObject twice, SendMessageBatch, PutObject of the
    summary, over HTTP to moto's server)."""
    _, state = in_project
    people = tmp_path / "people.jsonl"
    people.write_text(
        "".join(
            json.dumps(
                {
                    "external_id": f"cloud-{n}",
                    "email": f"cloud{n}@example.test",
                    "first_name": "Eva",
                    "last_name": f"Luna{n}",
                    "phone": f"+52177{n:08d}",
                    "date_of_birth": "1991-05-06",
                    "country": "MX",
                }
            )
            + "\n"
            for n in range(1, 16)
        )
    )

    result = _run("import", str(people), "--provider", "palm", "--in-cloud", "--local")

    assert result.exit_code == 0, result.output
    assert "15 rows read, 15 valid, 0 invalid" in result.output
    assert "palm     sent      15 in 2 SendMessageBatch calls" in result.output
    s3 = aws_client(state, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=state.refs["ImportBucket"])["Contents"]]
    assert any(key.endswith("-people.jsonl.summary.json") for key in keys), keys
    calls = {action for action, _ in CALLS.calls.get("ImportFunction", set())}
    assert {"s3:GetObject", "s3:PutObject", "sqs:SendMessage"} <= calls
