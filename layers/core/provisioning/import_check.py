"""A fast acceptance check for the import's validation pass: plain rows accepted without building a
model.

``FastCheck(providers)(data)`` looks at a Person-shaped row (a dict of field name to value, as
``imports.read_rows`` gives it) with cheap compiled checks (anchored ASCII patterns, set lookups, the
real validators' verdicts cached for dates and time zones) and answers either the providers the row
certainly goes to, valid for the ``Person`` model and for each of those providers' request models,
or None: not sure. It never reports an error: a row it is not sure of goes through the models,
which write the report. So it may only ever be stricter than the models, never more lenient; every
rule below is a sufficient condition for the model's own rule (``provisioning.person.Person``,
``provisioning.validation``, ``provisioning.models.ExternalId``, and each provider's request model
and ``from_person`` mapping, by ``PROVIDER_RULES``). A provider without an entry in
``PROVIDER_RULES`` is never accepted here: its rows always take the models' path.

``tests/unit/test_import_check.py`` checks it against the models on generated rows (anything it
accepts, the models accept; the import's report is the same with and without it) and that plain
rows do take it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from provisioning.person import PROVIDERS, Person
from provisioning.validation import _iana_zone, _past_date, identifying_ids_allowed, identifying_reason

# Sufficient forms of the models' string checks, ASCII only (the models' ``\d`` takes any digit,
# and their ``$`` a trailing newline: these take neither, so they are stricter).
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")  # models.ExternalId, 1-128
# An external_id that certainly does not look like personal data (``validation.identifying_reason``
# is None for it): it starts with a lower-case letter (no phone number, no capitalised name) and has
# no @ (no e-mail address) and no + (no international number).
_PLAIN_ID = re.compile(r"[a-z][A-Za-z0-9._:=-]{0,127}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    rf"(?=.{{1,254}}\Z)[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+"
)  # validation.Email
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # validation.E164Phone (16 characters at most)
_COUNTRY = re.compile(r"[A-Z]{2}")  # validation.Country
_NUMBER = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,6})?")  # a plain decimal, as a CSV cell holds a float
_UID = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")  # validic_inform's uid

# Text of 1 to 200 characters (stripping only shortens it) that starts with a letter or digit (never
# whitespace, so stripping leaves it non-empty), without a lone surrogate (pydantic refuses those):
# certainly valid ``validation.Text``; of 1 to 16, the Person's Gender.
_TEXT = re.compile(r"[^\W_][^\ud800-\udfff]{0,199}")
_GENDER = re.compile(r"[^\W_][^\ud800-\udfff]{0,15}")

_PROVIDER_NAMES = frozenset(PROVIDERS)
_FIELDS = frozenset(Person.model_fields)


def _number(value: Any, low: float, high: float) -> bool:
    """Certainly valid for ``float | None`` with ``ge=low, le=high`` (finite): a plain decimal
    string or a finite int or float (not a bool) within the bounds."""
    if type(value) is str:
        return _NUMBER.fullmatch(value) is not None and low <= float(value) <= high
    if type(value) is int or type(value) is float:
        return low <= value <= high  # nan and infinities are outside any bounds
    return False


def _height(value: Any) -> bool:
    return _number(value, 30.0, 300.0)  # Person's height_cm, Validic's height


def _weight(value: Any) -> bool:
    return _number(value, 2.0, 700.0)  # Person's weight_kg, Validic's weight


def _providers(value: Any) -> bool:
    """Person's providers: 1 or more registered names, none repeated."""
    return (
        type(value) is list
        and len(value) > 0
        and all(type(item) is str and item in _PROVIDER_NAMES for item in value)
        and len(set(value)) == len(value)
    )


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# Each provider's request model, as its ``from_person`` maps a Person that passed the checks above:
# a rule of the provider's own, given the row (a field absent, or None: not given) and whether the
# row's external_id is identifying (``validation.identifying_reason`` says why; None when it is
# not). True: certainly valid.
ProviderRule = Callable[[Mapping[str, Any], str | None], bool]


def _palenca(data: Mapping[str, Any], reason: str | None) -> bool:
    return True  # only the external_id, already checked as ExternalId


