"""The cold-start benchmark measures every function by each of its triggers, its floor asks for a
person of its own what the recording asked for another, and both start their clocks from the same
interpreter."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from bench import CHILDREN
from bench.events import differences, first_request, sample_event
from bench.providers import OTHER_TRIGGERS, TRIGGER_EVENTS, cold_start_cases
from provisioner_cli.template import Template
from tests.conftest import ROOT


def test_every_function_of_the_template_is_measured_by_each_of_its_triggers():
    template = Template(ROOT / "template.yaml")
    cases = cold_start_cases(template)

    for function_id, resource in template.of_type("AWS::Serverless::Function").items():
        events = (resource["Properties"].get("Events") or {}).values()
        expected = {TRIGGER_EVENTS.get(event["Type"], (event["Type"], ""))[0] for event in events}
        expected |= {trigger for trigger, _ in OTHER_TRIGGERS.get(function_id, ())}
        assert {c.trigger for c in cases if c.function == function_id} == expected, function_id
    for case in cases:  # a kind of trigger the bench has no first request for is listed, not measured
        assert not case.event_file or (ROOT / "events" / case.folder / case.event_file).is_file(), case


def test_the_floor_maps_the_recorded_person_to_its_own_inside_json_bodies():
    recorded = first_request("trust_create_user", "sqs.json", "cold-a-record", "unused")
    fresh = first_request("trust_create_user", "sqs.json", "cold-b-floor", "unused")

    ids = differences(recorded, fresh)

    body = json.loads(recorded["Records"][0]["body"])
    assert ids[body["external_id"]] == json.loads(fresh["Records"][0]["body"])["external_id"]
    assert ids[body["email"]] == json.loads(fresh["Records"][0]["body"])["email"]


def test_a_cognito_first_request_is_a_new_user_each_time():
    sample = sample_event("signup_trigger", "confirm_sign_up.json")

    first = first_request("signup_trigger", "confirm_sign_up.json", "cold-a", "unused")
    second = first_request("signup_trigger", "confirm_sign_up.json", "cold-b", "unused")

    subs = {e["request"]["userAttributes"]["sub"] for e in (sample, first, second)}
    assert len(subs) == 3
    assert first["userName"] == first["request"]["userAttributes"]["sub"]
    assert first["request"]["userAttributes"]["email"] == "cold-a@example.test"


def _loaded_at_clock(tmp_path: Path, program: str, *args: str) -> set[str]:
    """The modules ``bench/children/<program>`` has loaded where its clock starts (it stops there
    with BENCH_COUNT=pre, as the run that counts its instructions before the clock does)."""
    env = {**os.environ, "BENCH_COUNT": "pre", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    command = [sys.executable, "-X", "importtime", str(CHILDREN / program), *args]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines()[-1].startswith("BENCH_RESULT ")
    lines = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first is the heading


def test_the_function_and_its_floor_start_their_clocks_from_the_same_interpreter(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(sample_event("palenca_create_user", "api.json")))
    recording = tmp_path / "calls.pickle"
    recording.write_bytes(pickle.dumps({"calls": [], "clients": ["dynamodb"]}))
    ids = tmp_path / "ids.json"
    ids.write_text("{}")
    app = ROOT / "functions" / "palenca_create_user" / "app.py"

    layer = str(ROOT / "layers" / "core")
    function = _loaded_at_clock(tmp_path, "cold_start.py", str(event), str(app), layer)
    floor = _loaded_at_clock(tmp_path, "floor.py", str(recording), str(ids))

    assert function == floor
    assert "prelude" in function
    libraries = ("provisioning", "boto3", "pydantic", "aws_lambda_powertools")
    assert not any(m.startswith(libraries) for m in function)
