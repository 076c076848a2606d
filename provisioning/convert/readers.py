"""Stream tabular HR exports (CSV, JSON array, JSON Lines, XLSX) as rows with their source line.

The entry point: the format, told by the file's extension or given, picks the reader
(``read_csv``, ``read_json``, ``read_xlsx``); every one yields the :class:`~.rows.Row` objects of
a :class:`~.rows.Table`. Nothing here holds more than one row (plus a read buffer) in memory,
whatever the size of the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import PurePath
from typing import IO

from .decoding import decode_reason, sniff_encoding
from .read_csv import open_csv, sniff_delimiter
from .read_json import json_array_records, jsonl_records, records_table
from .read_xlsx import open_xlsx
from .rows import FileError, Table

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


_SNIFF_BYTES = 64 * 1024


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
        return open_xlsx(stream)
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[type-var]
    encoding = sniff_encoding(buffered.peek(4)[:4])
    text = io.TextIOWrapper(buffered, encoding=encoding, newline="" if fmt == "csv" else None)
    progress = _position_of(buffered)
    try:
        if fmt == "csv":
            sample = buffered.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
            return open_csv(text, sniff_delimiter(sample, encoding), progress)
        if fmt == "jsonl":
            return records_table(jsonl_records(text), progress, "the file is empty: no records")
        return records_table(
            json_array_records(text), progress, "the file holds an empty array: no records"
        )
    except UnicodeDecodeError as exc:
        raise FileError(decode_reason(encoding, exc)) from None


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
