"""The import's fast acceptance check (``provisioning.import_check``) against the models it stands in
for: whatever it accepts, the Person model and every targeted provider's request model accept; its
check of a CSV's raw lines (``LineCheck``) accepts only rows it accepts, with the same providers; the
import's report is the same with them and without them; and plain rows do take them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning import imports
from provisioning.import_check import PROVIDER_RULES, FastCheck
from provisioning.imports import Planner, Row, create_specs, read_rows, validate, validate_lines
from provisioning.person import PROVIDERS, Person
from provisioning.validation import allow_identifying_ids
from tests.people import COLUMNS  # the people CSV's header (the plain lines below follow it)

SPECS = create_specs()
TODAY = datetime.now(UTC).date()

# Values near every rule's edge, valid and not: the models decide which is which.
IDS = [
    "u-1", "imp-42", "a", "A1", "x" * 128, "x" * 129, "u 1", " u-1", "u-1 ", "-u", "u_1", "ab", "abcd",
    "ab--cd", "ab-", "u:+5215512345678", "ana@example.com", "x@y.co", "John.Doe", "Maria_Lopez",
    "john.doe", "555-123-4567", "52155123456789", "1234567890", "12345678901", "u+1", "u=1", "u.1",
    "ü-1", "u-1\n", "ZZ", "Zed", "a@b", "+15551234567", "u\u00a0", "u-١٢",
]  # fmt: skip
EMAILS = [
    "a@example.test", "x@y.co", "a.b+c@sub.example.com", "a@b", "@b.co", "a@-b.co", "a@b-.co", "a b@c.co",
    " a@example.test", "a@example.test ", "é@example.test", "a@exämple.test", "a@" + "b" * 63 + ".co",
    "a@" + "b" * 64 + ".co", "a" * 240 + "@example.test", "a" * 250 + "@example.test", "a@b.c",
    "a@example.test\n", "a'!#$%&*/=?^_`{|}~-@x.io",
]  # fmt: skip
PHONES = [
    "+5215512345678", "+1234567", "+123456", "+123456789012345", "+1234567890123456", "+0123456789",
    "5215512345678", " +5215512345678", "+52155123456 78", "+٥٢١٥٥١٢٣٤٥٦٧٨", "+5215512345678\n",
]  # fmt: skip
DATES = [
    "1990-04-01", "1900-01-01", "1899-12-31", "0000-01-01", "2024-02-29", "2023-02-29", "2024-02-30",
    "1990-13-01", "1990-00-10", "1990-4-01", "19900401", TODAY.isoformat(),
    (TODAY + timedelta(days=1)).isoformat(), "9999-12-31", " 1990-04-01", "1990-04-01\n",
    "\u0661\u0669\u0669\u0660-\u0660\u0664-\u0660\u0661",
    date(TODAY.year, 1, 1).isoformat(),
]  # fmt: skip
TEXTS = [
    "Ana", "Pérez", "O'Neil", " Ana", "Ana ", "   ", "\u3000", "\u00a0Ana", "x" * 200, "x" * 201,
    "é" * 200, "a" * 99, "a" * 100, "_a", "1", "\ud800", "a\ud800", "Ana\tMaria", "\x1cAna", "Ana\x1c",
]  # fmt: skip
COUNTRIES = ["MX", "US", "mx", "M", "MEX", " MX", "ÀÉ"]
GENDERS = ["f", "female", "x" * 16, "x" * 17, " f", "Ω"]
ZONES = ["UTC", "America/Mexico_City", "America/New_York", "Mars/Olympus", "utc", "../etc", "UTC\n", "X" * 65]
NUMBERS = [
    "170",
    "170.5",
    "29.9",
    "30",
    "300",
    "300.0001",
    "1e2",
    "nan",
    "inf",
    "-5",
    " 170",
    "1_70",
    "2",
    "700",
]
PROVIDER_LISTS: list[Any] = [
    [], ["palenca"], ["palm", "trust"], ["palenca", "palenca"], ["unknown"], list(PROVIDERS),
    [*PROVIDERS, "palenca"], ["validic", "validic_inform"], ["Palenca"], [1], "palenca",
]  # fmt: skip
JSON_ODDITIES: list[Any] = [None, 1, 1.5, True, ["a"], {"a": 1}, float("nan"), 10**400, ""]

FIELD_VALUES: dict[str, list[Any]] = {
    "external_id": IDS,
    "email": EMAILS,
    "first_name": TEXTS,
    "last_name": TEXTS,
    "phone": PHONES,
    "date_of_birth": DATES,
    "national_id": TEXTS,
    "nationality": TEXTS,
    "country": COUNTRIES,
    "gender": GENDERS,
    "timezone": ZONES,
    "height_cm": [*NUMBERS, 170, 170.5, 29, 1e308],
    "weight_kg": [*NUMBERS, 70, 0.5, 701],
    "providers": PROVIDER_LISTS,
}


# Plain valid values, so that many rows are valid and the fast check's acceptances get checked.
PLAIN: dict[str, list[Any]] = {
    "external_id": ["u-1", "imp-42", "abcd", "a1b2-c3d4", "x.y:z=1", "Imp-42", "9f3a-77c1", "A1"],
    "email": ["a@example.test", "a.b+c@sub.example.com"],
    "first_name": ["Ana", "José", "Li"],
    "last_name": ["Perez", "Müller", "O'Neil"],
    "phone": ["+5215512345678", "+14155550123"],
    "date_of_birth": ["1990-04-01", "2000-02-29", "1900-01-01"],
    "national_id": ["ABC123"],
    "nationality": ["Mexican"],
    "country": ["MX", "US"],
    "gender": ["f", "m"],
    "timezone": ["UTC", "America/Mexico_City"],
    "height_cm": ["170", "170.5", 170],
    "weight_kg": ["70", 70.5],
    "providers": [["palenca"], ["palm", "trust"], list(PROVIDERS), ["validic", "validic_inform"]],
}


def _value(name: str) -> st.SearchStrategy[Any]:
    # Mostly plain valid values, else the listed edges, arbitrary text or a JSON value of another type.
    plain = st.sampled_from(PLAIN[name])
    odd = st.one_of(st.sampled_from(FIELD_VALUES[name]), st.text(max_size=12), st.sampled_from(JSON_ODDITIES))
    return st.integers(0, 15).flatmap(lambda pick: plain if pick else odd)


@st.composite
def person_rows(draw: st.DrawFn, plain: bool = False) -> dict[str, Any]:
    names = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES))))
    if draw(st.integers(0, 9)):  # mostly with an id
        names.add("external_id")
    row = {name: draw(_value(name)) for name in sorted(names)}
    if draw(st.integers(0, 19)) == 1:
        row["not_a_field"] = "x"
    return row


provider_sets = st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=len(PROVIDERS), unique=True)


def _model_plan(providers: list[str], data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The providers the models plan for ``data`` (a fresh import), and their errors."""
    planned, errors = Planner(providers, specs=SPECS, render=False).plan(Row(2, data))
    return [item.provider for item in planned], [f"{e.field}: {e.message}" for e in errors]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=person_rows(), providers=provider_sets, allowed=st.booleans())
