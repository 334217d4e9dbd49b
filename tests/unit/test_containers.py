"""The local runtime hosts many execution environments in one process: each loaded function keeps
the SnapStart hooks its init registered (Lambda's runtime has one registry per environment), and
nothing of a dropped container stays alive in the process-wide registries."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
import snapshot_restore_py

from provisioner_cli.lambda_runtime import load_container

APP = """
from snapshot_restore_py import register_after_restore, register_before_snapshot

class Handler:
    def __call__(self, event, context):
        return event

def prime(handler):
    handler.primed = True

def reset(handler):
    handler.primed = False

handler = Handler()
register_before_snapshot(prime, handler)
register_after_restore(reset, handler)
"""


def _registries() -> tuple[list[object], list[object]]:
    return list(snapshot_restore_py.get_before_snapshot()), list(snapshot_restore_py.get_after_restore())


def test_each_container_keeps_its_own_hooks(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    registered = _registries()

    first = load_container(tmp_path, "app.handler")
    second = load_container(tmp_path, "app.handler")

    assert _registries() == registered  # the process-wide registries are as they were
    for container in (first, second):
        ((prime, args, kwargs),) = container.before_snapshot
        assert (prime.__name__, args, kwargs) == ("prime", (container.handler,), {})
        ((reset, args, kwargs),) = container.after_restore
        assert (reset.__name__, args, kwargs) == ("reset", (container.handler,), {})
    prime(first.handler)
    assert vars(first.handler) == {"primed": True}
    assert vars(second.handler) == {}  # one environment's hooks never touch another's


def test_a_dropped_container_is_freed(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    container = load_container(tmp_path, "app.handler")
    handler = weakref.ref(container.handler)
    del container
    gc.collect()
    assert handler() is None, "something still holds the handler of a dropped container"


def test_an_init_that_fails_leaves_the_registries_as_they_were(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP + "\nraise RuntimeError('init failed')\n")
    registered = _registries()
    with pytest.raises(RuntimeError, match="init failed"):
        load_container(tmp_path, "app.handler")
    assert _registries() == registered
