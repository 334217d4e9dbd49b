"""The sandbox's hostile providers, seen from a plain HTTP client: what each fault sends on the wire and
whether the provider did the work, which is what the hub's own tests rely on."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from provisioner_sandbox.app import build_emulators, build_sandbox
from provisioner_sandbox.server import ID_KEYS, ODD_RETRY_AFTER, PII_MESSAGE, Sandbox
from provisioner_sandbox.validic import ORG_TOKEN
from provisioning.providers import NAMES

pytestmark = pytest.mark.timeout(10)

PROVIDERS = list(NAMES)
CREATE_PATH = {emulator.name: emulator.create_call()[1] for emulator in build_emulators()}
PALENCA = CREATE_PATH["palenca"]
# What a provider answers a create with once the user's id is dropped, where the test pins it exactly.
WITHOUT_ID = {"palenca": {"success": True, "error": None, "data": None}}


def _connect(url: str, timeout: float = 5.0) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)


def _send(
    sandbox: Sandbox,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> http.client.HTTPResponse:
    connection = _connect(sandbox.url, timeout)
    payload = None if body is None else json.dumps(body)
    connection.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
    return connection.getresponse()


def _create_request(sandbox: Sandbox, provider: str, person: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and headers that create ``person`` at ``provider``."""
    return sandbox.emulators[provider].create_request(person)


def _create(
    sandbox: Sandbox, provider: str, person: str, timeout: float = 5.0, query: str = ""
) -> http.client.HTTPResponse:
    body, headers = _create_request(sandbox, provider, person)
    credential = urlencode(sandbox.emulators[provider].create_query())
    if credential:
        query = f"{query}&{credential}" if query else f"?{credential}"
    return _send(sandbox, "POST", CREATE_PATH[provider] + query, body, headers, timeout)


def _users(sandbox: Sandbox, provider: str, person: str) -> int:
    return sandbox.users_for(provider, person)


