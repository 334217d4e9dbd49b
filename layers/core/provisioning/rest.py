"""The REST adapter: a Powertools REST resolver per function, whose every failure is a JSON error
answer (fields named for bad input, hub errors mapped to their status, never a traceback).
Imported only when an API Gateway event arrives: queued and scheduled invocations never load the
event handler.

Before Powertools sees an event, ``answer`` refuses what must not be parsed: another method on a
route (405 with ``Allow``), a body over 16 KiB (413), a body that is not JSON (415), and writes
the Content-Type of a JSON body the way Powertools recognises it (media types are
case-insensitive). Bodies are parsed with ``adapters.parse_json``: NaN, Infinity, integers over
Python's digit limit and deep nesting are a 400 naming ``body``, never a crash.

Note: this module deliberately does not use ``from __future__ import annotations``: the REST route
is declared with the operation's request model as a runtime annotation, which Powertools reads to
validate the body and to document the route in OpenAPI.
"""

import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from provisioning import adapters
from provisioning.adapters import JSON
from provisioning.errors import FieldError, InvalidRequest, ProvisioningError
from provisioning.models import ErrorBody, ProvisionResult
from provisioning.privacy import field_name
from provisioning.validation import field_errors


class MethodNotAllowed(InvalidRequest):
    """Another HTTP method than the route's: 405 with ``Allow``."""

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(
            [FieldError("method", f"{field_name(method, 16)} is not allowed: use {' or '.join(allowed)}")],
            status=405,
            code="method_not_allowed",
        )
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class RouteNotFound(ProvisioningError):
    """A path without a route (the function's route is elsewhere): 404 with the JSON error body."""

    code = "not_found"
    http_status = 404


class RestResolver(APIGatewayRestResolver):
    """Powertools' REST resolver with validation and the hub's strict JSON parser, which remembers
    the methods of each route (static paths, and rules with parameters such as
    ``/people/<external_id>``, matched as Powertools matches them)."""

    def __init__(self) -> None:
        super().__init__(enable_validation=True, json_body_deserializer=adapters.parse_json)
        self._methods: dict[str, list[str]] = {}
        self._rules: list[tuple[re.Pattern[str], list[str]]] = []

    def route(self, rule: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        methods = [method] if isinstance(method, str) else list(method)
        key = rule.rstrip("/") or "/"
        if key not in self._methods:
            self._methods[key] = []
            if "<" in key:
                self._rules.append((self._compile_regex(key), self._methods[key]))
        known = self._methods[key]
        known.extend(m.upper() for m in methods if m.upper() not in known)
        return super().route(rule, method, *args, **kwargs)

    def allowed_methods(self, path: str) -> list[str]:
        """The methods of the route at ``path`` (none for a path without a route)."""
        path = path.rstrip("/") or "/"
        if path in self._methods:
            return list(self._methods[path])
        return next((list(methods) for pattern, methods in self._rules if pattern.match(path)), [])


def error_response(error: ProvisioningError) -> Response[str]:
    return Response(
        status_code=error.http_status,
        content_type=JSON,
        body=json.dumps(error.body()),
        headers=error.headers(),
    )


def new_rest_app() -> RestResolver:
    """A REST resolver (with validation) whose every failure is a JSON error answer: fields named
    for bad input, hub errors mapped to their status, never a traceback."""
    app = RestResolver()

    @app.exception_handler(RequestUnsupportedContentType)
    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(
            InvalidRequest([FieldError("content-type", "must be application/json")], status=415)
        )

    @app.exception_handler(RequestValidationError)
    def invalid_body(exc: RequestValidationError) -> Response[str]:
        raw = list(exc.errors())
        for err in raw:
            if err.get("type") == "json_invalid":
                reason = str((err.get("ctx") or {}).get("error", ""))
                message = reason if reason.startswith("is not valid JSON") else "is not valid JSON"
                return error_response(InvalidRequest([FieldError("body", message)], status=400))
        return error_response(InvalidRequest(field_errors(raw, skip_body=True)))

    @app.not_found
    def no_route(exc: NotFoundError) -> Response[str]:
        return error_response(RouteNotFound("no route at this path"))

    @app.exception_handler(ProvisioningError)
    def provisioning_failed(exc: ProvisioningError) -> Response[str]:
        return error_response(adapters.failed(exc))

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        return error_response(adapters.failed(exc))

    return app


def answer(app: APIGatewayRestResolver, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The answer to an API Gateway REST proxy event: refused before parsing (405, 413, 415, 400
    for a base64 body that is not UTF-8), else resolved by ``app``."""
    method = str(event.get("httpMethod") or "").upper()
    allowed = app.allowed_methods(str(event.get("path") or "")) if isinstance(app, RestResolver) else []
    if allowed and method not in allowed:
        return adapters.error_answer(MethodNotAllowed(method, allowed))
    refused = adapters.precheck(event)
    if refused is not None:
        return refused
    return app.resolve(adapters.normalize_content_type(event), context)


def json_response(model: BaseModel, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=model.model_dump_json())


def error_responses(*statuses: int, descriptions: dict[int, str] | None = None) -> dict[int, Any]:
    """OpenAPI descriptions of the error answers a route can give (with those ``answer`` gives on
    every route: 405, 413, 415); ``descriptions`` words a status for the route."""
    known = {
        400: "Malformed JSON (NaN, Infinity, over-long numbers and deep nesting included).",
        401: "Signature missing, malformed, more than 5 minutes old or early, or made with no live secret.",
        405: "Another method than the route's (see the Allow header).",
        409: "Same person requested with a different payload, or being provisioned right now.",
        413: "Body over 16 KiB (UTF-8 bytes).",
        415: "Body not sent as application/json.",
        422: "Invalid body (the fields are named), or the provider rejected the request.",
        429: "Provider rate limit reached; retry after Retry-After seconds.",
        502: "Provider unavailable or refusing our credentials.",
        503: "Temporarily unable to take the request (configuration or a downstream service); retry later.",
        504: "Provider timed out.",
    }
    known.update(descriptions or {})
    every_route = sorted({*statuses, 405, 413, 415})
    return {s: {"description": known[s], "content": {JSON: {"model": ErrorBody}}} for s in every_route}


def build_rest_app[RequestT: BaseModel](
    route: str,
    request_model: type[RequestT],
    provision: Callable[[RequestT], ProvisionResult],
    summary: str,
) -> APIGatewayRestResolver:
    """The REST resolver of a create operation: one POST route that provisions the validated body."""
    app = new_rest_app()

    def create(body: request_model) -> Response[str]:  # type: ignore[valid-type]
        result = provision(body)
        return json_response(result, result.http_status)

    app.post(
        route,
        summary=summary,
        responses={
            200: {
                "description": "Already provisioned: the provider was not called.",
                "content": {JSON: {"model": ProvisionResult}},
            },
            201: {"description": "Provisioned now.", "content": {JSON: {"model": ProvisionResult}}},
            **error_responses(400, 409, 413, 422, 429, 502, 504),
        },
    )(create)
    return app
