"""provisioning.values behaves as the dataclasses it replaced: equality, hashing, repr, immutability."""

from __future__ import annotations

import dataclasses

import pytest

from provisioning.errors import FieldError
from provisioning.http import RetryPolicy, Timeouts
from provisioning.providers import PROVIDERS
from provisioning.registry import Budget
from provisioning.values import FrozenValue, Value


@dataclasses.dataclass(frozen=True)
class _AsDataclass:
    requests: int
    window_seconds: int
    setting: str


def test_a_frozen_value_compares_hashes_and_shows_itself_as_the_dataclass_did():
    budget = Budget(requests=120, window_seconds=60, setting="PALENCA_REQUESTS_PER_MINUTE")
    same = Budget(120, 60, "PALENCA_REQUESTS_PER_MINUTE")
    model = _AsDataclass(120, 60, "PALENCA_REQUESTS_PER_MINUTE")

    assert budget == same
    assert hash(budget) == hash(same) == hash(model)
    assert budget != Budget(121, 60, "PALENCA_REQUESTS_PER_MINUTE")
    assert budget != model  # another class is never equal, as between dataclasses
    assert repr(budget) == repr(model).replace("_AsDataclass", "Budget")
    assert {budget, same} == {budget}


def test_a_frozen_value_cannot_change():
    timeouts = Timeouts(total=0.5)

    with pytest.raises(dataclasses.FrozenInstanceError):
        timeouts.total = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del timeouts.read
    with pytest.raises(AttributeError):
        timeouts.other = 1  # type: ignore[attr-defined]
    assert (timeouts.connect, timeouts.read, timeouts.total) == (3.05, 10.0, 0.5)
    assert RetryPolicy() == RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=5.0)


def test_a_mutable_value_compares_by_fields_and_is_not_hashable():
    error = FieldError("external_id", "Field required")
    error.message = "changed"

    assert error == FieldError("external_id", "changed")
    assert repr(error) == "FieldError(field='external_id', message='changed')"
    with pytest.raises(TypeError):
        hash(error)


def test_the_registry_is_hashable_and_keyed_as_before():
    by_info = {info: info.name for info in PROVIDERS}

    assert [by_info[info] for info in PROVIDERS] == [info.name for info in PROVIDERS]
    assert PROVIDERS[0].env_prefix == PROVIDERS[0].name.upper().replace("-", "_")


def test_a_value_whose_slots_do_not_name_its_fields_is_refused_when_defined():
    with pytest.raises(TypeError, match="__slots__"):

        class _Wrong(FrozenValue):
            __slots__ = ("a",)
            a: int
            b: int

    class _Right(Value):
        __slots__ = ("a", "b")
        b: int
        a: int

    assert _Right._fields == ("b", "a")  # the annotations' order, not the slots'