def test_a_row_the_fast_check_accepts_is_valid_for_the_person_and_every_targeted_provider(
    data: dict[str, Any], providers: list[str], allowed: bool
) -> None:
    with allow_identifying_ids(allowed):
        targets = FastCheck(providers, SPECS)(dict(data))
        if targets is not None:
            assert _model_plan(providers, data) == (list(targets), [])


def _cells(row: dict[str, Any], header: list[str]) -> list[str]:
    cells = []
    for name in header:
        value = row.get(name)
        if isinstance(value, list):
            value = "|".join(str(part) for part in value)
        cells.append("" if value is None else str(value))
    return cells


def _csv(rows: list[dict[str, Any]], raw: list[bool] | None = None) -> str:
    """The rows as CSV, each written by ``csv.writer`` (quoted where needed) or, where ``raw`` says,
    joined with commas as they are (so a cell may hold a comma, a quote or a line break unquoted)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    header = list(FIELD_VALUES)
    writer.writerow(header)
    for index, row in enumerate(rows):
        if raw and raw[index % len(raw)]:
            out.write(",".join(_cells(row, header)) + ["\r\n", "\n", "\r\n\r\n"][index % 3])
        else:
            writer.writerow(_cells(row, header))
    return out.getvalue()


def _report(text: str, providers: list[str], fmt: imports.Format, path: str) -> tuple[Any, list[str]]:
    """The import's result and report on ``text``: from its lines (``validate_lines``, as the
    command validates), from its rows with the fast check (``validate``) or with the models alone."""
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        if path == "lines":
            checked = validate_lines(io.StringIO(text, newline=""), fmt, providers, lines.append)
        else:
            if path == "models":
                patch.setattr(imports, "FastCheck", lambda *args: lambda data: None)
            checked = validate(read_rows(io.StringIO(text, newline=""), fmt), providers, lines.append)
    return checked, lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.one_of(person_rows(), person_rows()), min_size=1, max_size=40),
    repeats=st.lists(st.integers(0, 39), max_size=5),
    raw=st.lists(st.booleans(), min_size=1, max_size=8),
    providers=provider_sets,
    allowed=st.booleans(),
)
def test_the_import_reports_the_same_with_and_without_the_fast_check(
    rows: list[dict[str, Any]], repeats: list[int], raw: list[bool], providers: list[str], allowed: bool
) -> None:
    rows = rows + [dict(rows[index % len(rows)]) for index in repeats]  # ids seen again
    text = _csv(rows, raw)
    jsonl = "".join(imports.json.dumps(row, default=str) + "\n" for row in rows)
    with allow_identifying_ids(allowed):
        for fmt, source in (("csv", text), ("jsonl", jsonl)):
            models = _report(source, providers, fmt, "models")
            assert _report(source, providers, fmt, "rows") == models
            assert _report(source, providers, fmt, "lines") == models


# Cells a line may hold besides the fields' values: separators, quotes, line breaks, whitespace.
ODD_CELLS = ["", " ", ",", '"', 'a"b', "a,b", "a\nb", "a\rb", "\x00", "u-1 ", " u-1", "\t", "palenca,palm"]


@st.composite
def csv_lines(draw: st.DrawFn) -> tuple[list[str], str]:
    """A header of Person fields (sometimes with a stranger, or a name twice) and one raw line."""
    header = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), min_size=1, unique=True))
    if draw(st.integers(0, 9)):
        header = ["external_id", *(name for name in header if name != "external_id")]
    if draw(st.integers(0, 19)) == 1:
        header.append(draw(st.sampled_from(["not_a_field", header[0], " email", ""])))
    row = draw(person_rows())
    odd = draw(st.booleans())  # else the row's own values alone
    cells = [
        draw(st.sampled_from(ODD_CELLS)) if odd and not draw(st.integers(0, 5)) else str(cell)
        for cell in _cells(row, header)
    ]
    if draw(st.integers(0, 9)) == 1:
        cells.append(draw(st.sampled_from(ODD_CELLS)))  # a cell more than the header has
    ending = draw(st.sampled_from(["\r\n", "\n", "\r", "", "\n\n"]))
    return header, ",".join(cells) + ending


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=csv_lines(), providers=provider_sets, allowed=st.booleans())
def test_a_line_the_line_check_accepts_is_a_row_the_fast_check_accepts_with_the_same_providers(
    line: tuple[str, str], providers: list[str], allowed: bool
) -> None:
    header, text = line
    with allow_identifying_ids(allowed):
        fast = FastCheck(providers, SPECS)
        line_check = fast.lines(header, imports._providers_cell)
        accepted = line_check.check(text) if line_check is not None else None
        if accepted is not None:
            source = ",".join(header) + "\r\n" + text
            (row,) = read_rows(io.StringIO(source, newline=""), "csv")
            external_id, targets = accepted
            assert external_id == row.data["external_id"]
            assert list(targets) == FastCheck(providers, SPECS)(row.data)


def test_the_line_check_takes_plain_lines_and_leaves_the_others_to_the_rows() -> None:
    check = FastCheck(list(PROVIDERS), SPECS).lines(COLUMNS, imports._providers_cell)
    assert check is not None
    plain = "imp-1,a@example.test,Ana,Pérez,+5215512345678,1990-04-01,MX,palenca|palm\r\n"
    assert check.check(plain) == ("imp-1", ("palenca", "palm"))
    assert check.check("imp-1,a@example.test,Ana,Perez,,,,\n") == ("imp-1", tuple(PROVIDERS))
    for odd in (
        '"imp-1",a@example.test,Ana,Perez,,,,\r\n',  # quoted: left to csv
        "imp-1,a@example.test,Ana ,Perez,,,,\r\n",  # whitespace to strip
        "imp-1,a@example.test,Ana,Perez,,,\r\n",  # a cell short
        "imp-1,a@example.test,Ana,Perez,,,,,\r\n",  # a cell more
        "imp-1,a@example.test,Ana,Perez,,1990-02-30,,\r\n",  # not a date
        "imp-1,a@example.test,Ana,Perez,,,,palenca|palenca\r\n",  # a provider twice
    ):
        assert check.check(odd) is None, odd
    assert (
        FastCheck(["palenca"], SPECS).lines(["email", "external_id", "email"], imports._providers_cell)
        is None
    )
    assert FastCheck(["palenca"], SPECS).lines(["external_id", "nickname"], imports._providers_cell) is None


def test_plain_rows_are_accepted_without_building_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = Person.model_validate

    def counted(*args: Any, **kw: Any) -> Any:
        built.append("person")
        return original(*args, **kw)

    monkeypatch.setattr(Person, "model_validate", counted)
    text = (
        "external_id,email,first_name,last_name,phone,date_of_birth,country,timezone,providers\r\n"
        + "".join(
            f"imp-{n},p{n}@example.test,Ana,Pérez,+52155{n:08d},1990-04-01,MX,America/Mexico_City,\r\n"
            for n in range(200)
        )
    )
    text += "imp-0,bad-email,Ana,Perez,,,,,\r\n"  # a repeat, and an invalid e-mail address
    read: list[str] = []
    original_data = imports._csv_data

    def counted_rows(header: list[str], cells: list[str]) -> Any:
        read.append(cells[0])
        return original_data(header, cells)

    monkeypatch.setattr(imports, "_csv_data", counted_rows)
    reported: list[str] = []
    checked = validate_lines(io.StringIO(text, newline=""), "csv", list(PROVIDERS), reported.append)
    assert (checked.rows, checked.invalid) == (201, 1)
    assert dict(checked.per_provider) == dict.fromkeys(PROVIDERS, 200)
    assert built == ["person"]  # only the invalid row went through the models
    assert read == ["imp-0"]  # and only it was read into a row
    assert reported == ["line 202: email: must be an e-mail address"]
    built.clear()
    rows = validate(read_rows(io.StringIO(text, newline=""), "csv"), list(PROVIDERS), reported.append)
    assert (rows, built) == (checked, ["person"])  # from rows, the same with the same models built


def test_every_registered_provider_has_a_fast_rule() -> None:
    # A provider without one is always checked by the models (slow, but right): add its rule.
    assert set(PROVIDER_RULES) == set(PROVIDERS)
