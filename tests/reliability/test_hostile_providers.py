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
from provisioning.store import LinkStatus, LinkStore
from tests.conftest import api_event, dead_letters, response_json

FUNCTIONS = {
    "palenca": (
        "PalencaCreateUserFunction",
        "/palenca/users",
        "PalencaCreateUserQueue",
        "PalencaCreateUserDLQ",
    ),
    "trust": ("TrustCreateUserFunction", "/trust/users", "TrustCreateUserQueue", "TrustCreateUserDLQ"),
    "palm": ("PalmCreateUserFunction", "/palm/users", "PalmCreateUserQueue", "PalmCreateUserDLQ"),
    "validic": (
        "ValidicProvisionUserFunction",
        "/validic/users",
        "ValidicProvisionUserQueue",
        "ValidicProvisionUserDLQ",
    ),
}
CREATE = {
    "palenca": ("POST", "/palenca/v1/users"),
    "trust": ("POST", "/trust/users/create"),
    "palm": ("POST", "/palm/v1/user"),
    "validic": ("POST", "/validic/v1/organizations/sandbox-org/users.json"),
}
PROVIDERS = sorted(FUNCTIONS)
# Pieces of PII_MESSAGE: none of them may reach an answer, a log line or a dead-letter report.
PII_PIECES = ["Pepa", "Rangel", "PEPA900101MDFRRN09", "Calle Falsa", "pepa.perez", "1234 5678"]


def body_for(provider: str, n: int = 1, email: str | None = None) -> dict:
    external_id = f"h-{n}"
    email = email or f"{external_id}@example.test"
    if provider == "trust":
        return {"external_id": external_id, "email": email, "name": "Ana", "last_name": "Pérez"}
    if provider == "palm":
        return {"external_id": external_id, "vault": {"identity.email": email}}
    return {"external_id": external_id}


def users_of(sandbox, provider: str, body: dict) -> int:
    """How many users the provider holds for this person."""
    emulator = sandbox.emulators[provider]
    external_id = body["external_id"]
    if provider == "palenca":
        return len(emulator.users_with_external_id(external_id))
    if provider == "trust":
        return len(emulator.users_with_email(body["email"]))
    if provider == "palm":
        return sum(1 for u in emulator.users if u["metadata"].get("external_id") == external_id)
    return int(external_id in emulator.users)


@pytest.fixture
def store(stack, aws):
    return LinkStore(aws("dynamodb"), stack.refs["UsersTable"])


@pytest.fixture
def function(load_function):
    loaded: dict[str, object] = {}

    def get(provider: str):
        if provider not in loaded:
            loaded[provider] = load_function(FUNCTIONS[provider][0])
        return loaded[provider]

    return get


def post(function, provider: str, body: dict) -> tuple[int, dict, dict]:
    """Status, JSON body and headers (single-valued) of an API Gateway answer."""
    response = function(provider)(api_event(FUNCTIONS[provider][1], body))
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
    sandbox.script_fault(provider, *CREATE[provider], fault, oversize_bytes=2_000_000)

    status, answer, _ = post(function, provider, body)

    assert (status, answer["outcome"]) == (201, "reconciled")
    assert users_of(sandbox, provider, body) == 1
    assert sandbox.count(provider, *CREATE[provider]) == 1
    assert store.get(provider, "h-1").provider_user_id == answer["provider_user_id"]


