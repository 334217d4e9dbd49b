"""``provisioner deploy-check``: a deploy rehearsal on this machine, with moto's server as the account.

1. ``sam build`` (as ``make build``, into ``.deploy-check/build``), then ``sam package`` to a bucket of
   moto's S3. The SAM CLI reaches moto through ``AWS_ENDPOINT_URL``, which its botocore honours for
   every client it creates. Every CodeUri/ContentUri of the packaged template must name an object of
   that bucket holding exactly the files of its build folder.
2. cfn-lint on the packaged template.
3. The packaged template, translated by aws-sam-translator (moto's CloudFormation does not run the
   SAM transform), created through moto's CloudFormation. Resources moto cannot create are left out
   of moto's copy, with every resource that needs them, and reported. Every other resource must be
   created, with each property the template gives it equal to what moto's APIs show, except the
   properties moto's CloudFormation is known not to apply (reported, not compared). The tables,
   queues, keys, event bus and rules that the local stack also creates must agree with its own.

Nothing here reaches AWS: every AWS call, the SAM CLI's included, goes to moto on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from provisioner_cli.iam import translate
from provisioner_cli.local import ACCOUNT, FAKE_CREDENTIALS, REGION, provision_resources
from provisioner_cli.template import Resolver, Template, evaluate_conditions, load_template

ROOT = Path(__file__).resolve().parents[1]
SAM_BIN = ROOT / ".venv-sam" / "bin"
OUTPUT = Path(".deploy-check")
BUCKET = "provisioner-deploy-check"
STACK_NAME = "provisioner-deploy-check"


class DeployCheckFailed(Exception):
    """A step of the rehearsal could not run at all (the rest of the report is then meaningless)."""


# ----------------------------------------------------------------------------------- SAM CLI, cfn-lint
def aws_environment(endpoint: str, scratch: Path) -> dict[str, str]:
    """The environment of a tool that must talk to moto only: fake credentials, moto's endpoint for
    every service, and no profile or shared config of this machine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    env["AWS_ENDPOINT_URL"] = endpoint
    env["AWS_CONFIG_FILE"] = str(scratch / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "no-aws-credentials")
    env["SAM_CLI_TELEMETRY"] = "0"
    env["PATH"] = f"{SAM_BIN}{os.pathsep}{env.get('PATH', '')}"  # sam build uses .venv-sam's python3.13
    return env


def run_tool(args: list[str], env: dict[str, str], what: str, cwd: Path = ROOT, timeout: int = 600) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise DeployCheckFailed(f"{what} failed (exit {result.returncode}):\n{output[-4000:]}")
    return output


def sam_build(template: Path, out: Path, env: dict[str, str]) -> Path:
    """``sam build`` as ``make build`` runs it (samconfig.toml's build parameters apply: cached,
    parallel), into ``out``. Run from ``out``: a cached build keeps the layer's dependencies in
    .aws-sam/deps of its working folder, and builds elsewhere (make build, the build test) would evict
    them; kept here, a build with unchanged requirements needs no package index."""
    command = [str(SAM_BIN / "sam"), "build", "--template-file", str(template)]
    command += ["--build-dir", str(out / "build"), "--cache-dir", str(out / "cache")]
    run_tool(command, env, "sam build", cwd=out)
    return out / "build" / "template.yaml"


def sam_package(built: Path, packaged: Path, env: dict[str, str]) -> None:
    command = [str(SAM_BIN / "sam"), "package", "--template-file", str(built), "--region", REGION]
    command += ["--s3-bucket", BUCKET, "--s3-prefix", STACK_NAME, "--output-template-file", str(packaged)]
    run_tool([*command, "--no-progressbar"], env, "sam package")


def cfn_lint(packaged: Path, env: dict[str, str]) -> None:
    """cfn-lint on the packaged template, no rule ignored: any error, warning or informational
    finding fails (its exit status is then non-zero)."""
    run_tool([str(SAM_BIN / "cfn-lint"), "--", str(packaged)], env, "cfn-lint")


# ------------------------------------------------------------------------------------------ artifacts
# Properties `sam package` turns into s3://bucket/key URIs.
PACKAGED_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


@dataclass(frozen=True)
class Artifact:
    logical_id: str
    bucket: str
    key: str


def packaged_artifacts(doc: Mapping[str, Any], bucket: str) -> tuple[list[Artifact], list[str]]:
    """Every code artifact the packaged template points at, and what is wrong with the others."""
    found: list[Artifact] = []
    problems: list[str] = []
    for logical_id, resource in sorted(doc.get("Resources", {}).items()):
        prop = PACKAGED_PROPERTIES.get(resource.get("Type", ""))
        if prop is None:
            continue
        uri = (resource.get("Properties") or {}).get(prop)
        match = re.fullmatch(r"s3://([^/]+)/(.+)", uri) if isinstance(uri, str) else None
        if match is None:
            problems.append(f"{logical_id}: {prop} is {uri!r}, not an s3:// URI: sam package left it local")
        elif match.group(1) != bucket:
            problems.append(f"{logical_id}: {prop} is in bucket {match.group(1)}, not {bucket}")
        else:
            found.append(Artifact(logical_id, match.group(1), match.group(2)))
    return found, problems


def build_files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def artifact_problems(artifact: Artifact, archive: bytes, built: set[str]) -> list[str]:
    """An uploaded artifact must be a zip holding exactly the files of its build folder."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            names = {name for name in zipped.namelist() if not name.endswith("/")}
    except zipfile.BadZipFile:
        return [f"{artifact.logical_id}: s3://{artifact.bucket}/{artifact.key} is not a zip archive"]
    problems = []
    if not built:
        problems.append(f"{artifact.logical_id}: its build folder is empty or missing")
    if missing := sorted(built - names):
        problems.append(f"{artifact.logical_id}: not uploaded: {', '.join(missing[:5])}")
    if extra := sorted(names - built):
        problems.append(f"{artifact.logical_id}: uploaded but not built: {', '.join(extra[:5])}")
    return problems


def sha256_b64(data: bytes) -> str:
    """Lambda's CodeSha256 of a zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# ------------------------------------------------------------------------ what moto's CloudFormation does
