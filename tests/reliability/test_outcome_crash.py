"""A create function killed between writing a person's link and anything after it still yields the
``PersonProvisioned`` event: the event comes from the users table's stream, not from the function.

The function runs in its own process against the local stack (moto's server, IAM enforced) and is
killed with ``os._exit`` the moment ``LinkStore.save_link`` has written the link: no code of the
function runs after the write, so an event published by the function after its write ("publish
after write") would never have been sent. Draining the stream into OutcomeEventsFunction (also in
its own process, with its own role) publishes it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from provisioner_cli.invoke import invoke_function, run_handler
from provisioner_cli.local import LocalStack, aws_client
from provisioner_cli.outcomes import FUNCTION, Subscriber, drain_outcomes, outcome_source
from provisioning.providers import PROVIDERS
from provisioning.store import LinkStatus, LinkStore
from tests.conftest import EVENTS, ROOT

KILLED = 137
# The function's runner, with LinkStore.save_link killing the process right after its link write.
KILLED_AFTER_THE_LINK_WRITE = """
import os, sys
from provisioning import store
from provisioner_cli.runner import main

write_link = store.LinkStore.save_link

def save_link(self, link):
    write_link(self, link)  # the claim, then the link: both written
    os._exit(137)  # killed: nothing after the write runs

store.LinkStore.save_link = save_link
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def local_stack(template):
    stack = LocalStack(template)
    state = stack.start()
    yield state
    stack.stop()


def run_killed_after_link_write(
    template, state, function_id: str, event: dict, result_file: Path
) -> subprocess.CompletedProcess:
    return run_handler(
        template,
        state,
        function_id,
        event,
        result_file,
        runner=("-c", KILLED_AFTER_THE_LINK_WRITE),
        python_path=[ROOT / "packages"],
    )


def test_a_create_killed_right_after_its_link_write_still_yields_person_provisioned(
    template, local_stack, tmp_path
):
    state = local_stack
    info = PROVIDERS[0]
    subscriber = Subscriber.create(state, name="crash-subscriber")
    event = json.loads((EVENTS / info.create.folder / "api.json").read_text())
    event["body"] = json.dumps({**json.loads(event["body"]), "external_id": "crash-1"})

    result = tmp_path / "result.json"
    killed = run_killed_after_link_write(template, state, info.create.function, event, result)

    assert killed.returncode == KILLED, killed.stdout + killed.stderr
    assert not result.exists(), "the handler never returned"
    link = LinkStore(aws_client(state, "dynamodb"), state.refs["UsersTable"]).get(info.name, "crash-1")
    assert link is not None
    assert link.status == LinkStatus.LINKED, "the link was written before the kill"
    assert subscriber.events() == [], "the function published nothing: it died right after the write"

    def outcome_events(stream_event: dict) -> dict:
        invocation = invoke_function(template, state, FUNCTION, stream_event)
        assert invocation.ok, invocation.logs
        return invocation.result  # type: ignore[no-any-return]

    report = drain_outcomes(template, state, outcome_events, outcome_source(template, state))

    assert report.failures == []
    [published] = subscriber.details("PersonProvisioned")
    assert published["external_id"] == "crash-1"
    assert published["provider"] == info.name
    assert published["provider_user_id"] == link.provider_user_id
