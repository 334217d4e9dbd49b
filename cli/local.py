"""The local stack: moto's server as the AWS endpoint and the provider sandbox, both on loopback,
with the tables, queues and secrets that template.yaml declares."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from provisioner_cli.template import Resolver, Template
from provisioning.providers import PROVIDERS, ProviderInfo

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

REGION = "us-east-1"
ACCOUNT = "123456789012"
STATE_FILE = Path(".local/stack.json")
# The local stack's id, as CloudFormation's: names derived from it (ImportBucket's) are stable.
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/provisioner-local/5e7a1c00-0000-4000-8000-00000000b0c7"
)

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class StackState:
    """Physical names of the local stack's resources (written to .local/stack.json)."""

    aws_endpoint: str | None
    sandbox_url: str
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)  # "Logical.Attr" -> value
    parameters: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    # With IAM enforced: each function's credentials (its role, assumed), and the harness's own.
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)

    def resolver(self) -> Resolver:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "provisioner-local",
            "AWS::StackId": STACK_ID,
        }
        attrs = {tuple(k.split(".", 1)): v for k, v in self.attrs.items()}
        return Resolver(
            {**self.parameters, **self.refs},
            attrs,  # type: ignore[arg-type]
            pseudo,
            self.conditions,
        )

    def harness_session(self) -> boto3.Session:
        """The session of the tooling (CLI, demo, tests): the account's administrator when IAM is
        enforced, else the fake credentials moto accepts."""
        credentials = self.admin or FAKE_CREDENTIALS
        return boto3.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
            region_name=REGION,
        )

    def save(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path = STATE_FILE) -> StackState:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: start the local stack first (provisioner local up)")
        return cls(**json.loads(path.read_text()))

    def function_environment(self, template: Template, logical_id: str) -> dict[str, str]:
        """The function's environment as template.yaml declares it, resolved for this stack."""
        resolve = self.resolver()
        function = template.function(logical_id)
        env = {key: str(resolve(value)) for key, value in function.environment.items()}
        env.update(FAKE_CREDENTIALS)
        env.update(self.credentials.get(logical_id, {}))  # its own role's, when IAM is enforced
        if self.aws_endpoint:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint
        env["AWS_LAMBDA_FUNCTION_NAME"] = logical_id
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(function.memory)
        return env


# Parameter values of the local stack that differ from template.yaml's defaults.
LOCAL_OVERRIDES = {"EnableApiDocs": "true"}


def provider_parameter(template: Template, info: ProviderInfo, variable: str) -> str:
    """The template parameter the provider's ``variable`` (e.g. ``PALENCA_BASE_URL``) comes from,
    as its create function's environment says (``!Ref PalencaBaseUrl``)."""
    value = template.function(info.create.function).environment.get(variable)
    if not (isinstance(value, dict) and isinstance(value.get("Ref"), str)):
        raise ValueError(f"{info.create.function} must set {variable} from a parameter (!Ref)")
    return str(value["Ref"])


def local_parameters(template: Template, sandbox_url: str) -> dict[str, str]:
    params = template.parameter_defaults()
    for info in PROVIDERS:  # every provider at its emulator
        params[provider_parameter(template, info, info.base_url_variable)] = f"{sandbox_url}/{info.name}"
    params.update({name: value for name, value in LOCAL_OVERRIDES.items() if name in params})
    return params


def _local_state(template: Template, aws_endpoint: str | None, sandbox_url: str) -> StackState:
    parameters = local_parameters(template, sandbox_url)
    return StackState(
        aws_endpoint, sandbox_url, parameters=parameters, conditions=template.conditions(parameters)
    )


_MOTO_CALL_LOCK = threading.RLock()


