"""Exactly once and never the wrong person, whatever a provider answers: HTML, bodies without the id,
cut off or huge, redirects, trickles, hangs, odd Retry-After values, messages full of personal data,
people sharing an e-mail, a rotated key. Every case goes through the real function handlers (API
Gateway and SQS events) against moto and the hostile sandbox on loopback."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from provisioner_cli.lambda_runtime import drain_queue
from provisioner_sandbox.server import PII_MESSAGE, Reply
from provisioning.providers import NAMES
from provisioning.providers import provider as provider_info
from provisioning.store import LinkStatus, LinkStore
from tests.conftest import api_event, dead_letters, response_json
from tests.people import body_for as person_body

PROVIDERS = sorted(NAMES)
# Cases about any provider's behaviour are shown on one of them.
ANY = NAMES[0]
# Calls that carry a provider's secret before its create (an OAuth token request), by provider name.
TOKEN_CALLS = {"trust": [("POST", "/trust/oauth/token/")]}
# Pieces of PII_MESSAGE: none of them may reach an answer, a log line or a dead-letter report.
PII_PIECES = ["Pepa", "Rangel", "PEPA900101MDFRRN09", "Calle Falsa", "pepa.perez", "1234 5678"]


def body_for(name: str, n: int = 1, email: str | None = None, **fields) -> dict:
    """``name``'s request for the person ``hostile-<n>`` (their own e-mail address unless given)."""
    external_id = f"hostile-{n}"
    return person_body(name, external_id, email=email or f"{external_id}@example.test", **fields)


def users_of(sandbox, name: str, body: dict) -> int:
    """How many users the provider holds for this person."""
    return sandbox.users_for(name, body["external_id"])


def create_call(sandbox, name: str) -> tuple[str, str]:
    return sandbox.emulators[name].create_call()


@pytest.fixture
def store(stack, aws):
    return LinkStore(aws("dynamodb"), stack.refs["UsersTable"])


@pytest.fixture
def function(load_function):
    loaded: dict[str, object] = {}

    def get(provider: str):
        if provider not in loaded:
            loaded[provider] = load_function(provider_info(provider).create.function)
        return loaded[provider]

    return get


def post(function, provider: str, body: dict) -> tuple[int, dict, dict]:
    """Status, JSON body and headers (single-valued) of an API Gateway answer."""
    response = function(provider)(api_event(provider_info(provider).create.route, body))
    headers = dict(response.get("headers") or {})
    headers.update({k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v})
    return response["statusCode"], response_json(response), headers


