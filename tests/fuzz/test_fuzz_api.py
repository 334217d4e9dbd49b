"""Fuzzing every API route from the committed OpenAPI document (schemathesis + hypothesis): thousands of
generated bodies, valid and invalid, through real API Gateway events. Never a 5xx, never a traceback."""

from __future__ import annotations

import base64
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from provisioner_cli.template import Template
from provisioning.providers import PROVIDERS
from tests.conftest import ROOT, api_event

DOCUMENT = json.loads((ROOT / "docs" / "openapi.json").read_text())


def _post_routes(template: Template) -> dict[str, str]:
    """Every POST route of the API, by path: the function template.yaml gives it."""
    return {
        event["Properties"]["Path"]: logical_id
        for logical_id in template.functions()
        for event in template.function(logical_id).events.values()
        if event["Type"] == "Api" and event["Properties"]["Method"].lower() == "post"
    }


ROUTES = _post_routes(Template(ROOT / "template.yaml"))
EXAMPLES = 250


def _event(path: str, body: object, as_base64: bool) -> dict:
    if isinstance(body, bytes):
        return api_event(path, None, raw=base64.b64encode(body).decode()) | {"isBase64Encoded": True}
    return api_event(path, body, base64_encoded=as_base64)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_route_never_answers_5xx_nor_a_traceback(load_function, path, mode):
    assert set(DOCUMENT["paths"]) == set(ROUTES)
    assert {p.create.route: p.create.function for p in PROVIDERS}.items() <= ROUTES.items()
    invoke = load_function(ROUTES[path])
    operation = schemathesis.openapi.from_dict(DOCUMENT)[path]["POST"]
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        body = None if case.body is schemathesis.core.NOT_SET else case.body
        response = invoke(_event(path, body, as_base64=len(seen) % 3 == 0))
        seen.append(response["statusCode"])
        assert response["statusCode"] < 500, response["body"]
        assert "Traceback" not in response["body"]
        answer = json.loads(response["body"])
        if response["statusCode"] >= 400:
            assert answer["error"]["code"]
            assert answer["error"]["message"]

    check()
    assert len(seen) >= 50  # really exercised