# Resource types moto's CloudFormation has a model for but cannot create from this template.
MOTO_CANNOT_CREATE: dict[str, str] = {
    "AWS::ApiGateway::RestApi": (
        "moto requires Name and ignores Body, where SAM puts the whole API (routes, IAM auth) as "
        "Swagger 2.0, which moto's ImportRestApi (OpenAPI 3 only) refuses too"
    ),
}

# Properties moto's CloudFormation accepts but does not apply (or its APIs do not show): reported,
# not compared. Found by this rehearsal against moto 5.2.5; a change of moto shows as a mismatch.
MOTO_IGNORES: dict[str, dict[str, str]] = {
    "AWS::DynamoDB::Table": {
        "SSESpecification": "kept under CloudFormation's SSEEnabled name: DescribeTable shows no encryption",
        "TimeToLiveSpecification": "not applied (DescribeTimeToLive: DISABLED)",
        "PointInTimeRecoverySpecification": "not applied",
    },
    "AWS::Lambda::Function": {
        "Layers": "the function is created without its layers",
        "Architectures": "always x86_64",
        "TracingConfig": "always PassThrough",
        "Tags": "not applied",
    },
    "AWS::IAM::Role": {
        "ManagedPolicyArns": "not attached (moto loads no AWS managed policies)",
    },
    "AWS::Logs::LogGroup": {"KmsKeyId": "not applied"},
    "AWS::Lambda::LayerVersion": {"LayerName": "moto names the layer <stack>-<logical id>-<suffix>"},
}

# moto's CloudFormation fixed for the rehearsal (in this process only), each as CloudFormation does it.
MOTO_FIXES = [
    "Ref of an AWS::Events::EventBus gives its name (moto gave the bus object, which broke every rule on it)",
    "an AWS::KMS::Key's KeyPolicy is stored as JSON text (moto stored the object: every KMS call on the key "
    "failed)",
    "an AWS::IAM::Role's inline policy documents are stored as JSON text (moto stored Python's repr of them)",
    "an AWS::NoValue item of a role's policy statements is left out (moto kept it as null)",
    "AWS::Lambda::Alias is created through moto's Lambda API (its CloudFormation had no model of it), and "
    "Fn::GetAtt of an AWS::Lambda::Version gives its Version number (moto had none)",
    "an AWS::S3::Bucket's BucketEncryption keeps its BucketKeyEnabled (moto dropped it)",
]


def moto_has_model(resource_type: str) -> bool:
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return resource_type not in NULL_MODELS and resource_type in get_model_map()


def _as_json(document: Any) -> Any:
    return document if isinstance(document, str) else json.dumps(document)


def _key_policy_as_text(properties: dict[str, Any]) -> dict[str, Any]:
    if "KeyPolicy" not in properties:
        return properties
    return {**properties, "KeyPolicy": _as_json(properties["KeyPolicy"])}


def _without_nulls(node: Any) -> Any:
    """``node`` without the null items of its lists (what moto's Fn::If leaves for AWS::NoValue)."""
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_nulls(item) for item in node if item is not None]
    return node


def _role_policies_as_text(properties: dict[str, Any]) -> dict[str, Any]:
    policies = [
        {**policy, "PolicyDocument": _as_json(_without_nulls(policy["PolicyDocument"]))}
        for policy in properties.get("Policies", [])
    ]
    return {**properties, "Policies": policies} if policies else properties