@pytest.mark.parametrize("fault", ["html", "missing_id", "truncate", "lose_answer"])
def test_a_palm_person_nobody_can_look_up_is_held_after_an_unknown_outcome(
    function, sandbox, stack, aws, fault
):
    body = {"external_id": "h-1", "display_name": "No Contact"}  # neither e-mail nor phone
    sandbox.script_fault("palm", *CREATE["palm"], fault)

    first = post(function, "palm", body)
    second = post(function, "palm", body)  # the caller retries: still held, never created again

    for status, answer, _ in (first, second):
        assert status == 502
        assert answer["error"]["code"] == "unknown_outcome"
    assert users_of(sandbox, "palm", body) == 1

    # Through the queue: dead-lettered at once with the reason, for an operator to check.
    sqs = aws("sqs")
    queue, dlq = stack.refs["PalmCreateUserQueue"], stack.refs["PalmCreateUserDLQ"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
    drain_queue(sqs, queue, function("palm"), max_batches=1)
    [dead] = dead_letters(sqs, dlq)
    assert dead["failure"]["code"] == "unknown_outcome"
    assert dead["failure"]["attempts"] == 1
    assert users_of(sandbox, "palm", body) == 1


# -- one provider user is never linked to two people ------------------------------------------------
@pytest.mark.parametrize("provider", ["trust", "palm"])
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
    assert "h-1" not in json.dumps(answer)
    linked = [link for link in store.scan_links() if link.status == LinkStatus.LINKED]
    assert [link.external_id for link in linked] == ["h-1"]


def test_a_trust_user_is_not_linked_to_a_second_person_even_with_the_same_name(function, sandbox, store):
    first = body_for("trust", 1, email="twin@example.test")
    second = body_for("trust", 2, email="twin@example.test")  # same name and e-mail, another person

    post(function, "trust", first)
    status, answer, _ = post(function, "trust", second)

    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert store.get("trust", "h-2").status == LinkStatus.PENDING


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
    timeout = template.function("PalencaCreateUserFunction").timeout
    sandbox.set_faults("palenca", trickle_rate=1.0, trickle_interval_s=2.0)

    started = time.monotonic()
    status, answer, _ = post(function, "palenca", body_for("palenca"))
    elapsed = time.monotonic() - started

    assert elapsed < timeout - 2
    assert status == 504
    assert answer["error"]["provider"] == "palenca"


def test_a_provider_that_hangs_cannot_hold_a_batch_past_its_timeout(function, sandbox, stack, aws, template):
    timeout = template.function("PalencaCreateUserFunction").timeout
    sandbox.set_faults("palenca", hang_rate=1.0, hang_s=120.0)
    sqs = aws("sqs")
    queue = stack.refs["PalencaCreateUserQueue"]
    for n in range(10):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body_for("palenca", n)))

    started = time.monotonic()
    report = drain_queue(sqs, queue, function("palenca"), max_batches=1)
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
    sandbox.set_faults("palenca", oversize_error_rate=1.0, oversize_bytes=30 * 1024 * 1024)
    sqs = aws("sqs")
    queue = stack.refs["PalencaCreateUserQueue"]
    for n in range(10):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body_for("palenca", n)))
    function("palenca")  # loaded before measuring
    _reset_peak_rss()
    before = _peak_rss_mb()

    report = drain_queue(sqs, queue, function("palenca"), max_batches=1)

    assert report.failed == 10
    assert _peak_rss_mb() - before < 64  # ten 30 MB bodies, a few capped reads of 1 MB each


# -- credentials never leave for another host ---------------------------------------------------------
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_redirect_is_an_error_naming_the_provider_and_credentials_stay_home(
    function, sandbox, provider, status
):
    routes = [CREATE[provider], *([("POST", "/trust/oauth/token/")] if provider == "trust" else [])]
    for method, path in routes:
        sandbox.script_fault(provider, method, path, "redirect", count=20, redirect_status=status)

    code, answer, _ = post(function, provider, body_for(provider))

    assert code in (502, 504)
    assert provider in answer["error"]["message"]
    assert "redirect" in answer["error"]["message"]
    assert sandbox.thief.requests == []


def test_a_redirected_validic_lookup_does_not_send_the_org_token_elsewhere(function, sandbox):
    sandbox.emulators["validic"].seed_user("h-1")  # the create answers 409: the lookup follows
    sandbox.script_fault("validic", "GET", CREATE["validic"][1], "redirect", count=20, redirect_status=302)

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
    sandbox.script_fault(provider, *CREATE[provider], "pii_error", count=2, pii_error_status=422)
    status, answer, _ = post(function, provider, body_for(provider, 1))
    sqs = aws("sqs")
    queue, dlq = stack.refs[FUNCTIONS[provider][2]], stack.refs[FUNCTIONS[provider][3]]
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
    error = {"success": False, "error": {"error_code": "internal_error", "message": long_text}, "data": None}
    sandbox.script("POST", CREATE["palenca"][1], *[Reply(500, error) for _ in range(10)])

    started = time.monotonic()
    status, answer, _ = post(function, "palenca", body_for("palenca"))

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
    sandbox.script_fault("palenca", *CREATE["palenca"], "odd_retry_after", count=20, retry_after=value)

    status, answer, headers = post(function, "palenca", body_for("palenca"))

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