def atomic_moto_calls() -> None:
    """Make every call to moto atomic, as every AWS API call is.

    moto's backends take no lock: two threads' conditional writes to one item (a rate-limit slot,
    an idempotency record) can interleave inside one call and both succeed, which DynamoDB never
    allows. One lock around moto's dispatch, in-process and in its server, restores that.
    Idempotent."""
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    for owner, name in ((BotocoreStubber, "process_request"), (DomainDispatcherApplication, "__call__")):
        original = getattr(owner, name)
        if getattr(original, "_atomic", False):
            continue

        def atomic(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _MOTO_CALL_LOCK:
                return _original(*args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(owner, name, atomic)


def local_key_alias(logical_id: str) -> str:
    """The alias the local stack gives the KMS key ``logical_id`` (its key ids are random)."""
    return f"alias/{logical_id}"


def provision_resources(
    template: Template, sandbox_url: str, aws_endpoint: str | None, session: boto3.Session | None = None
) -> StackState:
    """Create every table, queue and provider secret of the template at the AWS endpoint
    (moto's server, or moto's in-process mock when ``aws_endpoint`` is None)."""
    atomic_moto_calls()
    session = session or boto3.Session(region_name=REGION)
    kw: dict[str, Any] = {"endpoint_url": aws_endpoint} if aws_endpoint else {}
    dynamodb = session.client("dynamodb", **kw)
    kms = session.client("kms", **kw)
    sqs = session.client("sqs", **kw)
    secrets = session.client("secretsmanager", **kw)
    events = session.client("events", **kw)
    state = _local_state(template, aws_endpoint, sandbox_url)

    for logical_id, resource in template.of_type("AWS::KMS::Key").items():
        description = str(resource.get("Properties", {}).get("Description", logical_id))
        key = kms.create_key(Description=description)["KeyMetadata"]
        # moto draws key ids at random: the alias is the name env.json can know in advance.
        kms.create_alias(AliasName=local_key_alias(logical_id), TargetKeyId=key["KeyId"])
        state.refs[logical_id] = key["KeyId"]
        state.attrs[f"{logical_id}.Arn"] = key["Arn"]
        state.attrs[f"{logical_id}.KeyId"] = key["KeyId"]

    for logical_id, resource in template.of_type("AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        args: dict[str, Any] = {
            "TableName": logical_id,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("StreamSpecification"):
            args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        answer = dynamodb.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=logical_id, TimeToLiveSpecification=ttl)
        state.refs[logical_id] = logical_id
        state.attrs[f"{logical_id}.Arn"] = answer["TableDescription"]["TableArn"]
        if "LatestStreamArn" in answer["TableDescription"]:
            state.attrs[f"{logical_id}.StreamArn"] = answer["TableDescription"]["LatestStreamArn"]

    queues = template.of_type("AWS::SQS::Queue")
    ordered = sorted(queues, key=lambda q: "RedrivePolicy" in queues[q].get("Properties", {}))
    for logical_id in ordered:
        props = queues[logical_id].get("Properties", {})
        attributes: dict[QueueAttributeNameType, str] = {
            key: str(props[key]) for key in ("VisibilityTimeout", "MessageRetentionPeriod") if key in props
        }
        if "RedrivePolicy" in props:
            policy = state.resolver()(props["RedrivePolicy"])
            attributes["RedrivePolicy"] = json.dumps(policy)
        url = sqs.create_queue(QueueName=logical_id, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        state.refs[logical_id] = url
        state.attrs[f"{logical_id}.Arn"] = arn
        state.attrs[f"{logical_id}.QueueName"] = logical_id
        state.attrs[f"{logical_id}.QueueUrl"] = url

    s3 = session.client("s3", **kw)
    for logical_id, resource in template.of_type("AWS::S3::Bucket").items():
        props = state.resolver()(resource.get("Properties", {}))
        name = str(props.get("BucketName") or logical_id.lower())
        s3.create_bucket(Bucket=name)
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
        if "BucketEncryption" in props:
            rules = [  # CloudFormation's names -> the API's
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    "BucketKeyEnabled": rule.get("BucketKeyEnabled", False),
                }
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        state.refs[logical_id] = name
        state.attrs[f"{logical_id}.Arn"] = f"arn:aws:s3:::{name}"

    for logical_id, resource in template.of_type("AWS::Events::EventBus").items():
        if not state.conditions.get(resource.get("Condition", ""), True):
            continue
        name = state.resolver()(resource["Properties"]["Name"])
        state.refs[logical_id] = name
        state.attrs[f"{logical_id}.Arn"] = events.create_event_bus(Name=name)["EventBusArn"]
        state.attrs[f"{logical_id}.Name"] = name

    for logical_id, resource in template.of_type("AWS::Events::Rule").items():
        props = state.resolver()(resource["Properties"])
        bus = props.get("EventBusName", "default")
        arn = events.put_rule(
            Name=logical_id, EventBusName=bus, EventPattern=json.dumps(props["EventPattern"]), State="ENABLED"
        )["RuleArn"]
        targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])]
        events.put_targets(Rule=logical_id, EventBusName=bus, Targets=targets)
        state.refs[logical_id] = logical_id
        state.attrs[f"{logical_id}.Arn"] = arn

    from provisioner_sandbox.app import sandbox_credentials

    credentials = sandbox_credentials()  # the secret each provider's emulator accepts
    for info in PROVIDERS:
        secret_id = state.parameters[provider_parameter(template, info, info.secret_id_variable)]
        secrets.create_secret(Name=secret_id, SecretString=json.dumps(credentials[info.name]))

    webhook_secret = webhook_secret_parameter(template)
    if webhook_secret is not None:  # the signup webhook's signing secret: random, as a sender's is
        secrets.create_secret(
            Name=state.parameters[webhook_secret],
            SecretString=json.dumps({"secrets": [new_webhook_secret()]}),
        )

    for logical_id in template.functions():
        state.refs[logical_id] = logical_id
    return state


