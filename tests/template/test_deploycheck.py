"""The deploy rehearsal (``make deploy-check``): what is left out of moto's stack, how artifacts and
properties are compared, moto's fixes, and (slow) the whole rehearsal."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest
from moto import mock_aws

from provisioner_cli import deploycheck
from provisioner_cli.deploycheck import (
    Artifact,
    Described,
    artifact_problems,
    canonical,
    compare_properties,
    compare_with_local,
    for_moto,
    identity_tokens,
    packaged_artifacts,
    references,
)
from provisioner_cli.local import REGION

QUEUE = "AWS::SQS::Queue"
RULE = "AWS::Events::Rule"
BUS = "AWS::Events::EventBus"
TABLE = "AWS::DynamoDB::Table"


# ------------------------------------------------------------------------------ what is left out
def test_references_reads_ref_getatt_and_sub_but_not_sub_variables_or_literals():
    fragment = {
        "A": {"Ref": "Queue"},
        "B": {"Fn::GetAtt": ["Table", "Arn"]},
        "C": {"Fn::GetAtt": "Key.Arn"},
        "D": {"Fn::Sub": "arn:${AWS::Partition}:x:${Bus.Arn}/${!Literal}"},
        "E": {"Fn::Sub": ["${Var}/${Api}", {"Var": {"Ref": "Function"}}]},
        "F": [{"Fn::If": ["Cond", {"Ref": "Topic"}, "x"]}],
    }

    assert references(fragment) == {
        "Queue",
        "Table",
        "Key",
        "AWS::Partition",
        "Bus",
        "Function",
        "Api",
        "Topic",
    }


def _template() -> dict[str, Any]:
    return {
        "Resources": {
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Body": {}}},
            "Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {"RestApiId": {"Ref": "Api"}}},
            "Permission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {"SourceArn": {"Fn::Sub": ["${Id}/*", {"Id": {"Ref": "Api"}}]}},
            },
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "Properties": {"RestApiId": {"Ref": "Api"}},
            },
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmActions": [{"Ref": "Topic"}]}},
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
            "Queue": {"Type": QUEUE, "DependsOn": ["Alarm", "Topic"], "Properties": {}},
            "Lonely": {"Type": QUEUE, "DependsOn": "Alarm", "Properties": {}},
        },
        "Outputs": {
            "ApiUrl": {"Value": {"Fn::Sub": "https://${Api}.execute-api"}},
            "TopicArn": {"Value": {"Ref": "Topic"}},
        },
    }


def test_for_moto_leaves_out_what_moto_cannot_create_and_all_that_needs_it():
    modelled = {"AWS::ApiGateway::RestApi", "AWS::ApiGateway::Deployment", "AWS::Lambda::Permission"}
    modelled |= {"AWS::SNS::Topic", QUEUE}
    template = _template()
    before = json.dumps(template, sort_keys=True)

    kept, left = for_moto(template, has_model=lambda kind: kind in modelled)

    assert {item.logical_id: item.reason for item in left} == {
        "Alarm": "moto's CloudFormation has no model of this type",
        "Stage": "moto's CloudFormation has no model of this type",
        "Api": deploycheck.MOTO_CANNOT_CREATE["AWS::ApiGateway::RestApi"],
        "Deployment": "needs Api",
        "Permission": "needs Api",
    }
    assert set(kept["Resources"]) == {"Topic", "Queue", "Lonely"}
    # An ordering on a resource left out is dropped, not the resource that asked for it.
    assert kept["Resources"]["Queue"]["DependsOn"] == ["Topic"]
    assert "DependsOn" not in kept["Resources"]["Lonely"]
    assert set(kept["Outputs"]) == {"TopicArn"}
    assert json.dumps(template, sort_keys=True) == before  # the translated template is untouched


def test_for_moto_keeps_everything_moto_can_create():
    template = {"Resources": {"Queue": {"Type": QUEUE, "Properties": {}}}}

    kept, left = for_moto(template, has_model=lambda kind: True)

    assert kept == template
    assert left == []


def test_moto_has_model_knows_this_template_s_gaps():
    assert deploycheck.moto_has_model(QUEUE)
    assert deploycheck.moto_has_model("AWS::KMS::Key")
    assert not deploycheck.moto_has_model("AWS::CloudWatch::Alarm")
    assert not deploycheck.moto_has_model("AWS::SQS::QueuePolicy")


# ------------------------------------------------------------------------------------- artifacts
def test_packaged_artifacts_must_all_be_in_the_bucket():
    doc = {
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "s3://b/prefix/abc"}},
            "Layer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "s3://b/def"}},
            "Local": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "functions/x/"}},
            "Elsewhere": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "s3://other/k"}},
            "Queue": {"Type": QUEUE, "Properties": {}},
        }
    }

    found, problems = packaged_artifacts(doc, "b")

    assert found == [Artifact("Fn", "b", "prefix/abc"), Artifact("Layer", "b", "def")]
    assert len(problems) == 2
    assert any("Local" in problem and "left it local" in problem for problem in problems)
    assert any("Elsewhere" in problem and "bucket other" in problem for problem in problems)


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "x")
    return buffer.getvalue()


def test_an_artifact_must_hold_exactly_its_build_folder():
    artifact = Artifact("Fn", "b", "k")

    assert artifact_problems(artifact, _zip("app.py", "lib/a.py"), {"app.py", "lib/a.py"}) == []
    missing = artifact_problems(artifact, _zip("app.py"), {"app.py", "lib/a.py"})
    assert missing == ["Fn: not uploaded: lib/a.py"]
    extra = artifact_problems(artifact, _zip("app.py", "stale.py"), {"app.py"})
    assert extra == ["Fn: uploaded but not built: stale.py"]
    assert "not a zip" in artifact_problems(artifact, b"not a zip", {"app.py"})[0]
    assert "build folder is empty" in artifact_problems(artifact, _zip("app.py"), set())[0]


# ------------------------------------------------------------------------------------ properties
def test_canonical_compares_values_as_cloudformation_passes_them():
    assert canonical(180) == canonical("180")
    assert canonical(True) == canonical("true")
    assert canonical('{"a": [2, 1]}') == canonical({"a": [1, 2]})
    assert canonical([{"b": 1}, {"a": 1}]) == canonical([{"a": 1}, {"b": 1}])
    assert canonical({"a": 1}) != canonical({"a": 2})
    assert canonical(["x"]) != canonical(["x", "y"])


def test_compare_properties_reports_differences_gaps_and_what_it_cannot_see():
    expected = {
        "VisibilityTimeout": 180,
        "RedrivePolicy": {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 3},
        "KmsMasterKeyId": "key-1",
        "Tags": [{"Key": "a", "Value": "b"}],
        "Layers": ["arn:layer"],
    }
    actual = {
        "VisibilityTimeout": "180",
        "RedrivePolicy": '{"deadLetterTargetArn": "arn:other", "maxReceiveCount": 3}',
        "KmsMasterKeyId": "key-1",
        "Layers": [],
    }

    result = compare_properties("Q", QUEUE, expected, actual, {"Layers": "moto drops layers"})

    assert result.compared == ["KmsMasterKeyId", "RedrivePolicy", "VisibilityTimeout"]
    assert [name for name, _, _ in result.differ] == ["RedrivePolicy"]
    assert result.ignored == ["Layers"]
    assert result.unchecked == ["Tags"]
    assert result.now_applied == []


def test_a_gap_moto_has_closed_is_noticed():
    result = compare_properties(
        "F",
        "AWS::Lambda::Function",
        {"Layers": ["arn:l"]},
        {"Layers": ["arn:l"]},
        {"Layers": "moto drops layers"},
    )

    assert result.now_applied == ["Layers"]
    assert result.ignored == []


def test_first_difference_points_at_the_differing_part():
    expected = canonical({"Statement": [{"Action": "sqs:SendMessage", "Resource": "arn:a"}]})
    actual = canonical({"Statement": [{"Action": "sqs:SendMessage", "Resource": "arn:b"}]})

    assert deploycheck.first_difference(expected, actual) == (".Statement[0].Resource", "arn:a", "arn:b")


# ----------------------------------------------------------------------------- the local stack
KINDS = {"Dlq": QUEUE, "Queue": QUEUE, "Bus": BUS, "Rule": RULE, "Users": TABLE}


def _stack(prefix: str, *, dlq_of_queue: str = "Dlq", extra_target: bool = False) -> dict[str, Described]:
    def arn(name: str) -> str:
        return f"arn:aws:sqs:us-east-1:123456789012:{prefix}{name}"

    target: dict[str, Any] = {"Id": "Queue", "Arn": arn("Queue")}
    if extra_target:  # what only the deployed stack sets on a target
        target["DeadLetterConfig"] = {"Arn": arn("Dlq")}
    queue_attrs = {name: {"Arn": arn(name), "QueueName": f"{prefix}{name}"} for name in ("Dlq", "Queue")}
    return {
        "Dlq": Described({"VisibilityTimeout": "30"}, queue_attrs["Dlq"]),
        "Queue": Described(
            {
                "VisibilityTimeout": "180",
                "RedrivePolicy": {"deadLetterTargetArn": arn(dlq_of_queue), "maxReceiveCount": 3},
            },
            queue_attrs["Queue"],
        ),
        "Bus": Described({"Name": f"{prefix}signups"}, {"Name": f"{prefix}signups"}),
        "Rule": Described(
            {"EventBusName": f"{prefix}signups", "EventPattern": {"source": ["x"]}, "Targets": [target]}
        ),
        "Users": Described(
            {
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": prefix == "local-"},
            }
        ),
    }


def _refs(prefix: str) -> dict[str, str]:
    refs = {name: f"https://sqs/{prefix}{name}" for name in ("Dlq", "Queue")}
    return {**refs, "Bus": f"{prefix}signups", "Rule": f"{prefix}Rule", "Users": f"{prefix}users"}


def _compare(deployed: dict[str, Described], local: dict[str, Described]) -> list[str]:
    return compare_with_local(
        KINDS,
        deployed,
        identity_tokens(deployed, _refs("stack-"), KINDS),
        local,
        identity_tokens(local, _refs("local-"), KINDS),
    )


def test_the_local_stack_agrees_when_names_differ_but_point_at_the_same_resources():
    # Physical names differ; a rule target's extra settings and moto's missing TTL are not compared.
    assert _compare(_stack("stack-", extra_target=True), _stack("local-")) == []


def test_a_redrive_policy_pointing_elsewhere_is_a_difference():
    problems = _compare(_stack("stack-", dlq_of_queue="Queue"), _stack("local-"))

    assert len(problems) == 1
    assert problems[0].startswith("Queue.RedrivePolicy:")
    assert "<Dlq.Arn>" in problems[0]
    assert "<Queue.Arn>" in problems[0]


def test_a_resource_only_the_local_stack_has_is_a_difference():
    deployed = _stack("stack-")
    del deployed["Dlq"]

    problems = _compare(deployed, _stack("local-"))

    assert problems[0] == "Dlq: the local stack has it, moto's stack does not"


def test_identity_tokens_name_arns_urls_and_buses_but_not_plain_names():
    local = _stack("local-")
    tokens = identity_tokens(local, _refs("local-"), KINDS)

    assert tokens["arn:aws:sqs:us-east-1:123456789012:local-Dlq"] == "<Dlq.Arn>"
    assert tokens["https://sqs/local-Queue"] == "<Queue>"
    assert tokens["local-signups"] == "<Bus>"
    assert "local-Queue" not in tokens  # a queue's name may equal a target Id: left as it is


# ----------------------------------------------------------------------------------- moto fixed
@pytest.fixture
def fixed_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """fix_moto for this test only (monkeypatch restores moto's classes afterwards)."""
    from moto.events.models import EventBus
    from moto.iam.models import Role
    from moto.kms.models import Key

    monkeypatch.setattr(EventBus, "physical_resource_id", None, raising=False)
    monkeypatch.delattr(EventBus, "physical_resource_id")
    for model in (Key, Role):
        monkeypatch.setattr(
            model, "create_from_cloudformation_json", model.__dict__["create_from_cloudformation_json"]
        )
    import moto.s3.models as s3_models

    monkeypatch.setattr(s3_models, "cfn_to_api_encryption", s3_models.cfn_to_api_encryption)
    deploycheck.fix_moto()
    deploycheck.fix_moto()  # idempotent


def test_fixed_moto_creates_keys_roles_and_rules_on_a_bus_as_cloudformation_does(fixed_moto):
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    }
    key_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    template = {
        "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
        "Resources": {
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": key_policy}},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": trust,
                    "Policies": [
                        {
                            "PolicyName": "p",
                            "PolicyDocument": {
                                **policy,
                                "Statement": [
                                    *policy["Statement"],
                                    {"Fn::If": ["Never", policy["Statement"][0], {"Ref": "AWS::NoValue"}]},
                                ],
                            },
                        }
                    ],
                },
            },
            "Bus": {"Type": BUS, "Properties": {"Name": "signups"}},
            "Rule": {
                "Type": RULE,
                "Properties": {"EventBusName": {"Ref": "Bus"}, "EventPattern": {"source": ["x"]}},
            },
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketEncryption": BUCKET_KEY_ENCRYPTION}},
        },
    }
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        cloudformation.create_stack(
            StackName="s", TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_IAM"]
        )
        resources = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.list_stack_resources(StackName="s")["StackResourceSummaries"]
        }
        kms = boto3.client("kms", region_name=REGION)
        stored = kms.get_key_policy(KeyId=resources["Key"], PolicyName="default")["Policy"]
        assert json.loads(stored) == key_policy
        iam = boto3.client("iam", region_name=REGION)
        assert iam.get_role_policy(RoleName=resources["Role"], PolicyName="p")["PolicyDocument"] == policy
        assert resources["Bus"] == "signups"
        rules = boto3.client("events", region_name=REGION).list_rules(EventBusName="signups")["Rules"]
        assert [rule["Name"] for rule in rules] == [resources["Rule"]]
        encryption = boto3.client("s3", region_name=REGION).get_bucket_encryption(Bucket=resources["Bucket"])
        assert encryption["ServerSideEncryptionConfiguration"]["Rules"][0]["BucketKeyEnabled"] is True


