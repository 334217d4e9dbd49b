"""The shared Palenca request budget: a fixed one-minute window counted in DynamoDB."""

from __future__ import annotations

import sys
import threading

import pytest

from provisioning.errors import RateLimited
from provisioning.ratelimit import SharedRateLimiter


@pytest.fixture
def limiter_factory(stack, aws):
    def make(limit: int, now: float) -> SharedRateLimiter:
        return SharedRateLimiter(
            aws("dynamodb"), stack.refs["RateLimitTable"], "palenca", limit, clock=lambda: now
        )

    return make


def test_budget_is_shared_by_every_limiter_of_the_provider(limiter_factory):
    container_a = limiter_factory(3, now=6000.0)
    container_b = limiter_factory(3, now=6010.0)

    container_a.acquire()
    container_b.acquire()
    container_a.acquire()
    with pytest.raises(RateLimited) as raised:
        container_b.acquire()

    assert raised.value.retry_after == pytest.approx(50.0)  # until the next minute window
    assert container_a.used() == 3


def test_next_window_has_a_fresh_budget(limiter_factory):
    limiter_factory(1, now=6000.0).acquire()
    with pytest.raises(RateLimited):
        limiter_factory(1, now=6059.0).acquire()

    limiter_factory(1, now=6060.0).acquire()


def _race(limiters: list[SharedRateLimiter]) -> int:
    """Every limiter asks for a slot at the same moment; returns how many got one."""
    granted: list[SharedRateLimiter] = []
    barrier = threading.Barrier(len(limiters))

    def take(limiter: SharedRateLimiter) -> None:
        barrier.wait()
        try:
            limiter.acquire()
            granted.append(limiter)
        except RateLimited:
            pass

    threads = [threading.Thread(target=take, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return len(granted)


def test_containers_racing_for_the_last_slots_never_exceed_the_budget(limiter_factory):
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, inside every call
    try:
        for window in range(20):
            limiters = [limiter_factory(2, now=60.0 * (200 + window)) for _ in range(6)]
            assert _race(limiters) == 2
    finally:
        sys.setswitchinterval(previous)
