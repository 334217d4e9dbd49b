"""The command line of ``make bench`` (``python bench/run.py`` or ``python -m bench``)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from bench import RESULTS, backlog, batch, cold_start, import_rate, s3import, snapstart, warm
from bench.functions import prepare_process
from bench.report import Report
from bench.stack import LocalStack, local_stack

# The benchmarks, in the order a full run runs them (the backlog last: it takes the longest).
BENCHMARKS: dict[str, Callable[[LocalStack, Report, bool], None]] = {
    "batch": batch.run,
    "cold": cold_start.run,
    "warm": warm.run,
    "import": import_rate.run,
    "s3import": s3import.run,
    "snapstart": snapstart.run,
    "backlog": backlog.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="The hub's performance against its physical limits, on the local stack.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Fewer latencies, runs, people and a smaller backlog; prints the tables only "
        "(bench/results.md is left as it is).",
    )
    parser.add_argument("--strict", action="store_true", help="Exit 1 when an acceptance criterion fails.")
    parser.add_argument(
        "--only",
        choices=list(BENCHMARKS),
        help="Run one benchmark; its sections of bench/results.md are replaced, the others kept.",
    )
    args = parser.parse_args(argv)
    prepare_process()
    logging.disable(logging.WARNING)
    report = Report()
    with local_stack() as stack:
        for name, benchmark in BENCHMARKS.items():
            if args.only in (None, name):
                benchmark(stack, report, args.quick)
    if args.quick:
        report.summary()
        print(f"--quick: {RESULTS.relative_to(RESULTS.parents[1])} left as it is")
    elif args.only:
        report.replace_sections(RESULTS)
    else:
        report.write(RESULTS)
    if report.failures:
        print("criteria not met: " + "; ".join(report.failures))
        return 1 if args.strict else 0
    print("every criterion met")
    return 0
