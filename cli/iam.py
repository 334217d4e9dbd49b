"""Each function's role, as SAM deploys it, enforced by moto: the local stack and the tests run every
function with its own credentials, so a call the template does not grant is denied, as in AWS.

- The roles come from the translated template: ``template.yaml`` through aws-sam-translator (in the
  SAM CLI's environment, which pins it), policy templates expanded, AWS managed policies read from the
  documents moto ships, references resolved against the local resources.
- Each role is created in moto's IAM with its policies inline; the function's credentials come from
  ``AssumeRole``. The harness itself (tests, tooling) uses an administrator of the account.
- moto's enforcement is completed where it falls short: it evaluates DynamoDB, KMS, Secrets Manager,
  EventBridge's ``PutEvents`` and ``GetQueueUrl`` against the resource ``*``, and its wildcards know
  ``*`` only. Here every such request is evaluated against the ARN it touches, with IAM's own
  wildcards (``*`` and ``?``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner_cli.local import ACCOUNT, REGION, StackState

ROOT = Path(__file__).resolve().parents[1]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
ADMIN_USER = "provisioner-local-admin"
# A local CodeUri/ContentUri stands for the S3 object it becomes once packaged (the translator wants
# that shape); a packaged template's s3:// URIs are kept.
_TRANSLATE = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicyLookup:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for resource in template.get("Resources", {}).values():
    properties = resource.get("Properties") or {}
    for key in ("CodeUri", "ContentUri"):
        if key in properties and not str(properties[key]).startswith("s3://"):
            properties[key] = "s3://packaged/" + key
parameters = {"AWS::Region": sys.argv[2], "AWS::AccountId": sys.argv[3], "AWS::Partition": "aws"}
json.dump(transform(template, parameters, NoManagedPolicyLookup()), sys.stdout)
"""


