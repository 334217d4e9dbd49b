"""The events a benchmark sends: SQS batches, people with fresh ids, and each provider's request
body from its sample event (events/<folder>/)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from bench import ROOT
from provisioner_cli.local import ACCOUNT, REGION
from provisioning.registry import ProviderInfo


def sqs_event(queue: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event of ``bodies`` from the queue named ``queue``."""
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"bench-{n}",
                "body": json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                "awsRegion": REGION,
            }
            for n, body in enumerate(bodies)
        ]
    }


def people(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` people with ids of their own (``prefix``, this run, a number): nothing else. Ids are
    letters, digits and single hyphens, which every provider takes (Validic Inform's uid rule)."""
    run = uuid.uuid4().hex[:6]
    prefix = re.sub(r"[^A-Za-z0-9]+", "-", prefix).strip("-")
    return [{"external_id": f"{prefix}-{run}-{n}"} for n in range(count)]


def sample_event(folder: str, event_file: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / folder / event_file).read_text())
    return event


def bodies(info: ProviderInfo, persons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each person as the smallest request the provider's function takes: the fields its request
    model requires, valued as in its sample SQS event, with the person's own id and contact data."""
    model = info.create.load_spec().request_model
    required = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    sample = json.loads(sample_event(info.create.folder, "sqs.json")["Records"][0]["body"])
    missing = [name for name in required if name not in sample]
    if missing:
        raise KeyError(f"events/{info.create.folder}/sqs.json's first record lacks {', '.join(missing)}")
    return [fresh({name: sample[name] for name in required}, p["external_id"]) for p in persons]


def fresh(body: dict[str, Any], person: str) -> dict[str, Any]:
    """The body with the id ``person`` and contact data of its own: a person is never taken for one
    of an earlier run (which, sharing an e-mail or a phone at a provider, would rightly be a conflict)."""
    body["external_id"] = person
    if "email" in body:
        body["email"] = f"{person}@example.test"
    vault = body.get("vault")
    if isinstance(vault, dict):
        if "identity.email" in vault:
            vault["identity.email"] = f"{person}@example.test"
        if "identity.phone" in vault:
            vault["identity.phone"] = f"+1555{uuid.uuid4().int % 10**7:07d}"
    return body


def with_fresh_ids(event: dict[str, Any], external_id: str) -> dict[str, Any]:
    """A sample event (API or SQS) with new ids and contact data; a search's body is left as it is."""
    if "Records" in event:
        for n, record in enumerate(event["Records"]):
            record["body"] = json.dumps(fresh(json.loads(record["body"]), f"{external_id}-{n}"))
    elif event.get("body") and "search" not in event.get("path", ""):
        event["body"] = json.dumps(fresh(json.loads(event["body"]), external_id))
    return event
