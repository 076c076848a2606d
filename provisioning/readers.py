"""Stream tabular HR exports (CSV, JSON array, JSON Lines, XLSX) as rows with their source line.

Every reader yields :class:`Row` objects whose ``values`` line up with the table's header, so the
mapping can address columns by index. Nothing here holds more than one row (plus a read buffer)
in memory, whatever the size of the file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import IO, Any

FORMATS = ("csv", "json", "jsonl", "xlsx")
_SUFFIXES = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".psv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".xlsx": "xlsx",
}
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 64 * 1024
_JSON_CHUNK = 1 << 20
# A JSON record still undecodable with this much text after its start is invalid, not cut short
# by the chunk boundary (like csv's field size limit, it keeps a syntax error from reading the
# rest of a big file into memory).
_JSON_MAX_RECORD = 4 * 1024 * 1024

# csv's default cap (128 KiB) would turn one huge notes column into a crash; HR cells are small,
# but a generous explicit cap still stops a runaway unbalanced quote from eating memory.
csv.field_size_limit(4 * 1024 * 1024)


class FileError(Exception):
    """The file as a whole cannot be read; no row of it may be used."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason = reason
        self.line = line


@dataclass(slots=True)
class Row:
    """One record: ``line`` is where it starts in the file (1-based; sheet row for XLSX)."""

    line: int
    values: list[str]
    # A problem the reader found with this record alone (column, reason); the row is rejected.
    problem: tuple[str, str] | None = None
    # JSON columns holding an object or array: fatal only if the mapping reads them.
    nested: tuple[str, ...] = ()


@dataclass
class Table:
    """A header and a one-shot iterator of rows; ``progress()`` is the share read so far (0-1)."""

    header: list[str]
    rows: Iterator[Row]
    progress: Callable[[], float] = field(default=lambda: 0.0)


