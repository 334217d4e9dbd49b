"""Batch wall time: the records of one SQS batch provisioned concurrently vs one by one, at fixed
provider latency, against the latency-bound limit ceil(records / pool) x latency."""

from __future__ import annotations

import math
import time

from bench.events import bodies, people, sqs_event
from bench.providers import BATCH_PROVIDER
from bench.report import Report
from bench.stack import LocalStack
from provisioning.settings import Settings

# One by one, 100 records at 200 ms run for over 20 s: in a 30 s function the last records would
# (rightly) not start, since a call starts only while a whole call deadline and a margin remain. Both
# modes run in a longer invocation, so that the baseline is complete.
TIMEOUT_S = 120


def run(stack: LocalStack, report: Report, quick: bool) -> None:
    info = BATCH_PROVIDER
    function_id, queue = info.create.function, info.create.queue
    # Settings are read once per container: one container per mode.
    pooled = stack.functions.load(function_id, timeout_s=TIMEOUT_S)
    sequential = stack.functions.load(function_id, {"RECORD_CONCURRENCY": "1"}, timeout_s=TIMEOUT_S)
    for container in (pooled, sequential):
        container(sqs_event(queue, bodies(info, people("warm", 2))))  # cold start out of the timings
    # The pool the pooled container uses: the Settings rule on its environment (no RECORD_CONCURRENCY).
    pool = Settings.from_env(stack.functions.process_environment(function_id)).workers
    memory = stack.template.function(function_id).memory
    rows = []
    for latency in [100] if quick else [50, 100, 200]:
        stack.sandbox.set_faults(info.name, latency_ms=latency)
        for records in (10, 100):
            timings = {}
            for mode, container in (("pool", pooled), ("sequential", sequential)):
                event = sqs_event(queue, bodies(info, people(f"b{latency}", records)))
                started = time.perf_counter()
                answer = container(event)
                timings[mode] = time.perf_counter() - started
                assert answer == {"batchItemFailures": []}, answer
            limit = math.ceil(records / pool) * latency / 1000
            within = timings["pool"] <= 2 * limit
            faster = timings["sequential"] / timings["pool"]
            criterion = ""
            if latency == 100 and records == 100:
                criterion = (
                    f"{report.check(within, 'batch of 100 at 100 ms within 2x limit')} / "
                    f"{report.check(faster >= 5, 'batch of 100 at 100 ms 5x faster than sequential')}"
                )
            rows.append(
                [
                    f"{latency} ms",
                    records,
                    f"{limit:.2f} s",
                    f"{timings['pool']:.2f} s",
                    f"{timings['pool'] / limit:.2f}x",
                    f"{timings['sequential']:.2f} s",
                    f"{faster:.1f}x",
                    criterion,
                ]
            )
    stack.sandbox.set_faults(info.name, latency_ms=0)
    report.table(
        f"Batch wall time ({function_id}, one SQS event, pool of {pool} at {memory} MB)",
        [
            "provider latency",
            "records",
            "limit ceil(records/pool) x latency",
            "measured",
            "vs limit",
            "sequential",
            "speed-up",
            "<= 2x limit / >= 5x faster",
        ],
        rows,
        f"One provider call per record (a {info.title} person without e-mail or phone). Each record also "
        "makes 3 DynamoDB writes (the claim of the person, the claim of the provider user, the link) "
        "to moto's server on loopback.",
    )
