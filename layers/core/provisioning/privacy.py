"""Keeps personal data and credentials out of messages that leave a function."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[A-Za-z]{2,}")
_LONG_NUMBER = re.compile(r"\+?\d[\d\s().-]{6,}\d")
_BEARER = re.compile(r"(?i)(bearer|token|key|secret)([\"'\s:=]+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str, limit: int = 300) -> str:
    """Mask e-mail addresses, phone-like numbers and token-like values; bound the length."""
    text = _EMAIL.sub("[email]", text)
    text = _LONG_NUMBER.sub("[number]", text)
    text = _BEARER.sub(r"\1\2[redacted]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PHONE = re.compile(r"\+[1-9]\d{6,14}\b")


def redact_log_line(line: str) -> str:
    """Last line of defence for log output: mask e-mail addresses, E.164 numbers and bearer-like
    tokens (log lines are never meant to hold any; nothing else is rewritten)."""
    line = _EMAIL.sub("[email]", line)
    line = _PHONE.sub("[phone]", line)
    return _BEARER.sub(r"\1\2[redacted]", line)
