"""Warm cost: our code's wall time and AWS calls per person in a warm container, Secrets Manager
calls per container, and the AWS cost per million people they add up to."""

from __future__ import annotations

import time

from bench.events import bodies, people, sqs_event
from bench.functions import counting_aws_calls
from bench.providers import room_in_every_budget
from bench.report import Report
from bench.stack import LocalStack
from provisioning.providers import PROVIDERS

# On-demand prices (us-east-1), used for the cost estimate.
PRICES = {
    "dynamodb_write": 1.25 / 1e6,  # per write request unit
    "dynamodb_read": 0.25 / 1e6,  # per read request unit
    "sqs_request": 0.40 / 1e6,
    "secrets_call": 0.05 / 1e4,
    "kms_request": 0.03 / 1e4,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000133334,  # arm64
}
READS = ("GetItem", "Query", "Scan")
WRITES = ("PutItem", "UpdateItem", "DeleteItem")
# Goal: writes that provision a person (their claim, the claim of the provider user, the link), on
# the tables of provisioning (users, idempotency); a shared rate budget's slot is not one of them.
PROVISIONING_WRITES_GOAL = 3
PROVISIONING_TABLES = ("UsersTable", "IdempotencyTable")


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    per_person = warm_cost(stack, report, quick)
    secrets_per_container(stack, report)
    cost_table(report, per_person)


def warm_cost(stack: LocalStack, report: Report, quick: bool) -> dict[str, dict[str, float]]:
    """Our code's cost per person (zero-latency sandbox) and the AWS calls each person costs."""
    count = 50 if quick else 100
    rows, per_person = [], {}
    most_writes = 0.0
    provisioning_tables = {stack.state.refs[t] for t in PROVISIONING_TABLES}
    for info in PROVIDERS:
        function_id, queue = info.create.function, info.create.queue
        # The cost of a person when the budget has room: earlier benchmarks spent this minute's.
        invoke = stack.functions.load(function_id, {"RECORD_CONCURRENCY": "1", **room_in_every_budget()})
        invoke(sqs_event(queue, bodies(info, people("warmup", 2))))  # cold start excluded
        persons = bodies(info, people(f"w-{info.name}", count))
        with counting_aws_calls() as calls:
            started = time.perf_counter()
            for start in range(0, count, 10):
                answer = invoke(sqs_event(queue, persons[start : start + 10]))
                assert answer == {"batchItemFailures": []}, answer
            elapsed = time.perf_counter() - started
        assert not calls["sqs:SendMessageBatch"], "records waited for a rate budget: not a warm cost"
        reads = sum(v for k, v in calls.items() if k.split(":")[1] in READS)
        writes = sum(v for k, v in calls.items() if k.split(":")[1] in WRITES)
        provisioning = sum(
            v for (op, table), v in calls.by_table.items() if op in WRITES and table in provisioning_tables
        )
        slots = writes - provisioning  # the rate-limit table's request slots
        goal_met = report.check(
            provisioning / count <= PROVISIONING_WRITES_GOAL,
            f"{function_id}: at most {PROVISIONING_WRITES_GOAL} provisioning writes per person",
        )
        secrets = calls["secretsmanager:GetSecretValue"]
        kms = sum(v for k, v in calls.items() if k.startswith("kms:"))
        most_writes = max(most_writes, provisioning / count)
        per_person[info.name] = {
            "reads": reads / count,
            "writes": writes / count,
            "kms": kms / count,
            "secrets": secrets,
            "ms": elapsed / count * 1000,
        }
        rows.append(
            [
                function_id,
                f"{elapsed / count * 1000:.1f} ms",
                f"{reads / count:.1f}",
                f"{provisioning / count:.1f}",
                goal_met,
                f"{slots / count:.1f}",
                f"{kms / count:.1f}",
                f"{secrets} per {count // 10} invocations",
                ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
            ]
        )
    report.goal(
        f"at most {PROVISIONING_WRITES_GOAL} DynamoDB writes per person provisioned",
        f"{most_writes:.1f} at most (every create function; rate-limit slots apart)",
        most_writes <= PROVISIONING_WRITES_GOAL,
    )
    report.table(
        f"Warm cost per person ({count} people, batches of 10, one by one, zero-latency sandbox)",
        [
            "function",
            "wall time per person",
            "DynamoDB reads",
            "provisioning writes",
            f"<= {PROVISIONING_WRITES_GOAL}",
            "rate-limit slot writes",
            "KMS",
            "Secrets Manager",
            "all calls",
        ],
        rows,
        "Wall time per person includes the round trips to moto's server and the sandbox on loopback. "
        "Provisioning writes: those on the users and idempotency tables (the claim of the person, the "
        "claim of the provider user, the link); a provider with a shared request budget also takes "
        "one slot of it per request (the rate-limit table), counted apart.",
    )
    return per_person


def secrets_per_container(stack: LocalStack, report: Report) -> None:
    """GetSecretValue calls of one container over 100 invocations (10 concurrent records each)."""
    rows = []
    for info in PROVIDERS:
        function_id, queue = info.create.function, info.create.queue
        # Room in the budget: a record that waited would come back to the queue the backlog uses.
        invoke = stack.functions.load(function_id, room_in_every_budget())
        with counting_aws_calls() as calls:
            for n in range(100):
                invoke(sqs_event(queue, bodies(info, people(f"s{n}", 1 if n % 10 else 10))))
        fetched = calls["secretsmanager:GetSecretValue"]
        rows.append(
            [function_id, 100, fetched, report.check(fetched <= 1, f"{function_id} secret fetched once")]
        )
    report.table(
        "Secrets Manager calls per container (100 invocations within one cache period of 300 s)",
        ["function", "invocations", "GetSecretValue calls", "<= 1 per secret"],
        rows,
    )


def cost_table(report: Report, per_person: dict[str, dict[str, float]]) -> None:
    rows = []
    for provider, m in per_person.items():
        dynamodb = m["writes"] * PRICES["dynamodb_write"] + m["reads"] * PRICES["dynamodb_read"]
        sqs = (1 / 10 + 1 / 10 + 1 / 10) * PRICES["sqs_request"]  # send, receive, delete in tens
        kms = m["kms"] * PRICES["kms_request"]
        lambda_cost = PRICES["lambda_request"] / 10 + 0.5 * (m["ms"] / 1000) * PRICES["lambda_gb_second"]
        total = dynamodb + sqs + kms + lambda_cost
        rows.append(
            [
                provider,
                f"{m['writes']:.1f}",
                f"${dynamodb * 1e6:.2f}",
                f"${sqs * 1e6:.2f}",
                f"${kms * 1e6:.2f}",
                f"${lambda_cost * 1e6:.2f}",
                f"${total * 1e6:.2f}",
            ]
        )
    report.table(
        "Estimated AWS cost per million people provisioned (us-east-1 on-demand prices)",
        ["provider", "DynamoDB writes", "DynamoDB", "SQS", "KMS", "Lambda (512 MB arm64)", "total"],
        rows,
        "DynamoDB writes: every write per person, rate-limit slots included. Assumes items under 1 KB "
        "(1 request unit each), SQS send/receive/delete in batches of ten, "
        "Lambda billed for the warm wall time per person measured above, batches of ten; Secrets "
        "Manager (about one call per container per 5 minutes) and CloudWatch are left out. Prices: "
        "DynamoDB $1.25 per million writes and $0.25 per million reads, SQS $0.40 per million "
        "requests, KMS $0.03 per 10,000, Lambda $0.20 per million requests + $0.0000133334 per "
        "GB-second.",
    )
