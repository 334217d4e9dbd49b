"""Every function runs under its own role, built from the template as SAM deploys it, and moto
enforces it: a call the template does not grant is denied, in every test that invokes a function."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import settings

from provisioner_cli.iam import CALLS, iam_wildcard
from provisioner_cli.local import REGION
from tests.conftest import api_event, response_json

ROUTE = "/palenca/users"
TEST_SESSION = "iam-test"


def _as(admin_session, function: str) -> boto3.Session:
    """The function's role, assumed under a session name of its own: these calls are the test's,
    not the function's (the least-privilege check counts only what functions call)."""
    sts, iam = admin_session.client("sts"), admin_session.client("iam")
    arn = iam.get_role(RoleName=f"{function}Role")["Role"]["Arn"]
    # moto cannot evaluate a trust policy that names a service principal (it fails on the missing
    # "AWS" key): assume the role as the local stack does when it creates it, before checks apply.
    previous, settings.INITIAL_NO_AUTH_ACTION_COUNT = settings.INITIAL_NO_AUTH_ACTION_COUNT, float("inf")
    try:
        answer = sts.assume_role(RoleArn=arn, RoleSessionName=TEST_SESSION)["Credentials"]
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=answer["AccessKeyId"],
        aws_secret_access_key=answer["SecretAccessKey"],
        aws_session_token=answer["SessionToken"],
    )


def _denied(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    return False


def test_a_role_allows_what_its_statements_grant_on_their_own_resources_only(stack, admin_session):
    palenca = _as(admin_session, "PalencaCreateUserFunction")
    dynamodb, secrets = palenca.client("dynamodb"), palenca.client("secretsmanager")
    key = {"external_id": {"S": "x"}, "provider": {"S": "palenca"}}

    dynamodb.get_item(TableName=stack.refs["UsersTable"], Key=key)  # granted on that table
    secrets.get_secret_value(SecretId=stack.parameters["PalencaSecretId"])  # "<name>-??????" matches

    assert _denied(lambda: secrets.get_secret_value(SecretId=stack.parameters["TrustSecretId"]))
    assert _denied(lambda: dynamodb.delete_table(TableName=stack.refs["UsersTable"]))
    assert _denied(
        lambda: palenca.client("sqs").send_message(
            QueueUrl=stack.refs["TrustCreateUserQueue"], MessageBody="{}"
        )
    )
    # The API docs function has no data access at all.
    assert _denied(
        lambda: (
            _as(admin_session, "ApiDocsFunction")
            .client("dynamodb")
            .get_item(TableName=stack.refs["UsersTable"], Key=key)
        )
    )


def test_removing_one_statement_denies_the_call_it_granted(load_function, stack, aws):
    """The check cannot silently stop checking: without the grant of the provider secret, the
    function cannot read it; with it back, it can."""
    invoke = load_function("PalencaCreateUserFunction")
    iam = aws("iam")
    role = "PalencaCreateUserFunctionRole"
    name, document = next(
        (name, iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        if "secretsmanager:GetSecretValue" in json.dumps(iam.get_role_policy(RoleName=role, PolicyName=name))
    )
    iam.delete_role_policy(RoleName=role, PolicyName=name)

    with CALLS.denials_expected():
        denied = invoke(api_event(ROUTE, {"external_id": "iam-1"}))

    assert denied["statusCode"] == 500
    assert response_json(denied)["error"]["code"] == "configuration_error"

    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    allowed = load_function("PalencaCreateUserFunction")(api_event(ROUTE, {"external_id": "iam-1"}))
    assert allowed["statusCode"] == 201


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (
            "arn:aws:secretsmanager:r:1:secret:provisioner/palenca-??????",
            "arn:aws:secretsmanager:r:1:secret:provisioner/palenca-AbC123",
            True,
        ),
        (
            "arn:aws:secretsmanager:r:1:secret:provisioner/palenca-??????",
            "arn:aws:secretsmanager:r:1:secret:provisioner/palenca-AbC12",
            False,
        ),
        (
            "arn:aws:dynamodb:r:1:table/Users/index/*",
            "arn:aws:dynamodb:r:1:table/Users/index/ByProviderUserId",
            True,
        ),
        ("arn:aws:dynamodb:r:1:table/Users", "arn:aws:dynamodb:r:1:table/UsersXtable", False),
        ("arn:aws:sqs:r:1:a.b", "arn:aws:sqs:r:1:aXb", False),  # a dot is a dot
        ("sqs:SendMessage*", "sqs:SendMessageBatch", True),
    ],
)
def test_iam_wildcards(pattern, value, matches):
    assert iam_wildcard(pattern, value) is matches


def test_the_people_function_may_query_a_persons_items_and_nothing_else(stack, admin_session):
    """GET /people/{external_id} reads one partition of the users table: no item reads or writes,
    no index, no other table."""
    people = _as(admin_session, "PeopleFunction").client("dynamodb")
    table = stack.refs["UsersTable"]
    key = {"external_id": {"S": "x"}, "provider": {"S": "palenca"}}

    people.query(
        TableName=table,
        KeyConditionExpression="external_id = :e",
        ExpressionAttributeValues={":e": {"S": "x"}},
    )

    assert _denied(lambda: people.get_item(TableName=table, Key=key))
    assert _denied(lambda: people.put_item(TableName=table, Item={**key, "status": {"S": "linked"}}))
    assert _denied(lambda: people.scan(TableName=table))
    assert _denied(
        lambda: people.query(
            TableName=table,
            IndexName="ByProviderUserId",
            KeyConditionExpression="provider_user_id = :u",
            ExpressionAttributeValues={":u": {"S": "x"}},
        )
    )
    assert _denied(lambda: people.get_item(TableName=stack.refs["IdempotencyTable"], Key={"id": {"S": "x"}}))
