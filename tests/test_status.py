"""The one table of run statuses (provisioning/status.py) is the README's table: every status,
whether it is final, its colour, the level of its log line and its exit code."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from provisioning.status import (
    FAILING,
    FINAL,
    RESUMABLE,
    SETTLED,
    RunStatus,
    colour,
    exit_code,
    log_level,
)

README = Path(__file__).resolve().parent.parent / "README.md"
COLOURS = {
    "green": "#107c10",
    "blue": "#0078d4",
    "purple": "#5c2d91",
    "red": "#a4262c",
    "orange": "#ca5010",
    "amber": "#8a6100",
    "grey": "#605e5c",
}
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def readme_rows() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Statuses and exit codes", 1)[1].split("\n\n", 3)[2]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `")
    ]
    assert rows, "the README's status table was not found"
    return rows


@pytest.mark.parametrize("row", readme_rows(), ids=lambda row: row[0])
def test_the_readme_row_is_the_code(row: list[str]) -> None:
    name, _meaning, final, shade, level, code = row
    status = re.fullmatch(r"`([a-z-]+)`( \(file\))?", name)
    assert status is not None, name
    value, whole_file = status.group(1), bool(status.group(2))
    assert (value in FINAL) == (final == "yes")
    assert colour(value) == COLOURS[shade]
    assert log_level(value) == LEVELS[level]
    assert exit_code(value, unusable=whole_file) == int(code)


def test_every_status_is_documented() -> None:
    documented = {re.sub(r"`([a-z-]+)`.*", r"\1", row[0]) for row in readme_rows()}
    assert documented == {status.value for status in RunStatus}


def test_the_sets_agree() -> None:
    # A settled file is never run again; a resumable run is not final; a failing one neither.
    assert not RESUMABLE & FINAL
    assert not FAILING & SETTLED
    assert RunStatus.REJECTED in FINAL and RunStatus.REJECTED not in SETTLED  # set aside
    assert exit_code("not-a-status") == 3 and colour("accepted") is None