def detect_format(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(sorted(_SUFFIXES))
        raise FileError(
            f"cannot tell the format of '{PurePath(name).name}' from its extension "
            f"(known: {known}); pass the format explicitly"
        ) from None


def open_table(stream: IO[bytes], name: str, fmt: str | None = None) -> Table:
    """Read the header of ``stream`` and return a table whose rows stream lazily."""
    fmt = fmt.lower() if fmt else detect_format(name)
    if fmt not in FORMATS:
        raise FileError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if fmt == "xlsx":
        return _open_xlsx(stream)
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[type-var]
    encoding = _sniff_encoding(buffered.peek(4)[:4])
    text = io.TextIOWrapper(buffered, encoding=encoding, newline="" if fmt == "csv" else None)
    progress = _position_of(buffered)
    try:
        if fmt == "csv":
            sample = buffered.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
            return _open_csv(text, _sniff_delimiter(sample, encoding), progress)
        if fmt == "jsonl":
            return _records_table(_jsonl_records(text), progress, "the file is empty: no records")
        return _records_table(
            _json_array_records(text), progress, "the file holds an empty array: no records"
        )
    except UnicodeDecodeError as exc:
        raise FileError(_decode_reason(encoding, exc)) from None


def _position_of(stream: IO[bytes]) -> Callable[[], float]:
    try:
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    except (OSError, ValueError):
        return lambda: 0.0

    def position() -> float:
        try:
            return min(1.0, stream.tell() / size) if size else 1.0
        except (OSError, ValueError):
            return 0.0

    return position


def _sniff_encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileError("the file is UTF-32; export it as UTF-8 or UTF-16 with BOM")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    # ASCII text in UTF-16 has a zero in every other byte; UTF-8 text practically never does.
    if len(head) == 4 and (head[1] == head[3] == 0 or head[0] == head[2] == 0):
        raise FileError(
            "the file looks like UTF-16 without a byte order mark; "
            "export it as UTF-8 or UTF-16 with BOM"
        )
    # utf-8-sig reads plain UTF-8 too, and drops a BOM that would otherwise stick to column one.
    return "utf-8-sig"


def _decode_reason(encoding: str, exc: UnicodeDecodeError) -> str:
    label = "UTF-16" if encoding == "utf-16" else "UTF-8"
    return (
        f"the file is not valid {label} ({exc.reason}); "
        "export it as UTF-8 (with or without BOM) or UTF-16 with BOM"
    )


def _decode_error(encoding: str, exc: UnicodeDecodeError, lines_read: int) -> FileError:
    """FileError on the line of the byte that does not decode.

    The text layer decodes a chunk ahead of the reader; when a chunk fails, ``lines_read`` whole
    lines have been handed out and ``exc.object[:exc.start]`` is what the chunk holds before
    the bad byte (the line being read continues into it).
    """
    before = exc.object[: exc.start].decode(exc.encoding, errors="replace")
    ends = before.count("\n") + before.count("\r") - before.count("\r\n")
    return FileError(_decode_reason(encoding, exc), lines_read + 1 + ends)


def _sniff_delimiter(sample: bytes, encoding: str) -> str:
    text = sample.decode(encoding, errors="ignore")

    def width(delimiter: str) -> int:
        # The header decides: column names rarely contain delimiters, data often does. It is
        # found as _open_csv finds it, so a quoted name with a line break (or a U+2028, which
        # str.splitlines() would cut at) does not hide the header's other columns.
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(cell.strip() for cell in record):
                return len(record)
        return 0

    return max(DELIMITERS, key=width)


def _clean_header(raw: list[str], line: int) -> list[str]:
    header = [name.strip() for name in raw]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FileError(f"column '{name}' appears twice in the header", line)
        seen.add(name)
    return header


def _open_csv(text: io.TextIOWrapper, delimiter: str, progress: Callable[[], float]) -> Table:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    try:
        for raw in reader:
            if any(cell.strip() for cell in raw):
                header = _clean_header(raw, reader.line_num)
                break
    except csv.Error as exc:
        raise FileError(f"malformed CSV: {exc}", reader.line_num) from None
    except UnicodeDecodeError as exc:
        raise _decode_error(text.encoding, exc, reader.line_num) from None
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
        raise FileError(f"malformed CSV: {exc}", last + 1) from None
    except UnicodeDecodeError as exc:
        raise _decode_error(text.encoding, exc, reader.line_num) from None


def _scalar(value: Any) -> str | None:
    """JSON scalar as the text a CSV export would have held; None for objects and arrays."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return None


_MISSING = object()


class _Repeated(dict[str, Any]):
    """A JSON object that names ``key`` more than once; like json, it keeps the last value."""

    __slots__ = ("key",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        self.key = key


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: the object, marked when a key repeats.

    The C decoder still does all the parsing; the hook adds one call and a length check per
    object (about a tenth of the decoding time).
    """
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _Repeated(pairs)


def record_row(obj: Any, header: list[str], line: int) -> Row:
    if not isinstance(obj, dict):
        return Row(line, [""] * len(header), ("", "record is not a JSON object"))
    values: list[str] = []
    nested: list[str] = []
    stripped: dict[str, Any] | None = None
    for column in header:
        value = obj.get(column, _MISSING)
        if value is _MISSING:
            # Header names are stripped, so a key padded with spaces must match too.
            if stripped is None:
                stripped = {key.strip(): item for key, item in obj.items()}
            value = stripped.get(column)
        text = _scalar(value)
        if text is None:
            nested.append(column)
            text = ""
        values.append(text)
    problem = None
    if isinstance(obj, _Repeated):
        # Only top-level keys: a nested object is never mapped as a value.
        problem = obj.key.strip(), f"key '{obj.key}' appears twice in this record"
    return Row(line, values, problem, tuple(nested))


def _header_from(obj: Any, line: int) -> list[str]:
    if not isinstance(obj, dict):
        raise FileError("the first record is not a JSON object", line)
    if isinstance(obj, _Repeated):
        raise FileError(f"key '{obj.key}' appears twice in the first record", line)
    return _clean_header([str(k) for k in obj], line)


def _records_table(
    records: Iterator[tuple[int, Any]], progress: Callable[[], float], empty: str
) -> Table:
    """Table over JSON records: the first record's keys are the header."""
    first = next(records, None)
    if first is None:
        raise FileError(empty)
    line, obj = first
    header = _header_from(obj, line)

    def rows() -> Iterator[Row]:
        yield record_row(obj, header, line)
        for number, item in records:
            yield record_row(item, header, number)

    return Table(header, rows(), progress)


def _jsonl_records(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder(object_pairs_hook=_json_object)
    number = 0
    try:
        for number, line in enumerate(text, start=1):
            if line.strip():
                try:
                    yield number, decoder.decode(line)
                except ValueError as exc:
                    raise FileError(f"invalid JSON: {exc}", number) from None
                except RecursionError:
                    raise FileError("invalid JSON: nested too deeply", number) from None
    except UnicodeDecodeError as exc:
        raise _decode_error(text.encoding, exc, number) from None


def _json_array_records(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) for each element of a top-level JSON array, reading in chunks.

    ``raw_decode`` does the parsing in C; this loop only finds where elements start, keeps a
    line count, and reads more text when an element runs past the end of the buffer.
    """
    decoder = json.JSONDecoder(object_pairs_hook=_json_object)
    buf = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> bool:
        nonlocal buf, pos, eof
        try:
            chunk = text.read(_JSON_CHUNK)
        except UnicodeDecodeError as exc:
            # No line: read() drops the text it decoded before the bad chunk, so the lines
            # before the byte cannot be counted (the scan position may be 1 MiB behind it).
            raise FileError(_decode_reason(text.encoding, exc)) from None
        if not chunk:
            eof = True
            return False
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def skip_ws() -> str:
        """Advance past whitespace; return the next character or '' at end of input."""
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if eof or not fill():
                return ""

    if skip_ws() != "[":
        raise FileError("expected a JSON array of records ('[' at the start)", line)
    pos += 1
    expect_value = True
    first = True
    while True:
        char = skip_ws()
        if char == "":
            raise FileError("the JSON array is not closed (truncated file?)", line)
        if char == "]" and (first or not expect_value):
            pos += 1
            if skip_ws() != "":
                raise FileError("unexpected data after the closing ']'", line)
            return
        if not expect_value:
            if char != ",":
                raise FileError("expected ',' or ']' between records", line)
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except ValueError as exc:
                # An element cut by the chunk boundary looks invalid until the rest arrives.
                if not eof and len(buf) - pos < _JSON_MAX_RECORD and fill():
                    continue
                raise FileError(f"invalid JSON: {exc.args[0].split(':')[0]}", line) from None
            except RecursionError:
                raise FileError("invalid JSON: nested too deeply", line) from None
        start_line = line
        line += buf.count("\n", pos, end)
        pos = end
        yield start_line, obj
        expect_value = False
        first = False


def _open_xlsx(stream: IO[bytes]) -> Table:
    import openpyxl  # imported here: it is only needed for spreadsheets and is slow to load
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise FileError(f"not a readable XLSX workbook: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile and friends: any of them means a bad file
        raise FileError(f"not a readable XLSX workbook: {type(exc).__name__}") from None
    if not workbook.worksheets:
        raise FileError("the workbook has no sheet")
    sheet = workbook.worksheets[0]
    cells = sheet.iter_rows(values_only=True)
    header: list[str] | None = None
    number = 0
    for number, raw in enumerate(cells, start=1):
        if any(_cell_text(c) for c in raw):
            header = _clean_header([_cell_text(c) for c in raw], number)
            break
    if header is None:
        workbook.close()
        raise FileError("the first sheet is empty: no header row")
    width = len(header)
    done = [number]

    def rows() -> Iterator[Row]:
        try:
            for line, raw in enumerate(cells, start=done[0] + 1):
                done[0] = line
                values = [_cell_text(c) for c in raw]
                if not any(values):
                    continue
                # Trailing empty cells are not stored by Excel; pad so columns line up.
                while len(values) > width and not values[-1]:
                    values.pop()
                values.extend([""] * (width - len(values)))
                yield Row(line, values)
        finally:
            workbook.close()

    total = sheet.max_row or 0
    return Table(header, rows(), lambda: min(1.0, done[0] / total) if total else 0.0)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
