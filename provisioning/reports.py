"""Human- and machine-readable reports of a conversion: rejected rows and the summary.

Rejected-row reports carry HR values so a person can fix the source; they go to files the
operator controls (the results container, a CLI output folder), never to logs.
"""

from __future__ import annotations

import csv
from typing import IO

from .validation import RowError

REJECTED_COLUMNS = ("file", "line", "column", "attribute", "reason", "value")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """Neutralise spreadsheet formula injection (OWASP): a leading ' makes Excel show text.

    Only reports are escaped; the values sent to Entra stay exactly as HR wrote them.
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


class RejectedCsv:
    """Write rejected rows to a CSV report as they come, with formula-safe cells."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(REJECTED_COLUMNS)
        self.count = 0

    def __call__(self, error: RowError) -> None:
        self._writer.writerow(
            [
                csv_safe(error.file),
                error.line,
                csv_safe(error.column),
                error.attribute,
                csv_safe(error.reason),
                csv_safe(error.value),
            ]
        )
        self.count += 1


def printable(text: str, limit: int = 40) -> str:
    """A value made safe for a terminal: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
