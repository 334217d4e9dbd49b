"""``provisioner status``: links per provider, queue depths and how long a backlog takes to drain.

It works on any StackTarget: the local stack or a deployed stack (resources by logical id). Every
provider of the registry gets a row; one with a shared request budget (``ProviderInfo.budget``) also
gets a drain estimate at the budget the stack was given (its template parameter).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from provisioner_cli.queues import SIGNUP_DLQ, QueueDepth, queue_depth
from provisioner_cli.stack import PROVIDER_WIDTH, StackTarget, resolve_target, target_options
from provisioning import ratelimit
from provisioning.providers import PROVIDERS
from provisioning.registry import Budget, ProviderInfo

# How a drain estimate names a window it knows: (unit of the time to drain, unit of the budget).
WINDOW_UNITS = {60: ("min", "min"), 3600: ("h", "hour")}


def budget_parameter(budget: Budget) -> str:
    """The stack parameter that sets a budget: its setting in CamelCase
    (``PALENCA_REQUESTS_PER_MINUTE`` → ``PalencaRequestsPerMinute``)."""
    return "".join(part.capitalize() for part in budget.setting.split("_"))


@dataclass(frozen=True)
class DrainEstimate:
    """How long a provider's backlog takes at its budget, at least, in whole windows."""

    requests: int  # the budget: requests in each window
    window_seconds: int
    windows: int

    @property
    def seconds(self) -> int:
        return self.windows * self.window_seconds

    @property
    def per_minute(self) -> bool:
        return self.window_seconds == 60

    def describe(self) -> str:
        """``~3 min at 120/min``, ``~2 h at 2000/hour``."""
        if self.window_seconds in WINDOW_UNITS:
            unit, per = WINDOW_UNITS[self.window_seconds]
            return f"~{self.windows} {unit} at {self.requests}/{per}"
        return f"~{self.seconds} s at {self.requests} per {self.window_seconds} s"


@dataclass
class ProviderStatus:
    links: Counter[str] = field(default_factory=Counter)  # by link status
    queue: QueueDepth = field(default_factory=QueueDepth)
    dlq: QueueDepth = field(default_factory=QueueDepth)
    drain: DrainEstimate | None = None  # when the provider has a shared request budget

    def as_json(self) -> dict[str, Any]:
        drain = self.drain
        minutes = drain is not None and drain.per_minute
        return {
            "links": dict(self.links),
            "queue": asdict(self.queue),
            "dlq": asdict(self.dlq),
            "budget_per_minute": drain.requests if drain and minutes else None,
            "drain_minutes": drain.windows if drain and minutes else None,
            "budget": {"requests": drain.requests, "window_seconds": drain.window_seconds} if drain else None,
            "drain_seconds": drain.seconds if drain else None,
        }


def drain_estimate(stack: StackTarget, info: ProviderInfo, backlog: int) -> DrainEstimate | None:
    """For a provider with a shared request budget: the backlog at the budget, or the last window
    its waiting records booked, whichever is later. None without a budget, or on a stack that does
    not set it or has no rate-limit table."""
    if info.budget is None:
        return None
    value = stack.parameters.get(budget_parameter(info.budget))
    if not value or "RateLimitTable" not in stack.physical:
        return None
    requests, window_s = int(value), info.budget.window_seconds
    windows = ratelimit.windows_to_drain(backlog, requests)
    limiter = ratelimit.SharedRateLimiter(
        stack.client("dynamodb"), stack.resource("RateLimitTable"), info.name, requests, window_s=window_s
    )
    booked_until = limiter.booked_until()
    if booked_until is not None and backlog:
        windows = max(windows, math.ceil((booked_until - time.time()) / window_s) + 1)
    return DrainEstimate(requests, window_s, windows)


def link_counts(dynamodb: Any, table: str) -> dict[str, Counter[str]]:
    """Links per provider and status: one paginated Scan reading only those two attributes (the
    claims that keep a provider user to one person have no status and are not counted)."""
    counts: dict[str, Counter[str]] = {}
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="#p, #s",
        ExpressionAttributeNames={"#p": "provider", "#s": "status"},
    )
    for page in pages:
        for item in page.get("Items", []):
            if "status" not in item:
                continue
            provider = item.get("provider", {}).get("S", "?")
            counts.setdefault(provider, Counter())[item["status"]["S"]] += 1
    return counts


@dataclass
class StackStatus:
    providers: dict[str, ProviderStatus]
    signup_dlq: QueueDepth | None  # None: the stack has no SignupEventsDLQ

    def as_json(self) -> dict[str, Any]:
        return {
            "providers": {name: s.as_json() for name, s in self.providers.items()},
            "signup_dlq": asdict(self.signup_dlq) if self.signup_dlq else None,
        }


def stack_status(stack: StackTarget, with_links: bool = True) -> StackStatus:
    sqs = stack.client("sqs")
    links = link_counts(stack.client("dynamodb"), stack.users_table) if with_links else {}
    providers = {}
    for info in PROVIDERS:
        status = ProviderStatus(
            links=links.get(info.name, Counter()),
            queue=queue_depth(sqs, stack.resource(info.create.queue)),
            dlq=queue_depth(sqs, stack.resource(info.create.dead_letter_queue)),
        )
        status.drain = drain_estimate(stack, info, status.queue.total)
        providers[info.name] = status
    signups = queue_depth(sqs, stack.resource(SIGNUP_DLQ)) if SIGNUP_DLQ in stack.physical else None
    return StackStatus(providers, signups)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-links", is_flag=True, help="Skip counting links (a scan of the users table).")
@target_options
def status(as_json: bool, no_links: bool, **target: Any) -> None:
    """Links per provider, queue depths (queued, waiting for a rate budget, in flight), dead-letter
    queue depths, and how long a rate-limited provider's backlog takes to drain."""
    result = stack_status(resolve_target(**target), with_links=not no_links)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    header = (
        f"{'provider':<{PROVIDER_WIDTH}} {'linked':>8} {'pending':>8} {'queued':>8} {'waiting':>8} "
        f"{'in flight':>9} {'DLQ':>6}  drains in"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for name, s in result.providers.items():
        failed = s.dlq.visible + s.dlq.in_flight
        drain = s.drain.describe() if s.drain and s.drain.windows else "-"
        click.echo(
            f"{name:<{PROVIDER_WIDTH}} {s.links['linked']:>8} {s.links['pending']:>8} {s.queue.visible:>8} "
            f"{s.queue.delayed:>8} {s.queue.in_flight:>9} {failed:>6}  {drain}"
        )
    click.echo("waiting: records sent back to wait for a provider's rate budget (they use no attempt)")
    if result.signup_dlq is not None:
        click.echo(f"signup events EventBridge could not deliver ({SIGNUP_DLQ}): {result.signup_dlq.visible}")


__all__ = ["DrainEstimate", "ProviderStatus", "StackStatus", "budget_parameter", "stack_status", "status"]
