"""The command line, run in-process through provisioning.cli.main."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from provisioning.cli import main
from provisioning.convert.mapping import parse_mapping
from tests.columns import csv_bytes, worker

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_1000 = ROOT / "samples" / "csv-with-1000-records.csv"


def _csv(*rows: dict[str, str]) -> str:
    return csv_bytes(list(rows)).decode("utf-8")


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def _table_lines(output: str) -> list[int]:
    """Line numbers in the second column (after the record number) of the rich error table."""
    rows = re.finditer(r"^│\s*\d+\s*│\s*(\d+)\s*│", output, re.MULTILINE)
    return [int(m.group(1)) for m in rows]


def test_validate_lists_every_rejected_row_with_its_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["validate", str(SAMPLE_1000), "--limit", "5000"])
    output = capsys.readouterr().out
    assert code == 1
    with SAMPLE_1000.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["WorkerID"]] = counts.get(r["WorkerID"], 0) + 1
    # The header is line 1, so data row i (0-based) sits on line i + 2.
    expected = [i + 2 for i, r in enumerate(rows) if counts[r["WorkerID"]] > 1]
    assert len(expected) == 641
    assert _table_lines(output) == expected
    assert "1000 rows read, 359 valid, 641 rejected (265 duplicated externalIds)" in output


def test_validate_exit_zero_on_a_clean_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "samples" / "csv-with-2-records.csv")]) == 0
    assert "2 rows read, 2 valid, 0 rejected" in capsys.readouterr().out


def test_validate_limit_says_how_many_are_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SAMPLE_1000), "--limit", "10"]) == 1
    output = capsys.readouterr().out
    assert len(_table_lines(output)) == 10
    assert "631 more errors not shown" in output


def test_convert_writes_requests_summary_and_formula_safe_report(tmp_path: Path) -> None:
    source = tmp_path / "hr.csv"
    rows = [worker(1, FullName="=HYPERLINK(x)"), worker(2, WorkerStatus="@Maybe")]
    source.write_text(_csv(*rows, *(worker(n) for n in range(3, 103))), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "bulk-0009.json").write_text("stale")

    assert main(["convert", str(source), "--out", str(out)]) == 0

    written = sorted(p.name for p in out.glob("bulk-*.json"))
    assert written == ["bulk-0001.json", "bulk-0002.json", "bulk-0003.json"]
    bodies = [json.loads((out / name).read_bytes()) for name in written]
    assert [len(b["Operations"]) for b in bodies] == [50, 50, 1]
    first = bodies[0]["Operations"][0]["data"]
    assert first["displayName"] == "=HYPERLINK(x)"  # carried to Entra unchanged
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows_read"], summary["users"], summary["rows_rejected"]) == (102, 101, 1)
    assert summary["requests_written"] == written
    with (out / "rejected.csv").open(encoding="utf-8") as f:
        rejected = list(csv.DictReader(f))
    assert len(rejected) == 1
    assert rejected[0]["line"] == "3"
    assert rejected[0]["column"] == "WorkerStatus"
    assert rejected[0]["value"] == "'@Maybe"  # never a live formula in a spreadsheet


def test_convert_strict_and_batch_size(tmp_path: Path) -> None:
    source = tmp_path / "hr.csv"
    source.write_text(_csv(worker(1), worker(1), worker(2)))
    out = tmp_path / "out"
    assert main(["convert", str(source), "--out", str(out), "--strict"]) == 1
    assert main(["convert", str(source), "--out", str(out), "--batch-size", "1"]) == 0
    assert len(list(out.glob("bulk-*.json"))) == 1


def test_file_rejected_whole_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "hr.csv"
    source.write_text("WorkerID,FirstName\n1,Ada\n")
    out = tmp_path / "out"
    assert main(["convert", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "file rejected" in err and "'LastName'" in err
    assert list(out.glob("bulk-*.json")) == []
    assert json.loads((out / "summary.json").read_text())["file_error"]


def test_mapping_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text("user:\n  externalId: WorkerID\n  userNme: UserID\n")
    code = main(["validate", str(SAMPLE_1000), "--mapping", str(mapping)])
    assert code == 2
    assert "userNme" in capsys.readouterr().err


def test_readme_mapping_example_is_valid() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.search(r"A full example:\n\n```yaml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    mapping = parse_mapping(example.group(1), name="readme", source="README.md")
    header = mapping.columns
    bound = mapping.bind(header)
    values = {c: "" for c in header}
    values.update(
        {
            "Employee ID": "E1",
            "Work Email": "Ada@Contoso.com",
            "First Name": "Ada",
            "Last Name": "Lovelace",
            "Employment Status": "terminated",
            "Hire Date": "03/01/2024",
            "Badge": "42",
        }
    )
    errors: list[object] = []
    user = bound.build([values[c] for c in header], errors)  # type: ignore[arg-type]
    assert errors == []
    assert user["userName"] == "ada@contoso.com"
    assert user["active"] is False
    assert user["userType"] == "Employee"
    custom = user["urn:ietf:params:scim:schemas:extension:contoso:1.0:User"]
    assert custom == {"hireDate": "2024-03-01T00:00:00Z", "badgeNumber": 42}


DATA = ROOT / "tests" / "data"


@pytest.mark.parametrize(
    ("name", "mapping", "bad_lines", "reasons"),
    [
        (
            "messy-bad-rows.csv",
            "microsoft-sample",
            [3, 4, 5, 6, 7, 8],
            ["missing externalId", "appears on 2 rows", "mapped values", "too long", "fields"],
        ),
        (
            "hr-suite-bad.csv",
            "hr-suite",
            [3, 4, 5, 6],
            ["not a valid email", "not a date", "mapped values", "missing externalId"],
        ),
    ],
)
def test_validate_messy_sample_lists_every_bad_row(
    name: str,
    mapping: str,
    bad_lines: list[int],
    reasons: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(DATA / name), "--mapping", mapping]) == 1
    output = capsys.readouterr().out
    assert _table_lines(output) == bad_lines
    for reason in reasons:
        assert reason in output


@pytest.mark.parametrize(
    ("path", "mapping", "custom_urn"),
    [
        *[(p, "microsoft-sample", None) for p in sorted((ROOT / "samples").glob("*.csv"))],
        (
            ROOT / "samples" / "hr-suite" / "hr-suite-export.csv",
            "hr-suite",
            "urn:ietf:params:scim:schemas:extension:contoso:1.0:User",
        ),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_convert_bundled_samples_writes_requests_scim2_models_accepts(
    path: Path, mapping: str, custom_urn: str | None, tmp_path: Path
) -> None:
    from tests.test_scim_compliance import validate_envelope

    assert main(["convert", str(path), "--out", str(tmp_path), "--mapping", mapping]) == 0
    files = sorted(tmp_path.glob("bulk-*.json"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert files and summary["users"] > 0
    operations = 0
    for file in files:
        body = json.loads(file.read_bytes())
        assert len(body["Operations"]) <= 50
        validate_envelope(body, custom_urn)
        operations += len(body["Operations"])
    assert operations == summary["users"]


def test_progress_bar_shows_on_a_terminal_for_large_files(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from provisioning.cli import _progress

    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (2 << 20))
    small = tmp_path / "small.csv"
    small.write_bytes(b"x")
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    with _progress(terminal, big) as update:
        assert update is not None
        update(0.5)
    with _progress(terminal, small) as update:
        assert update is None
    with _progress(Console(file=io.StringIO(), force_terminal=False), big) as update:
        assert update is None
    assert "50%" in screen.getvalue()


# --- bad arguments and settings: one line, exit code 2 ------------------------------------

SAMPLE_2 = ROOT / "samples" / "csv-with-2-records.csv"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["convert", "{sample}", "--out", "{tmp}/out", "--batch-size", "0"],
            "error: --batch-size: must be between 1 and 50, not 0",
        ),
        (
            ["convert", "{sample}", "--out", "{tmp}/out", "--batch-size", "51"],
            "error: --batch-size: must be between 1 and 50, not 51",
        ),
        (
            ["convert", "{sample}", "--out", "{tmp}/out", "--batch-size", "5x"],
            "error: --batch-size: must be a whole number between 1 and 50, not 5x",
        ),
        (["validate", "{sample}", "--limit", "0"], "error: --limit: must be at least 1, not 0"),
        (["plan", "{sample}", "--limit", "-3"], "error: --limit: must be at least 1, not -3"),
        (
            ["convert", "{sample}", "--out", "{tmp}/taken.txt"],
            "error: --out: {tmp}/taken.txt is a file, not a folder",
        ),
        (
            ["convert", "{sample}", "--out", "{tmp}/taken.txt/out"],
            "error: --out: {tmp}/taken.txt/out ({tmp}/taken.txt) is a file, not a folder",
        ),
        (
            ["validate", "{sample}", "--format", "xls"],
            "error: --format: invalid choice xls; choose from csv, json, jsonl, xlsx",
        ),
        (
            ["frobnicate"],
            "error: unknown command frobnicate; choose from validate, convert, plan, approve, "
            "release, reconcile",
        ),
    ],
    ids=[
        "batch-size-0",
        "batch-size-51",
        "batch-size-not-a-number",
        "validate-limit-0",
        "plan-limit-negative",
        "out-is-a-file",
        "out-under-a-file",
        "format-choice",
        "command",
    ],
)
def test_bad_argument_is_one_line_exit_2(
    args: list[str], line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")

    def fill(text: str) -> str:
        return text.replace("{sample}", str(SAMPLE_2)).replace("{tmp}", str(tmp_path))

    with pytest.raises(SystemExit) as exited:
        main([fill(a) for a in args])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [fill(line)]  # no usage, no traceback
    assert captured.out == ""
    assert taken.read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_bad_setting_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", "100")
    assert main(["validate", str(SAMPLE_2)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "error: PROVISIONING_BATCH_SIZE=100: must be between 1 and 50"
    ]
    assert captured.out == ""


def test_reconcile_exit_code_is_the_worst_of_the_pass_and_its_runs() -> None:
    from provisioning.cli import reconcile_exit_code

    sweep = {"processed": {"complete": 2, "partly-rejected": 1}}
    assert reconcile_exit_code({"status": "complete", "sweep": sweep}) == 1
    assert reconcile_exit_code({"status": "complete", "sweep": {"processed": {}}}) == 0
    assert reconcile_exit_code({"status": "complete"}) == 0  # --no-sweep
    assert reconcile_exit_code({"status": "busy"}) == 3
    assert reconcile_exit_code({"status": "interrupted", "sweep": sweep}) == 3
    assert reconcile_exit_code({"status": "complete", "sweep": {"processed": {"stopped": 1}}}) == 3


def test_reconcile_exits_1_when_a_swept_file_had_rejected_rows(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioning.settings import INBOUND_CONTAINER
    from tests.e2e import store

    rows = [worker(1), worker(2, WorkerStatus="@Maybe"), worker(3)]
    blobs = store()
    blobs.ensure_containers(INBOUND_CONTAINER)
    blobs.write_bytes(INBOUND_CONTAINER, "swept.csv", csv_bytes(rows), "text/csv")

    assert main(["reconcile", "--no-drift"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "complete"
    assert report["sweep"]["processed"] == {"partly-rejected": 1}

    # Nothing left to sweep, nothing due: both exit 0.
    assert main(["reconcile", "--no-drift", "--no-sweep"]) == 0
    assert main(["release"]) == 0
    assert "nothing-due" in capsys.readouterr().out
