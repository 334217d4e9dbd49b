"""PalencaListUsersFunction: ``POST /palenca/users/search`` (one page of Palenca users) and the
scheduled sync that upserts Palenca's users into the users table.

Palenca's window is inverted: ``start_date`` is the LATEST day, ``end_date`` the EARLIEST.

Sync and shifting pages: Palenca lists newest first, page-numbered, so users created during a walk
push older users down a page. Walking forward can then return a user twice (de-duplicated by
``user_id``) but never skips one; users created after page 1 was read are caught by re-reading from
page 1 until a page holds only users already seen. Upserts are conditional, so a second run, or a
user already linked through the create path, never creates a duplicate or overwrites a link.
Users without an ``external_id`` (our key for the person) are skipped and counted.

A sync is invoked with ``{"sync": {...}}`` (:class:`SyncRequest`): the constant ``Input`` of the
schedule's target, or ``provisioner sync``. ``{"sync": {}}`` and a plain scheduled event (a rule
target without Input: detail-type "Scheduled Event", detail ``{}``) sync the last
``DEFAULT_SYNC_DAYS`` days; ``{"sync": {"days": 30}}`` the last 30; ``{"sync": {"since":
"2026-10-01", "until": "2026-10-31"}}`` those days (``until`` defaults to today, UTC).
"""

import time
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from provisioning import adapters
from provisioning.dependencies import Dependencies
from provisioning.errors import CallNotStarted, Conflict, FieldError, InvalidRequest, RateLimited
from provisioning.handler import LambdaFunction
from provisioning.http import Deadline, within
from provisioning.models import StrictModel, external_id_adapter
from provisioning.observability import logger, metrics
from provisioning.providers.palenca.client import (
    PROVIDER,
    PalencaClient,
    PalencaPagination,
    PalencaSecret,
    PalencaUser,
)
from provisioning.spec import provider_secret
from provisioning.store import Link, LinkSource, LinkStore
from provisioning.validation import field_errors

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver

DEFAULT_SYNC_DAYS = 7
MAX_SYNC_DAYS = 366
SYNC_PAGE_SIZE = 150


def _iso_day(value: str) -> str:
    if len(value) != 10:
        raise ValueError("must be a date formatted YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real date formatted YYYY-MM-DD") from None
    return value


class DateWindow(StrictModel):
    start_date: str = Field(description="The LATEST day of the window (YYYY-MM-DD), as Palenca defines it.")
    end_date: str = Field(description="The EARLIEST day of the window (YYYY-MM-DD).")

    @field_validator("start_date", "end_date")
    @classmethod
    def _day(cls, value: str) -> str:
        return _iso_day(value)

    @field_validator("end_date")
    @classmethod
    def _not_inverted(cls, value: str, info: ValidationInfo) -> str:
        latest = info.data.get("start_date")
        if latest is not None and value > latest:
            raise ValueError(
                "must not be after start_date: start_date is the latest day, end_date the earliest"
            )
        return value

    @property
    def latest(self) -> date:
        return date.fromisoformat(self.start_date)

    @property
    def earliest(self) -> date:
        return date.fromisoformat(self.end_date)


class SearchOptions(StrictModel):
    items_per_page: int = Field(default=100, ge=1, le=150)
    page: int = Field(default=1, ge=1)


class PalencaSearchRequest(DateWindow):
    """Body of ``POST /palenca/users/search``."""

    options: SearchOptions = Field(default_factory=SearchOptions)