BUCKET_KEY_ENCRYPTION = {
    "ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}
    ]
}


def _create(cloudformation: Any, name: str, resources: dict[str, Any]) -> dict[str, str]:
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": resources}))
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {summary["LogicalResourceId"]: summary["PhysicalResourceId"] for summary in summaries}


def test_moto_still_has_each_bug_the_rehearsal_fixes():
    """When a moto upgrade fixes one of them, this fails: drop that fix from MOTO_FIXES."""
    document = {"Version": "2012-10-17", "Statement": []}
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        bus = {"Type": BUS, "Properties": {"Name": "signups"}}
        rule = {
            "Type": RULE,
            "Properties": {"EventBusName": {"Ref": "Bus"}, "EventPattern": {"source": ["x"]}},
        }
        with pytest.raises(AttributeError):
            _create(cloudformation, "bus", {"Bus": bus, "Rule": rule})

        key = _create(
            cloudformation, "key", {"Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": document}}}
        )
        policy = boto3.client("kms", region_name=REGION).get_key_policy(
            KeyId=key["Key"], PolicyName="default"
        )
        assert not isinstance(policy["Policy"], str)

        properties = {
            "AssumeRolePolicyDocument": document,
            "Policies": [{"PolicyName": "p", "PolicyDocument": document}],
        }
        role = _create(cloudformation, "role", {"Role": {"Type": "AWS::IAM::Role", "Properties": properties}})
        stored = boto3.client("iam", region_name=REGION).get_role_policy(
            RoleName=role["Role"], PolicyName="p"
        )
        assert stored["PolicyDocument"] == str(document)  # Python's repr, not JSON

        optional = {
            "Fn::If": [
                "Never",
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
                {"Ref": "AWS::NoValue"},
            ]
        }
        properties["Policies"] = [
            {"PolicyName": "p", "PolicyDocument": {**document, "Statement": [optional]}}
        ]
        cloudformation.create_stack(
            StackName="novalue",
            TemplateBody=json.dumps(
                {
                    "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
                    "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": properties}},
                }
            ),
        )
        [summary] = cloudformation.list_stack_resources(StackName="novalue")["StackResourceSummaries"]
        stored = boto3.client("iam", region_name=REGION).get_role_policy(
            RoleName=summary["PhysicalResourceId"], PolicyName="p"
        )
        assert "'Statement': [None]" in stored["PolicyDocument"]  # AWS::NoValue kept as null

        bucket = _create(
            cloudformation,
            "bucket",
            {
                "Bucket": {
                    "Type": "AWS::S3::Bucket",
                    "Properties": {"BucketEncryption": BUCKET_KEY_ENCRYPTION},
                }
            },
        )
        encryption = boto3.client("s3", region_name=REGION).get_bucket_encryption(Bucket=bucket["Bucket"])
        assert not encryption["ServerSideEncryptionConfiguration"]["Rules"][0].get("BucketKeyEnabled")


