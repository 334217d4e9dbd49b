"""Field types shared by request models, the rule on personal data in ``external_id``, and
pydantic errors as field errors (bounded, never with the offending values)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, StringConstraints, ValidationError, WithJsonSchema

from provisioning.errors import FieldError
from provisioning.privacy import field_name

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

# Checked before the time zone database is asked: an IANA name such as America/New_York or UTC.
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,30}(?:/[A-Za-z0-9_+-]{1,30}){0,2}$")


@cache
def _zone_database() -> bool:
    """Whether this runtime has a time zone database to check names against."""
    try:
        ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        return False
    return True


def _iana_zone(value: str) -> str:
    if not _ZONE_NAME.match(value):
        raise ValueError("must be an IANA time zone name, e.g. America/New_York")
    if _zone_database():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known IANA time zone (e.g. America/New_York)") from None
    return value


TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_iana_zone)]


# -- personal data in ids ---------------------------------------------------------------------------
# Every pattern below runs in linear time: possessive quantifiers, and classes that cannot overlap.

# An e-mail address anywhere in the id: a character, @, dot-separated labels, an alphabetic TLD.
_EMAIL_INSIDE = re.compile(r"[^\s@]@(?:[^\s@.]++\.)++[A-Za-z]{2}")
# Digits with phone punctuation only (e.g. 555-123-4567, 56-9-1234-5678, +1 555 555 0123).
_PHONE_CHARS = re.compile(r"\+?[\d\s().-]++")
# A + followed by 7 or more digits anywhere: an international number (u:+5215512345678).
_INTERNATIONAL = re.compile(r"\+[0-9]{7}")
# Only 11 to 15 digits: a phone number with its country code (plain ids of up to 10 digits pass).
_BARE_PHONE = re.compile(r"[0-9]{11,15}")
# Capitalized words joined by ., _ or - (John.Doe, Maria_Lopez, Ana-Perez).
_NAME_LIKE = re.compile(r"[A-Z][a-z]++(?:[._-][A-Z][a-z]++)++")

ALLOW_IDENTIFYING_ENV = "ALLOW_IDENTIFYING_EXTERNAL_IDS"
_allowed_override: ContextVar[bool | None] = ContextVar("allow_identifying_external_ids", default=None)


def _phone_like(value: str) -> bool:
    """Digits with phone punctuation (or a leading +) and 9 to 15 digits; a bare run of 11 to 15
    digits; or a + followed by 7 or more digits anywhere. Plain numeric ids of up to 10 digits pass."""
    if _INTERNATIONAL.search(value) or _BARE_PHONE.fullmatch(value):
        return True
    if not _PHONE_CHARS.fullmatch(value):
        return False
    digits = sum(c.isdigit() for c in value)
    punctuated = value.startswith("+") or any(c in " ().-" for c in value)
    return punctuated and 9 <= digits <= 15


@lru_cache(maxsize=256)  # a request model checks again the id its Person was checked with
def identifying_reason(value: str) -> str | None:
    """Why an id would reveal who the person is (an e-mail address anywhere in it, a phone number,
    a person's name), or None."""
    if "@" in value and _EMAIL_INSIDE.search(value):
        return "looks like it holds an e-mail address"
    if _phone_like(value):
        return "looks like a phone number"
    if _NAME_LIKE.fullmatch(value):
        return "looks like a person's name"
    return None


def identifying_ids_allowed() -> bool:
    """Whether ids that look like personal data are accepted (Validic refuses them regardless):
    ``ALLOW_IDENTIFYING_EXTERNAL_IDS=true`` (the stack's ``AllowIdentifyingExternalIds``), read at
    each validation, unless ``allow_identifying_ids`` decides for the current context."""
    override = _allowed_override.get()
    if override is not None:
        return override
    from provisioning.settings import flag

    return flag(ALLOW_IDENTIFYING_ENV)


@contextmanager
def allow_identifying_ids(allowed: bool) -> Iterator[None]:
    """Validate with this rule inside the block, whatever the environment says (``provisioner
    import --allow-identifying-ids``)."""
    token = _allowed_override.set(allowed)
    try:
        yield
    finally:
        _allowed_override.reset(token)


def no_personal_data(value: str) -> str:
    """An ``external_id`` becomes the users table's key and is logged: by default it must not
    look like an e-mail address, a phone number or a name."""
    if identifying_ids_allowed():
        return value
    reason = identifying_reason(value)
    if reason:
        raise ValueError(
            f"{reason}: an external_id must not carry personal data (use an opaque id such as u-42)"
        )
    return value


# -- pydantic errors as field errors -------------------------------------------------------------
MAX_FIELD_ERRORS = 20

# A location part: a field name, a dict key or an unknown key of the input (str), a list index (int).
Loc = tuple[str | int, ...]


def _errors(source: ValidationError | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(source, ValidationError):
        return list(source.errors(include_input=False, include_url=False))
    return list(source)


def _loc(raw: Sequence[Any], skip_body: bool) -> Loc:
    parts = list(raw)
    if skip_body and parts and parts[0] == "body":
        parts = parts[1:]
    # Parts can come from the caller's input (an unknown key, a dict key): bounded and redacted.
    return tuple(part if isinstance(part, int) else field_name(str(part)) for part in parts)


def field_errors(
    source: ValidationError | Iterable[Mapping[str, Any]],
    location: str = "",
    *,
    skip_body: bool = False,
    rename: Callable[[Loc], str] | None = None,
    suffix: str = "",
    root: str = "body",
) -> list[FieldError]:
    """A pydantic ``ValidationError`` (or errors already listed, as Powertools' request validation
    gives them) as field errors: the only reading of pydantic errors in the hub.

    Never the offending values (the input is not even read); names taken from the input (an unknown
    key, a dict key) bounded and redacted; at most MAX_FIELD_ERRORS of them, then one saying how
    many more. A field is named by its dotted location (``items.0.email``), or by ``rename`` given
    the bounded, redacted location parts (settings name environment variables); ``location``
    prefixes it; ``root`` names the whole input (an empty location). ``skip_body`` drops a leading
    ``body`` (Powertools puts the request body there). ``suffix`` ends every message
    (`` (for trust)``); pydantic's "Value error, " prefix is dropped."""
    errors = _errors(source)
    result = []
    for err in errors[:MAX_FIELD_ERRORS]:
        loc = _loc(err.get("loc", ()), skip_body)
        path = rename(loc) if rename else ".".join(str(part) for part in loc)
        name = f"{location}.{path}" if location and path else (location or path or root)
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        result.append(FieldError(name, message + suffix))
    if len(errors) > MAX_FIELD_ERRORS:
        more = len(errors) - MAX_FIELD_ERRORS
        result.append(FieldError(location or root, f"and {more} more invalid fields{suffix}"))
    return result
