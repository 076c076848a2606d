"""Readers on real-world messy exports: provisioning.convert.readers.open_table and friends
(read_csv, read_json, read_xlsx and its xlsx_checks)."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import tracemalloc
import zipfile
from pathlib import Path

import openpyxl
import pytest

from provisioning.convert import read_json, xlsx_checks
from provisioning.convert.readers import detect_format, open_table
from provisioning.convert.rows import FileError, Row
from tests.columns import HR_SUITE_HEADER

DATA = Path(__file__).parent / "data"


def _load_csv(name: str) -> list[list[str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


EMPLOYEES = _load_csv("employeeData.csv")
HEADER = EMPLOYEES[0]
COL = {name: i for i, name in enumerate(HEADER)}


def read(name: str, fmt: str | None = None, *, as_name: str | None = None):
    """Header and all rows of a file in tests/data (``as_name`` is the name given to the reader)."""
    with (DATA / name).open("rb") as stream:
        table = open_table(stream, as_name or name, fmt)
        return table.header, list(table.rows)


def read_bytes(data: bytes, name: str = "export.csv", fmt: str | None = None):
    table = open_table(io.BytesIO(data), name, fmt)
    return table.header, list(table.rows)


def employee(index: int, **changes: str) -> list[str]:
    """Data row ``index`` (0-based) of employeeData.csv, with some columns changed."""
    values = list(EMPLOYEES[1 + index])
    for column, value in changes.items():
        values[COL[column]] = value
    return values


def column(rows: list[Row], name: str) -> list[str]:
    return [row.values[COL[name]] for row in rows]


# --- Microsoft's samples, unchanged ------------------------------------------------------------


def test_microsoft_two_records() -> None:
    header, rows = read("csv-with-2-records.csv")
    assert header == HEADER
    assert [row.line for row in rows] == [2, 3]
    assert rows[0].values[:4] == ["1222", "Inactive", "Contractor", "EMP1222"]
    assert rows[1].values == employee(0)
    assert all(row.problem is None for row in rows)


def test_microsoft_employee_data_matches_the_csv_module() -> None:
    header, rows = read("employeeData.csv")
    assert header == HEADER
    assert len(rows) == 332
    assert [row.line for row in rows] == list(range(2, 334))
    assert [row.values for row in rows] == EMPLOYEES[1:]


# --- delimited text -----------------------------------------------------------------------------


def test_semicolon_utf8_bom_crlf_with_blank_lines() -> None:
    raw = (DATA / "messy-semicolon-bom-crlf.csv").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert raw.endswith(b"\r\n\r\n\r\n")
    header, rows = read("messy-semicolon-bom-crlf.csv")
    assert header[0] == "WorkerID"  # no BOM stuck to the first name
    assert header == HEADER
    # Line 5 is empty and line 6 only spaces; lines 14-15 are empty: none of them is a row.
    assert [row.line for row in rows] == [2, 3, 4, 7, 8, 9, 10, 11, 12, 13]
    expected = [employee(i) for i in range(10)]
    expected[3][COL["JobTitle"]] = "Project Manager; EMEA"
    assert [row.values for row in rows] == expected
    assert not any(value.endswith("\r") for row in rows for value in row.values)


def test_tab_utf16_le_with_bom() -> None:
    raw = (DATA / "messy-tab-utf16.txt").read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE)
    header, rows = read("messy-tab-utf16.txt")
    assert header[0] == "WorkerID"
    assert header == HEADER
    assert [row.line for row in rows] == list(range(2, 10))
    assert rows[2].values == employee(12, FirstName="Zoë", LastName="Nguyễn", FullName="Zoë Nguyễn")
    assert rows[5].values[COL["Custom01"]] == "\U0002070e"  # a surrogate pair in the file
    assert rows[0].values == employee(10)
    assert rows[-1].values == employee(17)


def test_utf16_big_endian_with_bom() -> None:
    text = "WorkerID\tFullName\r\n1\tZoë Nguyễn\r\n2\t王小明\r\n"
    header, rows = read_bytes(codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "x.tsv")
    assert header == ["WorkerID", "FullName"]
    assert [(row.line, row.values) for row in rows] == [
        (2, ["1", "Zoë Nguyễn"]),
        (3, ["2", "王小明"]),
    ]


def test_pipe_delimited_without_final_newline() -> None:
    assert not (DATA / "messy-pipe.psv").read_bytes().endswith(b"\n")
    header, rows = read("messy-pipe.psv")
    assert header == HEADER
    assert [row.line for row in rows] == list(range(2, 10))
    assert rows[1].values[COL["StreetAddress"]] == "101 Woodgrove Way, Suite 200"
    assert rows[4].values[COL["Custom02"]] == "A;B"
    assert rows[6].values[COL["JobTitle"]] == "Director, Sales | EMEA"
    assert rows[-1].values == employee(25)  # the last line, without a newline, is complete
    assert all(len(row.values) == 24 for row in rows)


def test_quoted_fields_multiline_delimiters_quotes_and_unicode() -> None:
    header, rows = read("messy-quoted.csv")
    assert header == HEADER
    # Records after multi-line fields start on the line after the field's last line.
    assert [row.line for row in rows] == [2, 4, 5, 8, 9, 11]
    assert all(len(row.values) == 24 for row in rows)
    first, second, third, fourth, fifth, sixth = rows
    assert first.values[COL["FullName"]] == "Élodie Béranger"
    assert first.values[COL["StreetAddress"]] == "12 Rue de l'Église\nBâtiment B"
    assert second.values[COL["FullName"]] == "Großmann, Jürgen"
    assert second.values[COL["JobTitle"]] == 'Senior "Lead" Engineer'
    assert second.values[COL["City"]] == "München"
    assert third.values[COL["FirstName"]] == "小明"
    assert third.values[COL["FullName"]] == "王小明"
    assert third.values[COL["StreetAddress"]] == "Line 1\r\nLine 2\r\nLine 3"
    assert third.values[COL["City"]] == "北京"
    assert fourth.values == employee(29, WorkerID="2004", UserID="EMP2004")
    assert fifth.values[COL["FullName"]] == 'O"Brien, Seán\n(contractor)'
    assert fifth.values[COL["LastName"]] == "O'Brien"
    assert sixth.values[COL["Department"]] == 'R&D, "Labs"'
    assert sixth.values[COL["ZipCode"]] == EMPLOYEES[1 + 31][COL["ZipCode"]]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed_from_the_header(delimiter: str) -> None:
    # Data cells hold the other delimiters, so only the header tells which one is used.
    others = "".join(d for d in ",;\t|" if d != delimiter)
    table = [["WorkerID", "FullName", "Note"], ["1", f"a{others}b", "x"], ["2", "c", others]]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(table)
    header, rows = read_bytes(out.getvalue().encode("utf-8"), "export.txt")
    assert header == table[0]
    assert [row.values for row in rows] == table[1:]
    assert [row.line for row in rows] == [2, 3]


def test_single_column_file_defaults_to_comma() -> None:
    header, rows = read_bytes(b"WorkerID\n1\n\n2\n")
    assert header == ["WorkerID"]
    assert [(row.line, row.values) for row in rows] == [(2, ["1"]), (4, ["2"])]


def test_delimiter_sniffed_when_a_header_name_spans_lines() -> None:
    # Excel writes a header cell with Alt+Enter as a quoted name with a line break.
    data = b'"Worker\nID";Full Name;Dept\r\n1;Ann, B;Sales\r\n'
    header, rows = read_bytes(data)
    assert header == ["Worker\nID", "Full Name", "Dept"]
    assert [(row.line, row.values) for row in rows] == [(3, ["1", "Ann, B", "Sales"])]


def test_delimiter_sniffed_when_a_header_name_holds_a_unicode_line_separator() -> None:
    # U+2028 and friends end a line for str.splitlines() but not for the csv module.
    data = "Worker\u2028ID;Full\x85Name;Dept\n1;Ann, B;Sales\n".encode()
    header, rows = read_bytes(data)
    assert header == ["Worker\u2028ID", "Full\x85Name", "Dept"]
    assert [row.values for row in rows] == [["1", "Ann, B", "Sales"]]


def test_leading_blank_lines_and_header_whitespace() -> None:
    data = b"\n  \n WorkerID ; FullName \n1; padded value \n"
    header, rows = read_bytes(data)
    assert header == ["WorkerID", "FullName"]  # names are stripped, values are not
    assert [(row.line, row.values) for row in rows] == [(4, ["1", " padded value "])]


def test_duplicate_header_name_is_a_file_error() -> None:
    with pytest.raises(FileError) as caught:
        read_bytes(b"\nWorkerID,Name, WorkerID\n1,a,b\n")
    assert caught.value.line == 2
    assert "WorkerID" in caught.value.reason


def test_rows_of_a_different_width_are_kept_as_they_are() -> None:
    header, rows = read_bytes(b"a,b,c\n1,2\n1,2,3,4\n")
    assert header == ["a", "b", "c"]
    assert [row.values for row in rows] == [["1", "2"], ["1", "2", "3", "4"]]


def test_bad_rows_file_yields_every_row_verbatim() -> None:
    header, rows = read("messy-bad-rows.csv")
    assert header == HEADER
    assert [row.line for row in rows] == list(range(2, 12))
    by_line = {row.line: row.values for row in rows}
    assert by_line[3][COL["WorkerID"]] == ""
    assert by_line[4][COL["WorkerID"]] == by_line[8][COL["WorkerID"]] == "1783"
    assert by_line[5][COL["WorkerStatus"]] == "Maybe"
    assert len(by_line[6][COL["FullName"]]) > 256
    assert len(by_line[7]) == 25 and by_line[7][-1] == "EXTRA"
    assert all(len(by_line[line]) == 24 for line in by_line if line != 7)
    # Values that a spreadsheet would take for formulas are data, read as they are.
    assert by_line[9][COL["FullName"]] == (
        '=HYPERLINK("https://contoso.example/x","Florie Kravits")'
    )
    assert by_line[10][COL["FirstName"]] == "+Mireielle"
    assert by_line[10][COL["LastName"]] == "-Philoo"
    assert by_line[10][COL["JobTitle"]] == "@Program Manager"
    assert by_line[10][COL["OfficePhone"]] == "+44 20 7946 0958"
    assert by_line[11][COL["Custom01"]] == "=1+2"
    assert all(row.problem is None for row in rows)


def test_hr_suite_export() -> None:
    header, rows = read("hr-suite-export.csv")
    assert header == HR_SUITE_HEADER
    assert len(rows) == 20
    assert [row.line for row in rows] == list(range(2, 22))
    assert all(len(row.values) == len(HR_SUITE_HEADER) for row in rows)
    ids = [row.values[0] for row in rows]
    assert ids == [f"E{10001 + i}" for i in range(20)]
    first = dict(zip(header, rows[0].values, strict=True))
    assert first["Office Street"] == "500 Boylston St, Floor 12"
    assert first["Office Postal Code"] == "02116"
    assert first["Work Phone"] == "+1 (617) 555-0100"
    assert first["Manager Employee ID"] == ""
    terminated = [row.line for row in rows if row.values[7] == "Terminated"]
    assert terminated == [8, 13, 19]
    assert all(row.values[20] for row in rows if row.values[7] == "Terminated")


def test_hr_suite_bad() -> None:
    header, rows = read("hr-suite-bad.csv")
    assert header == HR_SUITE_HEADER
    by_line = {row.line: dict(zip(header, row.values, strict=True)) for row in rows}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7]
    assert by_line[3]["Work Email"] == "maria.garcia@@contoso"
    assert by_line[4]["Hire Date"] == "31/31/2020"
    assert by_line[5]["Employment Status"] == "Suspended"
    assert by_line[6]["Employee ID"] == ""


# --- JSON and JSON Lines ------------------------------------------------------------------------


def test_json_array_pretty_printed() -> None:
    header, rows = read("messy.json")
    assert header == HEADER
    assert [row.line for row in rows] == [2, 28, 29, 58, 87]
    first = dict(zip(header, rows[0].values, strict=True))
    assert first["WorkerID"] == "1533"  # numbers as the text a CSV would hold
    assert first["ManagerID"] == EMPLOYEES[1 + 32][COL["ManagerID"]]
    assert first["ZipCode"] == "51771"
    assert first["OnLeave"] == "false"
    assert first["Custom02"] == ""  # null
    assert rows[0].values == employee(32, OnLeave="false", Custom02="")
    assert rows[1].values[COL["FullName"]] == "Renée Suanne"  # from \u00e9 escapes
    assert rows[4].values[COL["CostCenter"]] == "12.5"
    assert [row.nested for row in rows] == [(), (), ("Location",), ("Custom01",), ()]
    assert all(row.problem is None for row in rows)
    assert rows[2].values[COL["Location"]] == ""


def test_json_lines_with_blank_lines() -> None:
    header, rows = read("messy.jsonl")
    assert header == HEADER
    assert [row.line for row in rows] == [1, 2, 4, 5, 6]
    assert rows[0].values == employee(37, OnLeave=employee(37)[COL["OnLeave"]].lower())
    assert rows[0].values[COL["WorkerID"]] == "1248"
    assert rows[3].nested == ("Custom01",)
    assert [row.nested for row in rows if row.line != 5] == [()] * 4
    assert set(column(rows, "OnLeave")) <= {"true", "false"}


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_scalars_are_normalised(fmt: str) -> None:
    record = {"WorkerID": 1513, "Active": True, "Leave": False, "Note": None, "Rate": 0.5}
    record |= {"Big": 12345678901234567890, "Name": "Zoë"}
    text = json.dumps([record]) if fmt == "json" else json.dumps(record) + "\n"
    header, rows = read_bytes(text.encode(), "x." + fmt)
    assert header == list(record)
    assert rows[0].values == ["1513", "true", "false", "", "0.5", "12345678901234567890", "Zoë"]
    assert rows[0].problem is None


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_missing_keys_are_empty_and_extra_keys_ignored(fmt: str) -> None:
    records = [{"a": "1", "b": "2"}, {"b": "3", "c": "x"}, ["not", "an", "object"]]
    if fmt == "json":
        text = json.dumps(records, indent=1)
    else:
        text = "\n".join(json.dumps(r) for r in records)
    header, rows = read_bytes(text.encode(), "x." + fmt)
    assert header == ["a", "b"]
    assert [row.values for row in rows] == [["1", "2"], ["", "3"], ["", ""]]
    assert rows[2].problem == ("", "record is not a JSON object")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_keys_padded_with_spaces_still_match_the_stripped_header(fmt: str) -> None:
    records = [{" WorkerID ": 1, "FullName ": "Ann"}, {" WorkerID ": 2, "FullName ": "Bo"}]
    text = json.dumps(records) if fmt == "json" else "\n".join(map(json.dumps, records))
    header, rows = read_bytes(text.encode(), "x." + fmt)
    assert header == ["WorkerID", "FullName"]
    assert [row.values for row in rows] == [["1", "Ann"], ["2", "Bo"]]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_with_bom_crlf(fmt: str) -> None:
    records = [{"WorkerID": "1"}, {"WorkerID": "2"}]
    if fmt == "json":
        text = json.dumps(records, indent=2).replace("\n", "\r\n")
    else:
        text = "\r\n".join(json.dumps(r) for r in records) + "\r\n"
    header, rows = read_bytes(codecs.BOM_UTF8 + text.encode(), "x." + fmt)
    assert header == ["WorkerID"]
    expected_lines = [2, 5] if fmt == "json" else [1, 2]
    assert [(row.line, row.values) for row in rows] == list(
        zip(expected_lines, [["1"], ["2"]], strict=True)
    )


def _json_text(fmt: str, records: list[str]) -> bytes:
    """A JSON array (one record per line after the '[') or JSON Lines of records given as text."""
    if fmt == "json":
        return ("[\n" + ",\n".join(records) + "\n]\n").encode()
    return ("\n".join(records) + "\n").encode()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_duplicate_key_in_the_first_record_is_a_file_error(fmt: str) -> None:
    # json keeps the last value of a repeated key; like a repeated CSV header name, the
    # header cannot be told, so the file is refused.
    records = ['{"WorkerID": "1", "Name": "Ann", "WorkerID": "2"}', '{"WorkerID": "3"}']
    with pytest.raises(FileError) as caught:
        read_bytes(_json_text(fmt, records), "x." + fmt)
    assert caught.value.reason == "key 'WorkerID' appears twice in the first record"
    assert caught.value.line == (2 if fmt == "json" else 1)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_duplicate_key_in_a_later_record_rejects_that_record(fmt: str) -> None:
    records = [
        '{"WorkerID": "1", "Name": "Ann"}',
        '{"WorkerID": "2", "Name": "Bo", "Name": "Bob"}',
        '{"WorkerID": "3", "Name": "Cy", "Extra": {"a": 1, "a": 2}}',  # nested: not mapped
        '{"WorkerID": "4", "Name": "Di"}',
    ]
    header, rows = read_bytes(_json_text(fmt, records), "x." + fmt)
    assert header == ["WorkerID", "Name"]
    first = 2 if fmt == "json" else 1
    assert [row.line for row in rows] == [first, first + 1, first + 2, first + 3]
    assert [row.problem for row in rows] == [
        None,
        ("Name", "key 'Name' appears twice in this record"),
        None,
        None,
    ]
    assert [row.values for row in rows] == [["1", "Ann"], ["2", "Bob"], ["3", "Cy"], ["4", "Di"]]


def test_json_array_utf16() -> None:
    text = json.dumps([{"WorkerID": 1, "Name": "王小明"}], indent=2, ensure_ascii=False)
    header, rows = read_bytes(text.encode("utf-16"), "x.json")
    assert header == ["WorkerID", "Name"]
    assert [(row.line, row.values) for row in rows] == [(2, ["1", "王小明"])]


def test_json_array_read_in_tiny_chunks_gives_the_same_rows(monkeypatch) -> None:
    expected = read("messy.json")
    for size in (1, 7, 64, 1000):
        monkeypatch.setattr(read_json, "_JSON_CHUNK", size)
        assert read("messy.json") == expected


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{"a": 1}', 1),  # an object, not an array
        ("[1, 2]", 1),  # first record not an object
        ('[\n{"a": 1}\n{"a": 2}\n]', 3),  # missing comma
        ('[\n{"a": 1},\n{"a": tru}\n]', 3),  # invalid value
        ('[\n{"a": 1}\n]\n[]', 4),  # data after the array
        ('[\n{"a": 1},\n', 3),  # not closed
    ],
)
def test_json_array_file_errors(text: str, line: int) -> None:
    with pytest.raises(FileError) as caught:
        read_bytes(text.encode(), "x.json")
    assert caught.value.line == line


@pytest.mark.parametrize(
    ("data", "name", "line"),
    [
        (b"[" * 100_000, "x.json", 1),
        (b'[\n{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]", "x.json", 2),
        (b'{"a": 1}\n' + b"[" * 100_000 + b"\n", "x.jsonl", 2),
    ],
)
def test_deeply_nested_json_is_a_file_error(data: bytes, name: str, line: int) -> None:
    # json raises RecursionError, not ValueError, for these.
    with pytest.raises(FileError, match="nested too deeply") as caught:
        read_bytes(data, name)
    assert caught.value.line == line


def test_json_lines_invalid_line_is_a_file_error() -> None:
    with pytest.raises(FileError) as caught:
        read_bytes(b'{"a": 1}\n\n{"a": 2,}\n', "x.jsonl")
    assert caught.value.line == 3
    with pytest.raises(FileError) as caught:
        read_bytes(b"\n[1]\n", "x.jsonl")
    assert caught.value.line == 2


def test_truncated_json_array() -> None:
    with pytest.raises(FileError) as caught:
        read("messy-truncated.json")
    assert caught.value.line == 54  # where the cut record starts
    assert "invalid JSON" in caught.value.reason


def test_invalid_json_record_does_not_load_the_rest_of_the_file(tmp_path: Path) -> None:
    # A syntax error looks like a record cut at a chunk boundary; the reader must not keep
    # reading the rest of a big file into memory to find out.
    path = tmp_path / "bad.json"
    record = json.dumps({"WorkerID": "1", "FullName": "x" * 80})
    with path.open("w", encoding="utf-8") as out:
        out.write('[\n{"WorkerID": "0", "FullName": tru},\n')
        for _ in range(250_000):  # ~27 MB
            out.write(record + ",\n")
        out.write(record + "\n]\n")
    tracemalloc.start()
    try:
        with pytest.raises(FileError) as caught, path.open("rb") as stream:
            list(open_table(stream, path.name).rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.line == 2
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


# --- XLSX ---------------------------------------------------------------------------------------


def test_xlsx_first_sheet() -> None:
    header, rows = read("messy.xlsx")
    assert header == HEADER  # not the "Notes" sheet's header
    assert [row.line for row in rows] == [2, 3, 4, 6, 7, 8, 9, 10]  # row 5 is empty
    two = _load_csv("csv-with-2-records.csv")
    talya = dict(zip(header, rows[0].values, strict=True))
    assert talya["WorkerID"] == "1222"  # a number in the sheet
    assert talya["HireDate"] == "2013-01-01"  # an Excel date
    assert talya["ManagerID"] == "1684"
    assert talya["ZipCode"] == "85434"
    assert talya["OnLeave"] == "TRUE"
    assert rows[0].values == [*two[1][:10], "TRUE", *two[1][11:]]
    assert rows[1].values == employee(0, OnLeave="FALSE")
    assert rows[2].values[COL["HireDate"]] == "2017-08-21T09:30:00"
    assert rows[2].values[COL["Custom02"]] == ""  # empty cell
    # Row 9 stores nothing after OfficePhone; the row is padded to the header's width.
    assert rows[6].line == 9
    assert rows[6].values[COL["OfficePhone"]] == employee(5)[COL["OfficePhone"]]
    assert rows[6].values[COL["OfficePhone"] + 1 :] == ["", "", ""]
    assert all(len(row.values) == 24 for row in rows)
    assert all(row.problem is None for row in rows)
    ids = ["1222", "1513", "1783", "1895", "1423", "1803", "1521", "1011"]
    assert column(rows, "WorkerID") == ids


def _xlsx(*sheets: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for number, cells in enumerate(sheets):
        sheet = workbook.create_sheet(f"Sheet{number + 1}")
        for row in cells:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_xlsx_cell_types() -> None:
    data = _xlsx(
        [
            [None],  # blank rows before the header are skipped
            ["Id", " Name ", "When", "Day", "Flag", "Ratio", "Big"],
            [1222.0, "Zoë", dt.datetime(2013, 1, 1), dt.date(2020, 2, 29), False, 0.25, 1e15],
            [None, None, None, None, None, None, None],
            ["x", "", None, None, None, None, None, "extra"],
        ]
    )
    header, rows = read_bytes(data, "book.xlsx")
    # The sheet is 8 columns wide (the stray "extra"), so the header gets an unnamed 8th column.
    assert header == ["Id", "Name", "When", "Day", "Flag", "Ratio", "Big", ""]
    assert [row.line for row in rows] == [3, 5]
    assert rows[0].values == [
        *["1222", "Zoë", "2013-01-01", "2020-02-29", "FALSE", "0.25"],
        *["1000000000000000", ""],
    ]
    assert rows[1].values == ["x", "", "", "", "", "", "", "extra"]


def test_xlsx_empty_first_sheet_is_a_file_error() -> None:
    with pytest.raises(FileError, match="empty"):
        read_bytes(_xlsx([], [["Id"], [1]]), "book.xlsx")


def _sheet(rows: list[list[object]], merges: tuple[str, ...] = ()) -> bytes:
    """A one-sheet workbook as openpyxl writes it: formulas ("=...") without a cached value."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    for ref in merges:
        sheet.merge_cells(ref)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _with_cached_values(data: bytes, values: dict[str, str | int]) -> bytes:
    """Store calculated values with the formulas of these cells, as Excel does on saving.

    openpyxl cannot: it writes ``<c r="B2"><f>...</f><v /></c>``. A text result gets
    ``t="str"`` (an empty text is ``<v></v>``), a number none.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                for ref, value in values.items():
                    kind = ' t="str"' if isinstance(value, str) else ""
                    cell = re.compile(rf'<c r="{ref}"([^>]*)>(<f>[^<]*</f>)<v ?/>'.encode())
                    stored = rf'<c r="{ref}"\1{kind}>\2<v>{value}</v>'.encode()
                    content, count = cell.subn(stored, content)
                    assert count == 1, ref
            target.writestr(info, content)
    return out.getvalue()


FORMULA_REASON = (
    "holds a formula with no calculated value; open and save the file in Excel, "
    "or export values instead of formulas"
)


def test_xlsx_formula_without_a_calculated_value_rejects_its_row() -> None:
    data = _sheet(
        [
            ["Id", "Name", "First", "Last", "", "Note"],
            [1, '=C2&" "&D2', "Ann", "Lee", None, "x"],
            [2, "Bo Li", "Bo", "Li", "=A3*2", "y"],  # in the unnamed column: never read
            [3, "Cy Do", "Cy", "Do", None, "=A4+1"],
            [None, "=C6", None, None],  # nothing but a formula: not an empty row
            [5, "Ed Fu", "Ed", "Fu"],
        ]
    )
    header, rows = read_bytes(data, "book.xlsx")
    assert header == ["Id", "Name", "First", "Last", "", "Note"]
    assert [(row.line, row.problem) for row in rows] == [
        (2, ("Name", f"cell B2 {FORMULA_REASON}")),
        (3, None),
        (4, ("Note", f"cell F4 {FORMULA_REASON}")),
        (5, ("Name", f"cell B5 {FORMULA_REASON}")),
        (6, None),
    ]
    assert rows[0].values == ["1", "", "Ann", "Lee", "", "x"]
    assert rows[1].values == ["2", "Bo Li", "Bo", "Li", "", "y"]


def test_xlsx_formula_in_the_header_is_a_file_error() -> None:
    with pytest.raises(FileError) as caught:
        read_bytes(_sheet([[], ["Id", '="Na"&"me"'], [1, "Ann"]]), "book.xlsx")
    assert caught.value.line == 2
    assert caught.value.reason == f"header cell B2 {FORMULA_REASON}"


def test_xlsx_formulas_with_calculated_values_are_read_as_values() -> None:
    data = _sheet(
        [
            ["Id", "Name", "First", "Last", "Score"],
            [1, '=C2&" "&D2', "Ann", "Lee", "=A2*20"],
            [2, '=IF(C3="","",C3)', "", "Li", "=A3*20"],  # an empty text result
        ]
    )
    cached = _with_cached_values(data, {"B2": "Ann Lee", "E2": 20, "B3": "", "E3": 40})
    header, rows = read_bytes(cached, "book.xlsx")
    assert header == ["Id", "Name", "First", "Last", "Score"]
    assert [(row.line, row.values, row.problem) for row in rows] == [
        (2, ["1", "Ann Lee", "Ann", "Lee", "20"], None),
        (3, ["2", "", "", "Li", "40"], None),
    ]
    # One formula still without its value is found among the others.
    partly = _with_cached_values(data, {"B2": "Ann Lee", "E2": 20, "B3": ""})
    _, rows = read_bytes(partly, "book.xlsx")
    assert [row.problem for row in rows] == [None, ("Score", f"cell E3 {FORMULA_REASON}")]


def test_xlsx_formula_cells_without_a_reference_are_placed_as_openpyxl_places_them() -> None:
    # Some writers leave out the cells' r="B3": a cell follows the one before it.
    data = _sheet(
        [["Id", "Name", "Site", "Note"], [1, "Ann", "Oslo"], [2, "=A3", "Rome"], [3, "Cy", "=A1"]]
    )
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = re.sub(rb'<c r="[A-Z]+3"', b"<c", content)  # row 3: none at all
                content = re.sub(rb'<c r="C4"', b"<c", content)  # C4 follows B4
            target.writestr(info, content)
    _, rows = read_bytes(out.getvalue(), "book.xlsx")
    assert [(row.line, row.values, row.problem) for row in rows] == [
        (2, ["1", "Ann", "Oslo", ""], None),
        (3, ["2", "", "Rome", ""], ("Name", f"cell B3 {FORMULA_REASON}")),
        (4, ["3", "Cy", "", ""], ("Site", f"cell C4 {FORMULA_REASON}")),
    ]


SHEET_XML = (
    '<?xml version="1.0"?>\n<x:worksheet xmlns:x="{ns}"><x:sheetData>'
    '<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1"><x:f>A1</x:f><x:v>1</x:v>'
    '</x:c></x:row><x:row r="2"><x:c r="A2" t="str"><x:f t="shared" si="0" ref="A2:A3"/>'
    '<x:v></x:v></x:c><x:c r="B2"><x:f>LEN(A2)&gt;0</x:f>\n<x:v>TRUE</x:v></x:c></x:row>'
    '<x:row r="3"><x:c r="A3"><x:f t="shared" si="0"/>{last}</x:c></x:row>'
    '</x:sheetData><x:mergeCells count="2"><x:mergeCell ref="C5:C9"/>'
    '<x:mergeCell ref="A2:B2"/></x:mergeCells></x:worksheet>'
).replace("{ns}", "http://schemas.openxmlformats.org/spreadsheetml/2006/main")


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_xlsx_sheet_scan_in_any_chunk_size(monkeypatch, chunk: int) -> None:
    # The pass before the rows only searches bytes: whatever the chunks, it must find every
    # merged range, tell a formula with a cached value from one without, and leave the exact
    # (slow) pass alone when every formula has its value.
    monkeypatch.setattr(xlsx_checks, "_SCAN_CHUNK", chunk)
    cached = xlsx_checks._scan_sheet(
        io.BytesIO(SHEET_XML.replace("{last}", "<x:v>3</x:v>").encode())
    )
    assert cached.merges == [(2, 1, 2, 2), (5, 3, 9, 3)]
    assert cached.uncached is False
    for last in ("", "<x:v/>", "<x:v></x:v>", "<x:v> </x:v>"):
        scan = xlsx_checks._scan_sheet(io.BytesIO(SHEET_XML.replace("{last}", last).encode()))
        assert scan.uncached is True, last
        assert scan.merges == cached.merges


def test_xlsx_vertically_merged_cells_reject_the_rows_they_empty() -> None:
    data = _sheet(
        [
            ["Id", "Dept", "Name", "", "Site"],
            [1, "Sales", "Ann", None, "Oslo"],
            [2, None, "Bo", None, None],
            [3, None, "Cy", None, "Rome"],
            [4, "HR", "Di", "x", None],
            [5, None, "Ed", None, None],
            [None, None, None, None, None],  # only covered cells: still an empty row
            [7, "IT", "Fa", None, None],
            [8, "IT", "Gu", None, None],
        ],
        merges=("B2:B4", "D5:D6", "E5:E7", "E8:E9"),  # D: no name; E5, E8: empty
    )
    _, rows = read_bytes(data, "book.xlsx")
    reason = "cell {} is part of the merged range B2:B4, whose value only B2 holds; "
    reason += "unmerge the cells and fill in each one"
    assert [(row.line, row.problem) for row in rows] == [
        (2, None),
        (3, ("Dept", reason.format("B3"))),
        (4, ("Dept", reason.format("B4"))),
        (5, None),
        (6, None),
        (8, None),
        (9, None),
    ]
    assert [row.values[1] for row in rows] == ["Sales", "", "", "HR", "", "IT", "IT"]


def test_xlsx_horizontally_merged_cells_reject_their_row() -> None:
    data = _sheet(
        [
            ["Id", "First", "Last", "Site", "", ""],
            [1, "Ann Lee", None, "Oslo"],  # B2:C2: Last reads as empty
            [2, "Bo", "Li", "Rome", "note", None],  # E3:F3: no names there
            [3, "Cy", "Do", "Nice", None, None],
        ],
        merges=("B2:C2", "E3:F3", "A4:B4"),
    )
    _, rows = read_bytes(data, "book.xlsx")
    assert [(row.line, row.problem) for row in rows] == [
        (
            2,
            (
                "Last",
                "cell C2 is part of the merged range B2:C2, whose value only B2 holds; "
                "unmerge the cells and fill in each one",
            ),
        ),
        (3, None),
        (
            4,
            (
                "First",
                "cell B4 is part of the merged range A4:B4, whose value only A4 holds; "
                "unmerge the cells and fill in each one",
            ),
        ),
    ]


def test_xlsx_leftmost_problem_of_a_row_is_reported() -> None:
    data = _sheet(
        [["Id", "A", "B", "C"], [1, "x", "y", "=1+1"], [2, None, "z", "=2+2"]],
        merges=("B2:B3",),
    )
    _, rows = read_bytes(data, "book.xlsx")
    assert [row.problem for row in rows] == [
        ("C", f"cell D2 {FORMULA_REASON}"),
        (
            "A",
            "cell B3 is part of the merged range B2:B3, whose value only B2 holds; "
            "unmerge the cells and fill in each one",
        ),
    ]


def test_xlsx_merged_cells_in_the_header_row() -> None:
    # A merged title above the table is the first non-empty row, so it would be the header.
    with pytest.raises(FileError) as caught:
        read_bytes(_sheet([["HR export"], ["Id", "Name"], [1, "Ann"]], ("A1:B1",)), "b.xlsx")
    assert caught.value.line == 1
    assert caught.value.reason.startswith("cells A1:B1 of the header row are merged;")
    # A name over two columns leaves the second without one.
    with pytest.raises(FileError, match="cells B1:C1 of the header row are merged"):
        read_bytes(_sheet([["Id", "Name", None], [1, "Ann", "Lee"]], ("B1:C1",)), "b.xlsx")
    # Merged empty header cells hide no name; a name reaching down makes rows of the header.
    data = _sheet(
        [["Id", "Name", None, None], [None, "First", None, None], [1, "Ann"]],
        ("C1:D1", "A1:A2"),
    )
    header, rows = read_bytes(data, "b.xlsx")
    assert header == ["Id", "Name", "", ""]
    assert [(row.line, row.problem) for row in rows] == [
        (
            2,
            (
                "Id",
                "cell A2 is part of the merged range A1:A2, which starts in the header row; "
                "the header must be a single row",
            ),
        ),
        (3, None),
    ]


@pytest.mark.parametrize("formula", [False, True])
@pytest.mark.parametrize("in_header", [False, True])
def test_xlsx_sheet_cut_short_is_a_file_error(formula: bool, in_header: bool) -> None:
    rows: list[list[object]] = [["Id", "Name"]]
    rows += [[number, f"=A{number + 1}" if formula else "x"] for number in range(1, 200)]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_sheet(rows))) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                end = content.index(b"</row>") if in_header else len(content) // 2
                content = content[:end]
            target.writestr(info, content)
    with pytest.raises(FileError, match="the first sheet is damaged") as caught:
        read_bytes(out.getvalue(), "book.xlsx")
    if in_header:
        assert caught.value.line is None
    else:
        assert caught.value.line is not None and 50 < caught.value.line < 150


def test_not_a_workbook_is_a_file_error() -> None:
    with pytest.raises(FileError, match="XLSX"):
        read_bytes(b"WorkerID,Name\n1,a\n", "export.xlsx")
    with pytest.raises(FileError, match="XLSX"):
        read_bytes(b"", "export.xlsx")


# --- format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("export.csv", "csv"),
        ("EXPORT.CSV", "csv"),
        ("dir.v2/export.txt", "csv"),
        ("export.tsv", "csv"),
        ("export.psv", "csv"),
        ("export.json", "json"),
        ("export.jsonl", "jsonl"),
        ("export.NDJSON", "jsonl"),
        ("export.2024.xlsx", "xlsx"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["export.xls", "export", "export.csv.gz", "export.parquet"])
def test_unknown_extension_is_a_file_error(name: str) -> None:
    with pytest.raises(FileError, match="pass the format explicitly"):
        detect_format(name)
    with pytest.raises(FileError):
        read_bytes(b"WorkerID\n1\n", name)


def test_format_override() -> None:
    assert read("messy.jsonl", "jsonl", as_name="export.dat") == read("messy.jsonl")
    assert read("messy-pipe.psv", "csv", as_name="export.json") == read("messy-pipe.psv")
    assert read("messy.xlsx", "xlsx", as_name="upload.bin") == read("messy.xlsx")
    with pytest.raises(FileError, match="unknown format"):
        read("messy.jsonl", "parquet")
    # By its extension, a JSON Lines file is not a JSON array.
    with pytest.raises(FileError):
        read("messy.jsonl", as_name="export.json")


# --- file-level errors --------------------------------------------------------------------------


def test_unbalanced_quote_at_the_end() -> None:
    with pytest.raises(FileError) as caught:
        read("messy-unbalanced-quote.csv")
    assert caught.value.line == 5
    assert "malformed CSV" in caught.value.reason


def test_unbalanced_quote_in_the_middle_of_a_big_file(tmp_path: Path) -> None:
    # The quote swallows the rest of the file until csv's field size limit stops it.
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write('WorkerID,FullName\n1,ok\n2,"never closed\n')
        for number in range(3, 100_000):
            out.write(f"{number},name {number} with some padding text\n")
    with pytest.raises(FileError) as caught, path.open("rb") as stream:
        list(open_table(stream, path.name).rows)
    assert caught.value.line == 3


def test_junk_after_closing_quote_is_a_file_error() -> None:
    with pytest.raises(FileError) as caught:
        read_bytes(b'a,b\n1,2\n3,"x"y\n5,6\n')
    assert caught.value.line == 3


def test_latin1_bytes() -> None:
    with pytest.raises(FileError) as caught:
        read("messy-latin1.csv")
    assert "not valid UTF-8" in caught.value.reason
    assert caught.value.line == 3  # José Müller


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
@pytest.mark.parametrize("bad", [2, 3001])
def test_invalid_byte_far_into_a_file_reports_its_own_line(fmt: str, bad: int) -> None:
    # The decoder works on chunks, far ahead of the row being read: the line must still be
    # the one that holds the byte (for a JSON array it cannot be known, so none is given).
    if fmt == "csv":
        lines = ["WorkerID,Name"] + [f"{i},name {i}" for i in range(2, 5001)]
        lines[bad - 1] = f"{bad},Jos\xe9"
        lines[bad - 2] = f'{bad - 1},"multi\nline"'  # a record over two lines just before
    elif fmt == "jsonl":
        lines = [json.dumps({"WorkerID": i, "Name": f"name {i}"}) for i in range(1, 5001)]
        lines[bad - 1] = '{"WorkerID": 1, "Name": "Jos\xe9"}'
    else:
        lines = ["["] + [json.dumps({"WorkerID": i}) + "," for i in range(2, 50_000)]
        lines[bad - 1] = '{"Name": "Jos\xe9"},'
        lines.append('{"WorkerID": 0}]')
    for ending in ("\n", "\r\n"):
        raw = ending.join(lines).encode("latin-1") + ending.encode()
        with pytest.raises(FileError) as caught:
            read_bytes(raw, "x." + fmt)
        expected = None if fmt == "json" else bad + (fmt == "csv")  # +1: the multi-line record
        assert caught.value.line == expected, ending
        assert "not valid UTF-8" in caught.value.reason


def test_invalid_byte_at_every_chunk_offset_is_on_its_line() -> None:
    # Move the bad byte across a decoder chunk boundary (8 KiB) in a CRLF file.
    head = "WorkerID,Name\r\n" + "".join(f"{i},x\r\n" for i in range(2, 1200))
    for pad in range(0, 12):
        text = head + "1200," + "y" * pad + "\r\n" + "1201,Jos\xe9\r\n1202,z\r\n"
        with pytest.raises(FileError) as caught:
            read_bytes(text.encode("latin-1"))
        assert caught.value.line == 1201, pad


def test_invalid_utf16() -> None:
    raw = codecs.BOM_UTF16_LE + "a\tb\r\n1\t2\r\n".encode("utf-16-le") + b"\x00\xdc\n\x00"
    with pytest.raises(FileError) as caught:
        read_bytes(raw, "x.txt")
    assert "not valid UTF-16" in caught.value.reason
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"", "x.csv"),
        (b"\n\r\n  \n", "x.csv"),
        (codecs.BOM_UTF8, "x.csv"),
        (codecs.BOM_UTF16_LE, "x.csv"),
        (b"", "x.json"),
        (b"[]", "x.json"),
        (b"  [ \n ] \n", "x.json"),
        (b"", "x.jsonl"),
        (b"\n \n", "x.jsonl"),
    ],
)
def test_empty_file_is_a_file_error(data: bytes, name: str) -> None:
    with pytest.raises(FileError):
        read_bytes(data, name)


# --- streaming ----------------------------------------------------------------------------------


def _write_big_csv(path: Path, rows: int) -> None:
    sample = employee(0)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for number in range(rows):
            sample[0] = str(100_000 + number)
            writer.writerow(sample)


def test_csv_memory_stays_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    _write_big_csv(path, 200_000)
    assert path.stat().st_size > 30_000_000
    count = 0
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            table = open_table(stream, path.name)
            for row in table.rows:
                count += 1
                last = row
                if count == 200_000:
                    progress = table.progress()  # read before the end closes the stream
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert last.line == 200_001 and last.values[0] == "299999"
    assert progress > 0.99
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_memory_stays_flat(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"big.{fmt}"
    record = dict(zip(HEADER, employee(0), strict=True))
    with path.open("w", encoding="utf-8") as out:
        out.write("[\n" if fmt == "json" else "")
        for number in range(60_000):
            record["WorkerID"] = 100_000 + number
            separator = ",\n" if fmt == "json" and number < 59_999 else "\n"
            out.write(json.dumps(record) + separator)
        out.write("]\n" if fmt == "json" else "")
    assert path.stat().st_size > 30_000_000
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            count = sum(1 for _ in open_table(stream, path.name).rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_progress_moves_forward() -> None:
    with (DATA / "employeeData.csv").open("rb") as stream:
        table = open_table(stream, "employeeData.csv")
        seen = [table.progress() for _ in table.rows]
    assert seen == sorted(seen)
    assert seen[-1] == 1.0


def test_xlsx_excel_error_cells_reject_their_row(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["WorkerID", "Department", ""])
    sheet.append(["1", "Sales", "#N/A"])  # an error in an unnamed column: harmless
    sheet.append(["2", "#REF!", ""])
    path = tmp_path / "errors.xlsx"
    book.save(path)
    with path.open("rb") as stream:
        rows = list(open_table(stream, "errors.xlsx").rows)
    assert [r.problem for r in rows] == [
        None,
        ("Department", "cell B3 holds the Excel error #REF!; fix the formula in HR"),
    ]
