"""The REST adapter: a Powertools REST resolver per function, whose every failure is a JSON error
answer (fields named for bad input, hub errors mapped to their status, never a traceback).
Imported only when an API Gateway event arrives: queued and scheduled invocations never load the
event handler.

Note: this module deliberately does not use ``from __future__ import annotations``: the REST route
is declared with the operation's request model as a runtime annotation, which Powertools reads to
validate the body and to document the route in OpenAPI.
"""

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel

from provisioning.adapters import JSON, field_errors
from provisioning.errors import FieldError, InvalidRequest, ProvisioningError
from provisioning.models import ErrorBody, ProvisionResult
from provisioning.observability import logger


def error_response(error: ProvisioningError) -> Response[str]:
    return Response(
        status_code=error.http_status,
        content_type=JSON,
        body=json.dumps(error.body()),
        headers=error.headers(),
    )


def new_rest_app() -> APIGatewayRestResolver:
    """A Powertools REST resolver (with validation) whose every failure is a JSON error answer:
    fields named for bad input, hub errors mapped to their status, never a traceback."""
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(RequestUnsupportedContentType)
    def unsupported_type(exc: RequestUnsupportedContentType) -> Response[str]:
        return error_response(
            InvalidRequest([FieldError("content-type", "must be application/json")], status=415)
        )

    @app.exception_handler(RequestValidationError)
    def invalid_body(exc: RequestValidationError) -> Response[str]:
        errors = field_errors(list(exc.errors()))
        status = 400 if any(e.message == "is not valid JSON" for e in errors) else 422
        return error_response(InvalidRequest(errors, status=status))

    @app.exception_handler(ProvisioningError)
    def provisioning_failed(exc: ProvisioningError) -> Response[str]:
        logger.warning("request failed", extra={"error": exc.report()})
        return error_response(exc)

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("unexpected failure")
        return error_response(ProvisioningError("internal error; the request was not completed"))

    return app


def json_response(model: BaseModel, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=model.model_dump_json())


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI descriptions of the error answers a route can give."""
    descriptions = {
        400: "Malformed JSON.",
        409: "Same person requested with a different payload, or being provisioned right now.",
        413: "Body too large.",
        422: "Invalid body (the fields are named), or the provider rejected the request.",
        429: "Provider rate limit reached; retry after Retry-After seconds.",
        502: "Provider unavailable or refusing our credentials.",
        504: "Provider timed out.",
    }
    return {s: {"description": descriptions[s], "content": {JSON: {"model": ErrorBody}}} for s in statuses}


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
