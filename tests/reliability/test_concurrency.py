"""Two containers processing the same people at the same moment still create one provider user each."""

from __future__ import annotations

import json
import threading

import pytest

from provisioner_cli.lambda_runtime import sqs_record
from provisioning.providers import NAMES, provider
from provisioning.store import LinkStore
from tests.people import body_for


@pytest.mark.parametrize("name", NAMES)
def test_two_containers_at_once_create_one_provider_user_per_person(load_function, stack, aws, sandbox, name):
    function_id, queue_id = provider(name).create.function, provider(name).create.queue
    container_a = load_function(function_id)
    container_b = load_function(function_id)  # a second, independent container of the same function
    sandbox.set_faults(name, latency_ms=80)  # keep both creates in flight together
    arn = stack.attrs[f"{queue_id}.Arn"]
    people = range(10)

    def event(tag: str) -> dict:
        return {
            "Records": [
                sqs_record(
                    {
                        "MessageId": f"{tag}-{n}",
                        "ReceiptHandle": f"rh-{tag}-{n}",
                        "Body": json.dumps(body_for(name, f"cc-{n}")),
                    },
                    arn,
                )
                for n in people
            ]
        }

    results: dict[str, dict] = {}
    barrier = threading.Barrier(2)

    def run(tag: str, invoke) -> None:
        barrier.wait()
        results[tag] = invoke(event(tag))

    threads = [threading.Thread(target=run, args=(t, c)) for t, c in (("a", container_a), ("b", container_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # What one container could not finish (the other held the person) is redelivered, as SQS would.
    failed = {item["itemIdentifier"] for r in results.values() for item in r["batchItemFailures"]}
    if failed:
        retry = {
            "Records": [r for r in event("a")["Records"] + event("b")["Records"] if r["messageId"] in failed]
        }
        assert container_a(retry)["batchItemFailures"] == []

    store = LinkStore(aws("dynamodb"), stack.refs["UsersTable"])
    for n in people:
        assert sandbox.users_for(name, f"cc-{n}") == 1, f"cc-{n}"
        assert store.get(name, f"cc-{n}").provider_user_id
