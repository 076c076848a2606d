"""The sweep of hr-inbound end to end: files put straight into Azurite (no trigger), the Graph
emulator over HTTP, and the real blob function (tests.e2e) for files the trigger saw too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient

from graph_emulator import GraphEmulator
from provisioning.functions.services import open_services
from provisioning.runs.claims import claim_name
from provisioning.runs.drop import DropProcessor
from provisioning.runs.seen import seen_name
from provisioning.runs.sweep import Sweeper
from provisioning.settings import INBOUND_CONTAINER, RESULTS_CONTAINER, STATE_CONTAINER, Settings
from provisioning.storage import PreconditionFailed
from tests.e2e import drop, runs, sent_external_ids, store
from tests.test_blob_drop import hr_file, put_state, state_json

BAD_FILE = b"WorkerID,FirstName\n1,Ada\n"


@contextlib.contextmanager
def inbound() -> Iterator[ContainerClient]:
    with BlobServiceClient.from_connection_string(Settings().storage_connection_string) as svc:
        container = svc.get_container_client(INBOUND_CONTAINER)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        yield container


def upload(name: str, data: bytes) -> None:
    """A file arriving without any event (SFTP, a copy job, a missed Event Grid event)."""
    with inbound() as container:
        container.upload_blob(name, data, overwrite=True)


def inbound_names() -> list[str]:
    with inbound() as container:
        return sorted(container.list_blob_names())


def sweep(**options: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            processor = DropProcessor(settings, blobs, graph)
            return await Sweeper(settings, blobs, processor).sweep(**options)

    return asyncio.run(run())


def marker(name: str) -> dict[str, Any]:
    found = store().read_json(STATE_CONTAINER, seen_name(f"{INBOUND_CONTAINER}/{name}"))
    assert found is not None, name
    data: dict[str, Any] = found[0]
    return data


def failed_records() -> list[dict[str, Any]]:
    blobs = store()
    out = []
    for info in blobs.list(RESULTS_CONTAINER, "failed/"):
        found = blobs.read_json(RESULTS_CONTAINER, info.name)
        assert found is not None
        out.append(found[0])
    return out


def next_second() -> None:
    """Blob times have one-second resolution: wait for the next second so order is certain."""
    time.sleep(1.05 - time.time() % 1)


def test_files_no_trigger_saw_are_processed_oldest_first(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    upload("zz-older.csv", hr_file(60))
    next_second()
    upload("contractors/aa-newer.csv", hr_file(60, start=101))

    counts = sweep()

    assert counts == {
        "listed": 2,
        "seen": 0,
        "processed": {"complete": 2},
        "moved_to_failed": 0,
        "skipped_busy": 0,
        "deferred_for_budget": 0,
        "deferred_for_pause": 0,
        "paused": None,
        "errors": 0,
    }
    first, second = sorted(runs(), key=lambda s: s["started"])
    # Named as the trigger names them, so feed and marker are those of a triggered run.
    assert first["source_blob"] == "hr-inbound/zz-older.csv"
    assert second["source_blob"] == "hr-inbound/contractors/aa-newer.csv"
    assert second["plan"]["feed"] == "contractors"
    ids = sent_external_ids(emulator)
    assert ids[:60] == [str(n) for n in range(1, 61)]
    assert len(ids) == len(set(ids)) == 120
    assert {u["employeeId"] for u in emulator.directory()} == set(ids)
    seen = marker("zz-older.csv")
    assert seen["status"] == "complete" and seen["run_id"] == first["run_id"]


def test_a_second_sweep_processes_nothing(env: dict[str, str], emulator: GraphEmulator) -> None:
    upload("a.csv", hr_file(60))
    upload("b.csv", hr_file(60, start=101))
    assert sweep()["processed"] == {"complete": 2}
    uploads = len(emulator.uploads())

    again = sweep()

    assert (again["listed"], again["seen"], again["processed"]) == (2, 2, {})
    assert len(emulator.uploads()) == uploads
    assert len(runs()) == 2


def test_a_file_the_trigger_processed_is_not_sent_again(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    data = hr_file(60)
    upload("workers.csv", data)
    drop(data, "workers.csv")  # its event arrived as well
    (summary,) = runs()
    uploads = len(emulator.uploads())
    assert marker("workers.csv") == {
        "schema_version": 1,
        "blob": "hr-inbound/workers.csv",
        "size": len(data),
        "content_hash": summary["content_hash"],
        "status": "complete",
        "reason": None,
        "run_id": summary["run_id"],
        "results": summary["_name"].removesuffix("summary.json"),
        "attempts": 1,
        "failed_attempts": 0,
        "at": marker("workers.csv")["at"],
    }

    assert sweep()["seen"] == 1
    # Without its marker the file is read again; its claim shows it was this very blob.
    store().delete(STATE_CONTAINER, seen_name("hr-inbound/workers.csv"))
    counts = sweep()

    assert (counts["seen"], counts["processed"]) == (1, {})
    assert len(runs()) == 1 and len(emulator.uploads()) == uploads
    assert marker("workers.csv")["status"] == "complete"
    # The same content under another name is a duplicate, as it would be through the trigger.
    upload("copy-of-workers.csv", data)
    assert sweep()["processed"] == {"duplicate": 1}
    assert len(emulator.uploads()) == uploads


def test_concurrent_sweeps_send_each_record_once(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    for n in range(4):
        upload(f"file-{n}.csv", hr_file(60, start=1 + 100 * n))
    emulator.set_faults(latency_ms=50)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(sweep())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 2 and not any(r["errors"] for r in results)
    # Each file was run by one sweep; the other found its claim leased, or already complete.
    assert sum(r["processed"].get("complete", 0) for r in results) == 4
    assert sorted(s["source_blob"] for s in runs() if s["status"] == "complete") == [
        f"hr-inbound/file-{n}.csv" for n in range(4)
    ]
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 240


def test_a_failing_file_is_retried_then_set_aside(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_FILE_ATTEMPTS", "2")
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "1")
    emulator.set_faults(status_sequence=[503, 403, 403])
    upload("feed/workers.csv", hr_file(60))

    # Graph down for a while is not the file's fault: not counted.
    first = sweep()
    assert (first["processed"], first["moved_to_failed"]) == ({"interrupted": 1}, 0)
    assert inbound_names() == ["feed/workers.csv"]
    second = sweep()
    assert (second["processed"], second["moved_to_failed"]) == ({"failed": 1}, 0)
    third = sweep()
    assert (third["processed"], third["moved_to_failed"]) == ({"failed": 1}, 1)

    assert inbound_names() == ["failed/feed/workers.csv"]
    (summary,) = runs()
    (record,) = failed_records()
    assert record["blob"] == "hr-inbound/feed/workers.csv"
    assert record["failed_blob"] == "hr-inbound/failed/feed/workers.csv"
    assert record["status"] == "failed" and "403" in record["reason"]
    assert (record["attempts"], record["failed_attempts"]) == (3, 2)
    assert record["run_id"] == summary["run_id"]
    assert summary["_name"].startswith(record["results"])
    # Set aside for good: later sweeps do not even list it.
    assert sweep()["listed"] == 0
    assert sent_external_ids(emulator) == []


def test_a_paused_job_does_not_count_against_the_file(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_FILE_ATTEMPTS", "1")
    emulator.set_faults(job_status="Quarantine")
    upload("workers.csv", hr_file(10))
    for _ in range(2):
        counts = sweep()
        assert (counts["processed"], counts["moved_to_failed"]) == ({"stopped": 1}, 0)

    emulator.set_faults(job_status="Active")
    assert sweep()["processed"] == {"complete": 1}
    assert len(sent_external_ids(emulator)) == 10


def test_a_rejected_file_is_set_aside(env: dict[str, str], emulator: GraphEmulator) -> None:
    upload("seen-by-trigger.csv", BAD_FILE)
    drop(BAD_FILE, "seen-by-trigger.csv")
    drop(BAD_FILE, "seen-by-trigger.csv")  # Event Grid delivers at least once
    assert marker("seen-by-trigger.csv")["status"] == "rejected"
    upload("missed.csv", BAD_FILE + b"2,Grace\n")
    before = len(runs())

    counts = sweep()

    assert (counts["processed"], counts["moved_to_failed"]) == ({"rejected": 1}, 2)
    assert inbound_names() == ["failed/missed.csv", "failed/seen-by-trigger.csv"]
    records = sorted(failed_records(), key=lambda r: r["blob"])
    assert [r["blob"] for r in records] == [
        "hr-inbound/missed.csv",
        "hr-inbound/seen-by-trigger.csv",
    ]
    assert all(r["status"] == "rejected" and "LastName" in r["reason"] for r in records)
    assert len(runs()) == before + 1  # the file the trigger rejected was not run again
    assert emulator.uploads() == []


def test_a_file_replaced_meanwhile_is_not_set_aside(env: dict[str, str]) -> None:
    upload("workers.csv", BAD_FILE)
    blobs = store()
    (listed,) = blobs.list(INBOUND_CONTAINER)
    upload("workers.csv", hr_file(10))  # the corrected file, dropped under the same name
    with pytest.raises(PreconditionFailed):
        blobs.move(INBOUND_CONTAINER, "workers.csv", "failed/workers.csv", etag=listed.etag)
    assert inbound_names() == ["workers.csv"]


def test_the_trigger_ignores_files_set_aside(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    drop(hr_file(10), "failed/workers.csv")
    assert runs() == [] and emulator.uploads() == []
    assert list(store().list(STATE_CONTAINER)) == []
    assert "hr-inbound/failed/workers.csv is under failed/" in caplog.text


def test_the_budget_stops_the_sweep_early(env: dict[str, str], emulator: GraphEmulator) -> None:
    for n in range(3):
        upload(f"file-{n}.csv", hr_file(10, start=1 + 100 * n))
    nothing = sweep(budget_seconds=0)
    assert (nothing["processed"], nothing["deferred_for_budget"]) == ({}, 3)

    emulator.set_faults(latency_ms=300)  # one file takes longer than the budget
    some = sweep(budget_seconds=0.2)
    assert (some["processed"], some["deferred_for_budget"]) == ({"complete": 1}, 2)

    emulator.set_faults(latency_ms=0)
    rest = sweep()
    assert (rest["seen"], rest["processed"]) == (1, {"complete": 2})
    assert len(sent_external_ids(emulator)) == 30


def test_a_partly_rejected_file_is_settled_and_one_refused_whole_is_set_aside(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    from tests.columns import csv_bytes, worker

    upload("a-some-bad.csv", csv_bytes([worker(1), worker(2, WorkerStatus="Maybe")]))
    emulator.set_faults(status_sequence=[202, 400])
    upload("b-refused.csv", hr_file(30, start=101))  # swept second: answered 400
    first = sweep()
    assert first["processed"] == {"partly-rejected": 1, "rejected": 1}
    assert first["moved_to_failed"] == 1
    assert inbound_names() == ["a-some-bad.csv", "failed/b-refused.csv"]
    again = sweep()  # settled: not read again
    assert again["seen"] == 1 and again["processed"] == {}


def test_a_claim_this_version_cannot_use_is_one_line_and_the_file_waits(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim written by a newer version: the sweep leaves it and the file alone, says so in
    one error line (no traceback), and sends nothing."""
    upload("workers.csv", hr_file(60))
    assert sweep()["processed"] == {"complete": 1}
    (summary,) = runs()
    name = claim_name(summary["content_hash"])
    put_state(name, {**state_json(name), "schema_version": 2})
    store().delete(STATE_CONTAINER, seen_name("hr-inbound/workers.csv"))  # to be seen again
    uploads = len(emulator.uploads())

    counts = sweep()

    assert counts["errors"] == 1 and counts["processed"] == {} and counts["moved_to_failed"] == 0
    assert inbound_names() == ["workers.csv"] and len(emulator.uploads()) == uploads
    lines = [r for r in caplog.records if r.name == "provisioning.runs.sweep"]
    assert [r.levelname for r in lines] == ["ERROR"] and lines[0].exc_info is None
    assert "newer version of the app" in lines[0].getMessage()