def test_moto_s_own_cloudformation_still_has_no_lambda_alias():
    """When a moto upgrade models AWS::Lambda::Alias, this fails: drop the rehearsal's own model."""
    from moto.core.common_models import CloudFormationModel

    own = {
        m.cloudformation_type()
        for m in CloudFormationModel.__subclasses__()
        if m.__module__.startswith("moto.")
    }
    assert "AWS::Lambda::Version" in own
    assert "AWS::Lambda::Alias" not in own


def test_fixed_moto_creates_an_alias_that_mappings_and_permissions_invoke(fixed_moto):
    """Every trigger invokes a function's alias live: the rehearsal creates it (Ref: its ARN) and
    reads a mapping of it back as the alias, not as the version moto resolves it to."""
    assert deploycheck.moto_has_model("AWS::Lambda::Alias")
    with mock_aws():
        admin = boto3.client("iam", region_name=REGION)
        role = admin.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        code = {"ZipFile": "def handler(event, context):\n    return event\n"}
        resources = {
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Runtime": "python3.13", "Handler": "app.handler", "Role": role, "Code": code},
            },
            "Version": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Function"}}},
            "Alias": {
                "Type": "AWS::Lambda::Alias",
                "Properties": {
                    "Name": "live",
                    "FunctionName": {"Ref": "Function"},
                    "FunctionVersion": {"Fn::GetAtt": ["Version", "Version"]},
                },
            },
            "Mapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {"FunctionName": {"Ref": "Alias"}, "EventSourceArn": queue_arn},
            },
        }
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        created = _create(cloudformation, "alias", resources)
        assert created["Alias"].endswith(":live"), "Ref of an alias is its ARN"
        lambda_ = boto3.client("lambda", region_name=REGION)
        alias = lambda_.get_alias(FunctionName=created["Function"], Name="live")
        assert alias["AliasArn"] == created["Alias"]
        assert alias["FunctionVersion"] == "1"
        mapping = lambda_.get_event_source_mapping(UUID=created["Mapping"])
        assert mapping["FunctionArn"].endswith(":1"), "moto records the version, not the alias"
        described = deploycheck.describe_event_source_mapping(
            lambda service: boto3.client(service, region_name=REGION), created["Mapping"]
        )
        assert described.properties["FunctionName"] == created["Alias"]
