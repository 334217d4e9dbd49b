"""The shared Palenca request budget: a fixed one-minute window counted in DynamoDB."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import pytest

from provisioning.errors import RateLimited
from provisioning.ratelimit import SharedRateLimiter


@pytest.fixture
def limiter_factory(stack, aws):
    def make(limit: int, now: float | Callable[[], float]) -> SharedRateLimiter:
        clock = now if callable(now) else (lambda: now)
        return SharedRateLimiter(aws("dynamodb"), stack.refs["RateLimitTable"], "palenca", limit, clock=clock)

    return make


def test_budget_is_shared_by_every_limiter_of_the_provider(limiter_factory):
    container_a = limiter_factory(3, now=6000.0)
    container_b = limiter_factory(3, now=6010.0)

    container_a.acquire()
    container_b.acquire()
    container_a.acquire()
    with pytest.raises(RateLimited) as raised:
        container_b.acquire()

    assert raised.value.retry_after == pytest.approx(51.0)  # a second into the next minute window
    assert raised.value.sent is False
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


def test_in_the_last_second_of_a_window_a_request_counts_in_the_next_one_too(limiter_factory):
    """A request sent then may reach the provider in its next window, on top of that window's budget."""
    limiter_factory(2, now=6059.2).acquire()
    assert limiter_factory(2, now=6059.2).used() == 1
    assert limiter_factory(2, now=6060.5).used() == 1  # the next window counts it too

    limiter_factory(2, now=6060.5).acquire()  # the next window is now full ...
    with pytest.raises(RateLimited):
        limiter_factory(2, now=6059.4).acquire()  # ... so no more requests in the guard
    assert limiter_factory(2, now=6059.4).used() == 1  # and nothing was kept of the refused one


def test_bookings_fill_the_windows_ahead_limit_by_limit(limiter_factory):
    limiter = limiter_factory(3, now=6010.0)
    booked = [limiter.book() for _ in range(7)]

    assert [window for _, window in booked] == [101, 101, 101, 102, 102, 102, 103]
    assert all(101 * 60 + 1 < turn < 101 * 60 + 5 for turn, _ in booked[:3])  # a moment after it opens
    assert limiter.used() == 0  # the current window is untouched


def test_a_booked_slot_is_the_bookers_and_nobody_elses(limiter_factory):
    booked = [limiter_factory(2, now=6010.0).book() for _ in range(2)]
    assert [window for _, window in booked] == [101, 101]

    in_window = limiter_factory(2, now=6063.0)
    with pytest.raises(RateLimited):
        in_window.acquire()  # a record that did not book finds window 101 taken
    with in_window.holding(booked_window=101):
        in_window.acquire()  # the booker sends on its own slot, taking nothing more
    assert in_window.used() == 2


def test_imports_leave_a_twentieth_of_each_window_to_signups(limiter_factory):
    limiter = limiter_factory(20, now=6010.0)
    imports = [window for _, window in (limiter.book("bulk") for _ in range(60))]
    signups = [window for _, window in (limiter.book("interactive") for _ in range(3))]

    assert imports[:19] == [101] * 19  # 19 of 20: one left to signups
    assert imports[19] == 102
    assert imports[-1] == 104
    assert signups == [101, 102, 103]  # not behind the import


def test_a_held_slot_serves_the_first_request_and_an_unused_one_is_given_back(limiter_factory):
    limiter = limiter_factory(2, now=6010.0)
    with limiter.holding():
        assert limiter.used() == 1
        limiter.acquire()  # the held slot: no second one taken
        assert limiter.used() == 1
        limiter.acquire()  # a second request takes its own
        assert limiter.used() == 2
    with pytest.raises(RateLimited):
        with limiter.holding():
            pass

    other = limiter_factory(2, now=6070.0)
    with other.holding():
        assert other.used() == 1
    assert other.used() == 0  # nothing was sent: the slot is back for someone else
