"""Property tests: what csv.writer writes, open_table reads back, row for row, line for line."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.convert.readers import open_table
from provisioning.convert.rows import FileError

DELIMITERS = [",", ";", "\t", "|"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-be+bom"]
# Characters that make CSV hard, drawn often on purpose; full Unicode is drawn as well.
SPECIAL = [*",;\t|\"'\r\n =+-@ \u00a0\u2028\x85\x0b\x0c\x1c\x00é中ß", "\r\n", "😀", "\U0002070e"]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

cells = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(SPECIAL), max_size=8).map("".join),
    st.sampled_from(["", " ", "=1+2", "+44 20", "-", "@x", '=HYPERLINK("a","b")', "Zoë 王"]),
)
# Header names: unique and non-blank once stripped; no delimiter or quote, since the header is
# how the reader tells the delimiter (a quoted name with a line break is fine).
header_names = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=',;\t|"\ufeff'),
        min_size=1,
        max_size=10,
    ),
    st.lists(st.sampled_from(list("ab é中 \n\r\u2028=+-@")), min_size=1, max_size=6).map("".join),
).filter(lambda name: name.strip() != "")


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, list[str]]], str, str, str, int]:
    """(header, [(blank lines before, row)], delimiter, encoding, line terminator, quoting)."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    # One column cannot show which delimiter is used: only a comma file has a single column.
    width = draw(st.integers(min_value=1 if delimiter == "," else 2, max_value=6))
    header = draw(st.lists(header_names, min_size=width, max_size=width, unique_by=str.strip))
    row = st.lists(cells, min_size=width, max_size=width)
    if width == 1:
        # A one-cell row holding only whitespace is a blank line to the reader.
        row = row.filter(lambda values: values[0].strip() != "")
    rows = draw(st.lists(st.tuples(st.integers(0, 2), row), max_size=12))
    encoding = draw(st.sampled_from(ENCODINGS))
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    return header, rows, delimiter, encoding, terminator, quoting


def _line_breaks(text: str) -> int:
    """Line ends in ``text`` as the reader counts them: \\r\\n, \\r and \\n."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be+bom":
        return codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    return text.encode(encoding)


def _write(header, rows, delimiter, terminator, quoting) -> tuple[str, list[int]]:
    """The CSV text and the line each data row starts on."""
    out = io.StringIO()

    def write(values: list[str]) -> None:
        # csv.writer quotes a field for the characters of its own line terminator only: with
        # "\n" it would leave a lone "\r" bare, which every reader takes for a line end.
        bare_cr = terminator == "\n" and any("\r" in value for value in values)
        csv.writer(
            out,
            delimiter=delimiter,
            lineterminator=terminator,
            quoting=csv.QUOTE_ALL if bare_cr else quoting,
        ).writerow(values)

    write(header)
    line = 2 + sum(_line_breaks(name) for name in header)
    starts = []
    for blanks, values in rows:
        out.write(terminator * blanks)
        line += blanks
        starts.append(line)
        write(values)
        line += 1 + sum(_line_breaks(value) for value in values)
    return out.getvalue(), starts


@SETTINGS
@given(tables())
def test_written_tables_read_back_identically(table) -> None:
    header, rows, delimiter, encoding, terminator, quoting = table
    text, starts = _write(header, rows, delimiter, terminator, quoting)
    name = {",": "export.csv", ";": "export.txt", "\t": "export.tsv", "|": "export.psv"}
    result = open_table(io.BytesIO(_encode(text, encoding)), name[delimiter])
    read = list(result.rows)
    assert result.header == [name.strip() for name in header]
    # A row whose cells are all blank (";;;") is skipped like a blank line; all others arrive.
    kept = [i for i, (_, values) in enumerate(rows) if "".join(values).strip()]
    assert [row.values for row in read] == [rows[i][1] for i in kept]
    lines = [row.line for row in read]
    assert lines == [starts[i] for i in kept]
    assert all(a < b for a, b in itertools.pairwise(lines))
    assert all(row.problem is None for row in read)


def _read_all(data: bytes, name: str) -> None:
    try:
        table = open_table(io.BytesIO(data), name)
        for row in table.rows:
            assert isinstance(row.line, int) and row.line >= 1
            assert all(isinstance(value, str) for value in row.values)
    except FileError as error:
        assert error.line is None or error.line >= 1


csv_like = st.lists(
    st.sampled_from([*SPECIAL, "a", "b", "1", "\ufeff", "\xff", "[", "]", "{", "}", ":"]),
    max_size=60,
).map("".join)


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=300),
        csv_like.map(lambda text: text.encode("utf-8")),
        csv_like.map(lambda text: text.encode("utf-16")),
        csv_like.map(lambda text: text.encode("latin-1", errors="replace")),
    ),
    st.sampled_from(["x.csv", "x.txt", "x.json", "x.jsonl", "x.xlsx"]),
)
def test_any_bytes_give_rows_or_a_file_error(data: bytes, name: str) -> None:
    _read_all(data, name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@SETTINGS
@given(st.lists(json_values, max_size=5), st.booleans(), st.data())
def test_any_json_records_give_rows_or_a_file_error(records, lines: bool, data) -> None:
    if lines:
        text = "\n".join(json.dumps(record) for record in records)
    else:
        text = json.dumps(records, indent=data.draw(st.sampled_from([None, 0, 2])))
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    if data.draw(st.booleans()):
        text = text[:cut]  # truncated files too
    _read_all(text.encode("utf-8"), "x.jsonl" if lines else "x.json")
