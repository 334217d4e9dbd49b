"""Where the hub's resources are: a deployed CloudFormation stack, or the local stack.

Both are addressed by template.yaml's logical ids (``PalencaCreateUserQueue``, ``UsersTable``...):
a deployed stack's physical ids come from CloudFormation's stack resources, the local stack's
from ``.local/stack.json``. Operations commands (import, links, status, dlq) take a StackTarget and
never care which one it is.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from provisioning.providers import PROVIDERS

if TYPE_CHECKING:
    from provisioner_cli.local import StackState

# The SQS queue feeding each provider's create function, and its dead-letter queue (logical ids of
# template.yaml), from the provider registry.
# Width of a provider column in the commands' tables: the longest registered name.
PROVIDER_WIDTH = max(len(p.name) for p in PROVIDERS)
PROVIDER_QUEUES: dict[str, str] = {p.name: p.create.queue for p in PROVIDERS}
PROVIDER_DLQS: dict[str, str] = {p.name: p.create.dead_letter_queue for p in PROVIDERS}


def default_stack_name(samconfig: Path = Path("samconfig.toml"), config_env: str = "default") -> str | None:
    """The stack name samconfig.toml gives ``config_env`` (as ``sam deploy`` would use it)."""
    if not samconfig.exists():
        return None
    config = tomllib.loads(samconfig.read_text())
    env = config.get(config_env, {})
    for section in ("deploy", "global"):
        name = env.get(section, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    return None


@dataclass
class StackTarget:
    """Physical ids by logical id, and boto3 clients for the stack's account and region."""

    physical: dict[str, str]
    session: boto3.Session
    endpoint_url: str | None = None
    description: str = ""
    parameters: dict[str, str] = field(default_factory=dict)  # the stack's template parameters
    local_state: StackState | None = None  # the local stack's state; None for a deployed stack
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            kw = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            make_client: Callable[..., Any] = self.session.client  # any service, named at run time
            self._clients[service] = make_client(service, **kw)
        return self._clients[service]

    def resource(self, logical_id: str) -> str:
        try:
            return self.physical[logical_id]
        except KeyError:
            raise KeyError(f"{self.description or 'the stack'} has no resource {logical_id}") from None

    def queue_url(self, provider: str) -> str:
        return self.resource(PROVIDER_QUEUES[provider])

    def dlq_url(self, provider: str) -> str:
        return self.resource(PROVIDER_DLQS[provider])

    @property
    def users_table(self) -> str:
        return self.resource("UsersTable")

    @classmethod
    def deployed(
        cls, stack_name: str, session: boto3.Session | None = None, endpoint_url: str | None = None
    ) -> StackTarget:
        """A deployed stack: its resources' physical ids from CloudFormation."""
        session = session or boto3.Session()
        kw: dict[str, Any] = {"endpoint_url": endpoint_url} if endpoint_url else {}
        cloudformation = session.client("cloudformation", **kw)
        physical: dict[str, str] = {}
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                if resource.get("PhysicalResourceId"):
                    physical[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        stacks = cloudformation.describe_stacks(StackName=stack_name).get("Stacks", [])
        parameters = {
            p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
            for p in (stacks[0].get("Parameters", []) if stacks else [])
        }
        return cls(physical, session, endpoint_url, description=f"stack {stack_name}", parameters=parameters)

    @classmethod
    def local(cls, state_file: Path | None = None) -> StackTarget:
        """The running local stack (``provisioner local up``)."""
        from provisioner_cli.local import STATE_FILE, StackState

        state = StackState.load(state_file or STATE_FILE)
        return cls(
            dict(state.refs),
            state.harness_session(),
            state.aws_endpoint,
            description="the local stack",
            parameters=dict(state.parameters),
            local_state=state,
        )


def template_option(help: str = "SAM template to read functions and resources from.") -> Callable[[Any], Any]:
    """The ``--template`` option (``template_path``; template.yaml by default)."""
    import click

    return click.option("--template", "template_path", default="template.yaml", show_default=True, help=help)


def target_options(command: Any) -> Any:
    """``--local`` / ``--stack-name`` / ``--region`` / ``--profile`` / ``--endpoint-url`` options."""
    import click

    options = [
        click.option("--local", "use_local", is_flag=True, help="Use the running local stack."),
        click.option(
            "--stack-name",
            help="Deployed stack (default: samconfig.toml's stack_name; the local stack when it runs).",
        ),
        click.option("--region", help="AWS region of the deployed stack."),
        click.option("--profile", help="AWS profile for the deployed stack."),
        click.option("--endpoint-url", help="AWS endpoint (e.g. moto's server) for the deployed stack."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def resolve_target(
    use_local: bool = False,
    stack_name: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> StackTarget:
    """``--stack-name`` wins; then ``--local``; with neither, the local stack when it runs, else
    samconfig.toml's stack."""
    import click

    from provisioner_cli.local import STATE_FILE

    if stack_name is None and (use_local or STATE_FILE.exists()):
        try:
            return StackTarget.local()
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
    name = stack_name or default_stack_name()
    if not name:
        raise click.UsageError("no stack: pass --stack-name, or --local with the local stack running")
    session = boto3.Session(region_name=region, profile_name=profile)
    try:
        return StackTarget.deployed(name, session, endpoint_url)
    except Exception as exc:  # botocore's errors: no credentials, no such stack, no access
        raise click.ClickException(f"cannot read stack {name}: {exc}") from None


__all__ = [
    "PROVIDER_DLQS",
    "PROVIDER_QUEUES",
    "StackTarget",
    "default_stack_name",
    "resolve_target",
    "target_options",
]
