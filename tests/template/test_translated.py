"""The CloudFormation that SAM deploys (template.yaml through aws-sam-translator), not only the
template as written: the stages, queues and roles that really reach the account."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner_cli.iam import function_roles
from provisioner_cli.local import ACCOUNT, REGION, provider_parameter
from provisioner_cli.template import Resolver, Template
from provisioning.providers import PROVIDERS, ProviderInfo
from tests.conftest import ROOT

ROLE_MANAGED_POLICIES = {
    "AWSLambdaBasicExecutionRole",  # logs: the Lambda service writes the function's log lines
    "AWSXrayWriteOnlyAccess",  # Tracing: Active
}
QUEUE_POLLER = "AWSLambdaSQSQueueExecutionRole"  # added by SAM for an SQS event source
STREAM_POLLER = "AWSLambdaDynamoDBExecutionRole"  # added by SAM for a DynamoDB stream event source
# Beside the providers' create functions.
OTHER_FUNCTIONS = [
    "PalencaListUsersFunction",
    "PeopleFunction",
    "ApiDocsFunction",
    "SignupTriggerFunction",
    "SignupWebhookFunction",
    "OutcomeEventsFunction",
    "ImportFunction",
]
# A stack id whose last part reads as what it stands for (ImportBucket's name ends with it).
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/provisioner/00000000-0000-0000-0000-StackIdSuffix"
)
IMPORT_BUCKET = f"arn:aws:s3:::provisioner-imports-{ACCOUNT}-StackIdSuffix"


def _of_type(translated: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in translated["Resources"].items() if v["Type"] == kind}


def _names() -> Resolver:
    """Resolves references to readable names: Ref X -> X, GetAtt X.Arn -> X.Arn."""
    return Resolver(
        {},
        {},
        {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::StackId": STACK_ID},
    )


def test_one_stage_with_the_throttling_and_no_stray_stage(translated):
    stages = _of_type(translated, "AWS::ApiGateway::Stage")
    assert list(stages) == ["ApiStage"], "OpenApiVersion keeps SAM from adding a stage named Stage"
    properties = stages["ApiStage"]["Properties"]
    assert properties["StageName"] == {"Ref": "StageName"}
    throttling = [s for s in properties["MethodSettings"] if "ThrottlingRateLimit" in s]
    assert throttling
    assert throttling[0]["ThrottlingBurstLimit"] > 0
    assert properties["TracingEnabled"] is True
    assert not [
        s
        for s in _of_type(translated, "AWS::ApiGateway::Deployment").values()
        if "StageName" in s["Properties"]
    ], "a deployment with StageName creates another stage"


def test_every_queue_has_a_dead_letter_queue_or_is_one(translated):
    resources = translated["Resources"]
    queues = _of_type(translated, "AWS::SQS::Queue")
    dead_letter_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    for logical_id, queue in queues.items():
        if logical_id in dead_letter_targets or logical_id.endswith("DLQ"):
            others = json.dumps({k: v for k, v in resources.items() if k != logical_id})
            assert f'"{logical_id}"' in others, f"{logical_id} is used by nothing"
            assert queue["Properties"]["MessageRetentionPeriod"] == 1209600, f"{logical_id} keeps 14 days"
            continue
        redrive = queue["Properties"].get("RedrivePolicy")
        assert redrive, f"{logical_id} has no dead-letter queue"
        assert redrive["maxReceiveCount"] >= 3


def test_every_event_source_reads_a_queue_with_a_dead_letter_queue(translated):
    """A queue's failed records go to its DLQ (redrive policy); a stream's failed batches to the
    mapping's OnFailure destination, after bounded retries."""
    queues = _of_type(translated, "AWS::SQS::Queue")
    mappings = _of_type(translated, "AWS::Lambda::EventSourceMapping")
    assert mappings
    for mapping in mappings.values():
        properties = mapping["Properties"]
        source, attribute = properties["EventSourceArn"]["Fn::GetAtt"]
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        if attribute == "StreamArn":
            destination = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
            assert destination in queues, source
            assert 0 <= properties["MaximumRetryAttempts"] <= 100, source
            assert properties["BisectBatchOnFunctionError"] is True, source
            continue
        assert "RedrivePolicy" in queues[source]["Properties"], source


