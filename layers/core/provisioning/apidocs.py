"""The hub's OpenAPI document, merged from every operation's Powertools routes, and the optional
``ApiDocsFunction`` that serves it with Swagger UI (``GET /docs``; ``?format=json`` for the document).

The document is generated from the very resolvers the operation functions answer with, so it cannot
drift from what they accept; ``provisioner openapi`` writes the same document to docs/openapi.json.
ApiDocsFunction serves a copy shipped with it (functions/api_docs/openapi.json, kept equal to
docs/openapi.json by a test), so its first request builds no resolver and no schema.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from provisioning import adapters, rest
from provisioning.handler import LambdaFunction

TITLE = "Provisioning hub API"
VERSION = "1.0.0"
_POWERTOOLS_422 = "#/components/schemas/HTTPValidationError"


def description() -> str:
    from provisioning.providers import PROVIDERS  # the document is generated: the shipped one is served

    titles = [info.title for info in PROVIDERS]
    return (
        f"Creates people at {', '.join(titles[:-1])} and {titles[-1]} and records their provider ids. "
        "Every route requires SigV4-signed requests (AWS_IAM), but POST /signups/webhook, which is "
        "authenticated by its Standard Webhooks signature."
    )


def operation_apps() -> list[APIGatewayRestResolver]:
    """The REST resolver of every operation function (nothing is configured or called)."""
    from provisioning.listing import PalencaListUsersFunction
    from provisioning.people_api import PeopleFunction
    from provisioning.providers import PROVIDERS
    from provisioning.runtime import CreateUserFunction
    from provisioning.webhooks import SignupWebhookFunction

    functions: list[LambdaFunction] = [CreateUserFunction(info.create.load_spec()) for info in PROVIDERS]
    functions.extend([PalencaListUsersFunction(), PeopleFunction(), SignupWebhookFunction()])
    return [function.app for function in functions]


def openapi_document() -> dict[str, Any]:
    """Every route's OpenAPI description, merged by Powertools; paths and schemas sorted."""
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge

    merge = OpenAPIMerge(title=TITLE, version=VERSION, description=description(), on_conflict="error")
    for app in operation_apps():
        schema = app.get_openapi_schema(title=TITLE, version=VERSION)
        merge.add_schema(schema.model_dump(by_alias=True, exclude_none=True))
    document: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
    from provisioning.webhooks import describe_request

    describe_request(document)
    document["paths"] = dict(sorted(document.get("paths", {}).items()))
    for item in document["paths"].values():
        for operation in item.values():
            # Powertools documents a 422 of its own shape on every route; the hub never answers it
            # (its validation errors are ErrorBody): a route without a 422 of its own has none.
            responses = operation.get("responses", {})
            if _POWERTOOLS_422 in json.dumps(responses.get("422", {})):
                del responses["422"]
    components = document.get("components", {})
    if "schemas" in components:
        components["schemas"] = dict(sorted(components["schemas"].items()))
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


class ApiDocsFunction(LambdaFunction):
    """``GET /docs``: Swagger UI (assets bundled with Powertools, nothing fetched from elsewhere)."""

    provider = "all"

    def __init__(self, document: Path | None = None) -> None:
        """``document``: the generated document to serve (a JSON file); without it, the document is
        generated on the first request."""
        super().__init__()
        self._document = document

    def build_app(self) -> APIGatewayRestResolver:
        app = rest.new_rest_app()
        app.get("/docs", include_in_schema=False)(self._docs)
        return app

    @cached_property
    def _spec(self) -> str:
        # Escaped so the document cannot close the page's <script> element.
        document = (
            json.loads(self._document.read_text(encoding="utf-8")) if self._document else openapi_document()
        )
        return json.dumps(document).replace("</", "<\\/")

    def _docs(self) -> Response[str]:
        query = self.app.current_event.query_string_parameters or {}
        if query.get("format") == "json":
            return Response(status_code=200, content_type=adapters.JSON, body=self._spec)
        from aws_lambda_powertools.event_handler.openapi import swagger_ui

        assets = Path(swagger_ui.__file__).parent
        page = swagger_ui.generate_swagger_html(
            self._spec,
            (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
            (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
            "",
            None,
        )
        return Response(status_code=200, content_type="text/html", body=page, compress=True)

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.api(event, context)


__all__ = ["ApiDocsFunction", "openapi_document", "render"]
