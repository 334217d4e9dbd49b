"""The committed OpenAPI document is the one the routes generate."""

from __future__ import annotations

import json
import re
from typing import Any

from provisioner_cli.openapi import build_openapi, render
from tests.conftest import ROOT, api_event


def test_committed_openapi_document_is_current(template):
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(build_openapi()), "stale: run `provisioner openapi --output docs/openapi.json`"


def test_the_api_docs_function_ships_the_committed_document():
    """ApiDocsFunction serves the copy beside its handler: it must be docs/openapi.json."""
    shipped = ROOT / "functions" / "api_docs" / "openapi.json"
    assert shipped.read_text() == (ROOT / "docs" / "openapi.json").read_text(), (
        "stale: cp docs/openapi.json functions/api_docs/openapi.json"
    )


def test_api_docs_without_a_shipped_document_generates_it():
    from provisioning.apidocs import ApiDocsFunction

    assert json.loads(ApiDocsFunction()._spec) == build_openapi()


def test_openapi_documents_every_route(template):
    """Every route of the template but the document's own (GET /docs), with its method; a POST
    documents its body, a route with a path parameter documents the parameter."""
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"])
        for name in template.functions()
        for e in template.function(name).events.values()
        if e["Type"] == "Api" and e["Properties"]["Path"] != "/docs"
    }
    assert {(path, method) for path, item in document["paths"].items() for method in item} == routes
    for path, method in routes:
        operation = document["paths"][path][method]
        if method == "post":
            assert "requestBody" in operation
        parameters = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert parameters == set(re.findall(r"{(\w+)}", path)), path


def test_the_people_route_documents_its_answer_and_errors():
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    operation = document["paths"]["/people/{external_id}"]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/PersonView"}
    view = document["components"]["schemas"]["PersonView"]
    assert set(view["required"]) >= {"external_id", "providers", "pending", "dead_lettered"}
    state = document["components"]["schemas"]["ProviderState"]
    assert set(state["enum"]) == {"linked", "pending", "dead_lettered", "not_requested"}
    assert {"400", "404", "405"} <= set(operation["responses"])


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
