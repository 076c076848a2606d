"""JSON array and JSON Lines: records streamed, the first record's keys as the header.

The decoder's ``object_pairs_hook`` (:func:`json_object`) marks an object that names a key twice;
the HTTP change API decodes its requests with it too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

from .decoding import decode_error, decode_reason
from .rows import FileError, Row, Table, clean_header, named

_JSON_CHUNK = 1 << 20


# A JSON record still undecodable with this much text after its start is invalid, not cut short
# by the chunk boundary (like csv's field size limit, it keeps a syntax error from reading the
# rest of a big file into memory).
_JSON_MAX_RECORD = 4 * 1024 * 1024


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
    return clean_header([str(k) for k in obj], line)


def records_table(
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


def jsonl_records(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
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
        raise decode_error(text.encoding, exc, number) from None


def json_array_records(text: io.TextIOWrapper) -> Iterator[tuple[int, Any]]:
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
            raise FileError(decode_reason(text.encoding, exc)) from None
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
