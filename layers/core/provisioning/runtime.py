"""Assembles a create-user Lambda from an operation spec: configuration, clients, secrets and the
adapters, built once per container on first use (never at import, so tests need no reloads)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from provisioning import adapters
from provisioning.dependencies import Dependencies
from provisioning.errors import (
    FieldError,
    InvalidRequest,
    ProviderError,
    ProvisioningError,
)
from provisioning.handler import LambdaFunction
from provisioning.http import Deadline
from provisioning.models import CreateRequest, ProvisionResult
from provisioning.observability import metrics
from provisioning.provision import Provisioner
from provisioning.spec import CreateUserSpec
from provisioning.waiting import Pacing

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver


def _is_sqs(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and records[0].get("eventSource") == "aws:sqs"


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
            conflict_window=self.deps.settings.idempotency_ttl_seconds,
        )

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
        answered from the link store without calling the provider; the same external_id with a
        different payload is a conflict (``Provisioner``: the person's claim holds the payload's
        fingerprint; a delivery arriving while another holds the claim is ``InProgress``)."""
        result = self.provisioner.provision(request, Deadline(self.remaining_ms()))
        metric = "AlreadyProvisioned" if result.outcome == "already_provisioned" else "PeopleProvisioned"
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        return result

    def parse_record(self, body: str | None) -> RequestT | None:
        """A queued body: this operation's request, or an EventBridge ``UserSignedUp`` event whose
        person is mapped to it (None when the person does not target this provider)."""
        data = adapters.load_object(body)
        if not adapters.is_signup_event(data):
            return adapters.validate_body(data, self.spec.request_model)
        # Loaded here: only a signup event needs the Person model.
        from provisioning.person import request_for, signup_person

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

    def answer_directly(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The operation's own POST is answered without the REST resolver (``adapters.create_answer``,
        the same answers); anything else (another path or method) by the resolver."""
        method, path = str(event.get("httpMethod")).upper(), event.get("path")
        if method == "POST" and isinstance(path, str) and (path.rstrip("/") or "/") == self.spec.route:
            return adapters.create_answer(event, self.spec.request_model, self._provision_now)
        return None

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if _is_sqs(event):
            self.provisioner  # noqa: B018 - build shared state before the worker threads
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
