"""The harness fails an invocation that runs past its function's timeout; only the time its
thread waited for a CPU busy with other processes is set aside (Lambda gives a function its own
share of CPU), and the time full garbage collections of the test process's heap took. A function
blocked on a hanging endpoint is not waiting for a CPU: it still fails."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import FULL_COLLECTIONS, _waited_for_cpu

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/thread-self/schedstat"), reason="the kernel gives no scheduler statistics"
)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_blocking_is_not_counted_as_waiting_for_a_cpu() -> None:
    before = _waited_for_cpu()
    time.sleep(0.5)  # as a call to a hanging endpoint blocks
    assert _waited_for_cpu() - before < 0.1


def test_competing_for_busy_cores_is_counted() -> None:
    spin = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        before = _waited_for_cpu()
        _spin(1.0)
        waited = _waited_for_cpu() - before
    finally:
        for hog in hogs:
            hog.wait()
    assert waited > 0.2, waited


def test_full_collections_are_counted_and_other_work_is_not() -> None:
    before = FULL_COLLECTIONS.seconds
    _spin(0.2)  # allocates nothing the collector tracks
    assert FULL_COLLECTIONS.seconds == before
    garbage = [[n] for n in range(300_000)]
    gc.collect()
    del garbage
    assert FULL_COLLECTIONS.seconds > before
