"""The problems of an XLSX sheet's rows that openpyxl's read-only cells do not show: formulas
saved without a calculated value, and cells hidden under a merged range."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from .rows import FileError

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


def formula_reason(cell: str, line: int) -> str:
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


def letter(column: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return str(get_column_letter(column))


def _range_ref(merge: tuple[int, int, int, int]) -> str:
    first_row, first_col, last_row, last_col = merge
    return f"{letter(first_col)}{first_row}:{letter(last_col)}{last_row}"


class SheetChecks:
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
    def of(cls, archive: Any, part: str) -> SheetChecks | None:
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
                found = column, formula_reason(letter(column), line)
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
        where = f"cell {letter(column)}{line} is part of the merged range {_range_ref(merge)}"
        if merge[0] == self._header_line:
            return f"{where}, which starts in the header row; the header must be a single row"
        first = f"{letter(merge[1])}{merge[0]}"
        return f"{where}, whose value only {first} holds; unmerge the cells and fill in each one"
