"""The tables a run prints, its acceptance criteria, and bench/results.md."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

GOALS_TITLE = "### Goals"
GOALS_HEADER = "| goal | measured | met |"


class Report:
    def __init__(self) -> None:
        self.sections: list[str] = []
        self.failures: list[str] = []
        # The headline of each benchmark: (goal, measured, met), shown first, each beside its goal.
        self.goals: list[tuple[str, str, bool]] = []

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

    def goal(self, goal: str, measured: str, met: bool) -> None:
        """A benchmark's headline: ``goal`` beside what was ``measured``, in the run's summary
        (``goal`` not met counts as a criterion not met)."""
        self.goals.append((goal, measured, met))
        if not met:
            self.failures.append(goal)

    def summary(self) -> str:
        """The goals of this run, each beside its measurement ("" when no benchmark set one)."""
        if not self.goals:
            return ""
        lines = [GOALS_TITLE, "", GOALS_HEADER, "|---|---|---|"]
        lines += [f"| {goal} | {shown} | {'yes' if met else '**no**'} |" for goal, shown, met in self.goals]
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        return text

    def write(self, path: Path) -> None:
        """The whole results file: a header, the goals, and every section of this run."""
        header = (
            "# Benchmark results\n\n"
            f"`make bench` on {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{time.strftime('%Y-%m-%d')}.\n\n"
        )
        summary = self.summary()
        path.write_text(header + (summary + "\n" if summary else "") + "\n".join(self.sections))

    def replace_sections(self, path: Path) -> None:
        """As ``_replace_sections``, the goals of this run replacing the file's rows of the same goal."""
        summary = self.summary()
        self._replace_sections(path)
        if not summary:
            return
        text = path.read_text()
        start = text.find(GOALS_TITLE)
        if start == -1:
            head, _, rest = text.partition("\n### ")
            body = head.rstrip("\n") + "\n\n" + summary + "\n### " + rest if rest else text + summary
            path.write_text(body)
            return
        end = text.find("\n### ", start + 1)
        table = [GOALS_TITLE, "", GOALS_HEADER, "|---|---|---|"]
        rows: dict[str, str] = {}
        for line in [*text[start:end].splitlines(), *summary.splitlines()]:
            if line.startswith("| ") and line != GOALS_HEADER:
                rows[line.split(" | ")[0]] = line
        merged = "\n".join([*table, *rows.values()]) + "\n"
        path.write_text(text[:start] + merged + ("\n" + text[end + 1 :] if end != -1 else ""))

    def _replace_sections(self, path: Path) -> None:
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
