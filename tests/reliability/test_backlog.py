"""A backlog ten times Palenca's per-minute budget drains through the real queue.

The Palenca queue is moto's SQS with the attributes and redrive policy template.yaml gives it
(visibility timeout, ``maxReceiveCount: 3`` to its DLQ). Two pollers drain it as Lambda's event
source mapping does with ``MaximumConcurrency`` 2: each with its own container, batches of up to
ten, ``ReportBatchItemFailures``, failed records left to their visibility timeout. The sandbox's
Palenca enforces the same budget (429 over it), per minute, as Palenca does.

Waiting for the budget must not be failing: every person is linked once, nothing is dead-lettered,
no minute is over budget, Palenca never answers 429, and a record is received about twice (once to
book its turn, once to be sent). Invalid records planted in a backlog reach the DLQ on their first
receive; the good ones around them do not.

Each case lasts as long as its backlog takes at the budget (ten minutes for the first):
``make test`` runs this module beside the rest of the suite."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import EventSourceMapping
from provisioner_cli.operations import queue_depth
from provisioning.ratelimit import WINDOW_S
from provisioning.store import LinkStatus, LinkStore
from tests.conftest import dead_letters

pytestmark = pytest.mark.backlog

BUDGET = int(os.environ.get("BACKLOG_BUDGET", "5"))  # requests per minute
FUNCTION = "PalencaCreateUserFunction"
QUEUE, DLQ = "PalencaCreateUserQueue", "PalencaCreateUserDLQ"


def _drain(
    load_function: Any,
    stack: Any,
    aws: Any,
    sandbox: Any,
    monkeypatch: Any,
    bodies: list[str],
    limit_s: float,
) -> dict[str, Any]:
    """Queue ``bodies`` at once, drain them with two pollers under the budget; what happened."""
    sandbox.emulators["palenca"].requests_per_minute = BUDGET
    sqs = aws("sqs")
    queue = stack.refs[QUEUE]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + 10])],
        )
    handlers = [load_function(FUNCTION) for _ in range(2)]  # two containers
    monkeypatch.setenv("PALENCA_REQUESTS_PER_MINUTE", str(BUDGET))  # after loading: the template says 120
    mapping = EventSourceMapping(sqs, queue, handlers).start()
    started = time.time()
    try:
        empty_checks = 0
        while time.time() - started < limit_s and empty_checks < 2:
            time.sleep(2)
            empty_checks = empty_checks + 1 if queue_depth(sqs, queue).total == 0 else 0
    finally:
        mapping.stop()
    elapsed = time.time() - started
    assert queue_depth(sqs, queue).total == 0, f"the backlog did not drain in {limit_s:.0f} s"
    assert mapping.stats.errors == []

    calls = [c for c in sandbox.calls if c.provider == "palenca"]
    per_window = Counter(int(c.at // WINDOW_S) for c in calls)
    links = [
        link
        for link in LinkStore(aws("dynamodb"), stack.refs["UsersTable"]).scan_links()
        if link.status == LinkStatus.LINKED
    ]
    return {
        "calls": calls,
        "per_window": per_window,
        "links": links,
        "dead": dead_letters(sqs, stack.refs[DLQ]),
        "stats": mapping.stats,
        "elapsed": elapsed,
    }


def _person(n: int, prefix: str) -> str:
    return json.dumps({"external_id": f"{prefix}-{n:05d}"})


@pytest.mark.timeout(1200)
def test_a_backlog_ten_times_the_budget_drains_without_dead_letters_or_429(
    load_function, stack, aws, sandbox, monkeypatch, capsys
):
    backlog = 10 * BUDGET
    bodies = [_person(n, "backlog") for n in range(backlog)]
    floor_s = (backlog / BUDGET) * WINDOW_S
    run = _drain(load_function, stack, aws, sandbox, monkeypatch, bodies, limit_s=floor_s + 4 * WINDOW_S)

    # Every person linked once, created once at Palenca, nothing dead-lettered.
    assert run["dead"] == []
    assert Counter(link.external_id for link in run["links"]) == Counter(
        json.loads(b)["external_id"] for b in bodies
    )
    palenca = sandbox.emulators["palenca"]
    assert all(len(palenca.users_with_external_id(json.loads(b)["external_id"])) == 1 for b in bodies)

    # Never over budget, never a 429 from Palenca; no lookup spent (nothing was ever unknown).
    assert max(run["per_window"].values()) <= BUDGET, run["per_window"]
    assert [c for c in run["calls"] if c.status == 429] == []
    assert all(c.path.endswith("/v1/users") for c in run["calls"])

    # The budget is used: every full window between the first and the last sends the whole budget.
    windows = sorted(run["per_window"])
    full = [run["per_window"][w] for w in range(windows[0] + 1, windows[-1])]
    throughput = sum(full) / (len(full) * BUDGET)
    assert throughput >= 0.95, run["per_window"]

    # No churn: about two receives a record (book, then send), a fraction of an invocation a person.
    stats = run["stats"]
    receives_per_record = stats.receives / backlog
    assert receives_per_record <= 2.0, stats
    invocations_per_person = stats.invocations / backlog
    assert invocations_per_person <= 1.0, stats

    with capsys.disabled():
        report = {
            "budget_per_min": BUDGET,
            "backlog": backlog,
            "drain_s": round(run["elapsed"]),
            "floor_s": round(floor_s),
            "throughput_share": round(throughput, 3),
            "receives_per_record": round(receives_per_record, 2),
            "invocations_per_person": round(invocations_per_person, 2),
        }
        print(f"\nbacklog: {json.dumps(report)}")


@pytest.mark.timeout(900)
def test_invalid_records_in_a_backlog_reach_the_dlq_at_once_and_the_good_ones_do_not(
    load_function, stack, aws, sandbox, monkeypatch
):
    good = [_person(n, "mixed") for n in range(3 * BUDGET)]
    planted = ['{"external_id": ', json.dumps({"external_id": "bad id"}), json.dumps({"widget_id": "x"})]
    bodies = good[:4] + planted + good[4:]
    run = _drain(load_function, stack, aws, sandbox, monkeypatch, bodies, limit_s=6 * WINDOW_S)

    assert sorted(d["body"] for d in run["dead"]) == sorted(planted)
    assert all(d["failure"]["attempts"] == 1 for d in run["dead"])  # on their first receive
    assert all(d["failure"]["code"] == "validation_error" for d in run["dead"])
    assert sorted(link.external_id for link in run["links"]) == sorted(
        json.loads(b)["external_id"] for b in good
    )
    assert max(run["per_window"].values()) <= BUDGET
