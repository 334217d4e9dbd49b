"""The API's OpenAPI document, generated from every function's Powertools routes."""

from __future__ import annotations

import json
from typing import Any

from provisioner_cli.lambda_runtime import load_handler
from provisioner_cli.template import Template

TITLE = "Provisioning hub API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Creates people at Palenca, Trust, Palm and Validic and records their provider ids. "
    "Every route requires SigV4-signed requests (AWS_IAM)."
)


def build_openapi(template: Template) -> dict[str, Any]:
    """Merge the OpenAPI schemas of every function that has an Api event."""
    document: dict[str, Any] = {}
    for logical_id in template.functions():
        function = template.function(logical_id)
        if not any(e.get("Type") == "Api" for e in function.events.values()):
            continue
        handler = load_handler(function.code_uri, function.handler, function.layers)
        schema = json.loads(
            handler.app.get_openapi_json_schema(
                title=TITLE,
                version=VERSION,
                description=DESCRIPTION,
            )
        )
        if not document:
            document = schema
            continue
        document["paths"].update(schema.get("paths", {}))
        for name, component in schema.get("components", {}).get("schemas", {}).items():
            document.setdefault("components", {}).setdefault("schemas", {})[name] = component
    document["paths"] = dict(sorted(document.get("paths", {}).items()))
    if "components" in document:
        document["components"]["schemas"] = dict(sorted(document["components"].get("schemas", {}).items()))
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
