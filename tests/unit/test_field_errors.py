"""``validation.field_errors``: the one way from a pydantic error to field errors (named by location,
names from the input bounded and redacted, never the offending value)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioning.errors import FieldError
from provisioning.validation import MAX_FIELD_ERRORS, Email, field_errors


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    count: int = Field(ge=1)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item]
    tags: dict[str, int] = Field(default_factory=dict)


def _error(data: object, model: type[BaseModel] = Order) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(data)
    return raised.value


def test_nested_location_with_a_list_index_is_dotted():
    exc = _error({"items": [{"email": "a@example.com", "count": 1}, {"email": "a@example.com", "count": 0}]})
    assert field_errors(exc) == [FieldError("items.1.count", "Input should be greater than or equal to 1")]


def test_the_offending_value_is_never_echoed_and_value_error_prefix_is_dropped():
    exc = _error({"items": [{"email": "not-an-address-SECRET", "count": "many-SECRET"}]})
    errors = field_errors(exc)
    assert [e.field for e in errors] == ["items.0.email", "items.0.count"]
    assert errors[0].message == "must be an e-mail address"
    assert "SECRET" not in repr(errors)


def test_unknown_keys_taken_from_the_input_are_redacted_and_bounded():
    long_key = "k" * 500
    exc = _error({"items": [], "ana@example.com": 1, long_key: 2, "tags": {"+14155550123": "x"}})
    errors = field_errors(exc)
    names = [e.field for e in errors]
    assert "[email]" in names
    assert "tags.[number]" in names
    assert all(len(name) <= 70 for name in names)
    assert "ana@example.com" not in repr(errors)
    assert "4155550123" not in repr(errors)


def test_location_prefix_suffix_and_root():
    exc = _error({"items": [{"email": "a@example.com", "count": 0}]})
    assert field_errors(exc, "detail", suffix=" (for trust)") == [
        FieldError("detail.items.0.count", "Input should be greater than or equal to 1 (for trust)")
    ]
    whole = _error("not an object")
    assert [e.field for e in field_errors(whole)] == ["body"]
    assert [e.field for e in field_errors(whole, "person")] == ["person"]
    assert [e.field for e in field_errors(whole, root="value")] == ["value"]


def test_rename_sees_the_redacted_location():
    exc = _error({"items": [], "ana@example.com": 1})
    seen = []

    def rename(loc: tuple[str | int, ...]) -> str:
        seen.append(loc)
        return "_".join(str(part) for part in loc).upper()

    assert field_errors(exc, rename=rename) == [FieldError("[EMAIL]", "Extra inputs are not permitted")]
    assert seen == [("[email]",)]


def test_listed_errors_as_powertools_gives_them_with_the_body_skipped():
    listed = [{"loc": ("body", "external_id"), "msg": "Field required", "input": "SECRET", "type": "missing"}]
    assert field_errors(listed, skip_body=True) == [FieldError("external_id", "Field required")]
    assert field_errors([{"loc": ("body",), "msg": "x", "input": "SECRET"}], skip_body=True) == [
        FieldError("body", "x")
    ]


def test_many_errors_are_bounded_with_a_count_of_the_rest():
    exc = _error({"items": [], **{f"extra{i}": i for i in range(MAX_FIELD_ERRORS + 5)}})
    errors = field_errors(exc, "row", suffix=" (for palm)")
    assert len(errors) == MAX_FIELD_ERRORS + 1
    assert errors[-1] == FieldError("row", "and 5 more invalid fields (for palm)")
