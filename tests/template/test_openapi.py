"""The committed OpenAPI document is the one the routes generate."""

from __future__ import annotations

import json

from provisioner_cli.openapi import build_openapi, render
from tests.conftest import ROOT


def test_committed_openapi_document_is_current(template):
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render(build_openapi(template)), (
        "stale: run `provisioner openapi --output docs/openapi.json`"
    )


def test_openapi_documents_every_route(template):
    document = json.loads((ROOT / "docs" / "openapi.json").read_text())
    routes = {
        e["Properties"]["Path"]
        for name in template.functions()
        for e in template.function(name).events.values()
        if e["Type"] == "Api"
    }
    assert set(document["paths"]) == routes
    for path in routes:
        assert "requestBody" in document["paths"][path]["post"]
