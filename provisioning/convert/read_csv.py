"""CSV: the delimiter sniffed from the header, then one row per record, streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

from .decoding import decode_error
from .rows import FileError, Row, Table, clean_header

DELIMITERS = (",", ";", "\t", "|")

# csv's default cap (128 KiB) would turn one huge notes column into a crash; HR cells are small,
# but a generous explicit cap still stops a runaway unbalanced quote from eating memory.
csv.field_size_limit(4 * 1024 * 1024)


def sniff_delimiter(sample: bytes, encoding: str) -> str:
    text = sample.decode(encoding, errors="ignore")

    def width(delimiter: str) -> int:
        # The header decides: column names rarely contain delimiters, data often does. It is
        # found as open_csv finds it, so a quoted name with a line break (or a U+2028, which
        # str.splitlines() would cut at) does not hide the header's other columns.
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(cell.strip() for cell in record):
                return len(record)
        return 0

    return max(DELIMITERS, key=width)


def open_csv(text: io.TextIOWrapper, delimiter: str, progress: Callable[[], float]) -> Table:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    try:
        for raw in reader:
            if any(cell.strip() for cell in raw):
                header = clean_header(raw, reader.line_num)
                break
    except csv.Error as exc:
        raise FileError(_csv_problem(exc), reader.line_num) from None
    except UnicodeDecodeError as exc:
        raise decode_error(text.encoding, exc, reader.line_num) from None
    if header is None:
        raise FileError("the file is empty: no header row")
    return Table(header, _csv_rows(reader, text), progress)


def _csv_rows(reader: Any, text: io.TextIOWrapper) -> Iterator[Row]:
    last = reader.line_num
    try:
        for values in reader:
            start, last = last + 1, reader.line_num
            # A line of only delimiters (";;;;") is an export artefact, not a worker.
            if not "".join(values).strip():
                continue
            yield Row(start, values)
    except csv.Error as exc:
        raise FileError(_csv_problem(exc), last + 1) from None
    except UnicodeDecodeError as exc:
        raise decode_error(text.encoding, exc, reader.line_num) from None


def _csv_problem(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        # csv's own words name a byte count and no cause.
        return (
            f"malformed CSV: a cell is larger than {csv.field_size_limit() >> 20} MiB "
            "(a quote that is never closed, or not an HR export)"
        )
    return f"malformed CSV: {exc}"