def test_every_function_runs_under_its_own_role(translated):
    functions = _of_type(translated, "AWS::Lambda::Function")
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(set(roles)) == len(roles), "no two functions share a role"
    for logical_id, function in functions.items():
        role = translated["Resources"][function["Properties"]["Role"]["Fn::GetAtt"][0]]
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": ["lambda.amazonaws.com"]}], logical_id
        assert "PermissionsBoundary" not in role["Properties"]


@pytest.mark.parametrize("function", [*(p.create.function for p in PROVIDERS), *OTHER_FUNCTIONS])
def test_each_role_grants_exactly_what_its_function_needs(translated, function):
    role = function_roles(translated, _names(), managed={})[function]
    managed = {name.rsplit("/", 1)[-1] for name in role.managed}
    pollers = {QUEUE_POLLER} if function in EXPECTED_QUEUE or function in OTHER_QUEUES else set()
    pollers |= {STREAM_POLLER} if function in STREAM_FUNCTIONS else set()
    assert managed == ROLE_MANAGED_POLICIES | pollers
    assert role.grants() == EXPECTED[function]


# What each function may do, by resource (Ref X -> X, GetAtt X.Arn -> X.Arn). The tests that invoke the
# functions prove every one of these is called (tests/integration/test_least_privilege.py).
USERS = {
    ("dynamodb:GetItem", "UsersTable.Arn"),
    ("dynamodb:PutItem", "UsersTable.Arn"),
    ("dynamodb:UpdateItem", "UsersTable.Arn"),
    ("dynamodb:Query", "UsersTable.Arn/index/ByProviderUserId"),
}
RATE_LIMIT = {("dynamodb:GetItem", "RateLimitTable.Arn"), ("dynamodb:UpdateItem", "RateLimitTable.Arn")}
ENCRYPTED_QUEUES = {
    ("kms:GenerateDataKey", "DataEncryptionKey.Arn"),
    ("kms:Decrypt", "DataEncryptionKey.Arn"),
}


def _secret(parameter: str) -> tuple[str, str]:
    return (
        "secretsmanager:GetSecretValue",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{parameter}-??????",
    )


def _create(info: ProviderInfo) -> set[tuple[str, str]]:
    """A provider's create function: its queue and DLQ, its secret, the users table and the queue
    key (not the idempotency table: a person's claim is on their item in the users table); the
    rate-limit table when it has a budget; the token key when it seals what the provider returns."""
    queue, dead_letter_queue = info.create.queue, info.create.dead_letter_queue
    secret = provider_parameter(Template(ROOT / "template.yaml"), info, info.secret_id_variable)
    grants = (
        USERS
        | ENCRYPTED_QUEUES
        | {
            ("sqs:SendMessage", f"{dead_letter_queue}.Arn"),
            ("sqs:SendMessage", f"{queue}.Arn"),
            ("sqs:ChangeMessageVisibility", f"{queue}.Arn"),
            _secret(secret),
        }
    )
    if info.budget is not None:
        grants |= RATE_LIMIT
    if info.create.load_spec().build_sealer is not None:
        grants |= {("kms:Encrypt", "TokenEncryptionKey.Arn")}
    return grants


