"""Keeps personal data and credentials out of messages that leave a function.

Every pattern here is applied to untrusted text (provider answers, field names taken from a
caller's body, whole log lines), so each one runs in linear time: a match can only start at a
token boundary (lookbehind) and quantifiers that could overlap are possessive.
"""

from __future__ import annotations

import re

_EMAIL_CHAR = r"[^\s@\"'<>]"
# Starts only where the previous character cannot belong to the address: one attempt per token.
_EMAIL = re.compile(rf"(?<!{_EMAIL_CHAR}){_EMAIL_CHAR}++@{_EMAIL_CHAR}+\.[A-Za-z]{{2,}}")
# Seven or more digits, each separated from the next by at most four spaces or ( ) . -
_LONG_NUMBER = re.compile(r"\+?\d(?:[\s().-]{0,4}+\d){6,}")
_BEARER = re.compile(r"(?i)(bearer|token|key|secret)([\"'\s:=]++)[A-Za-z0-9._~+/=-]{8,}")

MAX_FIELD_NAME = 64


def redact(text: str, limit: int = 300) -> str:
    """Mask e-mail addresses, phone-like numbers and token-like values; bound the length."""
    text = _EMAIL.sub("[email]", text)
    text = _LONG_NUMBER.sub("[number]", text)
    text = _BEARER.sub(r"\1\2[redacted]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_name(name: str, limit: int = MAX_FIELD_NAME) -> str:
    """A field name taken from a caller's input (an unknown key, a dict key), fit for an error
    message, a log line and a dead-letter report: redacted (a key can itself be an e-mail address)
    and cut to ``limit`` characters."""
    return redact(name, limit=limit)


_PHONE = re.compile(r"\+[1-9]\d{6,14}\b")


def redact_log_line(line: str) -> str:
    """Last line of defence for log output: mask e-mail addresses, E.164 numbers and bearer-like
    tokens (log lines are never meant to hold any; nothing else is rewritten)."""
    line = _EMAIL.sub("[email]", line)
    line = _PHONE.sub("[phone]", line)
    return _BEARER.sub(r"\1\2[redacted]", line)
