"""The committed OpenAPI document is the one the routes generate."""

from __future__ import annotations

import json
from typing import Any

from provisioner_cli.openapi import build_openapi, render
from tests.conftest import ROOT, api_event


def test_committed_openapi_document_is_current(template):
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(build_openapi()), "stale: run `provisioner openapi --output docs/openapi.json`"


def test_openapi_documents_every_route(template):
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    routes = {
        e["Properties"]["Path"]
        for name in template.functions()
        for e in template.function(name).events.values()
        if e["Type"] == "Api" and e["Properties"]["Method"] == "post"
    }
    assert set(document["paths"]) == routes
    for path in routes:
        assert "requestBody" in document["paths"][path]["post"]


def _get(path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = api_event(path, None)
    event["httpMethod"] = event["requestContext"]["httpMethod"] = "GET"
    event["body"] = None
    event["queryStringParameters"] = query
    return event


def test_api_docs_function_serves_the_committed_document_and_swagger_ui(load_function):
    invoke = load_function("ApiDocsFunction")
    answer = invoke(_get("/docs", {"format": "json"}))
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == json.loads((ROOT / "docs" / "openapi.json").read_text())

    page = invoke(_get("/docs"))
    assert page["statusCode"] == 200
    assert page["multiValueHeaders"]["Content-Type"] == ["text/html"]
    assert "SwaggerUIBundle" in page["body"]
    assert "/palenca/users/search" in page["body"]
    assert "<script src=" not in page["body"], "Swagger UI assets must be served inline, not fetched"