def _trust(data: Mapping[str, Any], reason: str | None) -> bool:
    # Requires an e-mail address, a first and a last name (each checked as the Person's, same types).
    return (
        data.get("email") is not None
        and data.get("first_name") is not None
        and data.get("last_name") is not None
    )


def _palm(data: Mapping[str, Any], reason: str | None) -> bool:
    # display_name, "first last", is Text (at most 200): the unstripped lengths bound it.
    first, last = data.get("first_name"), data.get("last_name")
    return len(first or "") + len(last or "") + 1 <= 200


def _validic(data: Mapping[str, Any], reason: str | None) -> bool:
    # Validic refuses identifying uids whatever the stack's rule; its profile takes the Person's
    # gender, country, birth year (1900 to this year), height and weight within the same bounds.
    return reason is None


def _validic_inform(data: Mapping[str, Any], reason: str | None) -> bool:
    # As Validic, and its uid is 4 to 254 letters, digits and single hyphens.
    external_id = data["external_id"]
    return reason is None and len(external_id) >= 4 and _UID.fullmatch(external_id) is not None


PROVIDER_RULES: dict[str, ProviderRule] = {
    "palenca": _palenca,
    "trust": _trust,
    "palm": _palm,
    "validic": _validic,
    "validic_inform": _validic_inform,
}


class FastCheck:
    """The fast acceptance check for an import to ``providers`` (in that order), under the rule on
    identifying ``external_id``s in force when it is made. Verdicts of the real date and time zone
    validators are cached (accepted values only: a bounded set, the dates of birth since 1900 and the
    IANA zones, each checked by the model's own rule the first time it is seen)."""

    def __init__(self, providers: list[str], specs: Mapping[str, Any]) -> None:
        self.providers = list(providers)
        # Only providers with a rule and a Person mapping: any other makes every row "not sure".
        self._usable = all(p in PROVIDER_RULES and specs[p].from_person is not None for p in providers)
        self._rules = [(p, PROVIDER_RULES.get(p)) for p in providers]
        self._allowed = identifying_ids_allowed()
        self._needs_reason = not self._allowed or any(p.startswith("validic") for p in providers)
        self._dates: set[str] = set()  # the dates of birth the model accepted (at most ~46,000)
        self._zones: set[str] = set()  # the time zones the model accepted (a bounded set)
        self.accepted = 0  # rows accepted here (the others went through the models)
        # Providers whose rule holds for every row that passes the field checks: no per-row rule.
        self._all_plain = self._usable and all(PROVIDER_RULES[p] is _palenca for p in providers)
        # Per Person field, a check of its value: True when certainly valid (a field without one,
        # or an unknown key, makes the row "not sure").
        self._checks: dict[str, Callable[[Any], object]] = {
            "external_id": _EXTERNAL_ID.fullmatch,
            "email": _EMAIL.fullmatch,
            "phone": _E164.fullmatch,
            "country": _COUNTRY.fullmatch,
            "date_of_birth": self._date,
            "timezone": self._zone,
            "providers": _providers,
            "height_cm": _height,
            "weight_kg": _weight,
            "first_name": _TEXT.fullmatch,
            "last_name": _TEXT.fullmatch,
            "national_id": _TEXT.fullmatch,
            "nationality": _TEXT.fullmatch,
            "gender": _GENDER.fullmatch,
        }
        if set(self._checks) != _FIELDS:  # a Person field added without a check here
            raise RuntimeError("import_check: every Person field needs a check")

    def __call__(self, data: dict[str, Any]) -> list[str] | None:
        checks = self._checks
        try:
            for name, value in data.items():
                if not checks[name](value):
                    return None
        except KeyError:  # not a Person field: not sure
            return None
        except TypeError:  # a value a pattern cannot read (a number, a list, an object): not sure
            return None
        external_id = data.get("external_id")
        if external_id is None:
            return None
        plain = _PLAIN_ID.fullmatch(external_id) is not None
        return self._targets(data, external_id, data.get("providers"), plain)

    def _targets(
        self, data: Mapping[str, Any], external_id: str, wanted: Any, plain: bool
    ) -> list[str] | None:
        """The providers of a row whose every field passed its check (``wanted``: its providers
        field; ``plain``: its external_id matches ``_PLAIN_ID``), or None: not sure."""
        reason = None
        if self._needs_reason and not plain:
            reason = identifying_reason(external_id)
        if reason is not None and not self._allowed:
            return None
        if wanted is None and self._all_plain:
            self.accepted += 1
            return self.providers
        targets = []
        for provider, rule in self._rules:
            if wanted is not None and provider not in wanted:
                continue
            if rule is None or not rule(data, reason):
                return None
            targets.append(provider)
        self.accepted += 1
        return targets

    def lines(self, header: list[str], providers_cell: Callable[[str], list[str]]) -> LineCheck | None:
        """This check on the raw lines of a CSV with ``header`` (``providers_cell``: how the row
        reader turns a stripped providers cell into a list), or None when its lines cannot take it:
        a column that is not a Person field, a name repeated, no ``external_id``, or a provider
        without a rule."""
        if not self._usable or "external_id" not in header or len(set(header)) != len(header):
            return None
        if not _FIELDS.issuperset(header):
            return None
        return LineCheck(self, header, providers_cell)

    def _date(self, value: Any) -> bool:
        # ASCII digits only, then the model's own check: a real date from 1900 to today.
        return _accepted_once(self._dates, value, _ISO_DATE.fullmatch, _past_date)

    def _zone(self, value: Any) -> bool:
        return _accepted_once(self._zones, value, _plausible_zone, _iana_zone)  # the model's own check