def _paths_to(body: Any, value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where ``value`` sits in ``body`` (keys and indexes from the top)."""
    if body == value:
        yield at
    elif isinstance(body, dict):
        for key, item in body.items():
            yield from _paths_to(item, value, (*at, key))
    elif isinstance(body, list):
        for index, item in enumerate(body):
            yield from _paths_to(item, value, (*at, index))


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def _keys(body: Any) -> Iterator[str]:
    if isinstance(body, dict):
        for key, value in body.items():
            yield key
            yield from _keys(value)
    elif isinstance(body, list):
        for value in body:
            yield from _keys(value)


def _rss_kb() -> int:
    for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115 - procfs, read at once
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _drain(response: http.client.HTTPResponse, on_chunk: Callable[[bytes], None]) -> int:
    """Reads the body in chunks, keeping none of it; returns how many bytes came."""
    received = 0
    while chunk := response.read(64 * 1024):
        received += len(chunk)
        on_chunk(chunk)
    return received


# -- faults after the work: the provider created the user, the answer is spoiled -------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_html_fault_answers_a_proxy_page_after_the_user_was_created(sandbox: Sandbox, provider: str) -> None:
    sandbox.script_fault(provider, "POST", CREATE_PATH[provider], "html")

    response = _create(sandbox, provider, "html-1")

    assert response.status == 200
    assert (response.getheader("Content-Type") or "").startswith("text/html")
    assert b"<h1>Bad gateway</h1>" in response.read()
    assert _users(sandbox, provider, "html-1") == 1
    assert sandbox.calls[-1].fault == "html"


def test_html_fault_status_can_be_scripted_and_spoils_read_answers_too(sandbox: Sandbox) -> None:
    sandbox.emulators["validic"].seed_user("read-1")  # type: ignore[attr-defined]
    path = CREATE_PATH["validic"]
    sandbox.script_fault("validic", "GET", path, "html", html_status=502)

    response = _send(sandbox, "GET", f"{path}?access_token={ORG_TOKEN}&uid=read-1")

    assert response.status == 502
    assert response.read().startswith(b"<!DOCTYPE html>")
    assert sandbox.calls[-1].fault == "html"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_id_answers_success_without_the_users_id_though_the_user_exists(
    sandbox: Sandbox, provider: str
) -> None:
    sandbox.script_fault(provider, "POST", CREATE_PATH[provider], "missing_id")

    response = _create(sandbox, provider, "noid-1")
    body = json.loads(response.read())

    assert response.status in (200, 201)
    assert not ID_KEYS & set(_keys(body))
    if provider in WITHOUT_ID:
        assert body == WITHOUT_ID[provider]
    assert _users(sandbox, provider, "noid-1") == 1
    assert sandbox.calls[-1].fault == "missing_id"


def test_truncated_answer_is_shorter_than_its_content_length_though_the_user_exists(
    sandbox: Sandbox,
) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "truncate")

    response = _create(sandbox, "palenca", "cut-1")
    announced = int(response.getheader("Content-Length") or 0)
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()

    assert announced > 0
    assert len(cut.value.partial) == announced // 2
    assert _users(sandbox, "palenca", "cut-1") == 1
    assert sandbox.calls[-1].fault == "truncate"


def test_trickle_sends_the_headers_at_once_then_one_byte_per_interval(sandbox: Sandbox) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "trickle", trickle_interval_s=0.2)

    started = time.monotonic()
    response = _create(sandbox, "palenca", "slow-1")
    headers_after = time.monotonic() - started
    arrivals = []
    for _ in range(5):
        assert len(response.read(1)) == 1
        arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]

    # Headers sent a byte per interval would take over a hundred intervals (more than 20 s); the bound
    # of two intervals proves they came at once and leaves room for a busy machine.
    assert headers_after < 2 * 0.2
    assert int(response.getheader("Content-Length") or 0) > 100  # the whole answer is announced
    assert all(0.12 < gap < 0.6 for gap in gaps), gaps
    assert _users(sandbox, "palenca", "slow-1") == 1
    assert sandbox.calls[-1].fault == "trickle"


def test_trickle_stops_quietly_when_the_client_goes_away(sandbox: Sandbox) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "trickle", trickle_interval_s=0.05)
    response = _create(sandbox, "palenca", "gone-1")
    response.read(1)
    response.close()
    time.sleep(0.2)  # the sandbox's next writes fail: its handler must end without harm

    assert _create(sandbox, "palenca", "after-1").status == 200


def test_oversize_answer_has_its_announced_length_and_is_streamed(sandbox: Sandbox) -> None:
    size = 20_000_000
    sandbox.script_fault("palenca", "POST", PALENCA, "oversize", oversize_bytes=1000)
    _create(sandbox, "palenca", "warm-up").read()  # the same code path once, small
    sandbox.script_fault("palenca", "POST", PALENCA, "oversize", oversize_bytes=size)
    before = _rss_kb()
    peak = before

    def sample(_: bytes) -> None:
        nonlocal peak
        peak = max(peak, _rss_kb())

    response = _create(sandbox, "palenca", "big-1")
    head = response.read(200)
    received = len(head) + _drain(response, sample)

    assert response.status == 200
    assert int(response.getheader("Content-Length") or 0) == size
    assert received == size
    assert head.startswith(b'{"success": true, "error": null, "data": {"user_id": ')
    assert b'"padding": "xxx' in head
    assert (peak - before) * 1024 < size / 2, f"RSS grew {peak - before} kB"
    assert _users(sandbox, "palenca", "big-1") == 1
    assert sandbox.calls[-1].fault == "oversize"


# -- faults before the work: nothing is created ---------------------------------------------------------
def test_oversize_error_is_a_streamed_500_with_a_huge_message_and_creates_nothing(sandbox: Sandbox) -> None:
    size = 20_000_000
    sandbox.script_fault("palenca", "POST", PALENCA, "oversize_error", oversize_bytes=1000)
    _create(sandbox, "palenca", "warm-up").read()
    sandbox.script_fault("palenca", "POST", PALENCA, "oversize_error", oversize_bytes=size)
    before = _rss_kb()
    peak = before
    tail = b""

    def sample(chunk: bytes) -> None:
        nonlocal peak, tail
        peak = max(peak, _rss_kb())
        tail = (tail + chunk)[-100:]

    response = _create(sandbox, "palenca", "bigerr-1")
    head = response.read(100)
    received = len(head) + _drain(response, sample)

    assert response.status == 500
    assert received == int(response.getheader("Content-Length") or 0) > size
    assert head.startswith(b'{"success": false, "error": {"error_code": "internal_error", "message": "xxx')
    assert tail.endswith(b'xxx"}, "data": null}')
    assert (peak - before) * 1024 < size / 2, f"RSS grew {peak - before} kB"
    assert _users(sandbox, "palenca", "bigerr-1") == 0
    assert sandbox.calls[-1].fault == "oversize_error"


def test_hang_holds_the_request_for_hang_s_then_closes_without_an_answer(sandbox: Sandbox) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "hang", hang_s=1.0)

    started = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _create(sandbox, "palenca", "hang-1", timeout=5)
    held = time.monotonic() - started

    assert 0.9 < held < 3.0
    assert _users(sandbox, "palenca", "hang-1") == 0
    assert (sandbox.calls[-1].fault, sandbox.calls[-1].status) == ("hang", 0)


def _hang_in_background(sandbox: Sandbox) -> tuple[threading.Thread, list[BaseException]]:
    """A create that hangs (for the default 60 s) in a thread; returns once the sandbox holds it."""
    sandbox.script_fault("palenca", "POST", PALENCA, "hang")
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            _create(sandbox, "palenca", "hang-bg", timeout=8)
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 3
    while sandbox.count("palenca") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.count("palenca") == 1
    return thread, outcome


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    sandbox = build_sandbox().start()
    thread, outcome = _hang_in_background(sandbox)

    started = time.monotonic()
    sandbox.stop()
    stopping = time.monotonic() - started
    thread.join(timeout=3)

    assert stopping < 1.0
    assert not thread.is_alive()
    assert outcome
    assert not isinstance(outcome[0], TimeoutError)  # closed by the sandbox, not timed out


def test_reset_releases_hanging_requests_and_forgets_scripted_faults(sandbox: Sandbox) -> None:
    thread, outcome = _hang_in_background(sandbox)
    sandbox.script_fault("palenca", "POST", PALENCA, "html", count=3)
    requests.get(f"{sandbox.thief_url}/anything", timeout=5)

    sandbox.reset()
    thread.join(timeout=3)

    assert not thread.is_alive()
    assert outcome
    assert sandbox.thief.requests == []
    assert sandbox.scripted_faults == {}
    assert _create(sandbox, "palenca", "after-reset").status == 200
    assert sandbox.calls[-1].fault is None


@pytest.mark.parametrize("status", [307, 302])
def test_redirect_points_at_the_thief_which_records_what_it_receives(sandbox: Sandbox, status: int) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "redirect", redirect_status=status)
    body, headers = _create_request(sandbox, "palenca", "redir-1")

    response = _send(sandbox, "POST", f"{PALENCA}?trace=1", body, headers)
    response.read()
    location = response.getheader("Location") or ""
    followed = _connect(location)
    followed.request("POST", location, json.dumps(body), headers)
    stolen_answer = followed.getresponse()

    assert response.status == status
    assert location == f"{sandbox.thief_url}{PALENCA}?trace=1"
    assert (stolen_answer.status, json.loads(stolen_answer.read())) == (200, {})
    [stolen] = sandbox.thief.requests
    assert (stolen.method, stolen.path, stolen.raw_query) == ("POST", PALENCA, "trace=1")
    assert stolen.headers["x-api-key"] == headers["x-api-key"]
    assert json.loads(stolen.body) == body
    assert _users(sandbox, "palenca", "redir-1") == 0
    assert sandbox.calls[-1].fault == "redirect"


def test_a_client_that_follows_the_redirect_hands_the_credentials_to_the_thief(sandbox: Sandbox) -> None:
    sandbox.script_fault("validic", "POST", CREATE_PATH["validic"], "redirect")
    body, _ = _create_request(sandbox, "validic", "redir-2")

    answer = requests.post(sandbox.url + CREATE_PATH["validic"], json=body, timeout=5)  # follows 307

    assert answer.status_code == 200
    assert answer.url.startswith(sandbox.thief_url)
    assert json.loads(sandbox.thief.requests[0].body)["access_token"] == ORG_TOKEN
    assert _users(sandbox, "validic", "redir-2") == 0


@pytest.mark.parametrize("value", ODD_RETRY_AFTER)
def test_odd_retry_after_values_are_served_verbatim_on_a_429(sandbox: Sandbox, value: str) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, "odd_retry_after", retry_after=value)

    response = _create(sandbox, "palenca", "odd-1")
    body = json.loads(response.read())

    assert response.status == 429
    assert response.getheader("Retry-After") == value
    assert response.getheader("X-RateLimit-Reset") is None
    assert body == sandbox.emulators["palenca"].error_body(429, "Too many requests")
    assert body["error"]["error_code"] == "too_many_requests"
    assert _users(sandbox, "palenca", "odd-1") == 0
    assert sandbox.calls[-1].fault == "odd_retry_after"


def test_random_odd_retry_after_values_are_drawn_from_the_list_and_seeded(sandbox: Sandbox) -> None:
    def draw() -> list[str | None]:
        sandbox.set_faults("validic", seed=7, odd_retry_after_rate=1.0)
        return [_create(sandbox, "validic", f"odd-{n}").getheader("Retry-After") for n in range(12)]

    first = draw()
    again = draw()

    assert first == again
    assert set(first) <= set(ODD_RETRY_AFTER)
    assert len(set(first)) > 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_pii_error_carries_personal_data_in_the_providers_own_error_shape(
    sandbox: Sandbox, provider: str
) -> None:
    emulator = sandbox.emulators[provider]
    sandbox.script_fault(provider, "POST", CREATE_PATH[provider], "pii_error")

    response = _create(sandbox, provider, "pii-1")
    body = json.loads(response.read())

    assert response.status == 422
    assert body.keys() == emulator.error_body(422, "x").keys()
    (message_field,) = _paths_to(emulator.error_body(422, "@message@"), "@message@")
    assert _at(body, message_field) == PII_MESSAGE  # where the provider puts its error message
    assert _users(sandbox, provider, "pii-1") == 0
    assert sandbox.calls[-1].fault == "pii_error"


def test_pii_error_status_can_be_scripted(sandbox: Sandbox) -> None:
    sandbox.script_fault("palm", "POST", CREATE_PATH["palm"], "pii_error", pii_error_status=500)

    response = _create(sandbox, "palm", "pii-2")
    body = json.loads(response.read())

    assert response.status == 500
    assert body["status"] == 500
    assert body["type"] == "https://docs.getpalm.com/errors/500"
    assert body["title"] == body["detail"] == PII_MESSAGE  # every free-text field


def test_each_emulator_answers_errors_in_its_documented_shape(sandbox: Sandbox) -> None:
    palenca, trust, palm, validic = (sandbox.emulators[p] for p in ("palenca", "trust", "palm", "validic"))

    assert palenca.error_body(503, "down") == {
        "success": False,
        "error": {"error_code": "service_unavailable", "message": "down"},
        "data": None,
    }
    assert [palenca.error_body(s, "m")["error"]["error_code"] for s in (422, 429, 500)] == [
        "bad_request",
        "too_many_requests",
        "internal_error",
    ]
    assert trust.error_body(422, "m") == {"status": False, "message": "m"}
    assert palm.error_body(429, "m") == {
        "type": "https://docs.getpalm.com/errors/429",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "m",
    }
    assert validic.error_body(422, "m") == {"code": 422, "message": "Unprocessable Entity", "errors": "m"}


# -- the ordinary faults, scripted ---------------------------------------------------------------------------
def test_scripted_error_and_rate_limit_answer_in_the_providers_shape(sandbox: Sandbox) -> None:
    path = CREATE_PATH["trust"]
    sandbox.script_fault("trust", "POST", path, "error")
    sandbox.script_fault("trust", "POST", path, "rate_limit")

    unavailable = _create(sandbox, "trust", "e-1")
    limited = _create(sandbox, "trust", "e-1")

    assert (unavailable.status, json.loads(unavailable.read())["status"]) == (503, False)
    assert (limited.status, json.loads(limited.read())["status"]) == (429, False)
    assert limited.getheader("Retry-After") == "1"
    assert limited.getheader("X-RateLimit-Remaining") == "0"
    assert limited.getheader("X-RateLimit-Reset")
    assert _users(sandbox, "trust", "e-1") == 0


@pytest.mark.parametrize(("fault", "created"), [("reset", 0), ("lose_answer", 1)])
def test_scripted_dropped_connections_before_and_after_the_work(
    sandbox: Sandbox, fault: str, created: int
) -> None:
    sandbox.script_fault("palenca", "POST", PALENCA, fault)

    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _create(sandbox, "palenca", "drop-1")

    assert _users(sandbox, "palenca", "drop-1") == created
    assert sandbox.calls[-1].fault == fault


# -- control -----------------------------------------------------------------------------------------------
def test_scripted_faults_come_before_random_ones_and_last_count_requests(sandbox: Sandbox) -> None:
    sandbox.set_faults("palenca", html_rate=1.0)
    sandbox.script_fault("palenca", "POST", PALENCA, "missing_id", count=2)

    statuses = [(_create(sandbox, "palenca", f"c-{n}").getheader("Content-Type") or "") for n in range(3)]

    assert [c.fault for c in sandbox.calls] == ["missing_id", "missing_id", "html"]
    assert statuses[0] == "application/json"
    assert statuses[2].startswith("text/html")


def test_random_hostile_faults_are_seeded_and_every_one_is_recorded(sandbox: Sandbox) -> None:
    rates = {"html_rate": 0.25, "missing_id_rate": 0.25, "pii_error_rate": 0.2, "odd_retry_after_rate": 0.1}

    def run() -> list[str | None]:
        sandbox.reset()
        sandbox.set_faults("palenca", seed=7, **rates)
        for n in range(16):
            _create(sandbox, "palenca", f"r-{n}").read()
        return [c.fault for c in sandbox.calls]

    first = run()
    second = run()

    assert first == second
    assert {"html", "missing_id", "pii_error"} <= set(first)
    created = sum(_users(sandbox, "palenca", f"r-{n}") for n in range(16))
    assert created == sum(f in (None, "html", "missing_id") for f in second)


def test_script_fault_refuses_unknown_faults_options_and_routes(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.script_fault("palenca", "POST", PALENCA, "explode")
    with pytest.raises(ValueError, match="unknown fault options"):
        sandbox.script_fault("palenca", "POST", PALENCA, "hang", hang_for=3)
    with pytest.raises(ValueError, match="no route"):
        sandbox.script_fault("palenca", "POST", "/palenca/v1/user", "hang")
    with pytest.raises(KeyError):
        sandbox.script_fault("nobody", "POST", PALENCA, "hang")


def test_admin_routes_accept_the_hostile_settings_over_http(sandbox: Sandbox) -> None:
    admin = f"{sandbox.url}/_sandbox"
    faults = requests.post(
        f"{admin}/faults", json={"palenca": {"html_rate": 1.0, "html_status": 502}}, timeout=5
    )
    scripted = requests.post(
        f"{admin}/script_fault",
        json={"provider": "palenca", "method": "POST", "path": PALENCA, "fault": "odd_retry_after"}
        | {"count": 2, "retry_after": "inf"},
        timeout=5,
    )
    answers = [_create(sandbox, "palenca", f"a-{n}") for n in range(3)]

    assert faults.status_code == 200
    assert faults.json()["palenca"]["html_status"] == 502
    assert scripted.status_code == 200
    assert [(a.status, a.getheader("Retry-After")) for a in answers] == [
        (429, "inf"),
        (429, "inf"),
        (502, None),
    ]

    hostile = requests.post(f"{admin}/hostile", json={"rate": 0.1, "seed": 3, "hang_s": 2.0}, timeout=5)
    assert hostile.status_code == 200
    assert all(f["trickle_rate"] == 0.1 and f["hang_s"] == 2.0 for f in hostile.json().values())
    assert sandbox.faults["validic"].oversize_error_rate == 0.1

    assert requests.post(f"{admin}/faults", json={"palm": {"nope_rate": 1}}, timeout=5).status_code == 400
    bad = {"provider": "palm", "method": "POST", "path": CREATE_PATH["palm"], "fault": "explode"}
    assert requests.post(f"{admin}/script_fault", json=bad, timeout=5).status_code == 400

    requests.put(f"{sandbox.thief_url}/stolen?x=1", data=b"secret", timeout=5)
    thief = requests.get(f"{admin}/thief", timeout=5).json()
    assert thief["url"] == sandbox.thief_url
    assert [(r["method"], r["path"], r["query"], r["body"]) for r in thief["requests"]] == [
        ("PUT", "/stolen", "x=1", "secret")
    ]
    assert requests.get(f"{admin}/health", timeout=5).json()["thief_url"] == sandbox.thief_url
