"""Backlog: ten times a provider's budget per window, queued at once and drained through the real
queue by two pollers (the event source mapping with MaximumConcurrency 2), against the floor of
backlog / budget windows."""

from __future__ import annotations

import json
import time
from collections import Counter

import boto3

from bench.events import people
from bench.providers import BACKLOG_PROVIDER
from bench.report import Report
from bench.stack import LocalStack
from provisioner_cli.lambda_runtime import EventSourceMapping
from provisioner_cli.local import REGION
from provisioner_cli.queues import queue_depth

BUDGET = 20  # requests per window: small, so that ten windows' worth drains in minutes
WINDOWS = 10  # the backlog, in windows of the budget (3 with --quick)
POLLERS = 2  # containers, as the queue's event source mapping (MaximumConcurrency 2)
DRAIN_TIMEOUT_S = 20 * 60


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    info = BACKLOG_PROVIDER
    if info.budget is None:
        raise ValueError(f"{info.name} has no shared budget to drain a backlog at")
    window = info.budget.window_seconds
    backlog = (3 if quick else WINDOWS) * BUDGET
    sqs = boto3.client("sqs", endpoint_url=stack.state.aws_endpoint, region_name=REGION)
    queue = stack.state.refs[info.create.queue]
    sqs.purge_queue(QueueUrl=queue)  # only this backlog: nothing an earlier benchmark left waiting
    messages = [json.dumps(body) for body in people("backlog", backlog)]
    for start in range(0, backlog, 10):
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(messages[start : start + 10])],
        )
    handlers = [
        stack.functions.load(info.create.function, {info.budget.setting: str(BUDGET)}) for _ in range(POLLERS)
    ]
    start_calls = len(stack.sandbox.calls)
    mapping = EventSourceMapping(sqs, queue, list(handlers)).start()
    started = time.time()
    try:
        while time.time() - started < DRAIN_TIMEOUT_S:
            time.sleep(2)
            if queue_depth(sqs, queue).total == 0:
                break
    finally:
        mapping.stop()
    elapsed = time.time() - started
    calls = [c for c in stack.sandbox.calls[start_calls:] if c.provider == info.name]
    if not calls:
        raise RuntimeError(f"no call reached the sandbox's {info.name} in {elapsed:.0f} s")
    windows = Counter(int(c.at // window) for c in calls)
    first, last = min(windows), max(windows)
    full = [windows[w] for w in range(first + 1, last)]
    share = sum(full) / (len(full) * BUDGET) if full else 0.0
    stats = mapping.stats
    receives = stats.receives / backlog
    invocations = stats.invocations / backlog
    floor_s = backlog / BUDGET * window
    dead = sqs.get_queue_attributes(
        QueueUrl=stack.state.refs[info.create.dead_letter_queue],
        AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]["ApproximateNumberOfMessages"]
    rows = [
        [
            f"{BUDGET}/{info.budget.per}",
            backlog,
            f"{elapsed / 60:.1f} min",
            f"{floor_s / 60:.0f} min",
            f"{elapsed / floor_s:.2f}x",
            f"{share:.0%} " + report.check(share >= 0.95, "backlog throughput >= 95% of the budget"),
            f"{max(windows.values())} " + report.check(max(windows.values()) <= BUDGET, "never over budget"),
            sum(1 for c in calls if c.status == 429),
            f"{receives:.2f} " + report.check(receives <= 2.0, "at most 2 receives per record"),
            f"{invocations:.2f}",
            dead,
        ]
    ]
    report.table(
        f"{info.title} backlog at the shared budget (real queue, two pollers)",
        [
            "budget",
            "backlog",
            "drain time",
            "floor (backlog / budget)",
            "drain / floor",
            "throughput (full windows)",
            "most in a window",
            "429s",
            "receives / record",
            "invocations / person",
            "dead-lettered",
        ],
        rows,
        "A record that finds the window full books a later one and is sent back to the queue, "
        "delayed until its turn: it is received about twice (book, send), whatever the backlog.",
    )