def _plausible_zone(value: str) -> bool:
    return len(value) <= 64 and value.isascii()


def _accepted_once(
    accepted: set[str], value: Any, plausible: Callable[[str], object], rule: Callable[[str], object]
) -> bool:
    """Whether ``value`` is a string ``plausible`` and the model's own ``rule`` (which raises
    ValueError) accepts it. Each value accepted is remembered in ``accepted``, so the rule runs once
    per distinct value of a file."""
    if type(value) is not str:
        return False
    if value in accepted:
        return True
    if not plausible(value):
        return False
    try:
        rule(value)
    except ValueError:
        return False
    accepted.add(value)
    return True


# Each Person field's cell in a CSV line, for ``LineCheck``: a sufficient form of the field's check
# above (the same pattern, or a capture that ``FastCheck``'s own check then reads) that matches no
# comma, double quote, line break or NUL (so a line it matches splits into cells exactly as
# ``csv.reader`` splits it), never the empty string, and no whitespace at either end (so each cell is
# its own ``strip()``, the value ``imports.read_rows`` gives the field). The providers cell is the
# exception: it is stripped and split as the row reader does, then checked as ``_providers``.
_CELL_TEXT = r'[^\W_](?:[^,"\r\n\x00\ud800-\udfff]{0,%d}[^\s,"\x00\ud800-\udfff])?'  # _TEXT, _GENDER
_CELLS: dict[str, str] = {
    "external_id": r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}",  # _EXTERNAL_ID
    # _EMAIL but its length: ``LineCheck`` bounds it (254) in lines longer than that.
    "email": rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+",
    "phone": _E164.pattern,
    "country": _COUNTRY.pattern,
    "date_of_birth": r"[0-9]{4}-[0-9]{2}-[0-9]{2}",  # then FastCheck's date check
    "timezone": r"[A-Za-z0-9/_+-]{1,64}",  # then ``_zone``
    "providers": r'[^,"\r\n\x00]+',  # then stripped, split and ``_providers``
    "height_cm": _NUMBER.pattern,  # then ``_height``
    "weight_kg": _NUMBER.pattern,  # then ``_weight``
    "first_name": _CELL_TEXT % 198,
    "last_name": _CELL_TEXT % 198,
    "national_id": _CELL_TEXT % 198,
    "nationality": _CELL_TEXT % 198,
    "gender": _CELL_TEXT % 14,
}
# Fields whose cell is then checked by ``FastCheck``'s own check of the value.
_CHECKED_CELLS = ("date_of_birth", "timezone", "height_cm", "weight_kg")
_PROVIDERS_CELLS = 1024  # distinct providers cells remembered per import (a bounded cache)
_NOT_SURE: list[str] = []  # a providers cell ``_providers`` refuses


