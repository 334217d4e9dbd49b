"""Transport failures and statuses become the right hub errors; the retry policy stays bounded."""

from __future__ import annotations

import socket

import pytest
import requests

from provisioning.errors import (
    ProviderAuthFailed,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownOutcome,
)
from provisioning.http import (
    Deadline,
    ErrorVocabulary,
    ProviderHttp,
    RetryPolicy,
    Timeouts,
    new_session,
    raise_for_status,
    retry_after_seconds,
)
from provisioning.privacy import redact
from tests.support import Recorded, recorded_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_retryable_and_never_an_unknown_outcome():
    http = ProviderHttp("palenca", f"http://127.0.0.1:{_free_port()}", new_session())

    with pytest.raises(ProviderUnavailable):
        http.send("POST", "/v1/users", write=True, json={})


def test_dropped_connection_after_a_write_is_an_unknown_outcome(sandbox):
    sandbox.set_faults("palenca", reset_rate=1.0)
    http = ProviderHttp("palenca", sandbox.base_url("palenca"), new_session())

    with pytest.raises(UnknownOutcome):
        http.send("POST", "/v1/users", write=True, json={})
    with pytest.raises(ProviderUnavailable):
        http.send("POST", "/v1/users/search", write=False, json={})


def test_slow_answer_to_a_write_is_an_unknown_outcome_and_to_a_read_a_timeout(sandbox):
    sandbox.set_faults("palenca", latency_ms=400)
    http = ProviderHttp("palenca", sandbox.base_url("palenca"), new_session(), Timeouts(connect=1, read=0.1))

    with pytest.raises(UnknownOutcome):
        http.send("POST", "/v1/users", write=True, json={})
    with pytest.raises(ProviderTimeout):
        http.send("POST", "/v1/users/search", write=False, json={})


def _response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(
    ("status", "write", "error"),
    [
        (400, True, ProviderRejected),
        (404, True, ProviderRejected),
        (422, False, ProviderRejected),
        (401, True, ProviderAuthFailed),
        (403, False, ProviderAuthFailed),
        (429, True, RateLimited),
        (500, True, UnknownOutcome),
        (503, True, UnknownOutcome),
        (503, False, ProviderUnavailable),
        (504, False, ProviderTimeout),
    ],
)
def test_statuses_map_to_hub_errors(status, write, error):
    with pytest.raises(error) as raised:
        raise_for_status("palm", _response(status), write=write, messages=["nope"])
    assert raised.value.status == status
    assert raised.value.provider == "palm"


def test_a_providers_free_text_never_travels_only_its_known_messages_and_codes():
    vocabulary = ErrorVocabulary(messages=frozenset({"User already exist"}), codes=frozenset({"bad_request"}))
    with pytest.raises(ProviderRejected) as raised:
        raise_for_status(
            "trust",
            _response(422),
            write=True,
            messages=["Pepa Pérez (PEPA900101MDFRRN09), Calle Falsa 123 exists"],
            provider_code="Pepa",
            vocabulary=vocabulary,
        )
    assert raised.value.message == "trust rejected the person's data (422)"
    assert raised.value.provider_code is None
    with pytest.raises(ProviderRejected) as raised:
        raise_for_status(
            "trust",
            _response(422),
            write=True,
            messages=["user already exist"],
            provider_code="bad_request",
            vocabulary=vocabulary,
        )
    assert raised.value.message == "trust rejected the person's data (422): User already exist"
    assert raised.value.provider_code == "bad_request"
    assert redact("Bearer abcdefghijklmnop") == "Bearer [redacted]"


def test_rate_limit_wait_comes_from_retry_after_or_palenca_reset_header():
    assert retry_after_seconds({"Retry-After": "7"}) == 7
    assert retry_after_seconds({"X-RateLimit-Reset": "1800000030"}, now=1_800_000_000) == 30
    assert retry_after_seconds({}) is None
    with pytest.raises(RateLimited) as raised:
        raise_for_status("palenca", _response(429, {"Retry-After": "3"}), write=True)
    assert raised.value.retry_after == 3
    assert raised.value.headers() == {"Retry-After": "3"}


def test_backoff_is_bounded_and_honours_retry_after():
    policy = RetryPolicy(base_delay=0.2, max_delay=1.0)
    delays = [policy.delay(attempt) for attempt in range(1, 10) for _ in range(20)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert policy.delay(1, retry_after=4) >= 4


def test_deadline_keeps_a_margin():
    deadline = Deadline(lambda: 10_000, margin=3.0)
    assert deadline.allows(6.5)
    assert not deadline.allows(7.5)


def test_requests_carry_explicit_timeouts_and_reuse_one_session():
    with recorded_server([Recorded(200, {"ok": True})]) as (url, seen):
        session = new_session()
        http = ProviderHttp("palm", url, session)
        http.send("GET", "/a", write=False)
        http.send("GET", "/b", write=False)
    assert [s.path for s in seen] == ["/a", "/b"]
    assert seen[0].headers["user-agent"].startswith("provisioner/")