class PalencaSearchResult(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    users: list[PalencaUser]
    pagination: PalencaPagination


class SyncSummary(BaseModel):
    model_config = ConfigDict(defer_build=True)  # built on first use (models.py)

    start_date: str
    end_date: str
    pages: int = 0
    seen: int = 0
    created: int = 0
    already_linked: int = 0
    conflicts: int = 0
    skipped_without_external_id: int = 0
    # An external_id this hub would refuse (personal data by default, or not an id): never a table key.
    skipped_unusable_external_id: int = 0
    complete: bool = True


def _today() -> date:
    return datetime.now(UTC).date()


def default_window(today: date | None = None) -> DateWindow:
    today = today or _today()
    return DateWindow(
        start_date=today.isoformat(), end_date=(today - timedelta(days=DEFAULT_SYNC_DAYS)).isoformat()
    )


class SyncWindow(StrictModel):
    """The days one sync covers (UTC calendar days): ``days``, or ``since`` and/or ``until``;
    nothing: the last ``DEFAULT_SYNC_DAYS`` days, as the schedule has always synced."""

    days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SYNC_DAYS,
        description="From this many days ago up to today (7: the default window).",
    )
    since: str | None = Field(default=None, description="The earliest day (YYYY-MM-DD).")
    until: str | None = Field(
        default=None,
        description=f"The latest day (YYYY-MM-DD); today if absent ({DEFAULT_SYNC_DAYS} days "
        "before it when since is absent too).",
    )

    @field_validator("since", "until")
    @classmethod
    def _day(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("days") is not None:
            raise ValueError("must not be given with days")
        return _iso_day(value)

    @field_validator("since")
    @classmethod
    def _not_in_the_future(cls, value: str | None) -> str | None:
        if value is not None and date.fromisoformat(value) > _today():
            raise ValueError("must not be after today")
        return value

    @field_validator("until")
    @classmethod
    def _not_before_since(cls, value: str | None, info: ValidationInfo) -> str | None:
        since = info.data.get("since")
        if value is not None and since is not None and value < since:
            raise ValueError("must not be before since")
        return value

    def window(self, today: date | None = None) -> DateWindow:
        """Palenca's window (start_date the latest day, end_date the earliest)."""
        latest = date.fromisoformat(self.until) if self.until else (today or _today())
        if self.since:
            earliest = date.fromisoformat(self.since)
        else:
            earliest = latest - timedelta(days=self.days or DEFAULT_SYNC_DAYS)
        return DateWindow(start_date=latest.isoformat(), end_date=earliest.isoformat())


class SyncRequest(StrictModel):
    """The payload of a sync invocation: the schedule target's constant Input, or what
    ``provisioner sync`` sends (``{"sync": {"since": "2026-10-01"}}``)."""

    sync: SyncWindow = Field(default_factory=SyncWindow)


def sync_window(event: dict[str, Any]) -> DateWindow:
    """The window an invocation asks for; :class:`InvalidRequest` naming the field when it is
    wrong (its message carries field names and rules, never the values)."""
    if "sync" in event:
        try:
            return SyncRequest.model_validate(event).sync.window()
        except ValidationError as exc:
            raise InvalidRequest(field_errors(exc)) from None
    # A scheduled event of a rule target without Input: EventBridge always sends detail {}.
    if event.get("detail"):
        window_goes_in_input = 'a scheduled event carries no window: give the target Input {"sync": {...}}'
        raise InvalidRequest([FieldError("detail", window_goes_in_input)])
    return default_window()


class PalencaSync:
    def __init__(self, client: PalencaClient, store: LinkStore, deadline: Deadline) -> None:
        self.client = client
        self.store = store
        self.deadline = deadline

    def run(self, window: DateWindow) -> SyncSummary:
        summary = SyncSummary(start_date=window.start_date, end_date=window.end_date)
        seen: set[str] = set()
        try:
            with within(self.deadline):
                self._walk(window, summary, seen, until_known=False)
                self._walk(window, summary, seen, until_known=True)  # users that arrived during the walk
        except (_OutOfTime, CallNotStarted):
            summary.complete = False
            logger.warning("palenca sync stopped before the timeout", extra={"summary": summary.model_dump()})
        return summary

    def _walk(self, window: DateWindow, summary: SyncSummary, seen: set[str], until_known: bool) -> None:
        page = 1
        while True:
            if not self.deadline.allows(self.client.call_timeout):
                raise _OutOfTime
            result = self._page(window, page)
            summary.pages += 1
            fresh = [u for u in result.users if u.user_id not in seen]
            for user in fresh:
                seen.add(user.user_id)
                summary.seen += 1
                self._upsert(user, summary)
            if until_known and len(fresh) < len(result.users):
                return
            if page >= result.pagination.total_pages or not result.users:
                return
            page += 1

    def _page(self, window: DateWindow, page: int) -> Any:
        while True:
            try:
                return self.client.search_users(window.latest, window.earliest, page, SYNC_PAGE_SIZE)
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else 5.0
                if not self.deadline.allows(wait + self.client.call_timeout):
                    raise _OutOfTime from None
                time.sleep(wait)

    def _upsert(self, user: PalencaUser, summary: SyncSummary) -> None:
        if not user.external_id:
            summary.skipped_without_external_id += 1
            return
        try:
            external_id_adapter().validate_python(user.external_id)
        except ValidationError:
            summary.skipped_unusable_external_id += 1
            return
        link = Link(
            external_id=user.external_id,
            provider=PROVIDER,
            provider_user_id=user.user_id,
            source=LinkSource.SYNCED,
            details={"widget_id": user.widget_id} if user.widget_id else {},
        )
        owner = self.store.owner_of(PROVIDER, user.user_id)
        if owner is not None and owner != user.external_id:
            self._conflict(user, summary, "the palenca user is linked to another person")
            return
        try:
            stored, wrote = self.store.save_link(link)
        except Conflict:
            self._conflict(user, summary, "the palenca user is linked to another person")
            return
        if wrote:
            summary.created += 1
        elif stored.provider_user_id == user.user_id:
            summary.already_linked += 1
        else:
            self._conflict(user, summary, "the person is linked to another palenca user")

    @staticmethod
    def _conflict(user: PalencaUser, summary: SyncSummary, why: str) -> None:
        summary.conflicts += 1
        logger.warning(f"palenca user not linked: {why}", extra={"provider_user_id": user.user_id})


class _OutOfTime(Exception):
    pass


class PalencaListUsersFunction(LambdaFunction):
    """The Lambda handler: API Gateway REST events, and syncs (the schedule's Input, a plain
    scheduled event, ``provisioner sync``)."""

    provider = PROVIDER

    def __init__(self, deps: Dependencies | None = None) -> None:
        self.deps = deps or Dependencies()

    def build_app(self) -> "APIGatewayRestResolver":
        from aws_lambda_powertools.event_handler.api_gateway import Response

        from provisioning import rest

        app = rest.new_rest_app()

        def search(body: PalencaSearchRequest) -> Response[str]:
            result = self.client.search_users(
                body.latest, body.earliest, body.options.page, body.options.items_per_page
            )
            return rest.json_response(PalencaSearchResult(users=result.users, pagination=result.pagination))

        app.post(
            "/palenca/users/search",
            summary="List Palenca users of a date window (start_date = latest day, end_date = earliest)",
            responses={
                200: {
                    "description": "One page of users.",
                    "content": {adapters.JSON: {"model": PalencaSearchResult}},
                },
                **rest.error_responses(400, 413, 422, 429, 502, 504),
            },
        )(search)
        return app

    @cached_property
    def client(self) -> PalencaClient:
        return PalencaClient(self.deps.http(PROVIDER), provider_secret(self.deps, PROVIDER, PalencaSecret))

    def sync(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            window = sync_window(event)
        except InvalidRequest as error:
            # Raised, not answered: nobody reads a scheduled invocation's answer, and a returned
            # error would count as a success, so a wrong Input would sync nothing on every run,
            # silently. Failing, the invocation is retried (EventInvokeConfig; it fails again at
            # once, before any call to Palenca) and then lands in PalencaSyncDLQ with this error,
            # which names the field; PalencaSyncDLQAlarm fires. The log holds the same report:
            # field names and rules, never values.
            logger.error("palenca sync refused its window", extra={"error": error.report()})
            raise
        summary = PalencaSync(self.client, self.deps.store, Deadline(self.remaining_ms(), margin=10.0)).run(
            window
        )
        metrics.add_metric(name="PalencaUsersSynced", unit=MetricUnit.Count, value=summary.created)
        logger.info("palenca sync finished", extra={"summary": summary.model_dump()})
        return summary.model_dump()

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        scheduled = event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events"
        if "sync" in event or scheduled:
            return self.sync(event)
        return self.api(event, context)
