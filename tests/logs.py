"""Log records for the tests that prove nothing secret or personal is logged: a handler that keeps
every record (not the emulated AWS side's, which log what they receive), and each record's texts as
a handler could write them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from provisioning.observability import logger as hub_logger

# The loggers of the local stack's fake AWS (moto and its web server): not a function's records.
FAKE_AWS = ("moto", "werkzeug")


class KeptRecords(logging.Handler):
    """Keeps the records it is given, at every level; after ``around``, only those logged while a
    call that ``around`` wraps runs (not the harness's own calls between)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.only_around = False
        self.running = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(FAKE_AWS):
            return
        if self.only_around and not self.running:
            return
        self.records.append(record)

    def around(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call``, keeping the records logged while it runs; from here on, only those."""
        self.only_around = True

        def call_and_keep(*args: Any, **kwargs: Any) -> Any:
            self.running += 1
            try:
                return call(*args, **kwargs)
            finally:
                self.running -= 1

        return call_and_keep


def texts(record: logging.LogRecord) -> list[str]:
    """Every text of ``record`` a handler could write: its message, its format and arguments, its
    traceback and the whole line (the hub's also as its JSON line, extra keys included)."""
    found = [
        record.getMessage(),
        str(record.msg),
        repr(record.args),
        record.exc_text or "",
        logging.Formatter().format(record),
    ]
    if record.name == hub_logger.name:
        found.append(hub_logger.registered_formatter.format(record))
    return found
