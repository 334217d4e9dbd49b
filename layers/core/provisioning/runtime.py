"""Assembles a create-user Lambda from an operation spec: configuration, clients, secrets and the
adapters, built once per container on first use (never at import, so tests need no reloads)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from provisioning import adapters
from provisioning.errors import (
    Conflict,
    FieldError,
    InProgress,
    InvalidRequest,
    ProviderError,
    ProvisioningError,
)
from provisioning.http import Deadline, ProviderHttp, Timeouts, new_session
from provisioning.models import CreateRequest, ProvisionResult
from provisioning.observability import logger, metrics
from provisioning.person import is_signup_event, request_for, signup_person
from provisioning.provision import Provisioner
from provisioning.ratelimit import SharedRateLimiter
from provisioning.secrets import SecretSource
from provisioning.settings import Settings
from provisioning.spec import CreateUserSpec
from provisioning.store import LinkStore
from provisioning.waiting import Pacing

if TYPE_CHECKING:
    import requests
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver


BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


class Dependencies:
    """What operations are built from; every member is created once per container, on first use
    (a client an invocation does not need, such as SQS for dead letters, is never created)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        # boto3's default session is not safe for creating clients from several threads at once,
        # and the records of a batch may need a client for the first time together.
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._limiters: dict[str, SharedRateLimiter | None] = {}

    @cached_property
    def settings(self) -> Settings:
        return self._settings or Settings.from_env()

    def client(self, service: str) -> Any:
        """The container's boto3 client for ``service`` (of the default session: Powertools would
        otherwise build a new session, which reloads botocore's data)."""
        with self._lock:
            return self._client(service)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, config=BOTO_CONFIG)  # type: ignore[call-overload]
        return self._clients[service]

    @property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def kms(self) -> Any:
        return self.client("kms")

    @cached_property
    def secrets(self) -> SecretSource:
        return SecretSource(
            max_age=self.settings.secrets_max_age, client=lambda: self.client("secretsmanager")
        )

    @cached_property
    def session(self) -> requests.Session:
        return new_session()

    @cached_property
    def store(self) -> LinkStore:
        return LinkStore(self.dynamodb, self.settings.users_table)

    def limiter(self, provider: str) -> SharedRateLimiter | None:
        """The shared request budget of a provider, when the deployment declares one (one per
        container: the queue adapter takes a record's slot, its first request uses it)."""
        with self._lock:
            if provider not in self._limiters:
                budget = self.settings.budget(provider)
                table = self.settings.rate_limit_table
                self._limiters[provider] = (
                    SharedRateLimiter(
                        self._client("dynamodb"), table, provider, budget[0], window_s=budget[1]
                    )
                    if budget is not None and table
                    else None
                )
            return self._limiters[provider]

    def http(self, provider: str) -> ProviderHttp:
        timeouts = Timeouts(
            self.settings.http_connect_timeout,
            self.settings.http_read_timeout,
            self.settings.http_call_timeout,
        )
        limiter = self.limiter(provider)
        return ProviderHttp(
            provider,
            self.settings.base_url(provider),
            self.session,
            timeouts,
            before_request=limiter.acquire if limiter else None,
        )


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and records[0].get("eventSource") == "aws:sqs"


def _mark_replay(response: Any, idempotent_data: DataRecord) -> Any:
    if isinstance(response, dict):
        response = {**response, "outcome": "already_provisioned"}
    return response


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
            return adapters.unsupported(event)
        logger.set_correlation_id(
            (event.get("requestContext") or {}).get("requestId") or context.aws_request_id
        )
        from provisioning import rest

        return rest.answer(self.app, event, context)

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


