"""Joiners, movers and leavers over a sequence of files, checked at the emulator's directory.

Real parts throughout: Azurite for state and results, the Graph emulator over HTTP, the real
managed-identity credential, the blob function invoked through app.get_functions().
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import threading
from pathlib import Path
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.functions.services import open_services
from provisioning.jml.lifecycle import fingerprint
from provisioning.jml.state import WorkerState
from provisioning.runs.release import Releaser
from provisioning.settings import Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, result_text, runs, sent_external_ids, store

MAPPING = (
    Path(__file__).resolve().parent.parent
    / "provisioning"
    / "convert"
    / "mappings"
    / "microsoft-sample.yaml"
)


@pytest.fixture
def jml_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    # The sample mapping plus a termination date (Custom02 stands in for it).
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.read_text() + "  termination_date: Custom02\n")
    monkeypatch.setenv("PROVISIONING_MAPPING", str(mapping))
    monkeypatch.setenv("PROVISIONING_FEED_MODES", "workers=full,changes=delta")
    return env


def directory(emu: GraphEmulator) -> dict[str, dict[str, Any]]:
    return {u["employeeId"]: u for u in emu.directory()}


def sent_since(emu: GraphEmulator, start: int) -> list[str]:
    uploads = [u for u in emu.uploads() if u["index"] > start and u["status"] == 202]
    return [ext for u in uploads for _, ext in u["records"]]


def upload_count(emu: GraphEmulator) -> int:
    return len(emu.uploads())


def latest_run() -> dict[str, Any]:
    return max(runs(), key=lambda s: s["started"])


def release(clock: dt.datetime | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blob_store, graph):
            kwargs = {"clock": lambda: clock} if clock else {}
            return await Releaser(settings, blob_store, graph, **kwargs).release()

    return asyncio.run(go())


def day1() -> list[dict[str, str]]:
    rows = [worker(1)]
    rows += [worker(n, ManagerID="1") for n in range(2, 60)]
    # A chain of new managers: 61 reports to 60, 62 to 61 (listed before their managers).
    rows += [worker(62, ManagerID="61"), worker(61, ManagerID="60"), worker(60, ManagerID="1")]
    return rows


def test_a_week_of_files(
    jml_env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker 9 joins inactive and is created disabled (and comes back as a rehire on day 2).
    monkeypatch.setenv("PROVISIONING_CREATE_INACTIVE_JOINERS", "true")
    rows = day1()
    rows[8] = worker(9, WorkerStatus="Inactive", ManagerID="1")  # joins inactive
    drop(csv_bytes(rows), "workers/day1.csv")
    first = latest_run()
    assert first["status"] == "complete"
    assert first["plan"]["counts"]["joiner"] == 62
    ids = sent_external_ids(emulator)
    assert sorted(ids, key=int) == [str(n) for n in range(1, 63)]
    # Managers before their reports: 60, 61, 62 in that order although the file lists 62 first.
    assert ids.index("60") < ids.index("61") < ids.index("62")
    users = directory(emulator)
    assert users["62"]["manager"]["id"] == users["61"]["id"]
    assert users["9"]["accountEnabled"] is False

    # Day 2: one mover, one leaver by status, one absent leaver, two joiners, one rehire.
    mark = upload_count(emulator)
    day2 = [r for r in rows if r["WorkerID"] != "7"]
    day2 = [
        worker(5, JobTitle="Director", ManagerID="1")
        if r["WorkerID"] == "5"
        else worker(6, WorkerStatus="Inactive", ManagerID="1")
        if r["WorkerID"] == "6"
        else worker(9, ManagerID="1")
        if r["WorkerID"] == "9"
        else worker(8, WorkerStatus="Maybe", ManagerID="1")  # rejected, but still listed
        if r["WorkerID"] == "8"
        else r
        for r in day2
    ]
    day2 += [worker(102, ManagerID="101"), worker(101, ManagerID="1")]
    drop(csv_bytes(day2), "workers/day2.csv")
    second = latest_run()
    assert second["status"] == "partly-rejected"  # worker 8's row
    counts = second["plan"]["counts"]
    assert (counts["joiner"], counts["mover"], counts["leaver"], counts["rehire"]) == (2, 1, 2, 1)
    assert counts["unchanged"] == 57  # 62 on day 1, less 7 (gone), 8 (rejected) and 5, 6, 9
    assert counts["rejected"] == 1
    assert second["plan"]["movers"] == [{"externalId": "5", "changed": ["title"]}]
    assert sorted(sent_since(emulator, mark), key=int) == ["5", "6", "7", "9", "101", "102"]
    users = directory(emulator)
    assert users["5"]["jobTitle"] == "Director"
    assert users["6"]["accountEnabled"] is False and users["7"]["accountEnabled"] is False
    assert users["9"]["accountEnabled"] is True
    assert users["8"]["accountEnabled"] is True  # a rejected row is no reason to disable
    assert users["102"]["manager"]["id"] == users["101"]["id"]
    ledger = list(csv.DictReader(io.StringIO(result_text(second, "ledger.csv"))))
    assert {r["externalId"]: r["action"] for r in ledger} == {
        "5": "mover",
        "6": "leaver",
        "7": "leaver",
        "9": "rehire",
        "101": "joiner",
        "102": "joiner",
    }
    assert "<svg" in result_text(second, "report.html")

    # Day 3: a truncated export would disable almost everyone: nobody is disabled, the
    # mover in it still goes, and the run waits for approval.
    mark = upload_count(emulator)
    kept = {str(n) for n in range(3, 12)}
    day3 = [worker(2, JobTitle="Architect", ManagerID="1")]
    day3 += [r for r in day2 if r["WorkerID"] in kept]
    drop(csv_bytes(day3), "workers/day3.csv")
    third = latest_run()
    assert third["status"] == "held-for-approval"
    assert "approve run" in third["reason"]
    assert sent_since(emulator, mark) == ["2"]
    assert all(
        u["accountEnabled"] for ext, u in directory(emulator).items() if ext not in ("6", "7")
    )
    waiting = set(third["plan"]["held_for_approval"])
    # Every active worker the truncated file no longer lists: 1, 12-62, 101 and 102.
    assert waiting == {"1", "101", "102", *(str(n) for n in range(12, 63))}

    # Nothing goes until someone approves; then the release disables exactly those.
    assert release()["status"] == "nothing-due"
    assert WorkerState(store()).approve(third["run_id"], "test") is None
    mark = upload_count(emulator)
    released = release()
    assert released["status"] == "complete" and released["records_accepted"] == len(waiting)
    assert set(sent_since(emulator, mark)) == waiting
    users = directory(emulator)
    assert all(users[ext]["accountEnabled"] is False for ext in waiting)
    assert release()["status"] == "nothing-due"  # released once


def test_future_dated_hires_and_leaves_wait_for_their_day(
    jml_env: dict[str, str], emulator: GraphEmulator
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    rows = [
        worker(1),
        worker(2, HireDate=(today + dt.timedelta(days=30)).isoformat()),  # beyond look-ahead
        worker(3, HireDate=(today + dt.timedelta(days=10)).isoformat()),  # within: send now
        worker(4, Custom02=(today + dt.timedelta(days=5)).isoformat()),  # leaves in 5 days
        worker(5, Custom02=(today - dt.timedelta(days=1)).isoformat()),  # left yesterday
        worker(6, WorkerStatus="Inactive", Custom02=(today + dt.timedelta(days=3)).isoformat()),
    ]
    drop(csv_bytes(rows), "changes/day1.csv")
    run = latest_run()
    held = {(h["externalId"], h["kind"]): h["due"] for h in run["plan"]["held"]}
    assert held == {
        ("2", "joiner"): (today + dt.timedelta(days=16)).isoformat(),
        ("4", "leaver"): (today + dt.timedelta(days=5)).isoformat(),
        ("6", "leaver"): (today + dt.timedelta(days=3)).isoformat(),
    }
    users = directory(emulator)
    assert "2" not in users
    assert users["3"]["accountEnabled"] and users["4"]["accountEnabled"]
    # Left yesterday and never provisioned: no account is created (the default).
    assert "5" not in users and run["plan"]["skipped"] == ["5"]
    assert users["6"]["accountEnabled"] is True  # access ends on the day, not before

    def at(days: int) -> dt.datetime:
        return dt.datetime.combine(today + dt.timedelta(days=days), dt.time(12), dt.UTC)

    assert release(at(2))["status"] == "nothing-due"
    assert release(at(3))["records_accepted"] == 1
    assert directory(emulator)["6"]["accountEnabled"] is False
    assert release(at(5))["records_accepted"] == 1
    assert directory(emulator)["4"]["accountEnabled"] is False
    assert "2" not in directory(emulator)
    assert release(at(16))["records_accepted"] == 1
    assert directory(emulator)["2"]["accountEnabled"] is True
    assert release(at(40))["status"] == "nothing-due"
    # Released changes are now the state: the same file again sends only what is now stale.
    mark = upload_count(emulator)
    drop(csv_bytes([*rows, worker(7)]), "changes/day2.csv")
    assert "7" in sent_since(emulator, mark)


def test_two_runs_at_once_leave_the_state_consistent(
    jml_env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(n) for n in range(1, 201)]), "changes/base.csv")
    a = csv_bytes([worker(n, JobTitle="A") for n in range(1, 151)])
    b = csv_bytes([worker(n, Department="B") for n in range(51, 201)])
    errors: list[BaseException] = []

    def run(data: bytes, name: str) -> None:
        try:
            drop(data, name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(a, "changes/a.csv")),
        threading.Thread(target=run, args=(b, "changes/b.csv")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = WorkerState(store())
    state.fold()
    known = state.index()
    records = state.records(known)
    users = directory(emulator)
    assert len(known) == 200
    # The state remembers exactly what Entra holds now, whichever run wrote last.
    for ext, user in users.items():
        assert records[ext] == user["scim"], ext
        assert known[ext].fingerprint == fingerprint(user["scim"])


def test_crash_between_accept_and_state_write_loses_nothing(
    jml_env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph accepted batch 2, and the process died before it wrote that down: the next
    attempt knows batch 2's workers may have got it, sends them again and says so."""
    original = WorkerState.write_delta
    calls = []

    def write_delta(self: WorkerState, gen: int, status: Any, changes: Any) -> None:
        if status == "accepted":
            calls.append(gen)
            if len(calls) == 2:
                raise SystemExit("simulated crash after Graph accepted batch 2")
        original(self, gen, status, changes)

    monkeypatch.setattr(WorkerState, "write_delta", write_delta)
    rows = [worker(n) for n in range(1, 151)]
    with pytest.raises(SystemExit):
        drop(csv_bytes(rows), "changes/big.csv")
    drop(csv_bytes(rows), "changes/big.csv")
    run = next(s for s in runs() if s["status"] == "complete")
    # Batch 2's workers, sent without a known answer, are movers to the new plan: they go after
    # the joiners still unsent (SEND_PARTS), so the resent batch is the third.
    assert [b["resent_after_crash"] for b in run["batches"]] == [False, False, True]
    ids = sent_external_ids(emulator)
    assert len(set(ids)) == 150 and len(ids) == 200  # batch 2 twice, said so above
    # The state holds all 150: the same workers in another file change nothing.
    mark = upload_count(emulator)
    drop(csv_bytes(list(reversed(rows))), "changes/again.csv")
    assert sent_since(emulator, mark) == []
    assert latest_run()["plan"]["counts"]["unchanged"] == 150
