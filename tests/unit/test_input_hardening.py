"""Hostile or unusual input through real API Gateway REST proxy events and SQS records: every
answer is a clean JSON error naming what is wrong (never a 500, never a traceback), a queued record
that can never succeed is dead-lettered after one receive with its reason, and nothing the caller
sends can make redaction slow."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner_cli.main import cli
from provisioning.adapters import MAX_BODY_BYTES
from provisioning.privacy import redact, redact_log_line
from tests.conftest import api_event, dead_letters, response_json, send_and_drain

Invoke = Callable[[dict[str, Any]], Any]

ROUTES = {
    "PalencaCreateUserFunction": ("/palenca/users", {"external_id": "h-1"}),
    "PalencaListUsersFunction": (
        "/palenca/users/search",
        {"start_date": "2026-01-31", "end_date": "2026-01-01"},
    ),
    "TrustCreateUserFunction": (
        "/trust/users",
        {"external_id": "h-1", "email": "abeta@example.test", "name": "Alfa", "last_name": "Beta"},
    ),
    "PalmCreateUserFunction": ("/palm/users", {"external_id": "h-1"}),
    "ValidicProvisionUserFunction": ("/validic/users", {"external_id": "h-1"}),
    # Refused before its signature is checked: another method, another content type.
    "SignupWebhookFunction": ("/signups/webhook", {"type": "user.created", "data": {"external_id": "h-1"}}),
}
HUGE_INTEGER = "1" * 4301
DEEP_NESTING = "[" * 100_000 + "]" * 100_000


def raw_event(path: str, text: str, *, base64_encoded: bool = False) -> dict[str, Any]:
    """An API event whose body is ``text`` as sent (not re-encoded by json.dumps)."""
    if base64_encoded:
        return api_event(path, None, raw=base64.b64encode(text.encode()).decode()) | {"isBase64Encoded": True}
    return api_event(path, None, raw=text)


def with_content_type(event: dict[str, Any], value: str, key: str = "Content-Type") -> dict[str, Any]:
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "content-type"}
    event["headers"] = {**headers, key: value}
    event["multiValueHeaders"] = {key: [value]}
    return event


def with_method(event: dict[str, Any], method: str) -> dict[str, Any]:
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    return event


def assert_json_error(response: dict[str, Any], status: int, field: str | None = None) -> dict[str, Any]:
    assert response["statusCode"] == status, response["body"]
    assert "Traceback" not in response["body"]
    error = response_json(response)["error"]
    assert error["code"]
    assert error["message"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]], error
    return error


def provider_calls(sandbox: Any) -> int:
    return sum(sandbox.count(provider) for provider in ("palenca", "trust", "palm", "validic"))


def header(response: dict[str, Any], name: str) -> str:
    single = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    multi = {k.lower(): v for k, v in (response.get("multiValueHeaders") or {}).items()}
    return single.get(name.lower()) or ", ".join(multi.get(name.lower(), []))


@pytest.fixture
def palenca(load_function: Callable[[str], Invoke]) -> Invoke:
    return load_function("PalencaCreateUserFunction")


@pytest.fixture
def palm(load_function: Callable[[str], Invoke]) -> Invoke:
    return load_function("PalmCreateUserFunction")


# -- JSON the parser must refuse ----------------------------------------------------------------------


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["plain", "base64"])
def test_integer_of_more_than_4300_digits_answers_400_naming_body(
    palenca: Invoke, sandbox: Any, base64_encoded: bool
) -> None:
    text = f'{{"external_id": "h-1", "widget_id": {HUGE_INTEGER}}}'

    response = palenca(raw_event("/palenca/users", text, base64_encoded=base64_encoded))

    error = assert_json_error(response, 400, "body")
    assert error["fields"][0]["message"].startswith("is not valid JSON")
    assert sandbox.count("palenca") == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_answer_400_naming_body(palm: Invoke, sandbox: Any, literal: str) -> None:
    text = f'{{"external_id": "h-1", "metadata": {{"score": {literal}}}}}'

    error = assert_json_error(palm(raw_event("/palm/users", text)), 400, "body")
    assert "NaN" in error["message"] or "Infinity" in error["message"]
    assert sandbox.count("palm") == 0


def test_a_number_too_large_for_a_float_answers_422_naming_the_field(palm: Invoke, sandbox: Any) -> None:
    # Python reads 1e999 as infinity, which no JSON encoder can send on to Palm.
    text = '{"external_id": "h-1", "metadata": {"score": 1e999}}'

    error = assert_json_error(palm(raw_event("/palm/users", text)), 422)

    assert any(f["field"].startswith("metadata.score") for f in error["fields"]), error
    assert sandbox.count("palm") == 0


# -- content types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"],
)
@pytest.mark.parametrize("function", sorted(ROUTES))
def test_form_and_multipart_bodies_answer_415_naming_content_type(
    load_function: Callable[[str], Invoke], sandbox: Any, function: str, content_type: str
) -> None:
    path, body = ROUTES[function]

    response = load_function(function)(with_content_type(api_event(path, body), content_type))

    assert_json_error(response, 415, "content-type")
    assert provider_calls(sandbox) == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Content-Type", "APPLICATION/JSON"),
        ("content-type", "Application/Json; charset=UTF-8"),
        ("CONTENT-TYPE", "application/JSON;charset=utf-8"),
    ],
)
def test_json_media_type_is_case_insensitive_and_a_missing_content_type_still_means_json(
    palenca: Invoke, key: str, value: str
) -> None:
    response = palenca(with_content_type(api_event("/palenca/users", {"external_id": "h-2"}), value, key))

    assert response["statusCode"] == 201, response["body"]
    assert response_json(response)["external_id"] == "h-2"
    untyped = api_event("/palenca/users", {"external_id": "h-3"})
    untyped["headers"] = {k: v for k, v in untyped["headers"].items() if k.lower() != "content-type"}
    untyped["multiValueHeaders"] = {}
    assert palenca(untyped)["statusCode"] == 201


# -- body size in bytes ----------------------------------------------------------------------------


def test_body_of_multibyte_characters_over_16_kib_of_utf8_answers_413(palm: Invoke, sandbox: Any) -> None:
    # 5,000 characters of 4 bytes each, sent as they are: under the limit in characters, 20 KB of UTF-8.
    metadata = {f"k{n}": "\U0001f600" * 500 for n in range(10)}
    event = api_event("/palm/users", None)
    event["body"] = json.dumps({"external_id": "h-5", "metadata": metadata}, ensure_ascii=False)
    assert len(event["body"]) < MAX_BODY_BYTES < len(event["body"].encode())

    error = assert_json_error(palm(event), 413, "body")

    assert str(MAX_BODY_BYTES) in error["message"]
    assert sandbox.count("palm") == 0


def test_base64_body_is_measured_by_its_decoded_bytes(palm: Invoke) -> None:
    def body_of(size: int) -> str:
        text = json.dumps({"external_id": "h-6", "metadata": {"pad": ""}})
        return text.replace('"pad": ""', '"pad": "' + "x" * (size - len(text)) + '"')

    at_limit, over = body_of(MAX_BODY_BYTES), body_of(MAX_BODY_BYTES + 1)
    assert (len(at_limit.encode()), len(over.encode())) == (MAX_BODY_BYTES, MAX_BODY_BYTES + 1)

    assert_json_error(palm(raw_event("/palm/users", over, base64_encoded=True)), 413, "body")
    # Exactly at the limit: read, then refused for its content (a metadata value is at most 500 characters).
    error = assert_json_error(palm(raw_event("/palm/users", at_limit, base64_encoded=True)), 422)
    assert all(f["field"].startswith("metadata.pad") for f in error["fields"]), error


# -- methods ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("function", sorted(ROUTES))
def test_another_method_on_a_route_answers_405_with_allow(
    load_function: Callable[[str], Invoke], sandbox: Any, function: str, method: str
) -> None:
    path, body = ROUTES[function]

    response = load_function(function)(with_method(api_event(path, body), method))

    error = assert_json_error(response, 405)
    assert error["code"] == "method_not_allowed"
    assert "POST" in error["message"]
    assert header(response, "Allow") == "POST"
    assert provider_calls(sandbox) == 0


def test_api_docs_answer_405_to_post_with_allow_get(load_function: Callable[[str], Invoke]) -> None:
    event = with_method(api_event("/docs", {"external_id": "h-1"}), "POST")

    response = load_function("ApiDocsFunction")(event)

    error = assert_json_error(response, 405)
    assert error["code"] == "method_not_allowed"
    assert header(response, "Allow") == "GET"


def test_405_comes_before_the_body_checks(palenca: Invoke) -> None:
    event = with_content_type(with_method(api_event("/palenca/users", None), "PUT"), "multipart/form-data")
    event["body"] = "x" * (MAX_BODY_BYTES + 1)

    assert_json_error(palenca(event), 405)


# -- queued records: one receive, then the dead-letter queue with the reason -----------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f'{{"external_id": "q-1", "widget_id": {HUGE_INTEGER}}}', "number"),
        (DEEP_NESTING, "nested"),
        ('{"external_id": "q-1", "widget_id": NaN}', "NaN"),
        ('{"external_id": "q-1", "widget_id": -Infinity}', "Infinity"),
    ],
    ids=["4301-digit integer", "100000-deep nesting", "NaN", "-Infinity"],
)
def test_unparseable_queued_body_is_dead_lettered_after_one_receive(
    palenca: Invoke, stack: Any, aws: Callable[[str], Any], sandbox: Any, body: str, reason: str
) -> None:
    sqs = aws("sqs")

    report = send_and_drain(sqs, stack.refs["PalencaCreateUserQueue"], palenca, [body])

    assert report.batches == 1
    failed = dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"])
    assert [f["body"] for f in failed] == [body]
    failure = failed[0]["failure"]
    assert failure["code"] == "validation_error"
    assert failure["attempts"] == 1
    assert failure["fields"][0]["field"] == "body"
    assert reason in failure["fields"][0]["message"]
    assert sandbox.count("palenca") == 0


def test_queued_number_too_large_for_a_float_is_dead_lettered_naming_the_field(
    palm: Invoke, stack: Any, aws: Callable[[str], Any], sandbox: Any
) -> None:
    sqs = aws("sqs")
    body = '{"external_id": "q-2", "metadata": {"score": 1e999}}'

    send_and_drain(sqs, stack.refs["PalmCreateUserQueue"], palm, [body])

    failed = dead_letters(sqs, stack.refs["PalmCreateUserDLQ"])
    assert failed[0]["failure"]["attempts"] == 1
    assert any(f["field"].startswith("metadata.score") for f in failed[0]["failure"]["fields"])
    assert sandbox.count("palm") == 0


def test_long_unknown_key_is_dead_lettered_quickly_with_the_key_cut_short(
    palenca: Invoke, stack: Any, aws: Callable[[str], Any]
) -> None:
    sqs = aws("sqs")
    key = "k" * 40_000
    body = json.dumps({"external_id": "q-4", key: 1})

    started = time.perf_counter()
    send_and_drain(sqs, stack.refs["PalencaCreateUserQueue"], palenca, [body])
    elapsed = time.perf_counter() - started

    failure = dead_letters(sqs, stack.refs["PalencaCreateUserDLQ"])[0]["failure"]
    (field,) = [f["field"] for f in failure["fields"]]
    assert field.startswith("kkkk")
    assert len(field) <= 64
    assert len(failure["message"]) < 200
    assert elapsed < 5, f"dead-lettering one record took {elapsed:.1f} s"


def test_unknown_key_that_is_an_email_address_is_not_echoed(palenca: Invoke, capsys: Any) -> None:
    response = palenca(api_event("/palenca/users", {"external_id": "h-7", "ana.perez@example.com": "x"}))

    error = assert_json_error(response, 422)
    assert "ana.perez" not in response["body"]
    assert "[email]" in error["fields"][0]["field"]
    assert "ana.perez" not in capsys.readouterr().out


def test_many_unknown_keys_give_a_bounded_list_of_field_errors(palenca: Invoke) -> None:
    body = {"external_id": "h-8", **{f"extra{n}": n for n in range(500)}}

    error = assert_json_error(palenca(api_event("/palenca/users", body)), 422)

    assert len(error["fields"]) <= 21
    assert "480 more" in error["fields"][-1]["message"]


# -- redaction stays linear on adversarial text -----------------------------------------------------

ADVERSARIAL = {
    "non-space run without @": "a" * 100_000,
    "dots and letters": "a." * 50_000,
    "many @": "@" * 100_000,
    "a@ repeated": "a@" * 50_000,
    "quote and @ repeated": '"@' * 50_000,
    "local part, @, domain without a dot": "x" * 50_000 + "@" + "y" * 50_000,
    "digit run": "1" * 100_000,
    "digits and spaces": "1 " * 50_000,
    "a digit, then separators": "1" + "-" * 100_000,
    "few digits among separators": ("1" + " " * 5) * 20_000,
    "key, then spaces": "key" + " " * 100_000,
    "key, then equals signs": "key" + "=" * 100_000 + " ",
    "token, then mixed separators": "token" + " =" * 50_000,
}


def slowest_of(redaction: Callable[[str], str], limit: float = 0.1) -> tuple[str, float]:
    """The adversarial text ``redaction`` takes longest on and that time (best of three runs each, so
    a busy machine does not fail the test; the first text over ``limit`` is answered at once)."""
    timings = {}
    for name, text in ADVERSARIAL.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            redaction(text)
            best = min(best, time.perf_counter() - started)
            if best < limit / 5 or best > limit * 10:
                break
        if best >= limit:
            return name, best
        timings[name] = best
    slowest = max(timings, key=timings.__getitem__)
    return slowest, timings[slowest]


def test_redacting_100000_adversarial_characters_takes_well_under_100_ms_and_still_masks() -> None:
    name, seconds = slowest_of(redact)

    assert seconds < 0.1, f"{name}: {seconds * 1000:.0f} ms"
    assert redact("user ana.perez@example.com exists") == "user [email] exists"
    assert redact('{"email":"ana@example.com"}') == '{"email":"[email]"}'
    assert redact("call +52 1 55 1234 5678 now") == "call [number] now"
    assert redact("Bearer abcdefghijklmnop") == "Bearer [redacted]"


def test_redacting_a_log_line_of_100000_adversarial_characters_takes_well_under_100_ms() -> None:
    name, seconds = slowest_of(redact_log_line)

    assert seconds < 0.1, f"{name}: {seconds * 1000:.0f} ms"
    line = '{"to":"+5215512345678","from":"ana@example.com","token":"abcdefghijk"}'
    assert redact_log_line(line) == '{"to":"[phone]","from":"[email]","token":"[redacted]"}'


def test_import_reports_unreadable_json_lines_by_line_and_never_echoes_a_key(tmp_path: Path) -> None:
    rows = tmp_path / "people.jsonl"
    rows.write_text(
        "\n".join(
            [
                f'{{"external_id": "i-1", "height_cm": {HUGE_INTEGER}}}',
                '{"external_id": "i-2", "height_cm": NaN}',
                DEEP_NESTING,
                json.dumps({"external_id": "i-4", "ana.perez@example.com": "x"}),
                json.dumps({"external_id": "i-5", "providers": ["palenca"]}),
            ]
        )
        + "\n"
    )

    result = CliRunner().invoke(cli, ["import", str(rows), "--provider", "all", "--dry-run"])

    assert result.exit_code == 1
    assert "line 1: row: is not valid JSON" in result.output
    assert "line 2: row: is not valid JSON" in result.output
    assert "line 3: row: is not valid JSON" in result.output
    assert "line 4: [email]: is not a Person field" in result.output
    assert "ana.perez" not in result.output
    assert "5 rows read, 1 valid, 4 invalid" in result.output