def translate(template_path: Path, sam_python: Path = SAM_PYTHON) -> dict[str, Any]:
    """The CloudFormation template SAM deploys from ``template_path``."""
    if not sam_python.exists():
        raise RuntimeError(
            f"{sam_python} is missing: `make sam-venv` installs the SAM CLI and its translator"
        )
    result = subprocess.run(
        [str(sam_python), "-c", _TRANSLATE, str(template_path), REGION, ACCOUNT],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": REGION},
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"aws-sam-translator failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _managed_policy_documents() -> dict[str, dict[str, Any]]:
    """AWS managed policies by ARN, from the documents moto ships."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    documents = {}
    for name, policy in json.loads(aws_managed_policies_data).items():
        arn = f"arn:aws:iam::aws:policy{policy.get('Path', '/')}{name}"
        documents[arn] = policy["Document"]
    return documents


@dataclass
class FunctionRole:
    """What one function may do: its role's policies, resolved for the local stack."""

    function: str
    role: str
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # inline: name -> document
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)  # AWS managed: ARN -> document

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every policy document of the role, by name."""
        managed = {arn.rsplit("/", 1)[-1]: document for arn, document in self.managed.items()}
        return {**managed, **self.policies}

    def grants(self) -> set[tuple[str, str]]:
        """(action, resource) for every action and resource the inline policies allow: what the
        template itself grants (AWS managed policies are SAM's, attached for the service)."""
        found: set[tuple[str, str]] = set()
        for document in self.policies.values():
            statements = document.get("Statement", [])
            for statement in statements if isinstance(statements, list) else [statements]:
                if statement.get("Effect") != "Allow":
                    continue
                actions, resources = statement.get("Action", []), statement.get("Resource", [])
                for action in actions if isinstance(actions, list) else [actions]:
                    for resource in resources if isinstance(resources, list) else [resources]:
                        found.add((action, resource))
        return found


def function_roles(
    translated: dict[str, Any], resolve: Any, managed: dict[str, dict[str, Any]] | None = None
) -> dict[str, FunctionRole]:
    """Each function's role from the translated template, references resolved with ``resolve``
    (e.g. ``StackState.resolver()``); AWS managed policies' documents from ``managed`` (by default
    moto's copies)."""
    resources = translated["Resources"]
    documents = _managed_policy_documents() if managed is None else managed
    roles: dict[str, FunctionRole] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role_id = resource["Properties"]["Role"]["Fn::GetAtt"][0]
        properties = resources[role_id]["Properties"]
        role = FunctionRole(logical_id, role_id)
        for arn in properties.get("ManagedPolicyArns", []):
            arn = resolve(arn)
            if managed is None and arn not in documents:
                raise RuntimeError(f"{role_id}: managed policy {arn} is not among moto's documents")
            role.managed[arn] = documents.get(arn, {})
        for policy in properties.get("Policies", []):
            role.policies[policy["PolicyName"]] = {
                "Version": "2012-10-17",
                **resolve(policy["PolicyDocument"]),
            }
        roles[logical_id] = role
    return roles


def unused_grants(
    role: FunctionRole, calls: set[tuple[str, str]], rename: Callable[[str], str] = str
) -> set[tuple[str, str]]:
    """The (action, resource) grants of ``role`` that no call in ``calls`` used (IAM's matching:
    wildcards, actions case-insensitive). ``rename`` maps a resource on both sides first (e.g. a
    KMS key's ARN, new in every test stack, to its logical id)."""
    seen = {(action.lower(), rename(resource)) for action, resource in calls}
    return {
        (action, resource)
        for action, resource in role.grants()
        if not any(
            iam_wildcard(action.lower(), called) and iam_wildcard(rename(resource), on) for called, on in seen
        )
    }


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def environment(self) -> dict[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


def create_roles(iam: Any, sts: Any, roles: dict[str, FunctionRole]) -> dict[str, Credentials]:
    """Create each role in moto's IAM, policies inline, and assume it: credentials per function."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            },
        ],
    }
    credentials = {}
    for function, role in roles.items():
        arn = iam.create_role(
            RoleName=role.role[:64], AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=43200
        )["Role"]["Arn"]
        for name, document in role.documents().items():
            iam.put_role_policy(RoleName=role.role[:64], PolicyName=name, PolicyDocument=json.dumps(document))
        answer = sts.assume_role(RoleArn=arn, RoleSessionName=function[:64], DurationSeconds=43200)[
            "Credentials"
        ]
        credentials[function] = Credentials(
            answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"]
        )
    return credentials


def create_admin(iam: Any) -> Credentials:
    """The harness's own principal: everything allowed (tests and tooling, never a function)."""
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(
        UserName=ADMIN_USER,
        PolicyName="Everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


# ------------------------------------------------------------------- completing moto's enforcement
def iam_wildcard(pattern: str, value: str) -> bool:
    """IAM's matching of an Action or Resource element: ``*`` any run of characters, ``?`` exactly
    one, everything else literal; actions are case-insensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def _dynamodb_resource(handler: Any) -> str:
    body = handler.body if isinstance(handler.body, dict) else json.loads(handler.body or "{}")
    table = body.get("TableName")
    if not table:
        return "*"
    index = body.get("IndexName")
    return _arn("dynamodb", f"table/{table}" + (f"/index/{index}" if index else ""))


def _kms_resource(handler: Any) -> str:
    """The key's ARN: IAM authorises a request by key id, key ARN or alias against the key itself."""
    body = json.loads(handler.body or "{}")
    key = str(body.get("KeyId") or "")
    if not key:
        return "*"
    try:
        return str(handler.kms_backend.describe_key(key).arn)
    except Exception:
        if key.startswith("arn:"):
            return key
        return _arn("kms", key if key.startswith("alias/") else f"key/{key}")


def _secret_resource(handler: Any) -> str:
    body = json.loads(handler.body or "{}")
    secret_id = body.get("SecretId")
    if not secret_id:
        return "*"
    try:
        return str(handler.backend.describe_secret(secret_id).arn)
    except Exception:
        return _arn("secretsmanager", f"secret:{secret_id}")


def _sqs_resource(handler: Any, original: Any) -> str:
    resource = original(handler)
    if resource != "*":
        return str(resource)
    name = handler._get_param("QueueName")
    return _arn("sqs", name) if name else "*"


def _events_resource(handler: Any) -> str:
    """The bus a PutEvents request publishes to (IAM authorises each entry against its bus): its
    ARN when every entry names the same bus, else ``*`` (granted only by a wildcard)."""
    body = json.loads(handler.body or "{}")
    entries = body.get("Entries")
    if not isinstance(entries, list) or not entries:
        return "*"
    buses = {str(entry.get("EventBusName") or "default") for entry in entries if isinstance(entry, dict)}
    if len(buses) != 1:
        return "*"
    bus = buses.pop()
    return bus if bus.startswith("arn:") else _arn("events", f"event-bus/{bus}")


SQS_BATCH_ACTIONS = {
    f"sqs:{action}Batch": f"sqs:{action}"
    for action in ("SendMessage", "DeleteMessage", "ChangeMessageVisibility")
}


class CallLog:
    """Every call a function's role was allowed, as (action, resource) per function: what the
    tests saw each function do, to compare with what its role grants."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, set[tuple[str, str]]] = {}
        self.denied: dict[str, set[tuple[str, str]]] = {}
        self.logical_ids: dict[str, str] = {}  # resource ARN -> logical id, over every stack

    def name_resources(self, state: StackState) -> None:
        """Remember the logical id of each of ``state``'s resources by ARN (stacks of different
        tests have different key ids: calls compare by logical id)."""
        with self._lock:
            for attr, value in state.attrs.items():
                if attr.endswith(".Arn"):
                    self.logical_ids[value] = attr.removesuffix(".Arn")

    def logical_id(self, resource: str) -> str:
        return self.logical_ids.get(resource, resource)

    def record(self, function: str, action: str, resource: str, denied: bool = False) -> None:
        with self._lock:
            (self.denied if denied else self.calls).setdefault(function, set()).add((action, resource))

    @contextmanager
    def denials_expected(self) -> Iterator[None]:
        """Denials inside are the point of the test that makes them: not recorded."""
        with self._lock:
            before = {function: set(calls) for function, calls in self.denied.items()}
        try:
            yield
        finally:
            with self._lock:
                self.denied = before


CALLS = CallLog()
_PATCHED = False


def complete_moto_enforcement() -> None:
    """Evaluate DynamoDB, KMS, Secrets Manager, EventBridge and SQS requests against the ARN they
    touch, with IAM's wildcards. Idempotent; affects only requests evaluated with IAM enforcement on."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.dynamodb.responses import DynamoHandler
    from moto.events.responses import EventsHandler
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase
    from moto.kms.responses import KmsResponse
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.sqs.responses import SQSResponse

    DynamoHandler._determine_resource = _dynamodb_resource  # type: ignore[attr-defined]
    KmsResponse._determine_resource = _kms_resource  # type: ignore[attr-defined]
    SecretsManagerResponse._determine_resource = _secret_resource  # type: ignore[attr-defined]
    EventsHandler._determine_resource = _events_resource  # type: ignore[attr-defined]
    original_sqs = SQSResponse._determine_resource
    SQSResponse._determine_resource = lambda self: _sqs_resource(self, original_sqs)  # type: ignore[method-assign]

    def match(pattern: str, string: str) -> Any:
        return True if iam_wildcard(pattern, string) else None

    IAMPolicyStatement._match = staticmethod(match)  # type: ignore[method-assign]

    # IAM authorises SQS's batch actions as their single action: SendMessageBatch needs
    # sqs:SendMessage (moto asks for sqs:SendMessageBatch, which no policy names).
    original_init = IAMRequestBase.__init__

    def init(request: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
        original_init(request, *args, **kwargs)
        request._action = SQS_BATCH_ACTIONS.get(request._action, request._action)

    # Patching a method: mypy checks the plain function against the method as bound ([assignment]).
    IAMRequestBase.__init__ = init  # type: ignore[method-assign,assignment]

    original_check = IAMRequestBase.check_action_permitted

    def check_and_record(request: IAMRequestBase, resource: str) -> None:
        arn = str(request._access_key.arn)
        function = arn.rsplit("/", 1)[-1] if ":assumed-role/" in arn else None
        try:
            original_check(request, resource)
        except Exception:
            if function:
                CALLS.record(function, request._action, resource, denied=True)
            raise
        if function:
            CALLS.record(function, request._action, resource)

    IAMRequestBase.check_action_permitted = check_and_record  # type: ignore[method-assign,assignment]
    _PATCHED = True


@contextmanager
def enforced() -> Iterator[None]:
    """moto checks every request against its principal's policies while inside."""
    from moto import settings

    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


def enforce_roles(
    state: StackState, translated: dict[str, Any], session: Any | None = None
) -> dict[str, FunctionRole]:
    """Give every function of ``state`` its own role and credentials, and the harness an
    administrator (``state.credentials``, ``state.admin``); complete moto's enforcement. Turn it on
    with :func:`enforced`."""
    import boto3

    session = session or boto3.Session(region_name=REGION)
    kw: dict[str, Any] = {"endpoint_url": state.aws_endpoint} if state.aws_endpoint else {}
    roles = function_roles(translated, state.resolver())
    credentials = create_roles(session.client("iam", **kw), session.client("sts", **kw), roles)
    state.credentials = {function: c.environment() for function, c in credentials.items()}
    state.admin = create_admin(session.client("iam", **kw)).environment()
    CALLS.name_resources(state)
    complete_moto_enforcement()
    return roles
