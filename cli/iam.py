"""Each function's role, as SAM deploys it, enforced by moto: the local stack and the tests run every
function with its own credentials, so a call the template does not grant is denied, as in AWS.

- The roles come from the translated template: ``template.yaml`` through aws-sam-translator (in the
  SAM CLI's environment, which pins it), policy templates expanded, AWS managed policies read from the
  documents moto ships, references resolved against the local resources.
- Each role is created in moto's IAM with its policies inline; the function's credentials come from
  ``AssumeRole``. The harness itself (tests, tooling) uses an administrator of the account.
- moto's enforcement is completed where it falls short: it evaluates DynamoDB, KMS, Secrets Manager
  and ``GetQueueUrl`` against the resource ``*``, and its wildcards know ``*`` only. Here every such
  request is evaluated against the ARN it touches, with IAM's own wildcards (``*`` and ``?``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
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
    """What one function may do: its role's policy documents, resolved for the local stack."""

    function: str
    role: str
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy name -> document

    def statements(self) -> Iterator[dict[str, Any]]:
        for document in self.documents.values():
            statements = document.get("Statement", [])
            yield from statements if isinstance(statements, list) else [statements]

    def actions(self) -> set[str]:
        """Every action the role allows (as written: may hold wildcards)."""
        found: set[str] = set()
        for statement in self.statements():
            if statement.get("Effect") == "Allow":
                action = statement.get("Action", [])
                found.update(action if isinstance(action, list) else [action])
        return found


def function_roles(translated: dict[str, Any], state: StackState) -> dict[str, FunctionRole]:
    """Each function's role from the translated template, resolved against ``state``."""
    resources = translated["Resources"]
    resolve = state.resolver()
    managed = _managed_policy_documents()
    roles: dict[str, FunctionRole] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role_ref = resource["Properties"]["Role"]
        role_id = role_ref["Fn::GetAtt"][0]
        properties = resources[role_id]["Properties"]
        role = FunctionRole(logical_id, role_id)
        for arn in properties.get("ManagedPolicyArns", []):
            arn = resolve(arn)
            if arn not in managed:
                raise RuntimeError(f"{role_id}: managed policy {arn} is not among moto's documents")
            role.documents[arn.rsplit("/", 1)[-1]] = managed[arn]
        for policy in properties.get("Policies", []):
            role.documents[policy["PolicyName"]] = {
                "Version": "2012-10-17",
                **resolve(policy["PolicyDocument"]),
            }
        roles[logical_id] = role
    return roles


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

    def client_kwargs(self) -> dict[str, str | None]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


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
        for name, document in role.documents.items():
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
    body = json.loads(handler.body or "{}")
    key = str(body.get("KeyId") or "")
    if not key:
        return "*"
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return _arn("kms", key)
    return _arn("kms", f"key/{key}")


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


_PATCHED = False


def complete_moto_enforcement() -> None:
    """Evaluate DynamoDB, KMS, Secrets Manager and SQS requests against the ARN they touch, with
    IAM's wildcards. Idempotent; affects only requests evaluated with IAM enforcement on."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.dynamodb.responses import DynamoHandler
    from moto.iam.access_control import IAMPolicyStatement
    from moto.kms.responses import KmsResponse
    from moto.secretsmanager.responses import SecretsManagerResponse
    from moto.sqs.responses import SQSResponse

    DynamoHandler._determine_resource = _dynamodb_resource  # type: ignore[attr-defined]
    KmsResponse._determine_resource = _kms_resource  # type: ignore[attr-defined]
    SecretsManagerResponse._determine_resource = _secret_resource  # type: ignore[attr-defined]
    original_sqs = SQSResponse._determine_resource
    SQSResponse._determine_resource = lambda self: _sqs_resource(self, original_sqs)  # type: ignore[method-assign]

    def match(pattern: str, string: str) -> Any:
        return True if iam_wildcard(pattern, string) else None

    IAMPolicyStatement._match = staticmethod(match)  # type: ignore[assignment]
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
    kw = {"endpoint_url": state.aws_endpoint} if state.aws_endpoint else {}
    roles = function_roles(translated, state)
    credentials = create_roles(session.client("iam", **kw), session.client("sts", **kw), roles)
    state.credentials = {function: c.environment() for function, c in credentials.items()}
    state.admin = create_admin(session.client("iam", **kw)).environment()
    complete_moto_enforcement()
    return roles
