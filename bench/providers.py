"""What the bench knows of the providers, from the registry (``provisioning.providers``) and
template.yaml, so that a provider added there is benchmarked without a change here. The providers
named below are data: the one a benchmark is about, with the reason it was chosen."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner_cli.template import FunctionDef, Template
from provisioning.providers import PROVIDERS, provider

# The batch benchmark's provider: one call per record (a person without e-mail or phone makes no
# search first) and no shared budget that a batch of 100 records at a time would spend.
BATCH_PROVIDER = provider("palm")
# The backlog benchmark's provider: the one whose budget the backlog is drained at (Palenca's is
# account-wide, shared by every container).
BACKLOG_PROVIDER = provider("palenca")
# Functions measured beside the create functions (the registry's), with the events/<folder>/ file of
# each trigger measured.
OTHER_COLD_STARTS: dict[str, tuple[str, ...]] = {"PalencaListUsersFunction": ("api.json",)}

# A budget no benchmark reaches, for benchmarks that measure a person's cost and not the wait.
ROOM = "100000"

# The boto3 clients a function creates, by the variables of its environment that need them.
SERVICES_BY_VARIABLE: tuple[tuple[str, str], ...] = (
    ("USERS_TABLE", "dynamodb"),
    ("_SECRET_ID", "secretsmanager"),  # any provider's secret
    ("QUEUE_URL", "sqs"),  # its own queue, its dead-letter queue
    ("TOKEN_KMS_KEY_ID", "kms"),  # seals the credentials a provider answers with
)


def room_in_every_budget() -> dict[str, str]:
    """Overrides that give every provider with a shared budget more room than a benchmark uses."""
    return {info.budget.setting: ROOM for info in PROVIDERS if info.budget is not None}


def aws_services(function: FunctionDef) -> list[str]:
    """The AWS services whose clients the function creates, from the environment template.yaml gives
    it (the cold-start floor creates the same clients)."""
    services: list[str] = []
    for suffix, service in SERVICES_BY_VARIABLE:
        if service not in services and any(name.endswith(suffix) for name in function.environment):
            services.append(service)
    return services


@dataclass(frozen=True)
class ColdStartCase:
    function: str  # logical id
    folder: str  # events/<folder>/
    event_file: str  # api.json or sqs.json

    @property
    def trigger(self) -> str:
        return self.event_file.removesuffix(".json").upper()


def cold_start_cases(template: Template) -> list[ColdStartCase]:
    """Each create function by API and by SQS, then the other functions measured."""
    cases = [
        ColdStartCase(info.create.function, info.create.folder, event_file)
        for info in PROVIDERS
        for event_file in ("api.json", "sqs.json")
    ]
    for function_id, event_files in OTHER_COLD_STARTS.items():
        folder = template.function(function_id).code_uri.name
        cases += [ColdStartCase(function_id, folder, event_file) for event_file in event_files]
    return cases
