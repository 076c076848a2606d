"""The corpus of bad inputs (tests/data/bad): each file through ``validate``, ``convert`` and
the blob function, against the table in ``tests/data/bad/cases.csv``: exit codes, the run's
status, and a fragment of what a person reads. None may end in a traceback."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from graph_emulator import GraphEmulator
from provisioning import cli
from provisioning.status import exit_code
from tests.e2e import drop, result_text, runs

BAD = Path(__file__).resolve().parent / "data" / "bad"
with (BAD / "cases.csv").open(encoding="utf-8", newline="") as _table:
    CASES = list(csv.DictReader(_table))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bad", BAD / "make_bad.py")
    assert spec is not None and spec.loader is not None
    make_bad = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_bad)
    folder = tmp_path_factory.mktemp("bad")
    make_bad.generate(folder)
    return folder


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich tables: one table row per line


def test_the_table_covers_every_generated_file(corpus: Path) -> None:
    assert sorted(case["file"] for case in CASES) == sorted(p.name for p in corpus.iterdir())


def _ids(case: dict[str, str]) -> str:
    return case["file"]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_validate(case: dict[str, str], corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["validate", str(corpus / case["file"])])
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert code == int(case["validate"]), said[-2000:]
    assert case["says"] in said
    assert "Traceback" not in said


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_convert(
    case: dict[str, str], corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = cli.main(["convert", str(corpus / case["file"]), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == int(case["convert"]), captured.err
    assert "Traceback" not in captured.out + captured.err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    written = (out / "rejected.csv").read_text(encoding="utf-8")
    if code == 2:  # the file as a whole: said on stderr, kept in the summary, nothing written
        assert case["run_says"] in captured.err and case["run_says"] in summary["file_error"]
        assert summary["requests_written"] == []
    else:
        assert summary["file_error"] is None
        assert summary["rows_rejected"] == len(list(csv.DictReader(written.splitlines())))
        assert case["run_says"] in written or case["says"] in captured.out


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_blob_function(
    case: dict[str, str], corpus: Path, env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop((corpus / case["file"]).read_bytes(), case["file"])
    (summary,) = runs()
    assert summary["status"] == case["status"], summary.get("reason")
    assert exit_code(summary["status"], unusable=bool(summary.get("file_error"))) == int(
        case["exit"]
    )
    told = str(summary.get("reason") or "")
    if summary.get("file_error") is None:
        told += result_text(summary, "rejected.csv")
    assert case["run_says"] in told
    # Nothing of a file rejected whole reaches Graph; every other valid record does, once.
    sent = [ext for u in emulator.uploads() for _, ext in u["records"]]
    assert len(sent) == len(set(sent)) == summary.get("records_accepted", 0)