EXPECTED_QUEUE = {p.create.function: p.create.queue for p in PROVIDERS}
OTHER_QUEUES = {"SignupTriggerFunction": "SignupFallbackQueue"}  # functions fed by a queue of their own
EXPECTED: dict[str, set[tuple[str, str]]] = {
    **{p.create.function: _create(p) for p in PROVIDERS},
    "PalencaListUsersFunction": {
        ("dynamodb:GetItem", "UsersTable.Arn"),
        ("dynamodb:PutItem", "UsersTable.Arn"),
        ("dynamodb:Query", "UsersTable.Arn/index/ByProviderUserId"),
        ("dynamodb:UpdateItem", "RateLimitTable.Arn"),
        _secret("PalencaSecretId"),
        ("sqs:SendMessage", "PalencaSyncDLQ.Arn"),  # EventInvokeConfig's OnFailure destination
    }
    | ENCRYPTED_QUEUES,
    # One person's items: one Query of their partition (never the index, never a write).
    "PeopleFunction": {("dynamodb:Query", "UsersTable.Arn")},
    "ApiDocsFunction": set(),
    # Publishes to the signup bus only (its ARN: the stack's own bus, or the one EventBusName names;
    # resolved here as if EventBusName were given); keeps what the bus did not take in its queues.
    "SignupTriggerFunction": {
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/EventBusName"),
        ("sqs:SendMessage", "SignupFallbackQueue.Arn"),
        ("sqs:SendMessage", "SignupFallbackDLQ.Arn"),
    }
    | ENCRYPTED_QUEUES,
    # provisioning/webhooks.py: the signing secrets, the replay records (claim, mark, release), the
    # bus (resolved here as if EventBusName were given, as for the trigger)
    "SignupWebhookFunction": {
        _secret("SignupWebhookSecretId"),
        ("dynamodb:PutItem", "IdempotencyTable.Arn"),
        ("dynamodb:UpdateItem", "IdempotencyTable.Arn"),
        ("dynamodb:DeleteItem", "IdempotencyTable.Arn"),
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/EventBusName"),
    },
    # Publishes to the hub's bus; Lambda reads the stream of the table encrypted with the hub key and
    # sends failed batches to the encrypted OutcomeEventsDLQ with its role (SAM grants the SendMessage).
    # With OutcomeEventsIncludeMarketplaceUrl also kms:Decrypt on TokenEncryptionKey (a condition).
    "OutcomeEventsFunction": {
        # The bus EventBusName names (the stack creates its own when it is empty: SignupEventBus.Arn).
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/EventBusName"),
        ("sqs:SendMessage", "OutcomeEventsDLQ.Arn"),
    }
    | ENCRYPTED_QUEUES,
    # Reads the files put under imports/ and writes their summaries beside them (its bucket is
    # encrypted with the hub key); queues their rows for every provider; Lambda sends a failed
    # import's event to the encrypted ImportDLQ with its role (SAM grants the SendMessage).
    "ImportFunction": {
        ("s3:GetObject", f"{IMPORT_BUCKET}/imports/*"),
        ("s3:PutObject", f"{IMPORT_BUCKET}/imports/*.summary.json"),
        *(("sqs:SendMessage", f"{p.create.queue}.Arn") for p in PROVIDERS),
        ("sqs:SendMessage", "ImportDLQ.Arn"),
    }
    | ENCRYPTED_QUEUES,
}
STREAM_FUNCTIONS = {"OutcomeEventsFunction"}


@pytest.mark.parametrize("function", ["SignupTriggerFunction", "SignupWebhookFunction"])
def test_the_signup_publishers_publish_to_the_bus_the_stack_uses(translated, function):
    raw = translated["Resources"][f"{function}Role"]["Properties"]["Policies"]
    (publish,) = [
        s for p in raw for s in p["PolicyDocument"]["Statement"] if s.get("Sid") == "PublishSignups"
    ]
    condition, created, given = publish["Resource"]["Fn::If"]
    assert condition == "CreateEventBus"
    assert created == {"Fn::GetAtt": ["SignupEventBus", "Arn"]}
    assert "event-bus/${EventBusName}" in given["Fn::Sub"]


