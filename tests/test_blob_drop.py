"""The blob drop function end to end: Azurite, the Graph emulator over HTTP, the real
ManagedIdentityCredential, invoked through app.get_functions() with real trigger objects."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import parse_iso
from provisioning.documents import DocumentError
from provisioning.jml.ordering import new_order
from provisioning.runs.claims import ClaimStore, claim_name
from provisioning.runs.seen import read_marker, seen_name
from provisioning.settings import INBOUND_CONTAINER, STATE_CONTAINER
from tests.columns import csv_bytes, worker
from tests.e2e import (
    drop,
    result_text,
    runs,
    sent_external_ids,
    store,
    the_function,
    trigger_argument,
    worker_raw_bindings,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "csv-with-1000-records.csv"


def hr_file(count: int, *, start: int = 1) -> bytes:
    """``count`` valid active workers, all reporting to the first."""
    return csv_bytes([worker(n, ManagerID=str(start)) for n in range(start, start + count)])


def test_binding_metadata() -> None:
    bindings = [json.loads(b) for b in the_function().get_raw_bindings()]
    assert bindings == [
        {
            "direction": "IN",
            "type": "blobTrigger",
            "name": "blob",
            "path": "hr-inbound/{name}",
            "connection": "HRSTORAGE",
            "source": "EventGrid",
        }
    ]
    # What the Python worker reports to the host once the SDK-type extension is installed: the
    # BlobClient annotation makes the binding deferred, so the host sends a reference to the
    # blob (connection, container, name), never its content (README, How a dropped file is
    # provisioned).
    (reported,) = worker_raw_bindings()
    assert reported == {**bindings[0], "properties": {"SupportsDeferredBinding": True}}


def test_happy_path_provisions_every_valid_row_once(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    data = SAMPLE.read_bytes()
    drop(data, "feed/csv-with-1000-records.csv")

    (summary,) = runs()
    # Microsoft's sample repeats some WorkerIDs: those rows are rejected, so the run is not
    # "complete", and says why.
    assert summary["status"] == "partly-rejected"
    assert summary["reason"] == "641 rows rejected by validation (rejected.csv)"
    assert (summary["rows_read"], summary["rows_rejected"]) == (1000, 641)
    # Of the 359 valid rows, 189 are inactive workers never provisioned: no account is made.
    assert (summary["plan"]["counts"]["joiner"], summary["plan"]["counts"]["skipped"]) == (170, 189)
    assert summary["records_sent"] == summary["records_accepted"] == 170
    assert summary["requests"] == 4 and len(summary["batches"]) == 4
    assert all(b["status"] == "accepted" and b["http_status"] == 202 for b in summary["batches"])
    assert all(b["request_id"] and b["client_request_id"] for b in summary["batches"])
    assert summary["source_blob"] == "hr-inbound/feed/csv-with-1000-records.csv"
    # Graph received each valid worker exactly once and the directory holds them.
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 170
    assert {u["employeeId"] for u in emulator.directory()} == set(ids)
    assert not set(ids) & set(summary["plan"]["skipped"])
    # The ledger lists every record sent; rejected.csv every rejected row with its line.
    ledger = list(csv.DictReader(io.StringIO(result_text(summary, "ledger.csv"))))
    assert sorted(r["externalId"] for r in ledger) == sorted(ids)
    assert {r["status"] for r in ledger} == {"accepted"}
    rejected = list(csv.DictReader(io.StringIO(result_text(summary, "rejected.csv"))))
    assert len(rejected) == 641 and all(r["line"] and r["reason"] for r in rejected)
    assert "Provisioning run" in result_text(summary, "report.html")
    # No HR value reached the logs.
    logged = caplog.text
    for row in list(csv.DictReader(io.StringIO(data.decode("utf-8"))))[:50]:
        for column in ("FirstName", "LastName", "FullName", "UserID"):
            assert row[column] not in logged


def test_duplicate_drop_sends_nothing_and_names_the_first_run(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    data = hr_file(120)
    drop(data, "a.csv")
    drop(data, "copy-of-a.csv")  # same content under another name
    drop(data, "a.csv")  # the trigger firing twice
    first, *dups = sorted(runs(), key=lambda s: s["started"])
    assert first["status"] == "complete"
    assert [d["status"] for d in dups] == ["duplicate", "duplicate"]
    assert all(d["duplicate_of"] == first["run_id"] for d in dups)
    assert len(sent_external_ids(emulator)) == 120


def test_a_blob_gone_or_set_aside_is_not_processed(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The function gets a client naming the blob, not its bytes: a blob deleted between the
    # event and the invocation, or one under failed/, is logged and left; no run starts.
    caplog.set_level("INFO")
    store().ensure_containers(INBOUND_CONTAINER)
    function = the_function().get_user_function()
    asyncio.run(function(trigger_argument("deleted.csv")))
    asyncio.run(function(trigger_argument("failed/old.csv")))
    assert "hr-inbound/deleted.csv is gone: nothing to process" in caplog.text
    assert "hr-inbound/failed/old.csv is under failed/: not processed" in caplog.text
    assert runs() == [] and emulator.uploads() == []


def test_bad_file_is_rejected_whole_and_nothing_sent(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(b"WorkerID,FirstName\n1,Ada\n", "short.csv")
    (summary,) = runs()
    assert summary["status"] == "rejected"
    assert "LastName" in summary["reason"]
    assert emulator.uploads() == []


def test_429_storm_everything_arrives_paced(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our pacing is set looser than the emulator's limit, so Graph throttles us repeatedly.
    monkeypatch.setenv("PROVISIONING_RATE_LIMIT_REQUESTS", "20")
    monkeypatch.setenv("PROVISIONING_RATE_LIMIT_WINDOW_SECONDS", "1")
    emulator.set_faults(rate_limit=(4, 1.0), retry_after=True)
    drop(hr_file(600))
    (summary,) = runs()
    assert summary["status"] == "complete"
    uploads = emulator.uploads()
    assert any(u["status"] == 429 for u in uploads)
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 600
    assert sum(b["attempts"] for b in summary["batches"]) == len(uploads)


def test_pacing_keeps_under_the_limit_without_429(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_RATE_LIMIT_REQUESTS", "4")
    monkeypatch.setenv("PROVISIONING_RATE_LIMIT_WINDOW_SECONDS", "1")
    emulator.set_faults(rate_limit=(4, 1.0))
    drop(hr_file(500))
    uploads = emulator.uploads()
    assert [u["status"] for u in uploads] == [202] * 10
    times = [u["time"] for u in uploads]
    assert all(later - earlier >= 0.95 for earlier, later in zip(times, times[4:], strict=False))


def test_a_503_is_retried_until_accepted(env: dict[str, str], emulator: GraphEmulator) -> None:
    # (500 "bucket full" pauses every sender instead: tests/test_bucket_full.py)
    emulator.set_faults(status_sequence=[503, 503, 503])
    drop(hr_file(60))
    (summary,) = runs()
    assert summary["status"] == "complete"
    assert summary["batches"][0]["attempts"] == 4
    assert [u["status"] for u in emulator.uploads()] == [503, 503, 503, 202, 202]
    assert len(sent_external_ids(emulator)) == 60


def test_400_is_not_retried_and_graph_error_is_in_results(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(status_sequence=[400])
    drop(hr_file(60))
    (summary,) = runs()
    assert summary["status"] == "partly-rejected"
    assert summary["reason"] == "50 records refused by Graph (ledger.csv, batch table)"
    first, second = summary["batches"]
    assert (first["status"], first["http_status"], first["attempts"]) == ("rejected", 400, 1)
    assert first["error_message"] and first["request_id"]
    assert second["status"] == "accepted"
    assert summary["records_rejected_by_graph"] == 50 and summary["records_accepted"] == 10
    assert first["error_message"] in result_text(summary, "report.html")
    ledger = list(csv.DictReader(io.StringIO(result_text(summary, "ledger.csv"))))
    assert [r["status"] for r in ledger].count("rejected") == 50


def test_paused_job_stops_early_with_the_reason(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(job_status="Quarantine")
    drop(hr_file(10))
    (summary,) = runs()
    assert summary["status"] == "stopped"
    assert "quarantine" in summary["reason"] and "TooManyDeletes" in summary["reason"]
    assert emulator.uploads() == []
    # Once the job runs again, the same file is provisioned (a stop is not final).
    emulator.set_faults(job_status="Active")
    drop(hr_file(10))
    assert len(sent_external_ids(emulator)) == 10


@pytest.mark.parametrize(
    ("state", "sends"),
    [("Active", True), ("NotRun", True), ("Paused", False), ("Quarantine", False),
     ("NotConfigured", False)],
)  # fmt: skip
def test_each_documented_job_state_sends_or_stops_as_the_readme_says(
    env: dict[str, str], emulator: GraphEmulator, state: str, sends: bool
) -> None:
    """README, "Job states": a job that has not completed its first cycle (NotRun, a fresh
    deployment) is sent to, and Entra applies the records once the cycle runs; a job that is
    not configured, paused or in quarantine is not, and the run stops, resumable."""
    emulator.set_faults(job_status=state)
    drop(hr_file(10))
    (summary,) = runs()
    if sends:
        assert summary["status"] == "complete"
        assert len(sent_external_ids(emulator)) == 10
    else:
        assert summary["status"] == "stopped" and state in summary["reason"].replace(
            "in quarantine", "Quarantine"
        ).replace("is paused", "Paused")
        assert emulator.uploads() == []
    emulator.set_faults(job_status="Active")  # the first cycle ran, or the job was fixed
    if not sends:
        drop(hr_file(10))
    assert len(emulator.directory()) == 10


def test_outage_interrupts_then_resumes_without_resending(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning.functions.blob_trigger import RunInterrupted

    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    data = hr_file(250)  # 5 batches
    # Batches 1 and 2 go through, then Graph is down for batch 3's two attempts.
    emulator.set_faults(status_sequence=[202, 202, 503, 503])
    with pytest.raises(RunInterrupted):
        drop(data)
    (summary,) = runs()
    assert summary["status"] == "interrupted" and summary["next_batch"] == 3
    assert len(sent_external_ids(emulator)) == 100
    drop(data)  # the host's retry
    (summary,) = runs()
    assert summary["status"] == "complete" and summary["attempt"] == 2
    assert [b["sent_in_earlier_attempt"] for b in summary["batches"]] == [True, True] + [False] * 3
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 250


def test_crash_between_accept_and_checkpoint_sends_nothing_twice(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after Graph accepted batch 2 and the state recorded it, before the
    claim's checkpoint: the next attempt plans again and finds batch 2 already in Entra."""
    from provisioning.runs import claims as runs_module

    original = runs_module.ClaimStore.save
    crashed = []

    def save(self: Any, claim: Any, lease: Any = None) -> None:
        if claim.next_batch == 3 and claim.status == "running" and not crashed:
            crashed.append(True)
            raise SystemExit("simulated crash")
        original(self, claim, lease)

    monkeypatch.setattr(runs_module.ClaimStore, "save", save)
    data = hr_file(150)
    with pytest.raises(SystemExit):
        drop(data)
    assert len(sent_external_ids(emulator)) == 100
    drop(data)
    (summary,) = runs()
    assert summary["status"] == "complete"
    assert [b["batch"] for b in summary["batches"]] == [1, 2, 3]
    assert [b["resent_after_crash"] for b in summary["batches"]] == [False, False, False]
    assert [b["sent_in_earlier_attempt"] for b in summary["batches"]] == [True, True, False]
    uploads = [u for u in emulator.uploads() if u["status"] == 202]
    assert len(uploads) == 3
    assert len({ext for u in uploads for _, ext in u["records"]}) == 150
    ledger = result_text(summary, "ledger.csv").splitlines()
    assert len(ledger) == 151  # every record once, the earlier attempt's included


