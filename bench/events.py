"""The events a benchmark sends: SQS batches, people with fresh ids, and each provider's request
body from its sample event (events/<folder>/)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from bench import ROOT
from provisioner_cli import webhook
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


def first_request(folder: str, event_file: str, person: str, webhook_secret: str) -> Any:
    """A sample event as a function's first request of a cold start: a person of its own (``person``)
    wherever the event names one, so that it meets no state an earlier run left. A signed webhook is
    signed now with ``webhook_secret``."""
    event = sample_event(folder, event_file)
    if folder == webhook.EVENTS_FOLDER and event_file == "api.json":
        body = json.dumps(webhook.generic_payload(ROOT, person))
        return webhook.api_event(ROOT, webhook.sign(webhook_secret, body))
    if "triggerSource" in event:  # Cognito: the user's sub is the person's external id
        attributes = event["request"]["userAttributes"]
        return _replaced(
            event,
            {
                attributes["sub"]: str(uuid.uuid5(uuid.NAMESPACE_URL, person)),
                attributes["email"]: f"{person}@example.test",
            },
        )
    old = (event.get("pathParameters") or {}).get("external_id")
    if old:  # a read of one person
        event["path"] = event["path"].replace(old, person)
        event["pathParameters"]["external_id"] = person
        return event
    if any("dynamodb" in record for record in event.get("Records", [])):
        ids = {}
        for record in event["Records"]:
            ids[record["eventID"]] = uuid.uuid4().hex
            ids[record["dynamodb"]["Keys"]["external_id"]["S"]] = person
        return _replaced(event, ids)
    return with_fresh_ids(event, person)


def _replaced(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, dict):
        return {k: _replaced(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, ids) for v in value]
    return value


def differences(recorded: Any, fresh: Any) -> dict[str, str]:
    """Each string of ``recorded`` (an event) mapped to the one in the same place of ``fresh`` (the
    same sample event, freshened otherwise), looking into bodies that are JSON; the longest first."""
    found: dict[str, str] = {}

    def walk(old: Any, new: Any) -> None:
        if isinstance(old, str) and isinstance(new, str):
            if old == new:
                return
            try:
                old_json, new_json = json.loads(old), json.loads(new)
            except ValueError:
                old_json = new_json = None
            if isinstance(old_json, dict | list):
                walk(old_json, new_json)
            else:
                found[old] = new
        elif isinstance(old, dict) and isinstance(new, dict):
            for key in old.keys() & new.keys():
                walk(old[key], new[key])
        elif isinstance(old, list) and isinstance(new, list):
            for a, b in zip(old, new, strict=False):
                walk(a, b)

    walk(recorded, fresh)
    return dict(sorted(found.items(), key=lambda item: -len(item[0])))
