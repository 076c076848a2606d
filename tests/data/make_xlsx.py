"""Regenerate messy.xlsx from Microsoft's sample rows: run ``python tests/data/make_xlsx.py``.

The workbook is what a spreadsheet export of the HR feed typically looks like:

* first sheet ("Workers"): the 2 rows of csv-with-2-records.csv, then data rows 2-7 of
  employeeData.csv; header row 1; WorkerID, ManagerID and ZipCode stored as numbers;
  HireDate as real Excel dates (datetime cells, one with a time of day); OnLeave as booleans;
  row 5 left completely empty; one row with trailing empty cells;
* second sheet ("Notes"): a different table that the reader must ignore.

The zip entries get a fixed timestamp so that re-running the script gives identical bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from pathlib import Path

import openpyxl

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "csv-with-2-records.csv", HERE / "employeeData.csv")
TARGET = HERE / "messy.xlsx"
FIXED = dt.datetime(2024, 1, 1)


def worker_rows() -> tuple[list[str], list[list[object]]]:
    with SOURCES[0].open(newline="", encoding="utf-8") as handle:
        header, *records = list(csv.reader(handle))
    with SOURCES[1].open(newline="", encoding="utf-8") as handle:
        records += list(csv.reader(handle))[2:]  # its first row is the 2-record file's second
    column = {name: i for i, name in enumerate(header)}
    typed: list[list[object]] = []
    for record in records[:8]:
        row: list[object] = list(record)
        row[column["WorkerID"]] = int(record[column["WorkerID"]])
        row[column["ManagerID"]] = int(record[column["ManagerID"]])
        row[column["ZipCode"]] = int(record[column["ZipCode"]])
        row[column["HireDate"]] = dt.datetime.fromisoformat(record[column["HireDate"]])
        row[column["OnLeave"]] = record[column["OnLeave"]] == "True"
        row[column["Custom02"]] = record[column["Custom02"]] or None
        typed.append(row)
    # One hire date with a time of day, as a timestamp column would have.
    typed[2][column["HireDate"]] = dt.datetime(2017, 8, 21, 9, 30)
    # Trailing empty cells: the last columns of this row are not stored at all.
    typed[6] = typed[6][: column["OfficePhone"] + 1]
    return header, typed


def build() -> bytes:
    header, rows = worker_rows()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Workers"
    sheet.append(header)
    for number, row in enumerate(rows):
        if number == 3:
            sheet.append([])  # an empty row in the middle (sheet row 5)
        sheet.append(row)
    hire = header.index("HireDate") + 1
    for cells in sheet.iter_rows(min_row=2, min_col=hire, max_col=hire):
        cells[0].number_format = "yyyy-mm-dd"
    notes = workbook.create_sheet("Notes")
    notes.append(["Note", "Author"])
    notes.append(["Export of 2024-01-01; do not import this sheet", "HR Ops"])
    notes.append([42, dt.datetime(2024, 1, 1)])
    workbook.properties.created = FIXED
    workbook.properties.modified = FIXED
    raw = io.BytesIO()
    workbook.save(raw)
    # openpyxl stamps every zip entry with the current time: rewrite them with a fixed one.
    fixed = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw.getvalue())) as source,
        zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=FIXED.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, source.read(info.filename))
    return fixed.getvalue()


if __name__ == "__main__":
    TARGET.write_bytes(build())
    print(f"wrote {TARGET}")
