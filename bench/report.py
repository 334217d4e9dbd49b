"""The tables a run prints, its acceptance criteria, and bench/results.md."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


class Report:
    def __init__(self) -> None:
        self.sections: list[str] = []
        self.failures: list[str] = []

    def table(self, title: str, header: list[str], rows: list[list[Any]], note: str = "") -> None:
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        if note:
            lines += ["", note]
        text = "\n".join(lines) + "\n"
        self.sections.append(text)
        print(text, flush=True)

    def check(self, ok: bool, what: str) -> str:
        """``yes``, or ``**no**`` with ``what`` counted as a criterion not met."""
        if not ok:
            self.failures.append(what)
        return "yes" if ok else "**no**"

    def write(self, path: Path) -> None:
        """The whole results file: a header and every section of this run."""
        header = (
            "# Benchmark results\n\n"
            f"`make bench` on {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{time.strftime('%Y-%m-%d')}.\n\n"
        )
        path.write_text(header + "\n".join(self.sections))

    def replace_sections(self, path: Path) -> None:
        """This run's sections in place of the file's sections of the same title (its words before
        the parentheses, which hold counts that may differ between runs); a new one is appended."""
        if not path.exists():
            self.write(path)
            return
        text = path.read_text()
        for section in self.sections:
            stem = _title_stem(section)
            start = next((n for n in _section_starts(text) if _title_stem(text[n:]) == stem), None)
            if start is None:
                text = text.rstrip("\n") + "\n\n" + section
                continue
            end = text.find("\n### ", start + 1)
            text = text[:start] + section + ("\n" + text[end + 1 :] if end != -1 else "")
        path.write_text(text)


def _section_starts(text: str) -> list[int]:
    starts = [0] if text.startswith("### ") else []
    position = text.find("\n### ")
    while position != -1:
        starts.append(position + 1)
        position = text.find("\n### ", position + 1)
    return starts


def _title_stem(section: str) -> str:
    return section.split("\n", 1)[0].split(" (", 1)[0].strip()
