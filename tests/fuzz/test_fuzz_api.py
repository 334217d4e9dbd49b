"""Fuzzing every API route from the committed OpenAPI document (schemathesis + hypothesis): thousands of
generated bodies and path parameters, valid and invalid, through real API Gateway events (path
parameters percent-encoded as a client sends them, or raw). Never a 5xx, never a traceback.
The signup webhook's bodies are signed with the stack's live secret (all but every fourth, which
stays unsigned), so the fuzzing reaches its payload parsing, not only its signature check."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from provisioner_cli.template import Template
from provisioner_cli.webhook import sign
from provisioning.providers import PROVIDERS
from tests.conftest import ROOT, api_event

DOCUMENT = json.loads((ROOT / "docs" / "openapi.json").read_text())


DOCS_ROUTE = ("/docs", "get")  # the document's own route (Swagger UI), not in the document


def _routes(template: Template) -> dict[tuple[str, str], str]:
    """Every API route, by (path, method): the function template.yaml gives it."""
    return {
        (event["Properties"]["Path"], event["Properties"]["Method"].lower()): logical_id
        for logical_id in template.functions()
        for event in template.function(logical_id).events.values()
        if event["Type"] == "Api"
        and (event["Properties"]["Path"], event["Properties"]["Method"].lower()) != DOCS_ROUTE
    }


ROUTES = _routes(Template(ROOT / "template.yaml"))
EXAMPLES = 250
SIGNED_ROUTES = {("/signups/webhook", "post")}  # authenticated by a signature, not IAM


def _event(
    route: tuple[str, str], body: object, parameters: dict[str, Any], as_base64: bool, encode: bool
) -> dict:
    """A real API Gateway event of the route: the path as the client sent it (its parameters
    percent-encoded, or raw), the parameters decoded in ``pathParameters``."""
    template_path, method = route

    def value(match: re.Match[str]) -> str:
        text = str(parameters.get(match.group(1), ""))
        return quote(text, safe="") if encode else text

    path = re.sub(r"{(\w+)}", value, template_path)
    if isinstance(body, bytes):
        event = api_event(path, None, raw=base64.b64encode(body).decode()) | {"isBase64Encoded": True}
    else:
        event = api_event(path, body, base64_encoded=as_base64)
    event["resource"] = event["requestContext"]["resourcePath"] = template_path
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method.upper()
    if method != "post":
        event["body"], event["isBase64Encoded"] = None, False
    event["pathParameters"] = {name: str(v) for name, v in parameters.items()} or None
    return event


def _signed(event: dict, secret: str) -> dict:
    """``event`` with Standard Webhooks headers signing its body (a body that is not UTF-8 text
    cannot be signed: it stays unsigned, and is refused before any signature check)."""
    body = event["body"] or ""
    try:
        text = base64.b64decode(body).decode() if event["isBase64Encoded"] else body
    except UnicodeDecodeError:
        return event
    return event | {"headers": {**event["headers"], **sign(secret, text).headers}}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda route: f"{route[1].upper()} {route[0]}")
def test_route_never_answers_5xx_nor_a_traceback(request, load_function, route, mode):
    assert {(path, method) for path, item in DOCUMENT["paths"].items() for method in item} == set(ROUTES)
    assert {(p.create.route, "post"): p.create.function for p in PROVIDERS}.items() <= ROUTES.items()
    invoke = load_function(ROUTES[route])
    secret = None
    if route in SIGNED_ROUTES:
        stack, aws = request.getfixturevalue("stack"), request.getfixturevalue("aws")
        value = aws("secretsmanager").get_secret_value(SecretId=stack.parameters["SignupWebhookSecretId"])
        secret = json.loads(value["SecretString"])["secrets"][0]
    path, method = route
    operation = schemathesis.openapi.from_dict(DOCUMENT)[path][method.upper()]
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
        parameters = dict(case.path_parameters or {})
        event = _event(route, body, parameters, as_base64=len(seen) % 3 == 0, encode=len(seen) % 4 != 1)
        if secret is not None and len(seen) % 4 != 3:
            event = _signed(event, secret)
        response = invoke(event)
        seen.append(response["statusCode"])
        assert response["statusCode"] < 500, response["body"]
        assert "Traceback" not in response["body"]
        answer = json.loads(response["body"])
        if response["statusCode"] >= 400:
            assert answer["error"]["code"]
            assert answer["error"]["message"]

    check()
    assert len(seen) >= 50  # really exercised
    if secret is not None:  # signed examples got past the signature to the payload
        assert {200, 202, 400} & set(seen), seen