WEBHOOK_FUNCTION = "SignupWebhookFunction"


def webhook_secret_parameter(template: Template) -> str | None:
    """The parameter naming the signup webhook's secret (``SIGNUP_WEBHOOK_SECRET_ID``'s ``!Ref``),
    or None when the template has no webhook function."""
    if WEBHOOK_FUNCTION not in template.functions():
        return None
    value = template.function(WEBHOOK_FUNCTION).environment.get("SIGNUP_WEBHOOK_SECRET_ID")
    if not (isinstance(value, dict) and isinstance(value.get("Ref"), str)):
        raise ValueError(f"{WEBHOOK_FUNCTION} must set SIGNUP_WEBHOOK_SECRET_ID from a parameter (!Ref)")
    return str(value["Ref"])


def new_webhook_secret() -> str:
    """A random Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def apply_environment(env: dict[str, str]) -> dict[str, str]:
    """Set variables in this process; returns the previous values for restoring."""
    previous = {key: os.environ.get(key, "") for key in env}
    os.environ.update(env)
    return previous


class LocalStack:
    """moto's server + the provider sandbox on loopback, provisioned from template.yaml."""

    def __init__(
        self,
        template: Template,
        aws_port: int = 0,
        sandbox_port: int = 0,
        host: str = "127.0.0.1",
        enforce_iam: bool = True,
    ) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from moto.server import ThreadedMotoServer

        # Answers are written in several pieces: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add tens of milliseconds to calls on a kept-alive connection.
        MotoRequestHandler.disable_nagle_algorithm = True

        from provisioner_sandbox.app import build_sandbox

        self.template = template
        self.enforce_iam = enforce_iam
        self._enforcement = contextlib.ExitStack()
        self.moto = ThreadedMotoServer(ip_address=host, port=aws_port, verbose=False)
        self.sandbox = build_sandbox(host=host, port=sandbox_port)
        self.state: StackState | None = None

    def start(self) -> StackState:
        for key, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(key, value)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.moto.start()
        self.sandbox.start()
        host, port = self.moto.get_host_and_port()
        self.state = provision_resources(self.template, self.sandbox.url, f"http://{host}:{port}")
        if self.enforce_iam:
            # Each function gets its own role as SAM deploys it; from here on moto checks every
            # request against its principal's policies (the tooling acts as the account's admin).
            from provisioner_cli import iam

            iam.enforce_roles(self.state, iam.translate(self.template.path))
            self._enforcement.enter_context(iam.enforced())
        return self.state

    def stop(self) -> None:
        self._enforcement.close()
        self.sandbox.stop()
        self.moto.stop()
        # moto's server keeps its resources in the process's backends: a stack started after this
        # one in the same process (a test module, a second demo) must find none of them.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()

    def __enter__(self) -> StackState:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def aws_client(state: StackState, service: str) -> Any:
    """A client of the tooling itself (the account's administrator when IAM is enforced)."""
    make_client: Callable[..., Any] = state.harness_session().client  # any service, named at run time
    return make_client(service, endpoint_url=state.aws_endpoint)


def sam_local_env(
    template: Template,
    aws_endpoint: str = "http://host.docker.internal:4566",
    sandbox_url: str = "http://host.docker.internal:4577",
) -> dict[str, dict[str, str]]:
    """env.json for ``sam local invoke|start-api --env-vars``: every function's variables for the
    local stack (``provisioner local up``) seen from a container: ``AWS_ENDPOINT_URL`` at its moto
    server, tables and queues by the names it gives them, keys by the aliases it gives them
    (:func:`local_key_alias`), providers at the sandbox. SAM applies only the variables a function
    declares in template.yaml; the container's credentials and region are SAM's own (your shell's
    credentials, which the local stack accepts whatever they are; samconfig.toml's region)."""
    refs = {name: name for name in template.of_type("AWS::DynamoDB::Table")}
    refs.update({q: f"{aws_endpoint}/{ACCOUNT}/{q}" for q in template.of_type("AWS::SQS::Queue")})
    refs.update({k: local_key_alias(k) for k in template.of_type("AWS::KMS::Key")})
    attrs = {f"{k}.Arn": local_key_alias(k) for k in template.of_type("AWS::KMS::Key")}
    state = _local_state(template, aws_endpoint, sandbox_url)
    state.refs.update(refs)
    state.attrs.update(attrs)
    for bus, resource in template.of_type("AWS::Events::EventBus").items():  # by the name it is given
        state.refs[bus] = str(state.resolver()(resource["Properties"]["Name"]))
    resolve = state.resolver()
    env = {}
    for name in template.functions():
        variables = {key: str(resolve(value)) for key, value in template.function(name).environment.items()}
        if "AWS_ENDPOINT_URL" in variables:
            variables["AWS_ENDPOINT_URL"] = aws_endpoint
        env[name] = variables
    return env