class LineCheck:
    """``FastCheck`` on a CSV's raw lines, before ``csv.reader`` and the row's dict: ``check(line)``
    answers ``(external_id, providers)`` (a tuple, in the import's order) for a line whose row is
    certainly valid for the Person and those providers, or None: not sure (the line is then read as
    ``imports.read_rows`` reads it, and goes through ``FastCheck`` and the models).

    One pattern, compiled for the header, matches the whole line: exactly the header's cells (an
    optional line break after them), each empty (the field absent) or of its field's cell form
    (``_CELLS``); the id may not be empty. A line it matches is a row that ``FastCheck`` accepts,
    with the same providers: each value passes the same check, and the row goes through the same
    ``_targets`` (``tests/unit/test_import_check.py`` holds it to that on generated lines)."""

    def __init__(
        self, fast: FastCheck, header: list[str], providers_cell: Callable[[str], list[str]]
    ) -> None:
        self._fast = fast
        self._header = list(header)
        self._providers_cell = providers_cell
        cells = []
        for name in header:
            if name == "external_id":  # a plain id (``_PLAIN_ID``) in one group, any other in the next
                cells.append(rf"(?:(?P<external_id>{_PLAIN_ID.pattern})|(?P<_other_id>{_CELLS[name]}))")
            else:
                cells.append(f"(?P<{name}>{_CELLS[name]})?")
        self._match = re.compile(",".join(cells) + r"(?:\r\n|\n|\r)?").fullmatch
        groups, group = {}, 1
        for name in header:
            groups[name] = group
            group += 2 if name == "external_id" else 1
        self._plain = groups["external_id"]
        self._email = groups.get("email", 0)
        self._groups = groups
        self._checked = [(groups[name], fast._checks[name]) for name in _CHECKED_CELLS if name in groups]
        self._providers = groups.get("providers", 0)
        self._needs_data = not fast._all_plain  # only the providers' rules read the row
        # Every provider, without a look at the row: when each one's rule holds for every row that
        # passes the field checks, for a plain id (no reason to look for) and no providers cell.
        self._every: tuple[str, ...] | None = tuple(fast.providers) if fast._all_plain else None
        self._wanted: dict[str, list[str] | None] = {}  # a providers cell -> its list (None: empty)

    def check(self, line: str) -> tuple[str, tuple[str, ...]] | None:
        match = self._match(line)
        if match is None:
            return None
        for group, check in self._checked:
            value = match[group]
            if value is not None and not check(value):
                return None
        if len(line) > 254 and self._email and len(match[self._email] or "") > 254:
            return None  # an e-mail address longer than ``_EMAIL`` takes
        plain = match[self._plain]
        cell = match[self._providers] if self._providers else None
        if cell is None and plain is not None and self._every is not None:
            self._fast.accepted += 1
            return plain, self._every  # as ``_targets`` answers for such a row
        external_id: str = plain if plain is not None else match[self._plain + 1]
        wanted = None
        if cell is not None:
            wanted = self._wanted.get(cell, _NOT_SURE)
            if wanted is _NOT_SURE:
                wanted = self._read_providers(cell)
                if wanted is _NOT_SURE:
                    return None
        data: Mapping[str, Any] = self._data(match, external_id, wanted) if self._needs_data else {}
        targets = self._fast._targets(data, external_id, wanted, plain is not None)
        return None if targets is None else (external_id, tuple(targets))

    def _read_providers(self, cell: str) -> list[str] | None:
        value = cell.strip()
        wanted = self._providers_cell(value) if value else None
        if wanted is not None and not _providers(wanted):
            wanted = _NOT_SURE
        if len(self._wanted) < _PROVIDERS_CELLS:
            self._wanted[cell] = wanted
        return wanted

    def _data(self, match: re.Match[str], external_id: str, wanted: list[str] | None) -> dict[str, Any]:
        """The row for the providers' rules: each of the header's fields (None: absent), the
        providers cell as the row reader reads it."""
        data = match.groupdict()
        data["external_id"] = external_id
        if "providers" in data:
            data["providers"] = wanted
        return data


__all__ = ["PROVIDER_RULES", "FastCheck", "LineCheck", "ProviderRule"]