def test_killed_process_resumes_after_last_accepted_batch(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real process is SIGKILLed half way; the next attempt sends only what was left."""
    import hashlib

    from azure.storage.blob import BlobLeaseClient, BlobServiceClient

    from provisioning.jml.state import GATE
    from provisioning.runs.claims import claim_name
    from provisioning.settings import STATE_CONTAINER

    def lease_state(name: str) -> str:
        """available, leased, expired, breaking or broken."""
        with BlobServiceClient.from_connection_string(env["HRSTORAGE"]) as service:
            blob = service.get_blob_client(STATE_CONTAINER, name)
            return str(blob.get_blob_properties().lease.state)

    def break_leases(names: list[str]) -> list[str]:
        """Break at once the leases held on these state blobs; the names that had one."""
        broken = []
        with BlobServiceClient.from_connection_string(env["HRSTORAGE"]) as service:
            for name in names:
                blob = service.get_blob_client(STATE_CONTAINER, name)
                if blob.exists() and blob.get_blob_properties().lease.state == "leased":
                    BlobLeaseClient(blob).break_lease(lease_break_period=0)
                    broken.append(name)
        return broken

    data = hr_file(500)  # 10 batches
    source = tmp_path / "workers.csv"
    source.write_bytes(data)
    # The longest lease Azure allows: it cannot run out during the test, so only breaking it
    # lets the retry in.
    monkeypatch.setenv("PROVISIONING_LEASE_SECONDS", "60")
    emulator.set_faults(latency_ms=300)
    script = (
        "import sys\n"
        "from tests.e2e import drop\n"
        "drop(open(sys.argv[1], 'rb').read(), 'workers.csv')\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(source)],
        cwd=ROOT,
        env={**os.environ},
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len([u for u in emulator.uploads() if u["status"] == 202]) < 4:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    emulator.set_faults(latency_ms=0)
    before = len(sent_external_ids(emulator))
    assert 200 <= before < 500

    # The dead process still holds the claim's lease: a retry now must not send anything.
    claim = claim_name(hashlib.sha256(data).hexdigest())
    assert lease_state(claim) == "leased"
    drop(data)
    assert len(sent_external_ids(emulator)) == before
    # What an operator does instead of waiting for the lease to run out: break the dead run's
    # leases (its claim, and the send gate if it died holding it) with the storage client.
    broken = break_leases([claim, GATE])
    assert claim in broken
    assert lease_state(claim) == "broken"
    drop(data)
    (summary,) = [s for s in runs() if s["status"] != "duplicate"]
    assert summary["status"] == "complete"
    ids = sent_external_ids(emulator)
    assert len(set(ids)) == 500
    resent = [b for b in summary["batches"] if b["resent_after_crash"]]
    # Only the batch in flight when the process died may go twice, and the results say so. It
    # was marked in flight before it was sent, so the kill may have come before it reached Graph:
    # then it went once, marked all the same.
    assert len(resent) <= 1
    assert len(ids) - 500 in ({0, 50} if resent else {0})


def test_403_stops_the_run_with_graphs_reason_and_resumes_once_fixed(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(status_sequence=[202, 403])
    data = hr_file(120)  # 3 batches
    drop(data)
    (summary,) = runs()
    assert summary["status"] == "failed"
    assert "403" in summary["reason"] and "request-id" in summary["reason"]
    assert [u["status"] for u in emulator.uploads()] == [202, 403]  # not retried
    drop(data)  # permissions fixed: the next attempt continues at batch 2
    (summary,) = runs()
    assert summary["status"] == "complete"
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 120


@pytest.mark.parametrize("count", [2, 51])
def test_one_line_json_array_is_provisioned_completely(
    env: dict[str, str], emulator: GraphEmulator, count: int
) -> None:
    # json.dump(list_of_dicts, f) writes every record on line 1: bulkIds come from the record's
    # ordinal, so they stay unique and Graph takes every batch.
    rows = [worker(n) for n in range(1, count + 1)]
    rows[-1]["WorkerStatus"] = "Maybe"  # one rejected record, reported by its ordinal
    drop(json.dumps(rows).encode("utf-8"), "export.json")
    (summary,) = runs()
    assert summary["status"] == "partly-rejected"
    assert summary["records_accepted"] == count - 1
    uploads = emulator.uploads()
    assert all(u["status"] == 202 for u in uploads)
    bulk_ids = [bulk for u in uploads for bulk, _ in u["records"]]
    assert len(bulk_ids) == len(set(bulk_ids)) == count - 1
    assert {u["employeeId"] for u in emulator.directory()} == {str(n) for n in range(1, count)}
    (rejected,) = csv.DictReader(io.StringIO(result_text(summary, "rejected.csv")))
    assert (rejected["record"], rejected["line"]) == (str(count), "1")
    ledger = list(csv.DictReader(io.StringIO(result_text(summary, "ledger.csv"))))
    assert sorted(int(r["record"]) for r in ledger) == list(range(1, count))


def test_a_batch_refused_by_graph_makes_the_run_partly_rejected(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(status_sequence=[202, 400])
    drop(hr_file(120))
    (summary,) = runs()
    assert summary["status"] == "partly-rejected"
    assert "50 records refused by Graph" in summary["reason"]
    assert "#8a6100" in result_text(summary, "report.html")  # amber, not green
    # The log line is a warning, which the alert in infra/ picks up.
    (finished,) = [r for r in caplog.records if "partly-rejected:" in r.getMessage()]
    assert finished.levelname == "WARNING"


def test_every_batch_refused_by_graph_makes_the_run_rejected(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(status_sequence=[400, 400, 400])
    drop(hr_file(120))
    (summary,) = runs()
    assert summary["status"] == "rejected"
    assert summary["records_accepted"] == 0
    assert summary["records_rejected_by_graph"] == 120
    assert "#a4262c" in result_text(summary, "report.html")
    (finished,) = [r for r in caplog.records if re.match(r"run \S+ rejected: ", r.getMessage())]
    assert finished.levelname == "ERROR"


def test_an_external_id_changing_case_between_files_sends_nothing_for_it(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker("E2"), worker("E3")]), "day1.csv")
    mark = len(emulator.uploads())
    drop(csv_bytes([worker("e2", JobTitle="Lead"), worker("E3", JobTitle="Lead")]), "day2.csv")
    second = max(runs(), key=lambda s: s["started"])
    assert second["status"] == "partly-rejected"
    assert "1 externalIds differ only in case" in second["reason"]
    assert second["plan"]["conflicts"] == ["e2"]
    sent = [ext for u in emulator.uploads()[mark:] for _, ext in u["records"]]
    assert sent == ["E3"]
    assert {u["employeeId"] for u in emulator.directory()} == {"E2", "E3"}


# --- the claim and the seen marker as versioned documents -----------------------------------


def state_json(name: str) -> Any:
    found = store().read_json(STATE_CONTAINER, name)
    assert found is not None, name
    return found[0]


def put_state(name: str, data: Any) -> None:
    store().write_json(STATE_CONTAINER, name, data)


CLAIM_KEYS = {
    "content_hash", "run_id", "blob", "created", "results_prefix", "status", "attempts",
    "next_batch", "reason", "duplicates", "order",
}  # fmt: skip


def test_a_claim_is_stored_with_the_version_and_the_keys_it_always_had(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(hr_file(60))
    (summary,) = runs()
    claim = state_json(claim_name(summary["content_hash"]))
    assert set(claim) == CLAIM_KEYS | {"schema_version"} and claim["schema_version"] == 1
    assert (claim["status"], claim["next_batch"], claim["attempts"]) == ("complete", 3, 1)
    loaded = ClaimStore(store()).load(summary["content_hash"])
    assert loaded is not None
    assert loaded.model_dump(exclude={"schema_version"}) == {
        k: v for k, v in claim.items() if k != "schema_version"
    }


def test_a_claim_written_before_versions_reads_as_before(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    data = hr_file(60)
    drop(data, "a.csv")
    (summary,) = runs()
    name = claim_name(summary["content_hash"])
    # As early versions wrote it: no version, no order, and a key since dropped (in_flight).
    old = {k: v for k, v in state_json(name).items() if k not in ("schema_version", "order")}
    old["in_flight"] = [2]
    put_state(name, old)

    claims = ClaimStore(store())
    claim = claims.load(summary["content_hash"])
    assert claim is not None
    assert claim.model_dump(exclude={"schema_version", "order"}) == {
        k: v for k, v in old.items() if k != "in_flight"
    }
    assert claim.order == "" and claim.data_order == new_order(
        parse_iso(old["created"]), old["run_id"]
    )
    # Read as done, as before: the same content again is a duplicate, nothing sent twice.
    uploads = len(emulator.uploads())
    drop(data, "copy-of-a.csv")
    assert [s["status"] for s in runs()].count("duplicate") == 1
    assert len(emulator.uploads()) == uploads
    # Saved again, it carries the version; the dropped key stays dropped.
    claims.save(claim)
    assert set(state_json(name)) == CLAIM_KEYS | {"schema_version"}


UNUSABLE_CLAIMS = {
    "newer": (
        lambda claim: {**claim, "schema_version": 2, "next_batch": {"file": 3}},
        "NewerDocument",
        "was written by a newer version of the app (claim schema version 2; this version "
        "reads up to 1)",
    ),
    "malformed": (
        lambda claim: {**claim, "status": "running", "next_batch": "three"},
        "MalformedDocument",
        "is not a valid claim: next_batch: must be a whole number",
    ),
}


@pytest.mark.parametrize("kind", UNUSABLE_CLAIMS)
def test_a_claim_this_version_cannot_use_stops_the_run_and_stays(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    alter, error, message = UNUSABLE_CLAIMS[kind]
    data = hr_file(60)
    drop(data)
    (summary,) = runs()
    name = claim_name(summary["content_hash"])
    unusable = alter(state_json(name))
    put_state(name, unusable)
    uploads = len(emulator.uploads())

    with pytest.raises(DocumentError) as stopped:
        drop(data)  # the host retries the trigger; the sweep retries the file
    assert str(stopped.value).startswith(f"state/{name} {message}")
    assert type(stopped.value).__name__ == error
    assert state_json(name) == unusable  # never written over
    assert len(emulator.uploads()) == uploads and len(runs()) == 1
    # The blob's marker says the attempt failed, without the run it cannot read.
    marker = state_json(seen_name("hr-inbound/workers.csv"))
    assert (marker["status"], marker["reason"], marker["run_id"]) == ("error", error, None)
    assert "is marked as seen without its run's details" in caplog.text


def test_a_seen_marker_written_before_versions_reads_as_before(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    from tests.test_sweep import sweep, upload

    data = hr_file(60)
    upload("workers.csv", data)
    drop(data, "workers.csv")
    name = seen_name("hr-inbound/workers.csv")
    written = state_json(name)
    assert written["schema_version"] == 1
    marker = read_marker(store(), name)
    assert marker is not None and marker.dump() == written
    old = {k: v for k, v in written.items() if k != "schema_version"}
    put_state(name, old)

    marker = read_marker(store(), name)
    assert marker is not None and marker.stored() == old
    uploads = len(emulator.uploads())
    assert sweep()["seen"] == 1  # read as before: complete, left where it is
    assert len(emulator.uploads()) == uploads


UNUSABLE_MARKERS = {
    "newer": (
        lambda marker: {**marker, "schema_version": 4, "status": "quarantined"},
        "was written by a newer version of the app (seen marker schema version 4;",
    ),
    "malformed": (
        lambda marker: {**marker, "failed_attempts": "many"},
        "is not a valid seen marker: failed_attempts: must be a whole number",
    ),
}


@pytest.mark.parametrize("kind", UNUSABLE_MARKERS)
def test_a_seen_marker_this_version_cannot_use_leaves_its_file_alone(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    from tests.test_sweep import inbound_names, sweep, upload

    alter, message = UNUSABLE_MARKERS[kind]
    data = hr_file(60)
    upload("workers.csv", data)
    drop(data, "workers.csv")
    name = seen_name("hr-inbound/workers.csv")
    unusable = alter(state_json(name))
    put_state(name, unusable)
    uploads = len(emulator.uploads())
    said = f"state/{name} {message}"

    counts = sweep()
    assert (counts["errors"], counts["seen"], counts["processed"]) == (1, 0, {})
    assert counts["moved_to_failed"] == 0 and inbound_names() == ["workers.csv"]
    assert said in caplog.text and "the sweep leaves hr-inbound/workers.csv alone" in caplog.text
    # A run of the blob (its event again) does not write over the marker either.
    caplog.clear()
    drop(data, "workers.csv")
    assert said in caplog.text and "not written over" in caplog.text
    assert state_json(name) == unusable
    assert len(emulator.uploads()) == uploads
