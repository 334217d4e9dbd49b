"""``LambdaFunction``: what every function's handler shares. Powertools logging and metrics around
each invocation; API Gateway events answered by a REST resolver built on the first one (the REST
adapter is imported then: queued, stream and scheduled invocations never load it).

It imports no AWS or HTTP client library: a function's own module imports what it uses
(``provisioning.dependencies`` for its clients); the create-user assembly is
``provisioning.runtime``."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from provisioning.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver


class LambdaFunction:
    """What every function's handler shares: Powertools logging and metrics around each invocation,
    the invocation's context for deadlines, API Gateway events answered by ``self.app`` (built on
    the first API event: queued and scheduled invocations never load the REST event handler)."""

    provider: str
    _context: LambdaContext | None = None

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        raise NotImplementedError

    def build_app(self) -> APIGatewayRestResolver:
        raise NotImplementedError

    @cached_property
    def app(self) -> APIGatewayRestResolver:
        return self.build_app()

    def remaining_ms(self) -> Callable[[], int] | None:
        return self._context.get_remaining_time_in_millis if self._context else None

    def api(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """An API Gateway REST proxy event: another method than the route's (405), a body that must
        not be parsed (413, 415, 400) are answered before the resolver; the rest by ``self.app``."""
        if "httpMethod" not in event:
            from provisioning import adapters

            return adapters.unsupported(event)
        logger.set_correlation_id(
            (event.get("requestContext") or {}).get("requestId") or context.aws_request_id
        )
        answered = self.answer_directly(event)
        if answered is not None:
            return answered
        from provisioning import rest

        return rest.answer(self.app, event, context)

    def answer_directly(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to an API request a function gives without the REST resolver, or None (the
        resolver answers it): none by default."""
        return None

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self._handler(event, context)

    @cached_property
    def _handler(self) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
        @metrics.log_metrics
        @logger.inject_lambda_context(clear_state=True)
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            # Start clean: an invocation that published nothing leaves its dimensions behind.
            metrics.clear_metrics()
            metrics.add_dimension(name="provider", value=self.provider)
            self._context = context
            try:
                return self.dispatch(event, context)
            finally:
                self._context = None

        return handler


__all__ = ["LambdaFunction"]
