"""The import's rows read from any iterator of lines (a local file, an object's stream), with the
same line numbers as from a file."""

from __future__ import annotations

import io

from provisioning.imports import read_rows, validate, validate_lines


def test_csv_rows_from_a_stream_keep_their_line_numbers_and_skip_blank_lines():
    text = (
        'external_id,email,providers\r\na-1,a@example.test,palenca;palm\r\n\r\n"b\r\n-2",,\r\nc-3,x,y,z\r\n'
    )
    rows = list(read_rows(io.StringIO(text, newline=""), "csv"))
    assert [row.line for row in rows] == [2, 4, 6]
    assert rows[0].data == {"external_id": "a-1", "email": "a@example.test", "providers": ["palenca", "palm"]}
    assert rows[1].data == {"external_id": "b\r\n-2"}
    assert rows[2].data[None] is True  # more cells than the header


def test_json_lines_from_an_iterator_report_bad_lines_by_number_without_values():
    lines = iter(['{"external_id": "j-1"}\n', "\n", "{not json secret@example.test\n", "[1]\n"])
    reported: list[str] = []
    checked = validate(read_rows(lines, "jsonl"), ["palenca"], reported.append)
    assert checked.rows == 3
    assert (checked.invalid, checked.per_provider["palenca"]) == (2, 1)
    assert [message.split(":")[0] for message in reported] == ["line 3", "line 4"]
    assert "line 4: row: must be a JSON object" in reported
    assert not [message for message in reported if "secret" in message]


def test_validating_a_csvs_lines_reports_the_rows_by_the_same_line_numbers_as_its_rows():
    text = (
        "external_id,email,first_name,providers\r\n"
        "a-1,a@example.test,Ana,palenca\r\n"  # plain: checked on its line
        '"b-2",b@example.test,"Ana\r\nMaria",\r\n'  # a quoted field over two lines
        "\r\n"  # blank
        "c-3,not-an-email,Ana,\r\n"
        "a-1,a@example.test,Ana,palenca;palm\r\n"  # a repeat, plain
        '"d-4",,"x\r\n\r\ny",\r\n'  # three lines
        "b-2,b@example.test,Ana,palm\r\n"  # a repeat of the quoted row's id
        "e-5,e@example.test,Ana,palenca,extra\r\n"  # a cell more than the header
        "f-6,f@example.test,Ana,palm"  # the last line, without a line ending
    )
    from_lines: list[str] = []
    from_rows: list[str] = []
    checked = validate_lines(io.StringIO(text, newline=""), "csv", ["palenca", "palm"], from_lines.append)
    assert checked == validate(
        read_rows(io.StringIO(text, newline=""), "csv"), ["palenca", "palm"], from_rows.append
    )
    assert (
        from_lines
        == from_rows
        == [
            "line 6: email: must be an e-mail address",
            "line 7: external_id: repeats line 2 for palenca",
            "line 11: external_id: repeats line 3 for palm",
            "line 12: row: has more cells than the header",
        ]
    )
    assert (checked.rows, checked.invalid) == (8, 4)
