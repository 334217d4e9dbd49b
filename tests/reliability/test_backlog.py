"""A backlog ten times a provider's shared budget (Palenca's, per minute) drains through the real queue.

The provider is the first registered one with a budget in windows of a minute at most. Its queue is
moto's SQS with the attributes and redrive policy template.yaml gives it
(visibility timeout, ``maxReceiveCount: 3`` to its DLQ). Two pollers drain it as Lambda's event
source mapping does with ``MaximumConcurrency`` 2: each with its own container, batches of up to
ten, ``ReportBatchItemFailures``, failed records left to their visibility timeout. The provider's
emulator enforces the same budget (429 over it), per window, as the provider does.

Waiting for the budget must not be failing: every person is linked once, nothing is dead-lettered,
no window is over budget, the provider never answers 429, and a record is received about twice (once to
book its turn, once to be sent). Invalid records planted in a backlog reach the DLQ on their first
receive; the good ones around them do not.

Each case lasts as long as its backlog takes at the budget (ten windows for the first):
``make test`` runs this module beside the rest of the suite."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import pytest

from provisioner_cli.lambda_runtime import EventSourceMapping
from provisioner_cli.queues import queue_depth
from provisioning.providers import PROVIDERS
from provisioning.store import LinkStatus, LinkStore
from tests.conftest import dead_letters
from tests.people import body_for

pytestmark = pytest.mark.backlog

# One budgeted provider, the first registered with a window of a minute at most: a backlog ten times
# its budget takes ten windows, so draining every budgeted provider's would multiply a run that
# already lasts ten minutes, and an hourly budget (ten hours) cannot be drained in a test at all.
INFO = next(p for p in PROVIDERS if p.budget is not None and p.budget.window_seconds <= 60)
assert INFO.budget is not None
WINDOW_S = INFO.budget.window_seconds
BUDGET = int(os.environ.get("BACKLOG_BUDGET", "5"))  # requests per window
FUNCTION = INFO.create.function
QUEUE, DLQ = INFO.create.queue, INFO.create.dead_letter_queue


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
    sandbox.emulators[INFO.name].budget = BUDGET
    sqs = aws("sqs")
    queue = stack.refs[QUEUE]
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + 10])],
        )
    handlers = [load_function(FUNCTION) for _ in range(2)]  # two containers
    monkeypatch.setenv(INFO.budget.setting, str(BUDGET))  # after loading: the template says the default
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

    calls = [c for c in sandbox.calls if c.provider == INFO.name]
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
    return json.dumps(body_for(INFO.name, f"{prefix}-{n:05d}"))


@pytest.mark.timeout(1200)
def test_a_backlog_ten_times_the_budget_drains_without_dead_letters_or_429(
    load_function, stack, aws, sandbox, monkeypatch, capsys
):
    backlog = 10 * BUDGET
    bodies = [_person(n, "backlog") for n in range(backlog)]
    floor_s = (backlog / BUDGET) * WINDOW_S
    run = _drain(load_function, stack, aws, sandbox, monkeypatch, bodies, limit_s=floor_s + 4 * WINDOW_S)

    # Every person linked once, created once at the provider, nothing dead-lettered.
    assert run["dead"] == []
    assert Counter(link.external_id for link in run["links"]) == Counter(
        json.loads(b)["external_id"] for b in bodies
    )
    assert all(sandbox.users_for(INFO.name, json.loads(b)["external_id"]) == 1 for b in bodies)

    # Never over budget, never a 429 from the provider; no lookup spent (nothing was ever unknown).
    assert max(run["per_window"].values()) <= BUDGET, run["per_window"]
    assert [c for c in run["calls"] if c.status == 429] == []
    create = sandbox.emulators[INFO.name].create_call()
    assert all((c.method, c.path) == create for c in run["calls"])

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
            "provider": INFO.name,
            "budget_per_window": BUDGET,
            "window_s": WINDOW_S,
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
    planted = [
        '{"external_id": ',
        json.dumps({"external_id": "bad id"}),
        json.dumps({"id": "no external_id"}),
    ]
    bodies = good[:4] + planted + good[4:]
    run = _drain(load_function, stack, aws, sandbox, monkeypatch, bodies, limit_s=6 * WINDOW_S)

    assert sorted(d["body"] for d in run["dead"]) == sorted(planted)
    assert all(d["failure"]["attempts"] == 1 for d in run["dead"])  # on their first receive
    assert all(d["failure"]["code"] == "validation_error" for d in run["dead"])
    assert sorted(link.external_id for link in run["links"]) == sorted(
        json.loads(b)["external_id"] for b in good
    )
    assert max(run["per_window"].values()) <= BUDGET
