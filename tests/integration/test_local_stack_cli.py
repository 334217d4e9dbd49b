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


def test_local_env_resolves_the_function_environment(in_project):
    result = _run("local", "env", "PalencaCreateUserFunction", "--template", str(ROOT / "template.yaml"))
    env = json.loads(result.stdout)
    assert env["USERS_TABLE"] == "UsersTable"
    assert env["PALENCA_BASE_URL"].endswith("/palenca")
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