# -- any answer but a clean success to a create is an unknown outcome -------------------------------
@pytest.mark.parametrize("fault", ["html", "missing_id", "truncate", "oversize", "lose_answer"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_create_committed_but_answered_badly_is_reconciled_not_repeated(
    function, sandbox, store, provider, fault
):
    body = body_for(provider)
    sandbox.script_fault(provider, *create_call(sandbox, provider), fault, oversize_bytes=2_000_000)

    status, answer, _ = post(function, provider, body)

    assert (status, answer["outcome"]) == (201, "reconciled")
    assert users_of(sandbox, provider, body) == 1
    assert sandbox.count(provider, *create_call(sandbox, provider)) == 1
    assert store.get(provider, "hostile-1").provider_user_id == answer["provider_user_id"]


@pytest.mark.parametrize("fault", ["html", "missing_id", "truncate", "lose_answer"])
def test_a_palm_person_nobody_can_look_up_is_held_after_an_unknown_outcome(
    function, sandbox, stack, aws, fault
):
    body = {"external_id": "hostile-1", "display_name": "No Contact"}  # neither e-mail nor phone
    sandbox.script_fault("palm", *create_call(sandbox, "palm"), fault)

    first = post(function, "palm", body)
    second = post(function, "palm", body)  # the caller retries: still held, never created again

    for status, answer, _ in (first, second):
        assert status == 502
        assert answer["error"]["code"] == "unknown_outcome"
    assert users_of(sandbox, "palm", body) == 1

    # Through the queue: dead-lettered at once with the reason, for an operator to check.
    sqs = aws("sqs")
    palm = provider_info("palm").create
    queue, dlq = stack.refs[palm.queue], stack.refs[palm.dead_letter_queue]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    drain_queue(sqs, queue, function("palm"), max_batches=1)
    [dead] = dead_letters(sqs, dlq)
    assert dead["failure"]["code"] == "unknown_outcome"
    assert dead["failure"]["attempts"] == 1
    assert users_of(sandbox, "palm", body) == 1


# -- one provider user is never linked to two people ------------------------------------------------
# The providers a person's e-mail address is sent to.
TOLD_EMAILS = [name for name in PROVIDERS if "@" in json.dumps(body_for(name))]


@pytest.mark.parametrize("provider", TOLD_EMAILS)
def test_two_people_sharing_an_email_are_never_linked_to_one_provider_user(
    function, sandbox, store, provider
):
    first = body_for(provider, 1, email="shared@example.test")
    second = body_for(provider, 2, email="shared@example.test")

    assert post(function, provider, first)[0] == 201
    status, answer, _ = post(function, provider, second)

    assert status == 409
    assert answer["error"]["code"] == "conflict"
    assert "shared@example.test" not in json.dumps(answer)
    assert "hostile-1" not in json.dumps(answer)
    linked = [link for link in store.scan_links() if link.status == LinkStatus.LINKED]
    assert [link.external_id for link in linked] == ["hostile-1"]


def test_a_trust_user_is_not_linked_to_a_second_person_even_with_the_same_name(function, sandbox, store):
    first = body_for("trust", 1, email="twin@example.test", national_id=None)
    second = body_for("trust", 2, email="twin@example.test", national_id=None)  # same name and e-mail

    post(function, "trust", first)
    status, answer, _ = post(function, "trust", second)

    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert store.get("trust", "hostile-2").status == LinkStatus.PENDING


def test_trust_already_exist_pages_through_the_search_and_matches_the_email_exactly(function, sandbox):
    trust = sandbox.emulators["trust"]
    for n in range(60):  # Trust's search is a substring search: these all match, filling a first page
        trust.seed_user(f"x{n}ana@example.test", name="Other", last_name="Person")
    existing = trust.seed_user("ana@example.test", name="Ana", last_name="Pérez")

    status, answer, _ = post(function, "trust", body_for("trust", 1, email="ana@example.test"))

    assert status == 201
    assert (answer["outcome"], answer["provider_user_id"]) == ("linked_existing", str(existing["id"]))
    searches = [c for c in sandbox.calls if c.method == "GET" and c.path == "/trust/users"]
    assert len(searches) >= 2  # the exact e-mail was on a later page


# -- time-boxed calls --------------------------------------------------------------------------------
def test_a_provider_that_trickles_every_answer_cannot_hold_an_api_call_past_its_timeout(
    function, sandbox, template
):
    timeout = template.function(provider_info(ANY).create.function).timeout
    sandbox.set_faults(ANY, trickle_rate=1.0, trickle_interval_s=2.0)

    started = time.monotonic()
    status, answer, _ = post(function, ANY, body_for(ANY))
    elapsed = time.monotonic() - started

    assert elapsed < timeout - 2
    assert status == 504
    assert answer["error"]["provider"] == ANY


def test_a_provider_that_hangs_cannot_hold_a_batch_past_its_timeout(function, sandbox, stack, aws, template):
    timeout = template.function(provider_info(ANY).create.function).timeout
    sandbox.set_faults(ANY, hang_rate=1.0, hang_s=120.0)
    sqs = aws("sqs")
    queue = stack.refs[provider_info(ANY).create.queue]
    for n in range(10):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body_for(ANY, n)))

    started = time.monotonic()
    report = drain_queue(sqs, queue, function(ANY), max_batches=1)
    elapsed = time.monotonic() - started

    assert elapsed < timeout - 2
    assert report.failed == 10  # every record reported, none lost with a killed invocation


# -- bounded memory ----------------------------------------------------------------------------------
def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_huge_error_bodies_are_not_read_whole(function, sandbox, stack, aws):
    sandbox.set_faults(ANY, oversize_error_rate=1.0, oversize_bytes=30 * 1024 * 1024)
    sqs = aws("sqs")
    queue = stack.refs[provider_info(ANY).create.queue]
    for n in range(10):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body_for(ANY, n)))
    function(ANY)  # loaded before measuring
    _reset_peak_rss()
    before = _peak_rss_mb()

    report = drain_queue(sqs, queue, function(ANY), max_batches=1)

    assert report.failed == 10
    assert _peak_rss_mb() - before < 64  # ten 30 MB bodies, a few capped reads of 1 MB each


