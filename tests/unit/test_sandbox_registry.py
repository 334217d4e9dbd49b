"""The sandbox emulates every registered provider, once: ``sandbox/app.py`` lists one emulator per
provider of ``provisioning.providers``, and what the local stack and the tests ask of an emulator
(its credentials, its create call, how many users it holds for a person, its budget) agrees with
the registry."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests

from provisioner_sandbox.app import EMULATORS, build_emulators, build_sandbox
from provisioner_sandbox.server import BudgetedEmulator
from provisioning.providers import BY_NAME, NAMES

EMULATED = {emulator.name: emulator for emulator in build_emulators()}


def test_every_registered_provider_has_exactly_one_emulator_and_every_emulator_a_provider():
    names = Counter(emulator.name for emulator in EMULATORS)
    assert [name for name, count in names.items() if count > 1] == []
    assert set(names) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_an_emulator_accepts_the_secret_its_provider_documents(name):
    credentials = EMULATED[name].credentials()
    assert set(credentials) == set(BY_NAME[name].secret_keys)
    assert all(isinstance(value, str) and value for value in credentials.values())


@pytest.mark.parametrize("name", NAMES)
def test_an_emulator_serves_its_create_call_under_its_provider_prefix(name):
    emulator = EMULATED[name]
    method, path = emulator.create_call()
    assert path.startswith(f"/{name}/")
    assert [r for r in emulator.routes() if r.write and r.method == method and r.pattern.fullmatch(path)]


@pytest.mark.parametrize("name", NAMES)
def test_an_emulator_counts_the_users_it_holds_for_a_person(name):
    with build_sandbox() as sandbox:
        emulator = sandbox.emulators[name]
        assert (emulator.users_for("person-1"), emulator.user_ids("person-1")) == (0, [])
        method, path = emulator.create_call()
        body, headers = emulator.create_request("person-1")
        answer = requests.request(
            method, sandbox.url + path, params=emulator.create_query(), json=body, headers=headers, timeout=5
        )
        assert answer.status_code in (200, 201), answer.text
        assert emulator.users_for("person-1") == 1
        assert len(emulator.user_ids("person-1")) == 1
        assert emulator.users_for("person-2") == 0


@pytest.mark.parametrize("name", [name for name in NAMES if BY_NAME[name].budget is not None])
def test_a_budgeted_provider_s_emulator_starts_at_the_registry_budget_and_enforces_another(name):
    budget = BY_NAME[name].budget
    assert budget is not None
    with build_sandbox() as sandbox:
        emulator: BudgetedEmulator = sandbox.emulators[name]  # type: ignore[assignment]
        assert emulator.budget == budget.requests
        emulator.budget = 2
        method, path = emulator.create_call()
        for attempt in range(2):  # again if the three calls straddled two windows
            window = int(time.time() // budget.window_seconds)
            statuses = []
            for n in range(3):
                body, headers = emulator.create_request(f"budget-{attempt}-{n}")
                answer = requests.request(
                    method,
                    sandbox.url + path,
                    params=emulator.create_query(),
                    json=body,
                    headers=headers,
                    timeout=5,
                )
                statuses.append(answer.status_code)
            if int(time.time() // budget.window_seconds) == window:
                break
        assert [status < 300 for status in statuses] == [True, True, False]
        assert statuses[-1] == 429


def test_the_sandbox_hosts_every_emulator_by_provider_name():
    with build_sandbox() as sandbox:
        assert sorted(sandbox.emulators) == sorted(NAMES)
