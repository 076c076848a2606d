"""What every reader yields: the table, its rows, the file error, and the header's names.

Every reader yields :class:`Row` objects whose ``values`` line up with the table's header, so the
mapping can address columns by index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import InputFileError


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


def named(name: str) -> str:
    """A column name or JSON key fit for a message: a character that cannot be printed (a
    control character, a lone surrogate written \\ud800 in JSON) is shown as its escape."""
    if name.isprintable():
        return name
    return "".join(
        c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in name
    )


def clean_header(raw: list[str], line: int) -> list[str]:
    header = [name.strip() for name in raw]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FileError(f"column '{named(name)}' appears twice in the header", line)
        seen.add(name)
    return header