class CreateUserFunction[RequestT: CreateRequest](LambdaFunction):
    """The Lambda handler of a create-user operation: API Gateway (REST, proxy) and SQS events."""

    def __init__(self, spec: CreateUserSpec[RequestT], deps: Dependencies | None = None) -> None:
        self.spec = spec
        self.provider = spec.provider
        self.deps = deps or Dependencies()

    def build_app(self) -> APIGatewayRestResolver:
        from provisioning import rest

        return rest.build_rest_app(
            self.spec.route,
            self.spec.request_model,
            self._provision_now,
            self.spec.summary or f"Create a {self.spec.provider} user",
        )

    # -- built on first use ------------------------------------------------------------------
    @cached_property
    def provisioner(self) -> Provisioner[RequestT]:
        return Provisioner(
            self.spec.build_operation(self.deps),
            self.deps.store,
            seal=self.spec.build_sealer(self.deps) if self.spec.build_sealer else None,
            on_provider_error=self._count_provider_error,
            call_timeout=self.deps.settings.http_call_timeout,
        )

    @cached_property
    def idempotency(self) -> IdempotencyConfig:
        return IdempotencyConfig(
            event_key_jmespath="external_id",
            payload_validation_jmespath="@",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=self.deps.settings.idempotency_ttl_seconds,
            response_hook=_mark_replay,
        )

    @cached_property
    def _provision_once(self) -> Callable[..., dict[str, Any]]:
        persistence = DynamoDBPersistenceLayer(
            table_name=self.deps.settings.idempotency_table, boto3_client=self.deps.dynamodb
        )
        provisioner = self.provisioner

        def provision(request: RequestT, deadline: Deadline) -> dict[str, Any]:
            return provisioner.provision(request, deadline).model_dump(mode="json")

        provision.__name__ = provision.__qualname__ = f"provision_{self.spec.provider}"
        # Configure once, here, before records are processed concurrently: Powertools configures
        # the layer lazily on first use, which is not safe to race.
        persistence.configure(self.idempotency, f"{provision.__module__}.{provision.__qualname__}")
        return idempotent_function(  # type: ignore[no-any-return]
            data_keyword_argument="request", persistence_store=persistence, config=self.idempotency
        )(provision)

    @cached_property
    def dead_letters(self) -> adapters.DeadLetters:
        settings = self.deps.settings
        return adapters.DeadLetters(lambda: self.deps.sqs, settings.dead_letter_queue_url, settings.queue_url)

    @cached_property
    def pacing(self) -> Pacing:
        return Pacing(
            self.provider,
            self.deps.limiter(self.provider),
            lambda: self.deps.sqs,
            self.dead_letters.queue_url,
            max_wait=self.deps.settings.rate_limit_max_wait_seconds,
        )

    # -- provisioning ----------------------------------------------------------------------------
    def _provision_now(self, request: RequestT) -> ProvisionResult:
        """Provision one person, idempotently per (provider, external_id): a repeated request is
        answered from the idempotency record or the link store without calling the provider; the
        same external_id with a different payload is a conflict."""
        try:
            raw = self._provision_once(request=request, deadline=Deadline(self.remaining_ms()))
        except IdempotencyValidationError:
            raise Conflict(
                "this external_id was already requested with a different payload", provider=self.spec.provider
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise InProgress(
                "this person is being provisioned by another request", provider=self.spec.provider
            ) from None
        result = ProvisionResult.model_validate(raw)
        metric = "AlreadyProvisioned" if result.outcome == "already_provisioned" else "PeopleProvisioned"
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        return result

    def parse_record(self, body: str | None) -> RequestT | None:
        """A queued body: this operation's request, or an EventBridge ``UserSignedUp`` event whose
        person is mapped to it (None when the person does not target this provider)."""
        data = adapters.load_object(body)
        if not is_signup_event(data):
            return adapters.validate_body(data, self.spec.request_model)
        person = signup_person(data)
        if not person.targets(self.provider):
            return None
        if self.spec.from_person is None:
            raise InvalidRequest([FieldError("detail-type", f"{self.provider} does not take signup events")])
        return request_for(person, self.provider, self.spec.from_person, self.spec.request_model)

    def _count_provider_error(self, error: ProviderError) -> None:
        metrics.add_metric(name="ProviderErrors", unit=MetricUnit.Count, value=1)

    def _count_dead_letter(self, error: ProvisioningError) -> None:
        metrics.add_metric(name="RecordsDeadLettered", unit=MetricUnit.Count, value=1)

    def _record_failure(self, external_id: str, report: dict[str, Any]) -> None:
        """Keep a dead-lettered record's report on the person's item (the table's stream then
        publishes ProvisioningFailed)."""
        self.deps.store.record_failure(self.provider, external_id, report)

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.idempotency.register_lambda_context(context)
        if _is_sqs(event):
            self._provision_once  # noqa: B018 - build shared state before the worker threads
            self.pacing  # noqa: B018
            return dict(
                adapters.process_queue_batch(
                    event,
                    self.parse_record,
                    self._provision_now,
                    self.dead_letters,
                    on_dead_letter=self._count_dead_letter,
                    pacing=self.pacing,
                    workers=self.deps.settings.workers,
                    record_failure=self._record_failure,
                )
            )
        return self.api(event, context)


__all__ = ["CreateUserFunction", "CreateUserSpec", "Dependencies", "LambdaFunction"]
