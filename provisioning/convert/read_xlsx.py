"""XLSX: the first sheet of a workbook, read by openpyxl in read-only mode, row by row.

What such a sheet does not show (formulas without a value, merged cells) ``xlsx_checks`` finds.
"""

from __future__ import annotations

import datetime as dt
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO, Any

from .rows import FileError, Row, Table, clean_header
from .xlsx_checks import SheetChecks, formula_reason, letter

# What reading a damaged (cut short, corrupted) sheet part raises; SyntaxError: ElementTree's
# ParseError, which openpyxl's reader raises too.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, SyntaxError, ValueError)


def _damaged(exc: BaseException) -> str:
    return f"not a readable XLSX workbook: the first sheet is damaged ({type(exc).__name__})"


def open_xlsx(stream: IO[bytes]) -> Table:
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
    checks: SheetChecks | None = None
    try:
        checks = SheetChecks.of(workbook._archive, sheet._worksheet_path)
        cells = sheet.iter_rows(values_only=True)
        header: list[str] | None = None
        number = 0
        for number, raw in enumerate(cells, start=1):
            values = [_cell_text(c) for c in raw]
            formulas = checks.formulas(number) if checks else ()
            if formulas:
                raise FileError(f"header {formula_reason(letter(formulas[0]), number)}", number)
            if any(values):
                header = clean_header(values, number)
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
