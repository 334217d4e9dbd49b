"""PalencaListUsersFunction: the search route and the scheduled sync, against moto and the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from provisioner_cli.local import REGION
from provisioning.errors import InvalidRequest
from provisioning.store import Link, LinkSource
from tests.conftest import EVENTS, api_event, response_json

FUNCTION = "PalencaListUsersFunction"
ROUTE = "/palenca/users/search"
TODAY = datetime.now(UTC).date()


def _schedule(detail=None):
    event = json.loads((EVENTS / "palenca_list_users" / "schedule.json").read_text())
    event["detail"] = detail or {}
    return event


def _window(days_back: int = 7) -> dict:
    return {"start_date": TODAY.isoformat(), "end_date": (TODAY - timedelta(days=days_back)).isoformat()}


def test_search_returns_users_and_pagination(invoke, palenca):
    for n in range(3):
        palenca.seed_user(f"w-{n}")

    response = invoke(api_event(ROUTE, {**_window(), "options": {"items_per_page": 2, "page": 1}}))

    assert response["statusCode"] == 200
    body = response_json(response)
    assert len(body["users"]) == 2
    assert body["pagination"] == {"page": 1, "items_per_page": 2, "total_items": 3, "total_pages": 2}
    assert body["users"][0]["external_id"] == "w-2"  # newest first


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start_date": "2026-01-01", "end_date": "2026-02-01"}, "end_date"),
        ({"start_date": "2026-02-30", "end_date": "2026-02-01"}, "start_date"),
        ({"start_date": "2026/02/10", "end_date": "2026-02-01"}, "start_date"),
        ({"start_date": "2026-02-10"}, "end_date"),
        ({**_window(), "options": {"items_per_page": 151}}, "options.items_per_page"),
        ({**_window(), "options": {"page": 0}}, "options.page"),
    ],
)
def test_bad_windows_answer_422_naming_the_field(invoke, sandbox, body, field):
    response = invoke(api_event(ROUTE, body))

    assert response["statusCode"] == 422
    assert field in [f["field"] for f in response_json(response)["error"]["fields"]]
    assert sandbox.count("palenca") == 0


def test_sync_links_widget_users_once_even_when_run_twice(invoke, palenca, store):
    users = [palenca.seed_user(f"w-{n}") for n in range(160)]  # two pages of 150
    palenca.seed_user(None)  # connected without an external_id

    first = invoke(_schedule())
    second = invoke(_schedule())

    assert first["created"] == 160
    assert first["skipped_without_external_id"] == 1
    assert second["created"] == 0
    assert second["already_linked"] == 160
    link = store.get("palenca", "w-42")
    assert link.provider_user_id == users[42].user_id
    assert link.source == LinkSource.SYNCED
    assert len(store.scan_links()) == 160


def test_sync_keeps_links_made_through_the_create_path(load_function, palenca, store):
    created = load_function("PalencaCreateUserFunction")(api_event("/palenca/users", {"external_id": "c-1"}))
    palenca.seed_user("c-1")  # a second Palenca user claiming the same external_id

    summary = load_function(FUNCTION)(_schedule())

    link = store.get("palenca", "c-1")
    assert link.provider_user_id == response_json(created)["provider_user_id"]
    assert link.source == LinkSource.CREATED
    assert summary["already_linked"] == 1
    assert summary["conflicts"] == 1


def test_sync_neither_duplicates_nor_misses_users_arriving_between_pages(invoke, palenca, store):
    for n in range(300):
        palenca.seed_user(f"old-{n}")
    arrivals = iter(range(100))

    def users_arrive():
        for _ in range(20):  # 20 new users before every page read
            n = next(arrivals, None)
            if n is not None:
                palenca.seed_user(f"new-{n}")

    palenca.before_search = users_arrive

    summary = invoke(_schedule())

    ids = {link.external_id for link in store.scan_links()}
    arrived = {u.external_id for u in palenca.users if u.external_id and u.external_id.startswith("new-")}
    assert {f"old-{n}" for n in range(300)} <= ids
    assert arrived <= ids
    assert summary["created"] == len(ids)
    assert summary["conflicts"] == 0


def _days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _synced(store) -> set[str]:
    return {link.external_id for link in store.scan_links()}


def _schedule_input(template) -> dict:
    """The constant Input the deployed schedule's target sends (template.yaml)."""
    events = template.resources[FUNCTION]["Properties"]["Events"]
    return json.loads(events["Sync"]["Properties"]["Input"])


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(None, id="plain scheduled event"),
        pytest.param({"sync": {}}, id="empty window"),
        pytest.param("template", id="the schedule's Input"),
    ],
)
def test_the_default_window_is_the_last_seven_days(invoke, palenca, store, template, event):
    palenca.seed_user("today")
    palenca.seed_user("day-7", created_at=_days_ago(7))
    palenca.seed_user("day-8", created_at=_days_ago(8))

    if event == "template":
        event = _schedule_input(template)
    summary = invoke(event or _schedule())

    assert _synced(store) == {"today", "day-7"}
    assert (summary["start_date"], summary["end_date"]) == (
        TODAY.isoformat(),
        (TODAY - timedelta(days=7)).isoformat(),
    )