@pytest.mark.parametrize(
    ("permission_id", "function"),
    [
        ("SignupUserPoolAliasPermission", {"Ref": "SignupTriggerFunctionAliaslive"}),  # the output's
        ("SignupUserPoolPermission", {"Fn::GetAtt": ["SignupTriggerFunction", "Arn"]}),  # attached before
    ],
)
def test_a_user_pool_may_invoke_the_signup_trigger_only_when_given(translated, permission_id, function):
    permission = translated["Resources"][permission_id]
    assert permission["Condition"] == "HasSignupUserPool"
    properties = permission["Properties"]
    assert properties["Principal"] == "cognito-idp.amazonaws.com"
    assert properties["SourceArn"] == {"Ref": "SignupUserPoolArn"}
    assert properties["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert properties["FunctionName"] == function
    output = translated["Outputs"]["SignupTriggerFunctionArn"]["Value"]
    assert output == {"Ref": "SignupTriggerFunctionAliaslive"}, "the ARN to attach is the alias's"


def _functions(translated: dict[str, Any]) -> list[str]:
    return list(_of_type(translated, "AWS::Lambda::Function"))


def test_every_function_publishes_the_alias_live_with_snapstart_only_when_enabled(translated):
    """EnableSnapStart turns SnapStart on for the published versions; the alias exists either way
    (SAM's AutoPublishAlias takes no condition), and the version's description names the setting
    so that switching it publishes a new version, and so a new snapshot."""
    resources = translated["Resources"]
    functions = _functions(translated)
    assert len(functions) >= 11
    for name in functions:
        alias = resources[f"{name}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        assert alias["Properties"]["FunctionName"] == {"Ref": name}
        version_id = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        version = resources[version_id]
        assert version["Type"] == "AWS::Lambda::Version"
        assert version["DeletionPolicy"] == "Delete", f"{name}: a replaced version's snapshot stays cached"
        assert version["Properties"]["Description"] == {
            "Fn::If": ["SnapStartEnabled", "SnapStart on", "SnapStart off"]
        }, f"{name}: switching SnapStart must publish a new version"
        snapstart = resources[name]["Properties"]["SnapStart"]
        assert snapstart == {"ApplyOn": {"Fn::If": ["SnapStartEnabled", "PublishedVersions", "None"]}}
    assert translated["Conditions"]["SnapStartEnabled"] == {
        "Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]
    }


def test_every_trigger_invokes_the_alias_never_the_unpublished_function(translated):
    """SnapStart restores published versions only: an event source mapping, an API integration,
    a rule target or a permission on $LATEST would never use the snapshot."""
    resources = translated["Resources"]
    functions = set(_functions(translated))
    aliases = {f"{name}Aliaslive" for name in functions}
    # A pool attached to the function before the alias existed keeps its permission (docs/signups.md).
    before_the_alias = {"SignupUserPoolPermission"}
    checked = 0
    for logical_id, resource in resources.items():
        if logical_id in before_the_alias:
            continue
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind in ("AWS::Lambda::EventSourceMapping", "AWS::Lambda::Permission"):
            target = properties["FunctionName"]
        elif kind == "AWS::Events::Rule":
            lambdas = [t for t in properties["Targets"] if "Fn::GetAtt" in t["Arn"] or "Ref" in t["Arn"]]
            lambdas = [
                t
                for t in lambdas
                if (t["Arn"].get("Ref") or t["Arn"].get("Fn::GetAtt", [""])[0]) in functions | aliases
            ]
            if not lambdas:
                continue
            (target,) = [t["Arn"] for t in lambdas]
        elif kind == "AWS::Lambda::EventInvokeConfig":
            assert properties["Qualifier"] == "live", logical_id
            checked += 1
            continue
        else:
            continue
        assert target in [{"Ref": a} for a in aliases], f"{logical_id} targets {target}, not an alias"
        checked += 1
    uris = json.dumps([r for r in resources.values() if r["Type"] == "AWS::ApiGateway::RestApi"])
    for name in functions:
        assert f"${{{name}.Arn}}/invocations" not in uris, f"the API invokes {name}'s $LATEST"
    assert "Alias" in uris
    assert checked >= 15


def test_key_policies_grant_services_only_on_behalf_of_this_account(translated):
    """No confused deputy: a service may use the hub's keys only for this account's resources."""
    for logical_id, key in _of_type(translated, "AWS::KMS::Key").items():
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            service = statement["Principal"].get("Service")
            if not service:
                continue
            condition = statement.get("Condition", {})
            assert condition, f"{logical_id}/{statement['Sid']}: no condition"
            if service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
                assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
                assert "aws:SourceArn" in condition["ArnLike"], f"{logical_id}/{statement['Sid']}"


def test_outcome_events_may_decrypt_the_marketplace_url_only_when_the_stack_enables_it(translated):
    for include in (False, True):
        names = Resolver(
            {},
            {},
            {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::StackId": STACK_ID,
            },
            {"CreateEventBus": True, "IncludeMarketplaceUrl": include},
        )
        grants = function_roles(translated, names, managed={})["OutcomeEventsFunction"].grants()
        assert ("events:PutEvents", "SignupEventBus.Arn") in grants
        assert (("kms:Decrypt", "TokenEncryptionKey.Arn") in grants) is include
