"""``PeopleFunction``: ``GET /people/{external_id}``, one person at every provider
(:func:`provisioning.people.person_view`), IAM-authorised like every route.

An invalid ``external_id`` is a 400 naming it, a person no provider holds anything for a 404
(``person_not_found``), another method a 405. Nothing of the person is logged.

Note: this module deliberately does not use ``from __future__ import annotations``: Powertools
reads the route's parameter annotations at run time to document the path parameter in OpenAPI.
"""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext

from provisioning import rest
from provisioning.adapters import JSON
from provisioning.dependencies import Dependencies
from provisioning.handler import LambdaFunction
from provisioning.models import EXTERNAL_ID_PATTERN
from provisioning.people import PersonNotFound, PersonView, parse_external_id, person_view

ROUTE = "/people/<external_id>"

PathExternalId = Annotated[
    str,
    Path(
        description=(
            "Our id for the person, as the create routes take it (1-128 letters, digits and . _ : @ + = -; "
            "percent-encoded where a URL path needs it)."
        ),
        examples=["u-1"],
        # Documented, not enforced here: the value is checked once percent-decoded (a 400 naming it).
        json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": EXTERNAL_ID_PATTERN},
    ),
]


class PeopleFunction(LambdaFunction):
    """The Lambda handler of ``GET /people/{external_id}``."""

    provider = "all"

    def __init__(self, deps: Dependencies | None = None) -> None:
        self.deps = deps or Dependencies()

    def build_app(self) -> APIGatewayRestResolver:
        app = rest.new_rest_app()

        def read_person(external_id: PathExternalId) -> Response[str]:
            view = person_view(self.deps.store, parse_external_id(external_id))
            if not view.known:
                raise PersonNotFound("no provider holds anything for this external_id")
            return rest.json_response(view)

        app.get(
            ROUTE,
            summary="One person at every provider",
            description=(
                "Every registered provider's state for the person: linked, pending (an attempt is under way "
                "or its outcome is unknown), dead_lettered (its last record failed for good; `failure` says "
                "why) or not_requested; with the provider's id, how the link was made, timestamps, attempts "
                "and the provider's non-secret, non-personal details."
            ),
            responses={
                200: {
                    "description": "The person, at every provider.",
                    "content": {JSON: {"model": PersonView}},
                },
                **rest.error_responses(
                    400,
                    404,
                    descriptions={
                        400: "The external_id is not a valid id (the field is named).",
                        404: "No provider holds anything for this person (person_not_found).",
                    },
                ),
            },
        )(read_person)
        return app

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.api(event, context)


__all__ = ["PeopleFunction"]