# -- credentials never leave for another host ---------------------------------------------------------
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_is_an_error_naming_the_provider_and_credentials_stay_home(
    function, sandbox, provider, status
):
    routes = [create_call(sandbox, provider), *TOKEN_CALLS.get(provider, [])]
    for method, path in routes:
        sandbox.script_fault(provider, method, path, "redirect", count=20, redirect_status=status)

    code, answer, _ = post(function, provider, body_for(provider))

    assert code in (502, 504)
    assert provider in answer["error"]["message"]
    assert "redirect" in answer["error"]["message"]
    assert sandbox.thief.requests == []


def test_a_redirected_validic_lookup_does_not_send_the_org_token_elsewhere(function, sandbox):
    sandbox.emulators["validic"].seed_user("hostile-1")  # the create answers 409: the lookup follows
    lookup = create_call(sandbox, "validic")[1]  # the same path, read
    sandbox.script_fault("validic", "GET", lookup, "redirect", count=20, redirect_status=302)

    code, answer, _ = post(function, "validic", body_for("validic"))

    assert code == 502
    assert "redirect" in answer["error"]["message"]
    assert sandbox.thief.requests == []


# -- personal data in provider messages ---------------------------------------------------------------
@pytest.mark.parametrize("provider", PROVIDERS)
def test_personal_data_a_provider_echoes_reaches_no_answer_log_or_dead_letter(
    function, sandbox, stack, aws, caplog, capsys, provider
):
    caplog.set_level(logging.INFO)
    sandbox.script_fault(
        provider, *create_call(sandbox, provider), "pii_error", count=2, pii_error_status=422
    )
    status, answer, _ = post(function, provider, body_for(provider, 1))
    sqs = aws("sqs")
    create = provider_info(provider).create
    queue, dlq = stack.refs[create.queue], stack.refs[create.dead_letter_queue]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body_for(provider, 2)))
    drain_queue(sqs, queue, function(provider), max_batches=1)
    [dead] = dead_letters(sqs, dlq)

    assert status == 422
    assert answer["error"]["provider_status"] == 422
    assert dead["failure"]["code"] == "provider_rejected"
    places = {
        "answer": json.dumps(answer, ensure_ascii=False),
        "dead letter": json.dumps(dead["failure"], ensure_ascii=False),
        "logs": caplog.text + capsys.readouterr().out,
    }
    for place, text in places.items():
        for piece in PII_PIECES:
            assert piece not in text, f"{piece!r} reached the {place}"


def test_a_huge_provider_message_is_handled_at_once(function, sandbox):
    long_text = PII_MESSAGE + " x" * 30_000  # 60,000 characters of free text
    error = sandbox.emulators[ANY].error_body(500, long_text)  # in the provider's own shape
    sandbox.script(*create_call(sandbox, ANY), *[Reply(500, error) for _ in range(10)])

    started = time.monotonic()
    status, answer, _ = post(function, ANY, body_for(ANY))

    assert time.monotonic() - started < 5
    assert status == 504
    assert "x x x" not in answer["error"]["message"]


# -- Retry-After, parsed defensively ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("inf", None), ("nan", None), ("soon", None), ("1e309", None), ("-5", None), ("", None)],
        *[("99999999999", "3600"), ("7", "7"), ("Wed, 21 Oct 2015 07:28:00 GMT", "1")],
    ],
)
def test_an_odd_retry_after_is_ignored_or_clamped_never_a_crash(function, sandbox, value, expected):
    sandbox.script_fault(ANY, *create_call(sandbox, ANY), "odd_retry_after", count=20, retry_after=value)

    status, answer, headers = post(function, ANY, body_for(ANY))

    assert status == 429
    assert answer["error"]["code"] == "provider_rate_limited"
    assert headers.get("Retry-After") == expected  # garbage ignored, a huge wait clamped, a past date: now


# -- secrets refresh on rejection ----------------------------------------------------------------------
def test_a_rotated_provider_key_heals_within_one_call(function, sandbox, stack, aws):
    assert post(function, "palenca", body_for("palenca", 1))[0] == 201  # the old key is now cached
    secret_id = stack.parameters["PalencaSecretId"]
    secrets = aws("secretsmanager")
    value = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
    secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps({**value, "api_key": "rotated-key"}))
    sandbox.emulators["palenca"].api_key = "rotated-key"

    status, answer, _ = post(function, "palenca", body_for("palenca", 2))

    assert (status, answer["outcome"]) == (201, "created")
