"""The import benchmark's validation measure: its peak memory is the validating process's own."""

from __future__ import annotations

from pathlib import Path

from bench.import_rate import measure_validation, write_people


def test_the_validation_peak_is_its_own_not_the_benchmark_process_s(tmp_path: Path) -> None:
    """A process started by fork (or vfork) and exec reports, through getrusage, its parent's peak
    when that is higher: the benchmark's own process, here made 300 MB larger than a validation of
    200 rows needs, must not show in the figure."""
    people = write_people(tmp_path / "people.csv", 200)
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touched: resident
    checked = measure_validation(people)
    assert len(ballast) > 0
    assert checked.rows == 200
    assert 10 < checked.peak_mb < 200, checked.peak_mb
