"""Field types shared by provider request models (validated before any provider call)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$"
E164_PATTERN = r"^\+[1-9]\d{6,14}$"

_EMAIL = re.compile(EMAIL_PATTERN)
_E164 = re.compile(E164_PATTERN)


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    return value


def _e164(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("must be an E.164 phone number (+, country code, number; e.g. +14155550123)")
    return value


# Checked by a function (a clear message, never the pattern); documented with the pattern.
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254),
    AfterValidator(_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254, "pattern": EMAIL_PATTERN}),
]
E164Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=16),
    AfterValidator(_e164),
    WithJsonSchema({"type": "string", "maxLength": 16, "pattern": E164_PATTERN}),
]


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")) or len(value) < 12 or " " in value:
        raise ValueError("must be an http(s) URL")
    return value


HttpUrlText = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _past_date(value: str) -> str:
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real date formatted YYYY-MM-DD") from None
    if parsed > datetime.now(UTC).date() or parsed.year < 1900:
        raise ValueError("must be a date between 1900 and today")
    return value


DateOfBirth = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_past_date)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
