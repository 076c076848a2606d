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
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import IO, Any

from ..errors import InputFileError

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


class FileError(InputFileError):
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


def named(name: str) -> str:
    """A column name or JSON key fit for a message: a character that cannot be printed (a
    control character, a lone surrogate written \\ud800 in JSON) is shown as its escape."""
    if name.isprintable():
        return name
    return "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in name
    )


def _clean_header(raw: list[str], line: int) -> list[str]:
    header = [name.strip() for name in raw]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FileError(f"column '{named(name)}' appears twice in the header", line)
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
        raise FileError(_csv_problem(exc), reader.line_num) from None
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
        raise FileError(_csv_problem(exc), last + 1) from None
    except UnicodeDecodeError as exc:
        raise _decode_error(text.encoding, exc, reader.line_num) from None


def _csv_problem(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        # csv's own words name a byte count and no cause.
        return (
            f"malformed CSV: a cell is larger than {csv.field_size_limit() >> 20} MiB "
            "(a quote that is never closed, or not an HR export)"
        )
    return f"malformed CSV: {exc}"


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


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: the object, marked when a key repeats.

    The C decoder still does all the parsing; the hook adds one call and a length check per
    object (reading 100,000 records of 24 keys takes 10-13 % longer).
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
        problem = obj.key.strip(), f"key '{named(obj.key)}' appears twice in this record"
    return Row(line, values, problem, tuple(nested))


def _header_from(obj: Any, line: int) -> list[str]:
    if not isinstance(obj, dict):
        raise FileError("the first record is not a JSON object", line)
    if isinstance(obj, _Repeated):
        raise FileError(f"key '{named(obj.key)}' appears twice in the first record", line)
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
    decoder = json.JSONDecoder(object_pairs_hook=json_object)
    number = 0
    try:
        for number, line in enumerate(text, start=1):
            if line.strip():
                try:
                    yield number, decoder.decode(line)
                except json.JSONDecodeError as exc:
                    # exc's own text gives a line and column of the one line decoded: "line 1".
                    problem = f"invalid JSON at column {exc.colno}: {exc.msg.removesuffix(' at')}"
                    raise FileError(problem, number) from None
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
    decoder = json.JSONDecoder(object_pairs_hook=json_object)
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


# What reading a damaged (cut short, corrupted) sheet part raises; SyntaxError: ElementTree's
# ParseError, which openpyxl's reader raises too.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, SyntaxError, ValueError)


def _damaged(exc: BaseException) -> str:
    return f"not a readable XLSX workbook: the first sheet is damaged ({type(exc).__name__})"


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
    checks: _SheetChecks | None = None
    try:
        checks = _SheetChecks.of(workbook._archive, sheet._worksheet_path)
        cells = sheet.iter_rows(values_only=True)
        header: list[str] | None = None
        number = 0
        for number, raw in enumerate(cells, start=1):
            values = [_cell_text(c) for c in raw]
            formulas = checks.formulas(number) if checks else ()
            if formulas:
                raise FileError(f"header {_formula_reason(_letter(formulas[0]), number)}", number)
            if any(values):
                header = _clean_header(values, number)
                break
        if header is None:
            raise FileError("the first sheet is empty: no header row")
        if checks:
            checks.start(header, number)
    except BaseException as exc:
        if checks:
            checks.close()
        workbook.close()
        if isinstance(exc, _DAMAGED):
            raise FileError(_damaged(exc)) from None
        raise
    width = len(header)
    done = [number]

    def rows() -> Iterator[Row]:
        try:
            for line, raw in enumerate(cells, start=done[0] + 1):
                done[0] = line
                values = [_cell_text(c) for c in raw]
                problem = checks.problem(line, values) if checks else None
                if problem is None and _EXCEL_ERRORS.intersection(values):
                    problem = _error_cell(header, values, line)
                if problem is None and not any(values):
                    continue
                # Trailing empty cells are not stored by Excel; pad so columns line up.
                while len(values) > width and not values[-1]:
                    values.pop()
                values.extend([""] * (width - len(values)))
                yield Row(line, values, problem)
        except _DAMAGED as exc:
            raise FileError(_damaged(exc), done[0] + 1) from None
        finally:
            if checks:
                checks.close()
            workbook.close()

    total = sheet.max_row or 0
    return Table(header, rows(), lambda: min(1.0, done[0] / total) if total else 0.0)


# Two things a read-only, data-only openpyxl sheet does not show: a formula cell saved without
# its calculated value (a workbook written by a script and never opened in Excel) reads as
# empty, and so does every cell of a merged range but its first. Both are in the sheet's XML
# part, which the workbook's zip archive can open again and read alongside openpyxl's own
# reader (zipfile seeks to a member's own position before each read):
#
# 1. Before the first row, one streamed pass over the decompressed part that only searches
#    bytes (C speed, no XML parsing): it collects the merged ranges (<mergeCells> follows
#    <sheetData>, and read-only worksheets do not expose them) and tells whether some formula
#    lacks a cached value. Excel stores one with every formula, so a sheet saved by Excel,
#    formulas or not, needs nothing more.
# 2. Only when one does, an exact pass in step with the rows: ElementTree over the same part
#    yields the rows holding formulas without a value (and handles cells without a reference,
#    which some writers leave out). It costs about a quarter of openpyxl's own time, and only
#    for sheets that will have rejected rows.
#
# Measured on a 60,000-row sheet of 24 columns (77 MB of XML, which openpyxl reads in 27-48 s
# on the test machine): pass 1 takes 0.4-0.8 s, pass 2 7-10 s. Memory stays flat: pass 1 holds
# a chunk (0.4 MB at its peak) and the merged ranges (a small tuple each), and pass 2 drops
# each row from its tree once read.
_SCAN_CHUNK = 64 * 1024
_TAG_MAX = 512  # a cell's start tag is far shorter; a longer one is not trusted
_CELL_MAX = 1 << 20  # a formula and its cached value are far shorter
_SPACE = b" \t\r\n"
_ROOT_TAG = re.compile(rb"<(?:([A-Za-z_][\w.\-]*):)?worksheet[\s>]")
_TEXT_RESULT = re.compile(rb"""\st\s*=\s*["']str["']""")
_REF_ATTR = re.compile(rb"""\sref\s*=\s*["']([^"']*)["']""")
_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _formula_reason(cell: str, line: int) -> str:
    return (
        f"cell {cell}{line} holds a formula with no calculated value; open and save the file "
        "in Excel, or export values instead of formulas"
    )


@dataclass
class _SheetScan:
    merges: list[tuple[int, int, int, int]]  # (first row, first column, last row, last column)
    uncached: bool  # some formula cell may lack a calculated value


def _scan_sheet(source: IO[bytes]) -> _SheetScan:
    """Pass 1 (see above): the merged ranges, and whether a formula lacks a cached value."""
    from openpyxl.utils.cell import range_boundaries

    merges: list[tuple[int, int, int, int]] = []
    uncached = False
    buf = b""
    formulas: _FormulaFinder | None = None
    formula_at = merge_at = 0  # where each search goes on in buf
    merge_tag = b""
    while True:
        chunk = source.read(_SCAN_CHUNK)
        eof = not chunk
        buf += chunk
        if formulas is None:
            root = _ROOT_TAG.search(buf)
            if root is None:
                if eof or len(buf) > 64 * 1024:
                    return _SheetScan([], True)  # not understood: the exact pass will look
                continue
            prefix = root.group(1) + b":" if root.group(1) else b""
            formulas = _FormulaFinder(prefix)
            merge_tag = b"<" + prefix + b"mergeCell"
        if not uncached:
            formula_at, uncached = formulas.find_uncached(buf, formula_at, eof)
        while (at := buf.find(merge_tag, merge_at)) >= 0:
            end = buf.find(b">", at)
            if end < 0:
                merge_at = at  # the rest of the tag comes with the next chunk
                break
            merge_at = end
            if buf[at + len(merge_tag)] not in _SPACE:
                continue  # <mergeCells ...>
            ref = _REF_ATTR.search(buf, at, end)
            if ref is None or b":" not in ref.group(1):
                continue
            try:
                first_col, first_row, last_col, last_row = range_boundaries(
                    ref.group(1).decode("ascii")
                )
            except (ValueError, TypeError, UnicodeDecodeError):
                continue  # not a range openpyxl understands either
            merges.append((first_row, first_col, last_row, last_col))
        else:
            merge_at = max(merge_at, len(buf) - len(merge_tag))
        if eof:
            merges.sort()
            return _SheetScan(merges, uncached)
        # Keep what a search has not finished with, and the start tag before a formula.
        cut = max(0, min(len(buf) if uncached else formula_at, merge_at) - _TAG_MAX)
        buf = buf[cut:]
        formula_at = max(0, formula_at - cut)
        merge_at = max(0, merge_at - cut)


class _FormulaFinder:
    """Formula cells in raw sheet XML whose main namespace has ``prefix`` (b"" or b"x:").

    Excel writes ``<c r="D7"><f>B7*2</f><v>14</v></c>``: a cached value in ``<v>``, which is
    empty only for a text result (``t="str"``, the text ""). openpyxl writes ``<v/>`` (or
    nothing) for every formula. Anything unexpected counts as uncached: the exact pass decides.
    """

    def __init__(self, prefix: bytes) -> None:
        p = re.escape(prefix)
        self.tag = b"<" + prefix + b"f"
        self.cell_start = re.compile(rb"<" + p + rb"c(?:\s[^>]*)?>\s*")
        self.cell_end = b"</" + prefix + b"c>"
        self.content = re.compile(
            rb"<" + p + rb"f(?:\s[^>]*)?(?:/>|>[^<]*</" + p + rb"f\s*>)\s*"
            rb"(<" + p + rb"v(?:\s[^>]*)?(?:/>|>([^<]*)</" + p + rb"v\s*>))?"
        )

    def find_uncached(self, buf: bytes, at: int, eof: bool) -> tuple[int, bool]:
        """(where to go on in buf, whether a formula from ``at`` on lacks its value)."""
        done = at
        while (at := buf.find(self.tag, at)) >= 0:
            after = at + len(self.tag)
            if after >= len(buf):
                return at, eof
            if buf[after] not in b" \t\r\n/>":
                at = done = after  # another element whose name starts with f
                continue
            end = buf.find(self.cell_end, after)
            if end < 0:
                # The cell ends in the next chunk (unless it never does).
                return at, eof or len(buf) - at > _CELL_MAX
            # The cell's start tag comes right before the formula.
            start = buf.rfind(b"<", max(0, at - _TAG_MAX), at)
            cell = self.cell_start.fullmatch(buf, start, at) if start >= 0 else None
            content = self.content.match(buf, at, end)
            if cell is None or content is None or not _cached(content, cell.group()):
                return at, True
            at = done = content.end()
        return max(done, len(buf) - len(self.tag) + 1), False


def _cached(content: re.Match[bytes], cell_start: bytes) -> bool:
    """Whether a formula cell holds a calculated value (``content`` from _FormulaFinder)."""
    if content.group(1) is None:
        return False  # no <v>
    return bool((content.group(2) or b"").strip(_SPACE)) or bool(_TEXT_RESULT.search(cell_start))


def _uncached_formulas(archive: Any, part: str) -> Iterator[tuple[int, list[int]]]:
    """Pass 2 (see above): (sheet row, its columns holding formulas without a value).

    Rows and cells without a reference are counted as openpyxl counts them.
    """
    import xml.etree.ElementTree as ET

    sheet_data, row_tag = f"{_MAIN_NS}sheetData", f"{_MAIN_NS}row"
    formula_tag, value_tag = f"{_MAIN_NS}f", f"{_MAIN_NS}v"
    parent = None
    number = 0
    with archive.open(part) as source:
        for event, element in ET.iterparse(source, events=("start", "end")):
            if event == "start":
                if element.tag == sheet_data:
                    parent = element
                continue
            if element.tag != row_tag:
                continue
            ref = element.get("r")
            number = int(float(ref)) if ref else number + 1
            found = []
            last, since = "", 0  # the last cell reference in the row, and cells since
            for cell in element:
                ref = cell.get("r")
                if ref:
                    last, since = ref, 0
                else:
                    since += 1
                if cell.find(formula_tag) is None:
                    continue
                value = cell.find(value_tag)
                if value is None or not ((value.text or "").strip() or cell.get("t") == "str"):
                    found.append((_column_of(last) if last else 0) + since)
            if parent is not None:
                parent.remove(element)  # keeps memory flat: the tree never holds a read row
            if found:
                yield number, found


def _column_of(ref: str) -> int:
    from openpyxl.utils.cell import coordinate_to_tuple

    return int(coordinate_to_tuple(ref)[1])


def _letter(column: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return str(get_column_letter(column))


def _range_ref(merge: tuple[int, int, int, int]) -> str:
    first_row, first_col, last_row, last_col = merge
    return f"{_letter(first_col)}{first_row}:{_letter(last_col)}{last_row}"


class _SheetChecks:
    """The problems of each row that its values do not show, asked for row after row.

    Merged ranges: a cell covered by a range (any but its first) reads as empty. A data row
    is rejected when such a cell is in a named column and the range's first cell holds a value
    (merged empty cells hide nothing); a row with nothing else in it is still an empty row. In
    the header row, a range across columns is a file error: the columns under it have no name
    of their own (often it is a title above the table, which then is the first non-empty row).
    A range going down from a header cell rejects the data rows it covers.
    """

    def __init__(self, scan: _SheetScan, formulas: Iterator[tuple[int, list[int]]]) -> None:
        self._merges = scan.merges
        self._formulas = formulas
        self._next_formula = next(formulas, None)
        self._header: list[str] = []
        self._header_line = 0
        self._active: list[tuple[int, int, int, int]] = []  # ranges over the current row
        self._waiting = 0  # index of the first range that has not started yet

    @classmethod
    def of(cls, archive: Any, part: str) -> _SheetChecks | None:
        """None when the sheet has neither merged ranges nor formulas without a value."""
        with archive.open(part) as source:
            scan = _scan_sheet(source)
        if not scan.merges and not scan.uncached:
            return None
        return cls(scan, _uncached_formulas(archive, part) if scan.uncached else iter(()))

    def close(self) -> None:
        close = getattr(self._formulas, "close", None)
        if close is not None:
            close()

    def formulas(self, line: int) -> list[int]:
        """Columns of this row's formula cells without a value (asked for rows in order)."""
        while self._next_formula is not None and self._next_formula[0] < line:
            self._next_formula = next(self._formulas, None)
        if self._next_formula is None or self._next_formula[0] != line:
            return []
        return self._next_formula[1]

    def start(self, header: list[str], line: int) -> None:
        """Data rows follow: the header is on ``line``."""
        self._header, self._header_line = header, line
        later = []
        for merge in self._merges:
            first_row, first_col, last_row, last_col = merge
            if first_row > line:
                later.append(merge)
            # Ranges starting above the header start in an empty row; none of the header's
            # ranges starts in an empty cell.
            elif first_row == line and first_col <= len(header) and header[first_col - 1]:
                if last_col > first_col:
                    raise FileError(
                        f"cells {_range_ref(merge)} of the header row are merged; unmerge them "
                        "so that each column has a name of its own (the header is the first "
                        "non-empty row, so a title above it must go)",
                        line,
                    )
                if last_row > line:
                    self._active.append(merge)
        self._merges = later

    def problem(self, line: int, values: list[str]) -> tuple[str, str] | None:
        """The row's problem, on its leftmost column that has one; None for none."""
        header = self._header
        width = len(header)
        found: tuple[int, str] | None = None
        formulas = self.formulas(line)
        for column in formulas:
            if column <= width and header[column - 1]:
                found = column, _formula_reason(_letter(column), line)
                break
        merges = self._merges
        while self._waiting < len(merges) and merges[self._waiting][0] <= line:
            merge = merges[self._waiting]
            self._waiting += 1
            first_col = merge[1]
            if (first_col <= len(values) and values[first_col - 1]) or first_col in formulas:
                self._active.append(merge)
        if self._active and (found is not None or any(values)):
            self._active = [merge for merge in self._active if merge[2] >= line]
            for merge in self._active:
                first_row, first_col, _, last_col = merge
                covered = first_col + 1 if first_row == line else first_col
                for column in range(covered, min(last_col, width) + 1):
                    if found is not None and column >= found[0]:
                        break
                    if header[column - 1]:
                        found = column, self._merge_reason(merge, column, line)
                        break
        return None if found is None else (header[found[0] - 1], found[1])

    def _merge_reason(self, merge: tuple[int, int, int, int], column: int, line: int) -> str:
        where = f"cell {_letter(column)}{line} is part of the merged range {_range_ref(merge)}"
        if merge[0] == self._header_line:
            return f"{where}, which starts in the header row; the header must be a single row"
        first = f"{_letter(merge[1])}{merge[0]}"
        return f"{where}, whose value only {first} holds; unmerge the cells and fill in each one"


# What a cell whose formula failed holds (openpyxl reads the error as this text): a value no
# directory attribute should get.
_EXCEL_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"}
)


def _error_cell(header: list[str], values: list[str], line: int) -> tuple[str, str] | None:
    from openpyxl.utils import get_column_letter

    for index, (name, value) in enumerate(zip(header, values, strict=False)):
        if name and value in _EXCEL_ERRORS:
            cell = f"{get_column_letter(index + 1)}{line}"
            return name, f"cell {cell} holds the Excel error {value}; fix the formula in HR"
    return None


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
