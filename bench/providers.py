"""What the bench knows of the providers, from the registry (``provisioning.providers``) and
template.yaml, so that a provider added there is benchmarked without a change here. The providers
named below are data: the one a benchmark is about, with the reason it was chosen."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner_cli.template import Template
from provisioning.providers import PROVIDERS, provider

# The batch benchmark's provider: one call per record (a person without e-mail or phone makes no
# search first) and no shared budget that a batch of 100 records at a time would spend.
BATCH_PROVIDER = provider("palm")
# The backlog benchmark's provider: the one whose budget the backlog is drained at (Palenca's is
# account-wide, shared by every container).
BACKLOG_PROVIDER = provider("palenca")

# A budget no benchmark reaches, for benchmarks that measure a person's cost and not the wait.
ROOM = "100000"


def room_in_every_budget() -> dict[str, str]:
    """Overrides that give every provider with a shared budget more room than a benchmark uses."""
    return {info.budget.setting: ROOM for info in PROVIDERS if info.budget is not None}


# The events/<folder>/ file of each kind of trigger template.yaml gives a function, and its name in
# the cold-start table.
TRIGGER_EVENTS: dict[str, tuple[str, str]] = {
    "Api": ("API", "api.json"),
    "SQS": ("SQS", "sqs.json"),
    "Schedule": ("schedule", "schedule.json"),
    "DynamoDB": ("DynamoDB stream", "stream.json"),
    "S3": ("S3", "put.json"),  # its object is put first (bench.cold_start.import_request)
}
# Triggers set elsewhere than in a function's Events: a Cognito user pool's PostConfirmation trigger
# is the pool's setting (the pool is not in this stack).
OTHER_TRIGGERS: dict[str, tuple[tuple[str, str], ...]] = {
    "SignupTriggerFunction": (("Cognito", "confirm_sign_up.json"),),
}

# Functions whose first request reads a person: each person a cold start of theirs asks for is created
# first (through the batch provider's create function), so that the read finds one.
READS_A_PERSON = frozenset({"PeopleFunction"})


@dataclass(frozen=True)
class ColdStartCase:
    function: str  # logical id
    folder: str  # events/<folder>/
    event_file: str  # its sample event there
    trigger: str  # as the table names it


def cold_start_cases(template: Template) -> list[ColdStartCase]:
    """Every function by each of its triggers: the create functions first (the registry's order),
    then the others in template.yaml's order."""
    create = [info.create.function for info in PROVIDERS]
    ordered = create + [f for f in template.functions() if f not in create]
    resources = template.of_type("AWS::Serverless::Function")
    cases = []
    for function_id in ordered:
        events = resources[function_id]["Properties"].get("Events") or {}
        triggers = list(OTHER_TRIGGERS.get(function_id, ()))
        # A kind of trigger without a sample first request here is listed, not measured (its event
        # file is empty): the run names it under the table.
        triggers += [TRIGGER_EVENTS.get(e["Type"], (e["Type"], "")) for e in events.values()]
        folder = template.function(function_id).code_uri.name
        # Two events of one kind (an S3 trigger per suffix, say) are one row.
        cases += [
            ColdStartCase(function_id, folder, file, trigger) for trigger, file in dict.fromkeys(triggers)
        ]
    return cases
