"""scripts/run-local end to end, as a user runs it: its own Azurite and Graph emulator, the
blob function and a timer pass, in a subprocess; exit codes from README, "Statuses and exit
codes"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.columns import csv_bytes, worker

ROOT = Path(__file__).resolve().parent.parent


def run_local(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "devtools.run_local", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_one_line_json_array_is_provisioned_completely(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps([worker(n) for n in range(1, 52)]), encoding="utf-8")
    done = run_local(str(export), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert ": complete" in done.stdout
    assert "emulator directory: 51 users (51 enabled" in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["records_accepted"] == 51 and summary["outcomes"]["counts"] == {"success": 51}


def test_a_batch_refused_by_graph_exits_1(tmp_path: Path) -> None:
    export = tmp_path / "workers.csv"
    export.write_bytes(csv_bytes([worker(n) for n in range(1, 121)]))  # three requests
    faults = json.dumps({"status_sequence": [202, 400]})
    done = run_local(str(export), "--graph-faults", faults, "--out", str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr[-3000:]
    assert ": partly-rejected (50 records refused by Graph" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_the_mapping_setting_is_honoured(tmp_path: Path) -> None:
    export = ROOT / "tests" / "data" / "hr-suite-export.csv"
    done = run_local(
        str(export), "--out", str(tmp_path / "out"), env={"PROVISIONING_MAPPING": "hr-suite"}
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["mapping"] == "builtin:hr-suite"
    assert summary["records_accepted"] > 0 and not summary.get("file_error")
    assert done.returncode in (0, 1), done.stderr[-3000:]


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--graph-faults", "[1]"], {}, "--graph-faults: must be a JSON object of fault settings"),
        (["--graph-faults", '{"storm": 1}'], {}, "unknown fault settings: storm"),
        ([], {"PROVISIONING_BATCH_SIZE": "51"}, "PROVISIONING_BATCH_SIZE=51: must be between 1"),
        (["--mapping", "nope"], {}, "nope"),
    ],
)
def test_a_bad_argument_or_setting_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], line: str, tmp_path: Path
) -> None:
    export = tmp_path / "w.csv"
    export.write_bytes(csv_bytes([worker(1)]))
    done = run_local(str(export), *args, "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 2
    (said,) = done.stderr.strip().splitlines()
    assert line in said and "Traceback" not in done.stdout
