"""``provisioner import``'s memory of external_ids: the first line per provider, in compact arrays."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from provisioner_cli.bulk import SeenIds

PALENCA, TRUST = 1, 2


def test_an_id_repeated_for_the_same_provider_names_its_first_line():
    seen = SeenIds()
    assert seen.first("u-1", PALENCA, 2) is None
    assert seen.first("u-2", PALENCA, 3) is None
    assert seen.first("u-1", PALENCA, 9) == 2


def test_an_id_first_seen_for_another_provider_on_a_later_line_keeps_each_providers_line():
    seen = SeenIds()
    assert seen.first("u-1", PALENCA, 2) is None
    assert seen.first("u-1", TRUST, 5) is None  # not a repeat: Trust had not seen it
    assert seen.first("u-1", TRUST, 7) == 5
    assert seen.first("u-1", PALENCA, 8) == 2


def test_the_table_grows_and_keeps_every_id_and_line():
    seen = SeenIds(capacity=4)
    for n in range(10_000):
        assert seen.first(f"u-{n}", PALENCA, n + 2) is None
    assert all(seen.first(f"u-{n}", PALENCA, 0) == n + 2 for n in range(0, 10_000, 97))
    assert seen.first("u-new", PALENCA, 1) is None


def test_a_table_sized_for_the_rows_holds_them_all_without_growing():
    seen = SeenIds.for_rows(100_000)
    size = len(seen._keys)
    for n in range(100_000):
        assert seen.first(f"u-{n}", PALENCA, n + 2) is None
    assert len(seen._keys) == size  # never grown: no old and new arrays side by side
    assert all(seen.first(f"u-{n}", PALENCA, 0) == n + 2 for n in range(0, 100_000, 101))
    assert seen.first("u-3", TRUST, 4) is None


def test_the_row_estimate_comes_from_the_file_size_and_its_first_lines(tmp_path):
    from provisioner_cli.bulk import expected_rows

    path = tmp_path / "people.csv"
    path.write_text(
        "external_id,email\n" + "".join(f"u-{n:06d},p{n:06d}@example.test\n" for n in range(50_000))
    )
    assert 49_000 <= expected_rows(path) <= 51_000  # the same line lengths throughout
    (tmp_path / "empty.csv").write_text("")
    assert expected_rows(tmp_path / "empty.csv") == 0  # nothing to size for: the table grows as needed
    (tmp_path / "one.csv").write_text("external_id")  # no line ending at all
    assert expected_rows(tmp_path / "one.csv") == 0


@given(
    claims=st.lists(
        st.tuples(st.sampled_from(["u-1", "u-2", "u-3"]), st.integers(1, 31), st.integers(2, 9)), max_size=30
    )
)
def test_claiming_several_providers_at_once_answers_as_claiming_each_in_turn(
    claims: list[tuple[str, int, int]],
) -> None:
    one_by_one, at_once = SeenIds(), SeenIds()
    for external_id, bits, line in claims:
        each = {bit: one_by_one.first(external_id, bit, line) for bit in (1, 2, 4, 8, 16) if bits & bit}
        repeated = at_once.claim(external_id, bits, line)
        assert repeated == sum(bit for bit, first in each.items() if first is not None)
        assert {bit: at_once.line_of(external_id, bit) for bit in each if repeated & bit} == {
            bit: first for bit, first in each.items() if first is not None
        }