def test_an_input_window_is_honoured(invoke, palenca, store):
    palenca.seed_user("recent")
    palenca.seed_user("old", created_at=_days_ago(40))
    palenca.seed_user("older", created_at=_days_ago(50))

    since = (TODAY - timedelta(days=45)).isoformat()
    until = (TODAY - timedelta(days=30)).isoformat()
    between = invoke({"sync": {"since": since, "until": until}})
    assert _synced(store) == {"old"}
    assert (between["start_date"], between["end_date"]) == (until, since)

    invoke({"sync": {"days": 60}})
    assert _synced(store) == {"recent", "old", "older"}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"sync": {"since": "2026-02-30"}}, "sync.since"),
        ({"sync": {"since": "2026/02/10"}}, "sync.since"),
        ({"sync": {"since": "2026-02-10", "until": "2026-02-01"}}, "sync.until"),
        ({"sync": {"since": (TODAY + timedelta(days=1)).isoformat()}}, "sync.since"),
        ({"sync": {"days": 0}}, "sync.days"),
        ({"sync": {"days": 400}}, "sync.days"),
        ({"sync": {"days": 7, "since": "2026-01-01"}}, "sync.since"),
        ({"sync": {"window": 7}}, "sync.window"),
        ({"sync": "weekly"}, "sync"),
        ({"sync": {}, "days": 7}, "days"),
    ],
)
def test_an_invalid_input_fails_naming_the_field(invoke, sandbox, event, field):
    with pytest.raises(InvalidRequest, match=f"^{field}: ") as raised:
        invoke(event)

    assert field in [e.field for e in raised.value.errors]
    assert sandbox.count("palenca") == 0


def test_a_scheduled_event_with_a_window_in_its_detail_fails(invoke, sandbox):
    """No schedule sends one (a scheduled event's detail is always {}): a window there is a mistake,
    refused loudly rather than replaced by the default."""
    with pytest.raises(InvalidRequest, match=r"^detail: a scheduled event carries no window"):
        invoke(_schedule(_window(days_back=60)))
    assert sandbox.count("palenca") == 0


def test_a_sync_that_fails_for_good_lands_in_its_dlq_with_the_reason(
    invoke, template, stack, aws, sandbox, monkeypatch
):
    """Lambda's asynchronous invocation as the schedule's rule makes it: retried as EventInvokeConfig
    says, then its OnFailure record sent to PalencaSyncDLQ with the function's own role."""
    from click.testing import CliRunner

    from provisioner_cli.lambda_runtime import invoke_async
    from provisioner_cli.main import cli
    from provisioner_cli.stack import StackTarget

    config = template.function(FUNCTION).event_invoke_config
    dlq_url = stack.refs[template.on_failure_queue_of(FUNCTION)]
    as_function = boto3.Session(
        region_name=REGION, **{key.lower(): value for key, value in stack.credentials[FUNCTION].items()}
    ).client("sqs")
    calls = []

    def counted(event):
        calls.append(event)
        return invoke(event)

    outcome = invoke_async(
        counted,
        {"sync": {"since": "2026-02-30"}},
        function_name=FUNCTION,
        maximum_retry_attempts=config["MaximumRetryAttempts"],
        on_failure=lambda record: as_function.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(record)),
    )

    assert len(calls) == outcome.attempts == 3
    assert sandbox.count("palenca") == 0
    target = StackTarget(dict(stack.refs), boto3.Session(region_name=REGION), description="test stack")
    monkeypatch.setattr("provisioner_cli.dlq.resolve_target", lambda **kw: target)
    shown = CliRunner().invoke(cli, ["dlq", "show", "--provider", "sync"])
    assert shown.exit_code == 0, shown.output
    assert "attempts 3" in shown.output
    assert "reason: InvalidRequest: sync.since: must be a real date formatted YYYY-MM-DD" in shown.output
    assert '"since": "2026-02-30"' in shown.output  # what it was invoked with
    (letter,) = json.loads(CliRunner().invoke(cli, ["dlq", "show", "--provider", "all", "--json"]).output)
    assert letter["queue"] == "sync"


def test_ready_events_work(invoke, template):
    for name in ("api.json", "api_base64.json"):
        assert invoke(json.loads((EVENTS / "palenca_list_users" / name).read_text()))["statusCode"] == 200
    for name in ("schedule.json", "schedule_input.json", "sync_window.json"):
        assert invoke(json.loads((EVENTS / "palenca_list_users" / name).read_text()))["complete"]
    # The schedule's Input, as template.yaml gives it to the rule's target.
    assert json.loads((EVENTS / "palenca_list_users" / "schedule_input.json").read_text()) == _schedule_input(
        template
    )


def test_sync_never_stores_an_external_id_that_is_personal_data(invoke, palenca, store):
    palenca.seed_user("ana.perez@example.com")  # created outside the hub, with an e-mail as its id
    palenca.seed_user("+5215512345678")
    palenca.seed_user("s-1")

    summary = invoke(_schedule())

    assert {link.external_id for link in store.scan_links()} == {"s-1"}
    assert summary["skipped_unusable_external_id"] == 2
    assert "ana.perez" not in json.dumps(summary)


def test_sync_never_links_a_palenca_user_another_person_holds(invoke, palenca, store):
    user = palenca.seed_user("s-2")
    # A person linked to that Palenca user by hand, under another id: the sync must not add a second.
    store.save_link(Link(external_id="s-9", provider="palenca", provider_user_id=user.user_id))

    summary = invoke(_schedule())

    assert store.get("palenca", "s-2") is None
    assert summary["conflicts"] == 1