def _rewrite_properties(model: Any, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Have ``model`` created from CloudFormation with its properties rewritten. Idempotent."""
    create = model.create_from_cloudformation_json
    if getattr(create, "_rewritten", False):
        return
    original = create.__func__

    def created(cls: Any, name: str, cfn: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        cfn = {**cfn, "Properties": rewrite(cfn.get("Properties", {}))}
        return original(cls, name, cfn, *args, **kwargs)

    created._rewritten = True  # type: ignore[attr-defined]
    model.create_from_cloudformation_json = classmethod(created)


_ALIAS_MODEL: list[type] = []


def _version_attribute(version: Any, name: str) -> str:
    if name == "Version":
        return str(version.version)
    raise NotImplementedError(f"AWS::Lambda::Version has no attribute {name} in the rehearsal")


def _add_alias_model() -> None:
    """An AWS::Lambda::Alias model for moto's CloudFormation, made with moto's own Lambda API
    (CreateAlias): Ref gives the alias ARN, as CloudFormation's does. Idempotent."""
    from moto.awslambda.models import LambdaVersion, lambda_backends
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    setattr(LambdaVersion, "get_cfn_attribute", _version_attribute)  # noqa: B010 - not declared
    if _ALIAS_MODEL:
        return

    class LambdaAliasModel(CloudFormationModel):
        def __init__(self, arn: str) -> None:
            self.arn = arn

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Lambda::Alias"

        @property
        def physical_resource_id(self) -> str:
            return self.arn

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> LambdaAliasModel:
            properties = cloudformation_json["Properties"]
            alias = lambda_backends[account_id][region_name].create_alias(
                properties["Name"],
                properties["FunctionName"],
                str(properties["FunctionVersion"]),
                properties.get("Description", ""),
                properties.get("RoutingConfig", ""),
            )
            return cls(alias.arn)

    _ALIAS_MODEL.append(LambdaAliasModel)
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


def fix_moto() -> None:
    """Apply MOTO_FIXES. Idempotent."""
    from moto.events.models import EventBus
    from moto.iam.models import Role
    from moto.kms.models import Key

    _add_alias_model()

    if not isinstance(getattr(EventBus, "physical_resource_id", None), property):
        setattr(EventBus, "physical_resource_id", property(lambda bus: bus.name))  # noqa: B010 - not declared
    _rewrite_properties(Key, _key_policy_as_text)
    _rewrite_properties(Role, _role_policies_as_text)
    _keep_bucket_key_enabled()


def _keep_bucket_key_enabled() -> None:
    """moto's CloudFormation turns BucketEncryption into its API's form without BucketKeyEnabled."""
    import moto.s3.models as s3_models

    convert = s3_models.cfn_to_api_encryption  # type: ignore[attr-defined]
    if getattr(convert, "_keeps_bucket_key", False):
        return

    def converted(properties: dict[str, Any]) -> dict[str, Any]:
        encryption = convert(properties)
        rule = properties["ServerSideEncryptionConfiguration"][0]
        if "BucketKeyEnabled" in rule:
            encryption["Rule"]["BucketKeyEnabled"] = str(rule["BucketKeyEnabled"]).lower()
        return dict(encryption)

    converted._keeps_bucket_key = True  # type: ignore[attr-defined]
    s3_models.cfn_to_api_encryption = converted  # type: ignore[attr-defined,assignment]


@dataclass(frozen=True)
class LeftOut:
    logical_id: str
    type: str
    reason: str


def references(node: Any) -> set[str]:
    """Logical ids (and parameters) a template fragment refers to: Ref, Fn::GetAtt, Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".", 1)[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                names = re.findall(r"\$\{([^}!][^}]*)\}", text)
                found.update(name.split(".", 1)[0] for name in names if name not in variables)
                found.update(references(variables))
            else:
                found.update(references(value))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item))
    return found


def for_moto(
    translated: Mapping[str, Any], has_model: Callable[[str], bool] = moto_has_model
) -> tuple[dict[str, Any], list[LeftOut]]:
    """moto's copy of the translated template: without the resources moto cannot create, nor those
    that need them (through Ref, GetAtt or Sub); DependsOn on them and outputs of them removed."""
    resources: dict[str, Any] = translated["Resources"]
    left: dict[str, LeftOut] = {}
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        if not has_model(kind):
            left[logical_id] = LeftOut(logical_id, kind, "moto's CloudFormation has no model of this type")
        elif kind in MOTO_CANNOT_CREATE:
            left[logical_id] = LeftOut(logical_id, kind, MOTO_CANNOT_CREATE[kind])
    changed = True
    while changed:
        changed = False
        for logical_id, resource in resources.items():
            if logical_id in left:
                continue
            needs = sorted(references(resource.get("Properties", {})) & left.keys())
            if needs:
                left[logical_id] = LeftOut(logical_id, resource["Type"], f"needs {', '.join(needs)}")
                changed = True
    kept: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if logical_id in left:
            continue
        resource = dict(resource)
        depends = resource.get("DependsOn")
        if depends is not None:
            depends = [depends] if isinstance(depends, str) else list(depends)
            resource["DependsOn"] = [name for name in depends if name not in left]
            if not resource["DependsOn"]:
                del resource["DependsOn"]
        kept[logical_id] = resource
    outputs = {
        name: output
        for name, output in translated.get("Outputs", {}).items()
        if not references(output) & left.keys()
    }
    template = {**translated, "Resources": kept, "Outputs": outputs}
    if not outputs:
        del template["Outputs"]
    return template, sorted(left.values(), key=lambda item: (item.type, item.logical_id))


# --------------------------------------------------------------------------- reading resources back
@dataclass
class Described:
    """A live resource as its service's API shows it, under the CloudFormation property names."""

    properties: dict[str, Any]
    attrs: dict[str, str] = field(default_factory=dict)  # Fn::GetAtt names; "Ref" when not the physical id


class Aws:
    """Clients of moto's server (fake credentials, nothing else reachable)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session = boto3.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=REGION,
        )
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]
        return self._clients[service]


def _tags(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted((tags or {}).items())]


def describe_table(aws: Aws, name: str) -> Described:
    dynamodb = aws("dynamodb")
    table = dynamodb.describe_table(TableName=name)["Table"]
    props: dict[str, Any] = {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": table["AttributeDefinitions"],
        "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "GlobalSecondaryIndexes": [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
            for index in table.get("GlobalSecondaryIndexes", [])
        ],
    }
    sse = table.get("SSEDescription")
    props["SSESpecification"] = (
        {"SSEEnabled": True, "SSEType": sse.get("SSEType"), "KMSMasterKeyId": sse.get("KMSMasterKeyArn")}
        if sse and sse.get("Status") == "ENABLED"
        else {"SSEEnabled": False}
    )
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    props["TimeToLiveSpecification"] = {
        "AttributeName": ttl.get("AttributeName"),
        "Enabled": ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"),
    }
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
    props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": pitr == "ENABLED"}
    attrs = {"Arn": table["TableArn"]}
    stream = table.get("StreamSpecification") or {}
    if stream.get("StreamEnabled"):
        props["StreamSpecification"] = {"StreamViewType": stream["StreamViewType"]}
        attrs["StreamArn"] = table["LatestStreamArn"]
    return Described(props, attrs)


def describe_queue(aws: Aws, url: str) -> Described:
    attributes = aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    props: dict[str, Any] = {
        key: attributes[key]
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
        )
        if key in attributes
    }
    if "RedrivePolicy" in attributes:
        props["RedrivePolicy"] = json.loads(attributes["RedrivePolicy"])
    arn = attributes["QueueArn"]
    return Described(props, {"Arn": arn, "QueueName": arn.rsplit(":", 1)[-1], "QueueUrl": url})


def describe_key(aws: Aws, key_id: str) -> Described:
    kms = aws("kms")
    key = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    props = {
        "Description": key.get("Description", ""),
        "Enabled": key["Enabled"],
        "KeyUsage": key.get("KeyUsage"),
        "KeySpec": key.get("KeySpec"),
        "EnableKeyRotation": kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"],
        "KeyPolicy": json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]),
    }
    return Described(props, {"Arn": key["Arn"], "KeyId": key["KeyId"]})


def describe_event_bus(aws: Aws, name: str) -> Described:
    bus = aws("events").describe_event_bus(Name=name)
    return Described({"Name": bus["Name"]}, {"Arn": bus["Arn"], "Name": bus["Name"]})


def describe_rule(aws: Aws, name: str) -> Described:
    events = aws("events")
    for bus in events.list_event_buses()["EventBuses"]:
        for rule in events.list_rules(EventBusName=bus["Name"], NamePrefix=name).get("Rules", []):
            if rule["Name"] != name:
                continue
            props: dict[str, Any] = {
                key: rule[key] for key in ("Description", "ScheduleExpression", "State") if key in rule
            }
            props["EventBusName"] = rule.get("EventBusName", "default")
            if "EventPattern" in rule:
                props["EventPattern"] = json.loads(rule["EventPattern"])
            targets = events.list_targets_by_rule(Rule=name, EventBusName=bus["Name"])["Targets"]
            props["Targets"] = targets
            return Described(props, {"Arn": rule["Arn"]})
    raise LookupError(f"no rule named {name} on any event bus")


def describe_topic(aws: Aws, arn: str) -> Described:
    attributes = aws("sns").get_topic_attributes(TopicArn=arn)["Attributes"]
    props = {key: attributes[key] for key in ("DisplayName", "KmsMasterKeyId") if attributes.get(key)}
    return Described(props, {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[-1]})


def describe_log_group(aws: Aws, name: str) -> Described:
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((group for group in groups if group["logGroupName"] == name), None)
    if group is None:
        raise LookupError(f"no log group named {name}")
    props: dict[str, Any] = {"LogGroupName": group["logGroupName"]}
    if "retentionInDays" in group:
        props["RetentionInDays"] = group["retentionInDays"]
    if "kmsKeyId" in group:
        props["KmsKeyId"] = group["kmsKeyId"]
    return Described(props, {"Arn": group["arn"]})


def describe_function(aws: Aws, name: str) -> Described:
    answer = aws("lambda").get_function(FunctionName=name)
    config = answer["Configuration"]
    props: dict[str, Any] = {
        key: config[key]
        for key in ("Description", "Handler", "MemorySize", "Role", "Runtime", "Timeout", "Architectures")
        if key in config
    }
    props["Code"] = {"CodeSha256": config["CodeSha256"]}
    props["Environment"] = {"Variables": config.get("Environment", {}).get("Variables", {})}
    props["Layers"] = [layer["Arn"] for layer in config.get("Layers", [])]
    props["TracingConfig"] = {"Mode": config.get("TracingConfig", {}).get("Mode")}
    props["Tags"] = _tags(answer.get("Tags"))
    return Described(props, {"Arn": config["FunctionArn"]})


def describe_layer(aws: Aws, logical_id: str, stack_name: str) -> Described:
    """moto gives a layer version no physical id: it is found by the name moto gave it."""
    prefix = f"{stack_name}-{logical_id}-"
    lambda_ = aws("lambda")
    for layer in lambda_.list_layers()["Layers"]:
        if layer["LayerName"].startswith(prefix):
            latest = layer["LatestMatchingVersion"]
            version = lambda_.get_layer_version(LayerName=layer["LayerName"], VersionNumber=latest["Version"])
            props = {
                key: version[key]
                for key in ("Description", "CompatibleRuntimes", "CompatibleArchitectures")
                if key in version
            }
            props["LayerName"] = layer["LayerName"]
            props["Content"] = {"CodeSha256": version["Content"]["CodeSha256"]}
            return Described(props, {"Ref": latest["LayerVersionArn"]})
    raise LookupError(f"no layer named {prefix}...")


def describe_permission(aws: Aws, function: str, source_arn: str) -> Described:
    """moto gives a permission no physical id: it is the statement of its function's policy for
    ``source_arn`` (or the policy's only statement; or, for none, a statement without one)."""
    policy = json.loads(aws("lambda").get_policy(FunctionName=function)["Policy"])
    statements = policy["Statement"]
    for statement in statements:
        condition = statement.get("Condition", {}).get("ArnLike", {})
        # A permission without SourceArn (S3's, whose bucket names the function): the first such.
        if condition.get("AWS:SourceArn", "") == source_arn or len(statements) == 1:
            principal = statement["Principal"]
            props = {
                "Action": statement["Action"],
                "FunctionName": function,
                "Principal": principal.get("Service", principal)
                if isinstance(principal, dict)
                else principal,
            }
            if "AWS:SourceArn" in condition:
                props["SourceArn"] = condition["AWS:SourceArn"]
            return Described(props)
    raise LookupError(f"{function}'s policy has no statement for {source_arn}")


def _mapped_function(aws: Aws, arn: str) -> str:
    """What a mapping invokes, as the template names it: a function's name, or an alias's ARN.
    moto records the version an alias pointed to (``...:function:f:1``) where AWS keeps the alias
    (``...:function:f:live``): a version is read back as the alias of that function pointing to it."""
    parts = arn.split(":")
    if len(parts) == 7:
        return parts[-1]
    function, qualifier = parts[6], parts[7]
    if qualifier.isdigit():
        for alias in aws("lambda").list_aliases(FunctionName=function)["Aliases"]:
            if alias["FunctionVersion"] == qualifier:
                return str(alias["AliasArn"])
    return arn


def describe_event_source_mapping(aws: Aws, uuid: str) -> Described:
    mapping = aws("lambda").get_event_source_mapping(UUID=uuid)
    props = {
        key: mapping[key]
        for key in (
            "BatchSize",
            "EventSourceArn",
            "MaximumBatchingWindowInSeconds",
            "FunctionResponseTypes",
            "ScalingConfig",
        )
        if key in mapping
    }
    props["FunctionName"] = _mapped_function(aws, mapping["FunctionArn"])
    props["Enabled"] = mapping.get("State") == "Enabled"
    return Described(props)


def describe_role(aws: Aws, name: str) -> Described:
    iam = aws("iam")
    role = iam.get_role(RoleName=name)["Role"]
    policies = [
        {
            "PolicyName": policy,
            "PolicyDocument": iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"],
        }
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
    ]
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    props = {
        "AssumeRolePolicyDocument": role["AssumeRolePolicyDocument"],
        "Policies": policies,
        "ManagedPolicyArns": [policy["PolicyArn"] for policy in attached],
        "Tags": role.get("Tags", []),
    }
    return Described(props, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


def describe_dashboard(aws: Aws, name: str) -> Described:
    dashboard = aws("cloudwatch").get_dashboard(DashboardName=name)
    props = {"DashboardName": dashboard["DashboardName"], "DashboardBody": dashboard["DashboardBody"]}
    return Described(props)


def describe_bucket(aws: Aws, name: str) -> Described:
    """A bucket's settings, in CloudFormation's names; a setting moto does not show is left out."""
    s3 = aws("s3")
    props: dict[str, Any] = {"BucketName": name}
    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
        props["BucketEncryption"] = {
            "ServerSideEncryptionConfiguration": [
                {
                    "ServerSideEncryptionByDefault": rule["ApplyServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
                }
                for rule in rules
            ]
        }
    except ClientError:
        pass
    with contextlib.suppress(ClientError):
        props["PublicAccessBlockConfiguration"] = s3.get_public_access_block(Bucket=name)[
            "PublicAccessBlockConfiguration"
        ]
    with contextlib.suppress(ClientError):
        props["OwnershipControls"] = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]
    versioning = s3.get_bucket_versioning(Bucket=name)
    if "Status" in versioning:
        props["VersioningConfiguration"] = {"Status": versioning["Status"]}
    try:
        lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
        props["LifecycleConfiguration"] = {
            "Rules": [
                {
                    "Id": rule.get("ID"),
                    "Status": rule["Status"],
                    "ExpirationInDays": rule.get("Expiration", {}).get("Days"),
                    "NoncurrentVersionExpiration": {
                        "NoncurrentDays": rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
                    },
                    "AbortIncompleteMultipartUpload": rule.get("AbortIncompleteMultipartUpload"),
                }
                for rule in lifecycle
            ]
        }
    except ClientError:
        pass
    notifications = s3.get_bucket_notification_configuration(Bucket=name)
    if notifications.get("LambdaFunctionConfigurations"):
        props["NotificationConfiguration"] = {
            "LambdaConfigurations": [
                {
                    "Event": event,
                    "Function": config["LambdaFunctionArn"],
                    "Filter": {
                        "S3Key": {
                            "Rules": [
                                {"Name": rule["Name"].lower(), "Value": rule["Value"]}
                                for rule in config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                            ]
                        }
                    },
                }
                for config in notifications["LambdaFunctionConfigurations"]
                for event in config["Events"]
            ]
        }
    return Described(props, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"})


DESCRIBERS: dict[str, Callable[[Aws, str], Described]] = {
    "AWS::S3::Bucket": describe_bucket,
    "AWS::DynamoDB::Table": describe_table,
    "AWS::SQS::Queue": describe_queue,
    "AWS::KMS::Key": describe_key,
    "AWS::Events::EventBus": describe_event_bus,
    "AWS::Events::Rule": describe_rule,
    "AWS::SNS::Topic": describe_topic,
    "AWS::Logs::LogGroup": describe_log_group,
    "AWS::Lambda::Function": describe_function,
    "AWS::Lambda::EventSourceMapping": describe_event_source_mapping,
    "AWS::IAM::Role": describe_role,
    "AWS::CloudWatch::Dashboard": describe_dashboard,
}


# --------------------------------------------------------------------------------------- comparison
def canonical(value: Any) -> Any:
    """A value as compared: scalars as text (CloudFormation passes numbers as strings), booleans in
    lower case, JSON text parsed, lists in a fixed order (none of the compared lists is ordered)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            try:
                return canonical(json.loads(value))
            except ValueError:
                return value
        return value
    if isinstance(value, Mapping):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return sorted((canonical(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    return value


def first_difference(expected: Any, actual: Any, path: str = "") -> tuple[str, Any, Any]:
    """Where two canonical values first differ: (path, expected part, actual part)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if expected.get(key) != actual.get(key):
                return first_difference(expected.get(key), actual.get(key), f"{path}.{key}")
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (mine, theirs) in enumerate(zip(expected, actual, strict=True)):
            if mine != theirs:
                return first_difference(mine, theirs, f"{path}[{index}]")
    return path, expected, actual


@dataclass
class Comparison:
    """One resource's properties: compared (and which differ), left to moto's gaps, not shown."""

    logical_id: str
    type: str
    compared: list[str] = field(default_factory=list)
    differ: list[tuple[str, Any, Any]] = field(default_factory=list)  # (property, expected, actual)
    ignored: list[str] = field(default_factory=list)  # moto's CloudFormation does not apply them
    now_applied: list[str] = field(default_factory=list)  # ... and yet it does: MOTO_IGNORES is stale
    unchecked: list[str] = field(default_factory=list)  # moto's APIs do not show them here


def compare_properties(
    logical_id: str,
    kind: str,
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    ignores: Mapping[str, str],
) -> Comparison:
    """Every property the template gives ``logical_id`` against what the live resource shows."""
    result = Comparison(logical_id, kind)
    for name, value in sorted(expected.items()):
        if name in ignores:
            same = name in actual and canonical(value) == canonical(actual[name])
            (result.now_applied if same else result.ignored).append(name)
        elif name not in actual:
            result.unchecked.append(name)
        else:
            result.compared.append(name)
            if canonical(value) != canonical(actual[name]):
                result.differ.append((name, value, actual[name]))
    return result


# What the local stack (provisioner_cli.local.provision_resources) sets on the resources it creates.
LOCAL_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::KMS::Key": ("Description",),
    "AWS::DynamoDB::Table": (
        "KeySchema",
        "AttributeDefinitions",
        "GlobalSecondaryIndexes",
        "BillingMode",
        "TimeToLiveSpecification",
        "StreamSpecification",
    ),
    "AWS::SQS::Queue": ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy"),
    "AWS::Events::EventBus": ("Name",),
    "AWS::Events::Rule": ("EventBusName", "EventPattern", "State", "Targets"),
}


def identity_tokens(
    physical: Mapping[str, Described], refs: Mapping[str, str], kinds: Mapping[str, str]
) -> dict[str, str]:
    """What names another resource: its ARNs and URLs, and an event bus's name (rules name their bus).
    Each becomes ``<LogicalId>`` or ``<LogicalId.Attr>``, the same for any stack."""
    tokens: dict[str, str] = {}
    for logical_id in sorted(physical):
        ref = physical[logical_id].attrs.get("Ref", refs.get(logical_id, ""))
        values = [(ref, f"<{logical_id}>")] + [
            (value, f"<{logical_id}.{attr}>") for attr, value in sorted(physical[logical_id].attrs.items())
        ]
        for value, token in values:
            names_something = value.startswith(("arn:", "http://", "https://"))
            if value and (names_something or kinds.get(logical_id) == "AWS::Events::EventBus"):
                tokens.setdefault(value, token)
    return tokens


def tokenized(value: Any, tokens: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return tokens.get(value, value)
    if isinstance(value, Mapping):
        return {key: tokenized(item, tokens) for key, item in value.items()}
    if isinstance(value, list):
        return [tokenized(item, tokens) for item in value]
    return value


def local_view(kind: str, name: str, value: Any) -> Any:
    """The part of a property the local stack sets: a rule's targets without retry or dead-letter settings."""
    if kind == "AWS::Events::Rule" and name == "Targets":
        return [{"Id": target["Id"], "Arn": target["Arn"]} for target in value]
    return value


def compare_with_local(
    kinds: Mapping[str, str],
    deployed: Mapping[str, Described],
    deployed_tokens: Mapping[str, str],
    local: Mapping[str, Described],
    local_tokens: Mapping[str, str],
) -> list[str]:
    """Differences between the deployed and the local resource of each logical id the local stack
    creates, on what the local stack sets (moto's gaps aside); names by what they name."""
    problems = []
    for logical_id in sorted(local):
        kind = kinds[logical_id]
        if logical_id not in deployed:
            problems.append(f"{logical_id}: the local stack has it, moto's stack does not")
            continue
        for name in LOCAL_PROPERTIES.get(kind, ()):
            if name in MOTO_IGNORES.get(kind, {}):
                continue
            mine = local_view(kind, name, tokenized(local[logical_id].properties.get(name), local_tokens))
            theirs = local_view(
                kind, name, tokenized(deployed[logical_id].properties.get(name), deployed_tokens)
            )
            if canonical(mine) != canonical(theirs):
                problems.append(f"{logical_id}.{name}: local stack {mine!r}, moto's stack {theirs!r}")
    return problems


# ------------------------------------------------------------------------------------------ the run
@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def fail(self, problem: str) -> None:
        self.failures.append(problem)
        self.say(f"  FAIL {problem}")


class Timer:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def lap(self) -> str:
        now = time.monotonic()
        elapsed, self.started = now - self.started, now
        return f"{elapsed:.1f} s"


def _counts(items: Iterable[str]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(Counter(items).items()))


def start_moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    fix_moto()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def create_stack(aws: Aws, template: Mapping[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Create the stack; its resources by logical id (moto lists resources whose condition is false
    without a logical id: left out here)."""
    cloudformation = aws("cloudformation")
    try:
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
    except (BotoCoreError, ClientError) as exc:
        raise DeployCheckFailed(f"moto's CloudFormation refused the stack: {exc}") from exc
    deadline = time.monotonic() + 60
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [
            f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason')}"
            for event in events
            if event["ResourceStatus"].endswith("FAILED")
        ]
        raise DeployCheckFailed(f"stack {name} is {stack['StackStatus']}: {'; '.join(reasons)}")
    summaries = cloudformation.get_paginator("list_stack_resources").paginate(StackName=name)
    return {
        summary["LogicalResourceId"]: summary
        for page in summaries
        for summary in page["StackResourceSummaries"]
        if summary["LogicalResourceId"]
    }


def parameter_defaults(doc: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in doc.get("Parameters", {}).items()}


NO_ID = "00000000-0000-0000-0000-000000000000"


def resolver_for(
    doc: Mapping[str, Any],
    stack_name: str,
    refs: Mapping[str, str],
    described: Mapping[str, Described],
    parameters: Mapping[str, str],
    stack_id: str = "",
) -> Resolver:
    attrs = {
        (logical_id, attr): value
        for logical_id, found in described.items()
        for attr, value in found.attrs.items()
        if attr != "Ref"
    }
    resolved_refs = {**parameters, **refs}
    resolved_refs.update(
        {logical_id: found.attrs["Ref"] for logical_id, found in described.items() if "Ref" in found.attrs}
    )
    pseudo = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id or f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}/{NO_ID}",
    }
    return Resolver(resolved_refs, attrs, pseudo, evaluate_conditions(dict(doc), dict(parameters)))


def check_artifacts(aws: Aws, packaged: Path, build_dir: Path, report: Report) -> dict[tuple[str, str], str]:
    """Every artifact uploaded, and exactly its build; their CodeSha256 by (bucket, key)."""
    artifacts, problems = packaged_artifacts(load_template(packaged), BUCKET)
    for problem in problems:
        report.fail(problem)
    if not artifacts:
        report.fail("the packaged template names no artifact")
    shas: dict[tuple[str, str], str] = {}
    s3 = aws("s3")
    for artifact in artifacts:
        try:
            archive = s3.get_object(Bucket=artifact.bucket, Key=artifact.key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            report.fail(f"{artifact.logical_id}: s3://{artifact.bucket}/{artifact.key} was not uploaded")
            continue
        for problem in artifact_problems(artifact, archive, build_files(build_dir / artifact.logical_id)):
            report.fail(problem)
        shas[(artifact.bucket, artifact.key)] = sha256_b64(archive)
    report.say(
        f"  {len(shas)} artifacts in s3://{BUCKET}/{STACK_NAME}/, each a zip of exactly its build folder: "
        + ", ".join(artifact.logical_id for artifact in artifacts)
    )
    return shas


def expected_code(kind: str, props: dict[str, Any], shas: Mapping[tuple[str, str], str]) -> None:
    """A function's Code (a layer's Content) is expected to be the uploaded object: by its SHA-256."""
    key = {"AWS::Lambda::Function": "Code", "AWS::Lambda::LayerVersion": "Content"}.get(kind)
    if key and isinstance(props.get(key), dict) and "S3Key" in props[key]:
        location = (props[key]["S3Bucket"], props[key]["S3Key"])
        props[key] = {"CodeSha256": shas.get(location, f"s3://{location[0]}/{location[1]} (not uploaded)")}


def run(template_path: Path = ROOT / "template.yaml", out: Path = ROOT / OUTPUT) -> Report:
    """The whole rehearsal; ``report.failures`` is empty when it passed."""
    report = Report()
    total, timer = Timer(), Timer()
    out.mkdir(parents=True, exist_ok=True)
    server, endpoint = start_moto()
    report.say(f"deploy-check: moto's server at {endpoint} plays the account (S3, CloudFormation, ...)")
    try:
        aws = Aws(endpoint)
        env = aws_environment(endpoint, out)
        aws("s3").create_bucket(Bucket=BUCKET)

        built = sam_build(template_path, out, env)
        report.say(f"sam build: {built} ({timer.lap()})")
        packaged = out / "packaged.yaml"
        sam_package(built, packaged, env)
        report.say(f"sam package: {packaged} ({timer.lap()})")
        shas = check_artifacts(aws, packaged, out / "build", report)

        try:
            cfn_lint(packaged, env)
            report.say(f"cfn-lint {packaged.name}: clean ({timer.lap()})")
        except DeployCheckFailed as exc:  # reported; moto's CloudFormation may still tell more
            report.fail(str(exc))

        try:
            translated = translate(packaged)
        except RuntimeError as exc:
            raise DeployCheckFailed(str(exc)) from exc
        (out / "translated.json").write_text(json.dumps(translated, indent=1))
        moto_template, left = for_moto(translated)
        (out / "moto-template.json").write_text(json.dumps(moto_template, indent=1))
        created = create_stack(aws, moto_template, STACK_NAME)
        report.say(
            f"moto's CloudFormation: {STACK_NAME} CREATE_COMPLETE from the translated template "
            f"({len(translated['Resources'])} resources; {out / 'moto-template.json'}; {timer.lap()})"
        )
        check_stack(aws, translated, moto_template, left, created, shas, report)
        report.say("  moto fixed for the rehearsal, as CloudFormation does it:")
        for fix in MOTO_FIXES:
            report.say(f"    {fix}")

        report.say("the local stack (provisioner local up), provisioned on the same server:")
        compare_local_stack(aws, Template(template_path), translated, created, report)
        report.say(f"  ({timer.lap()})")
    except DeployCheckFailed as exc:
        report.fail(str(exc))
    except (BotoCoreError, ClientError, LookupError) as exc:
        report.fail(f"moto answered what the rehearsal did not expect: {exc!r}")
    finally:
        server.stop()
    verdict = f"FAILED ({len(report.failures)} problems)" if report.failures else "passed"
    report.say(f"deploy-check {verdict} in {total.lap()}; report: {out / 'report.txt'}")
    (out / "report.txt").write_text("\n".join(report.lines) + "\n")
    return report


def check_stack(
    aws: Aws,
    translated: Mapping[str, Any],
    moto_template: Mapping[str, Any],
    left: list[LeftOut],
    created: Mapping[str, Mapping[str, Any]],
    shas: Mapping[tuple[str, str], str],
    report: Report,
) -> None:
    """Every kept resource created, with the template's properties; what was left out, reported."""
    parameters = parameter_defaults(translated)
    conditions = evaluate_conditions(dict(translated), parameters)
    resources = moto_template["Resources"]
    kinds = {logical_id: resource["Type"] for logical_id, resource in resources.items()}
    wanted = {
        logical_id
        for logical_id, resource in resources.items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    for logical_id in sorted(wanted - created.keys()):
        report.fail(f"{logical_id} ({kinds[logical_id]}) was not created")
    made = sorted(wanted & created.keys())

    described: dict[str, Described] = {}
    for logical_id in made:
        kind = kinds[logical_id]
        try:
            if kind == "AWS::Lambda::LayerVersion":
                described[logical_id] = describe_layer(aws, logical_id, STACK_NAME)
            elif kind in DESCRIBERS:
                described[logical_id] = DESCRIBERS[kind](aws, created[logical_id]["PhysicalResourceId"])
        except Exception as exc:
            report.fail(f"{logical_id} ({kind}) cannot be read back: {exc}")
    refs = {logical_id: summary.get("PhysicalResourceId", "") for logical_id, summary in created.items()}
    stack_id = aws("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0]["StackId"]
    resolve = resolver_for(translated, STACK_NAME, refs, described, parameters, stack_id)
    expected = {logical_id: resolve(resources[logical_id].get("Properties", {})) for logical_id in made}
    for logical_id in made:
        if kinds[logical_id] == "AWS::Lambda::Permission":
            want = expected[logical_id]
            try:
                described[logical_id] = describe_permission(
                    aws, want["FunctionName"], want.get("SourceArn", "")
                )
            except Exception as exc:
                report.fail(f"{logical_id} (AWS::Lambda::Permission) cannot be read back: {exc}")

    comparisons = []
    for logical_id, found in sorted(described.items()):
        kind = kinds[logical_id]
        expected_code(kind, expected[logical_id], shas)
        comparison = compare_properties(
            logical_id, kind, expected[logical_id], found.properties, MOTO_IGNORES.get(kind, {})
        )
        comparisons.append(comparison)
        for name, want, got in comparison.differ:
            where, mine, theirs = first_difference(canonical(want), canonical(got))
            report.fail(f"{logical_id}.{name}{where}: template {mine!r}, moto's stack {theirs!r}")

    report.say(f"  created ({len(made)}): {_counts(kinds[logical_id] for logical_id in made)}")
    report.say(
        f"  equal to the template: {sum(len(c.compared) - len(c.differ) for c in comparisons)} properties of "
        f"{len(comparisons)} resources (code by SHA-256 of the uploaded zip; references resolved to "
        "the stack's own resources)"
    )
    for c in comparisons:
        for name in c.now_applied:
            report.fail(f"{c.logical_id}.{name}: moto now applies it: remove it from MOTO_IGNORES")
    ignored = Counter((c.type, name) for c in comparisons for name in c.ignored)
    for (kind, name), count in sorted(ignored.items()):
        report.say(
            f"  not compared, moto does not apply {kind}.{name} ({count}x): {MOTO_IGNORES[kind][name]}"
        )
    unchecked: dict[str, set[str]] = {}
    for c in comparisons:
        unchecked.setdefault(c.type, set()).update(c.unchecked)
    for kind, names in sorted(unchecked.items()):
        if names:
            report.say(f"  not compared, moto's API does not show {kind}: {', '.join(sorted(names))}")
    if not_read := [logical_id for logical_id in made if logical_id not in described]:
        report.say(f"  created, not read back: {', '.join(not_read)}")
    off = sorted(
        logical_id
        for logical_id, resource in translated["Resources"].items()
        if not conditions.get(resource.get("Condition", ""), True)
    )
    if off:
        report.say(f"  not created, condition false with the default parameters: {', '.join(off)}")
    report.say(f"  left out of moto's stack ({len(left)}); a real deploy creates them:")
    for reason in sorted({item.reason for item in left if not item.reason.startswith("needs ")}):
        items = [item for item in left if item.reason == reason]
        for kind in sorted({item.type for item in items}):
            ids = [item.logical_id for item in items if item.type == kind]
            report.say(f"    {kind} ({len(ids)}): {reason}: {', '.join(ids)}")
    for item in left:
        if item.reason.startswith("needs "):
            report.say(f"    {item.type} {item.logical_id}: {item.reason}")


def compare_local_stack(
    aws: Aws,
    template: Template,
    translated: Mapping[str, Any],
    created: Mapping[str, Mapping[str, Any]],
    report: Report,
) -> None:
    """The local stack, provisioned on the same moto server, against moto's stack."""
    try:  # the sandbox's URL only fills the BaseUrl parameters: nothing calls it here
        state = provision_resources(template, "http://127.0.0.1:9", aws.endpoint, aws.session)
    except (BotoCoreError, ClientError) as exc:
        raise DeployCheckFailed(f"the local stack cannot be provisioned: {exc}") from exc
    kinds = {logical_id: resource["Type"] for logical_id, resource in translated["Resources"].items()}
    local_ids = [logical_id for logical_id in state.refs if kinds.get(logical_id) in LOCAL_PROPERTIES]
    local = {
        logical_id: DESCRIBERS[kinds[logical_id]](aws, state.refs[logical_id]) for logical_id in local_ids
    }
    deployed = {
        logical_id: DESCRIBERS[kinds[logical_id]](aws, created[logical_id]["PhysicalResourceId"])
        for logical_id in local_ids
        if logical_id in created
    }
    local_refs = dict(state.refs)
    deployed_refs = {logical_id: created[logical_id]["PhysicalResourceId"] for logical_id in deployed}
    problems = compare_with_local(
        kinds,
        deployed,
        identity_tokens(deployed, deployed_refs, kinds),
        local,
        identity_tokens(local, local_refs, kinds),
    )
    for problem in problems:
        report.fail(problem)
    report.say(
        f"  {_counts(kinds[logical_id] for logical_id in local_ids)}: "
        + ("the same as moto's stack" if not problems else f"{len(problems)} differences from moto's stack")
        + ", in what the local stack sets:"
    )
    for kind, local_names in LOCAL_PROPERTIES.items():
        ignored = MOTO_IGNORES.get(kind, {})
        shown = [
            f"{name} (not compared: moto does not apply it)" if name in ignored else name
            for name in local_names
        ]
        report.say(f"    {kind}: {', '.join(shown)}")
    left_out_locally: dict[str, set[str]] = {}
    for logical_id in local_ids:
        kind = kinds[logical_id]
        props = translated["Resources"][logical_id].get("Properties", {})
        left_out_locally.setdefault(kind, set()).update(set(props) - set(LOCAL_PROPERTIES[kind]))
    report.say("  what the local stack leaves out (compared with the template in moto's stack above, but")
    report.say("  for what moto does not apply):")
    for kind, names in sorted(left_out_locally.items()):
        if names:
            ignored = MOTO_IGNORES.get(kind, {})
            shown = [f"{name} (moto neither)" if name in ignored else name for name in sorted(names)]
            report.say(f"    {kind}: {', '.join(shown)}")
