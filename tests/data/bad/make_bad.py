"""Write the corpus of bad HR inputs: ``python tests/data/bad/make_bad.py OUT_FOLDER``.

The files are generated, not kept, so this folder stays small; ``cases.csv`` beside this
script says what each one must give (validate and convert exit codes, the blob function's run
status, and a fragment of the message a person reads). ``tests/test_corpus.py`` builds them
in a temporary folder and asserts every row of the table.

Every file uses the columns of Microsoft's sample export (``microsoft-sample`` mapping), so
the only fault in it is the one its name says.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

# Run as a script from anywhere: the repository root holds the shared test columns.
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.columns import MICROSOFT_HEADER as HEADER
from tests.columns import worker


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def good(count: int = 3) -> list[dict[str, str]]:
    return [worker(n) for n in range(1, count + 1)]


def xlsx(path: Path) -> None:
    """Row 3: a formula saved without its calculated value (openpyxl never stores one);
    rows 4-5: a Department merged over two rows, so row 5's cell reads empty."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for row in good(4):
        sheet.append([row[c] for c in HEADER])
    column = HEADER.index("JobTitle") + 1
    sheet.cell(row=3, column=column, value='=CONCAT("Cl","erk")')
    department = openpyxl.utils.get_column_letter(HEADER.index("Department") + 1)
    sheet.merge_cells(f"{department}4:{department}5")
    book.save(path)


def big(path: Path) -> None:
    """60,000 workers who left before the app was deployed (inactive in their first file:
    skipped, nothing sent) and, at the end, one row with a bad status."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        for n in range(1, 60_001):
            writer.writerow(worker(n, WorkerStatus="Inactive"))
        writer.writerow(worker(60_001, WorkerStatus="Retired"))


def _text(content: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content.encode(encoding))


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _one_line_array() -> str:
    return json.dumps(good(3))


def _duplicate_keys() -> str:
    first, second, third = (json.dumps(row) for row in good(3))
    # The second record says its Department twice: which one HR meant is unknowable.
    second = second[:-1] + ', "Department": "Legal"}'
    return f"[{first},\n{second},\n{third}]"


def _surrogate_key() -> str:
    # A key written as a lone surrogate escape, twice in the first record: the file is refused,
    # and the message quoting the key must still be writable (it cannot be UTF-8 as it is).
    first = json.dumps(good(1)[0])
    return "[" + first[:-1] + ', "\\ud800": "a", "\\ud800": "b"}]'


def _broken_jsonl() -> str:
    lines = [json.dumps(row) for row in good(3)]
    lines[1] = lines[1][:40]  # cut short
    return "\n".join(lines) + "\n"


FILES: dict[str, Callable[[Path], None]] = {
    "empty.csv": _bytes(b""),
    "header-only.csv": _text(",".join(HEADER) + "\n"),
    "binary.csv": _bytes(bytes(range(256)) * 8),
    "gzip.csv": _bytes(gzip.compress(csv_text(good()).encode("utf-8"), mtime=0)),
    "export.csv.gz": _bytes(gzip.compress(csv_text(good()).encode("utf-8"), mtime=0)),
    "truncated-quote.csv": _text(csv_text(good()) + '4,Active,Employee,"EMP4,Given4\n'),
    "latin1.csv": _text(csv_text([*good(2), worker(3, FirstName="Zoé")]), "latin-1"),
    "one-line-array.json": _text(_one_line_array()),
    "json-object.json": _text(json.dumps(worker(1))),
    "broken-line.jsonl": _text(_broken_jsonl()),
    "duplicate-keys.json": _text(_duplicate_keys()),
    "surrogate-key.json": _text(_surrogate_key()),
    "nul-bytes.csv": _text(csv_text([*good(2), worker(3, FirstName="Giv\x00en3")])),
    "oversize-cell.csv": _text(csv_text([*good(2), worker(3, Custom01="x" * (5 << 20))])),
    "long-value.csv": _text(csv_text([*good(2), worker(3, FullName="x" * 300)])),
    "formulas-merged.xlsx": xlsx,
    "60000-rows.csv": big,
}


def generate(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FILES.items():
        make(folder / name)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/data/bad/make_bad.py OUT_FOLDER")
    for path in generate(Path(sys.argv[1])):
        print(f"{path.stat().st_size:>12,}  {path}")
