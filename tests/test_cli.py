"""The command line, run in-process through provisioning.cli.main, and for its errors also as
a user runs it (``python -m provisioning`` in a subprocess)."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from devtools.azurite import Azurite
from devtools.local_env import FAST_RETRIES, MSI_CONFLICTS, local_settings
from graph_emulator import GraphEmulator
from provisioning.cli import main
from provisioning.convert.mapping import parse_mapping
from provisioning.errors import EXIT_INTERNAL
from provisioning.graph.client import GraphError, GraphUnavailable
from provisioning.storage import PreconditionFailed
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


# --- errors: one class each, one line on stderr, the class's exit code ----------------------
# README, "Statuses and exit codes": ProvisioningError and its subclasses in provisioning.errors.


def test_the_error_hierarchy_and_its_exit_codes() -> None:
    from provisioning import errors
    from provisioning.cli import exit_code
    from provisioning.convert.rows import FileError
    from provisioning.convert.transforms import SpecError
    from provisioning.graph.client import GraphError, GraphUnavailable, TransportError
    from provisioning.storage import PreconditionFailed

    # The same numbers as the statuses': a file rejected whole, a run that waits.
    assert exit_code("rejected", unusable=True) == errors.EXIT_UNUSABLE
    assert exit_code("interrupted") == errors.EXIT_UNFINISHED
    expected = {
        errors.ConfigurationError: (2, "error"),
        errors.InputFileError: (2, "file rejected"),
        errors.MappingError: (2, "mapping error"),
        errors.GraphServiceError: (3, "Graph error"),
        errors.StorageError: (3, "storage error"),
    }
    for cls, (code, label) in expected.items():
        assert issubclass(cls, errors.ProvisioningError)
        assert (cls.exit_code, cls.label) == (code, label)
    for subclass, base in [
        (FileError, errors.InputFileError),
        (SpecError, errors.MappingError),
        (GraphUnavailable, errors.GraphServiceError),
        (GraphError, errors.GraphServiceError),
        (TransportError, errors.GraphServiceError),
        (PreconditionFailed, errors.StorageError),
    ]:
        assert issubclass(subclass, base)
    assert errors.EXIT_INTERNAL not in {0, 1, 2, 3}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m provisioning`` as a user runs it, with only the settings given."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("PROVISIONING_", "HRSTORAGE"))
        and k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", *MSI_CONFLICTS)
    }
    return subprocess.run(
        [sys.executable, "-m", "provisioning", *args],
        cwd=ROOT,
        env={**clean, "COLUMNS": "80", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SECRET_ROW = "Ada-Secret-Lovelace"


ERROR_CASES: list[tuple[str, list[str], dict[str, str], int, str]] = [
    (
        "bad setting",
        ["validate", "{sample}"],
        {"PROVISIONING_BATCH_SIZE": "100"},
        2,
        "error: PROVISIONING_BATCH_SIZE=100: must be between 1 and 50",
    ),
    (
        "storage not configured",
        ["approve", "20260101T000000-abcdef12-123456"],
        {},
        2,
        "error: HRSTORAGE__blobServiceUri: not set (the storage account's blob endpoint",
    ),
    (
        "nothing configured to send",
        ["release"],
        {},
        2,
        "error: PROVISIONING_SERVICE_PRINCIPAL_ID: not set (needed to send",
    ),
    ("no such file", ["validate", "{tmp}/gone.csv"], {}, 2, "file rejected: {tmp}/gone.csv"),
    ("a folder", ["convert", "{tmp}", "--out", "{tmp}/out"], {}, 2, "file rejected: {tmp}: "),
    ("not UTF-8", ["validate", "{tmp}/latin1.csv"], {}, 2, "file rejected: latin1.csv: "),
    (
        "column missing",
        ["convert", "{tmp}/short.csv", "--out", "{tmp}/out"],
        {},
        2,
        "file rejected: short.csv: ",
    ),
    (
        "bad mapping",
        ["validate", "{sample}", "--mapping", "{tmp}/m.yaml"],
        {},
        2,
        "mapping error: ",
    ),
    (
        "no mapping",
        ["plan", "{sample}", "--mapping", "{tmp}/none.yaml"],
        {},
        2,
        "mapping error: cannot read mapping '{tmp}/none.yaml'",
    ),
]


@pytest.mark.parametrize(
    ("case", "args", "env", "code", "line"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_each_error_is_one_line_and_its_exit_code(
    case: str, args: list[str], env: dict[str, str], code: int, line: str, tmp_path: Path
) -> None:
    (tmp_path / "latin1.csv").write_bytes(
        "WorkerID,FirstName,LastName\n1,Zoë,Ünal\n".encode("latin-1")
    )
    (tmp_path / "short.csv").write_text(f"WorkerID,FirstName\n1,{SECRET_ROW}\n")
    (tmp_path / "m.yaml").write_text("user:\n  externalId: WorkerID\n  userNme: UserID\n")

    def fill(text: str) -> str:
        return text.replace("{sample}", str(SAMPLE_2)).replace("{tmp}", str(tmp_path))

    done = _cli(*[fill(a) for a in args], **env)
    said = _one_line(done, code)
    assert said.startswith(fill(line)), said
    assert done.stdout == ""
    assert SECRET_ROW not in said and "Zo" not in said
    if case == "bad mapping":
        assert "userNme" in said
    if case == "nothing configured to send":  # every setting at fault, on the one line
        assert "PROVISIONING_JOB_ID: not set" in said
        assert "HRSTORAGE__blobServiceUri: not set" in said
    if case == "column missing":
        assert "LastName" in said
        assert json.loads((tmp_path / "out" / "summary.json").read_text())["file_error"]


def test_graph_unreachable_is_one_line_and_the_work_waits(
    azurite: Azurite, clean_storage: Azurite, emulator: GraphEmulator
) -> None:
    settings = local_settings(azurite, emulator, **FAST_RETRIES)
    settings["PROVISIONING_GRAPH_URL"] = f"http://127.0.0.1:{_closed_port()}/v1.0"
    done = _cli("reconcile", "--no-drift", **settings)
    _one_line(done, 3, "Graph unavailable", "ConnectError")
    assert json.loads(done.stdout)["status"] == "interrupted"


# In-process: failures a subprocess cannot reach quickly (the storage SDK retries for over a
# minute) or at all (a bug), each raised where the real one would be.


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("PROVISIONING_", "HRSTORAGE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HRSTORAGE", "UseDevelopmentStorage=true")
    monkeypatch.setenv("PROVISIONING_SERVICE_PRINCIPAL_ID", "sp")
    monkeypatch.setenv("PROVISIONING_JOB_ID", "job")


def _raising(error: BaseException) -> Callable[..., Any]:
    def raise_it(*args: object, **kwargs: object) -> Any:
        raise error

    return raise_it


@pytest.mark.parametrize(
    ("args", "target", "error", "code", "line"),
    [
        (
            ["reconcile"],
            "_reconcile",
            GraphUnavailable("token request failed: ManagedIdentityCredential"),
            3,
            "Graph error: token request failed: ManagedIdentityCredential",
        ),
        (
            ["reconcile"],
            "_reconcile",
            GraphError(403, "Authorization_RequestDenied", "Insufficient privileges"),
            3,
            "Graph error: Graph answered HTTP 403: Authorization_RequestDenied Insufficient",
        ),
        (
            ["approve", "run-1"],
            "open_store",
            ServiceRequestError("https://acct.blob.core.windows.net/?sv=1&sig=SECRET refused"),
            3,
            "storage error: could not connect to the storage account; check HRSTORAGE or "
            "HRSTORAGE__blobServiceUri",
        ),
        (
            ["release"],
            "_release",
            HttpResponseError(
                message="sig=SECRET AuthorizationPermissionMismatch",
                response=None,
            ),
            3,
            "storage error: ",
        ),
        (
            ["approve", "run-1"],
            "open_store",
            PreconditionFailed("state/approvals/run-1.json: ConditionNotMet"),
            3,
            "storage error: state/approvals/run-1.json: ConditionNotMet",
        ),
        (
            ["validate", str(SAMPLE_2)],
            "_validate",
            KeyError(SECRET_ROW),
            EXIT_INTERNAL,
            "internal error: KeyError at provisioning/cli.py:",
        ),
    ],
    ids=[
        "graph-unavailable",
        "graph-403",
        "storage-unreachable",
        "storage-http",
        "precondition",
        "unexpected",
    ],
)
def test_failures_in_process_are_one_line_and_their_exit_code(
    args: list[str],
    target: str,
    error: BaseException,
    code: int,
    line: str,
    configured: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import provisioning.cli

    monkeypatch.setattr(provisioning.cli, target, _raising(error))
    assert main(args) == code
    captured = capsys.readouterr()
    (said,) = captured.err.splitlines()
    assert said.startswith(line), said
    assert "SECRET" not in said and SECRET_ROW not in said
    assert "Traceback" not in captured.err


def test_storage_refusal_names_the_setting_and_role(
    configured: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import provisioning.cli

    refused = ClientAuthenticationError(message="sig=SECRET")
    refused.status_code = 403
    refused.error_code = "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]
    monkeypatch.setattr(provisioning.cli, "open_store", _raising(refused))
    assert main(["approve", "run-1"]) == 3
    (said,) = capsys.readouterr().err.splitlines()
    assert said == (
        "storage error: the storage account refused the app (HTTP 403 "
        "AuthorizationPermissionMismatch): check the key in HRSTORAGE or the identity's "
        "Storage Blob Data Contributor role"
    )


def test_traceback_flag_shows_the_traceback_and_keeps_the_exit_code(
    configured: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import provisioning.cli

    monkeypatch.setattr(provisioning.cli, "_validate", _raising(KeyError("boom")))
    assert main(["--traceback", "validate", str(SAMPLE_2)]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback")
    assert err.splitlines()[-1].startswith("internal error: KeyError at provisioning/cli.py:")


def test_ctrl_c_is_one_line_exit_130(
    configured: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import provisioning.cli

    monkeypatch.setattr(provisioning.cli, "_reconcile", _raising(KeyboardInterrupt()))
    assert main(["reconcile"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "interrupted: stopped (Ctrl-C); a run resumes where it stopped"
    ]


def test_readme_documents_each_error_class_and_its_exit_code() -> None:
    from provisioning import errors

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Statuses and exit codes", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\w+)`[^|]*\| `([^`]+)` \|[^\n]*\| (\d+) \|$", section, re.MULTILINE)
    documented = {name: (label, int(code)) for name, label, code in rows}
    for cls in (
        errors.ConfigurationError,
        errors.InputFileError,
        errors.MappingError,
        errors.GraphServiceError,
        errors.StorageError,
    ):
        assert documented[cls.__name__] == (cls.label, cls.exit_code)
