"""Outcomes of sent records from the provisioning logs: matching, paging, log delay, retries of
transient failures, permanent failures for a person, unconfirmed records, results rewritten.

Real parts: files dropped through the blob function, Azurite, the Graph emulator's provisioning
logs read over HTTP through msgraph-sdk with the real managed-identity credential.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
from collections.abc import Callable
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import iso, utcnow
from provisioning.graph.client import GraphClient
from provisioning.graph.provisioning_logs import GraphLog
from provisioning.graph.tenant_pace import TenantPace
from provisioning.reconcile.confirm import Confirmer
from provisioning.reconcile.log_checkpoint import CHECKPOINT
from provisioning.reconcile.run_outcomes import OUTCOMES
from provisioning.runs.tracking import PENDING
from provisioning.settings import STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, result_text, runs, sent_external_ids, store


async def _no_sleep(_seconds: float) -> None:
    return None


def confirm(
    *,
    page_size: int = 500,
    clock: Callable[[], dt.datetime] = utcnow,
    job_active: bool = True,
    deadline: float = float("inf"),
    **overrides: Any,
) -> dict[str, Any]:
    """One outcome pass with the real Graph client, paced as the timer's is; ``page_size``
    small to force paging."""
    settings = Settings(**overrides)

    async def go() -> dict[str, Any]:
        async with GraphClient.from_settings(settings) as graph:
            pace = TenantPace.for_log_reads(store(), settings, sleep=asyncio.sleep)
            confirmer = Confirmer(
                settings,
                store(),
                log_source=GraphLog(graph, pace=pace, page_size=page_size),
                poster=graph,
                sleep=_no_sleep,
                clock=clock,
            )
            report = await confirmer.run(
                job_active=job_active, keep_alive=lambda: None, deadline=deadline
            )
            report["entries_read"] = report["log"]["entries"]
            report["open_ids"] = sorted(confirmer.open_ids)
            return report

    return asyncio.run(go())


def ledger(summary: dict[str, Any]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(result_text(summary, "ledger.csv"))))


def state_names(prefix: str) -> list[str]:
    return [b.name for b in store().list(STATE_CONTAINER, prefix)]


def test_outcomes_fill_the_ledger_and_complete_the_run(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(n) for n in range(1, 121)]))
    assert len(state_names(PENDING)) == 3  # 120 records in three accepted bulk requests

    report = confirm(page_size=7)

    assert report["matched"] == 120 and report["completed_runs"] == 1
    assert report["entries_read"] == 120  # every page followed (7 per page: 18 pages)
    (summary,) = runs()
    outcomes = summary["outcomes"]
    assert outcomes["status"] == "complete"
    assert outcomes["counts"] == {"success": 120}
    rows = ledger(summary)
    by_id = {u["employeeId"]: u["id"] for u in emulator.directory()}
    assert len(rows) == 120
    for row in rows:
        assert row["entra_status"] == "success" and row["entra_action"] == "create"
        assert row["target_id"] == by_id[row["externalId"]]
        assert row["sends"] == "1" and row["log_time"]
    # Nothing left to watch: tracked batches and the outcome file are gone.
    assert state_names(PENDING) == [] and state_names(OUTCOMES) == []
    assert "Entra outcomes" in result_text(summary, "report.html")


def test_log_delay_keeps_records_pending_until_entries_appear(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(log_delay=1.5)
    drop(csv_bytes([worker(n) for n in range(1, 6)]))

    first = confirm()
    assert first["matched"] == 0 and first["open_records"] == 5
    (summary,) = runs()
    assert summary["outcomes"]["status"] == "pending"
    assert summary["outcomes"]["counts"] == {"pending": 5}
    assert first["open_ids"] == ["1", "2", "3", "4", "5"]

    time.sleep(1.6)
    second = confirm()
    assert second["matched"] == 5 and second["completed_runs"] == 1
    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"success": 5}


def test_transient_failure_is_sent_again_and_then_succeeds(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    transient = {"errorCode": "ServiceUnavailable", "errorCategory": "failure"}
    emulator.set_faults(fail_records={"2": transient})
    drop(csv_bytes([worker(n) for n in range(1, 4)]))
    assert sent_external_ids(emulator).count("2") == 1
    emulator.set_faults(fail_records={})  # the condition passed; the failure is in the log

    first = confirm()
    assert first["retried"] == 1 and first["open_records"] == 1
    assert sent_external_ids(emulator).count("2") == 2  # the retry went out

    second = confirm()
    assert second["completed_runs"] == 1
    (summary,) = runs()
    row = next(r for r in ledger(summary) if r["externalId"] == "2")
    assert row["entra_status"] == "success" and row["sends"] == "2"
    assert summary["outcomes"]["retried_records"] == 1
    assert summary["outcomes"]["counts"] == {"success": 3}


def test_transient_failure_stops_being_retried_after_max_attempts(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(fail_records={"1": {"errorCode": "Timeout", "errorCategory": "failure"}})
    drop(csv_bytes([worker(1)]))

    confirm(max_record_attempts=2)  # failure seen, sent a second time
    confirm(max_record_attempts=2)  # the second send failed too: no third
    assert sent_external_ids(emulator).count("1") == 2
    (summary,) = runs()
    assert summary["outcomes"]["status"] == "complete"
    assert summary["outcomes"]["counts"] == {"failure": 1}
    failures = list(csv.DictReader(io.StringIO(result_text(summary, "failures.csv"))))
    assert [(f["externalId"], f["error_code"], f["sends"]) for f in failures] == [
        ("1", "Timeout", "2")
    ]


def test_permanent_failure_is_listed_with_the_recommended_action(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    permanent = {
        "errorCode": "AzureActiveDirectoryConflictingObjects",
        "errorCategory": "nonServiceFailure",
        "reason": "Another object already uses this userPrincipalName.",
        "recommendedAction": "Change the userPrincipalName in HR or remove the other object.",
    }
    emulator.set_faults(fail_records={"3": permanent})
    drop(csv_bytes([worker(n) for n in range(1, 5)]))

    report = confirm()

    assert report["retried"] == 0 and report["completed_runs"] == 1
    assert sent_external_ids(emulator).count("3") == 1  # never retried
    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"success": 3, "failure": 1}
    assert summary["outcomes"]["failures"] == [
        {
            "externalId": "3",
            "record": 3,
            "line": 4,
            "error_code": permanent["errorCode"],
            "reason": permanent["reason"],
            "recommended_action": permanent["recommendedAction"],
        }
    ]
    (failure,) = csv.DictReader(io.StringIO(result_text(summary, "failures.csv")))
    assert failure["recommended_action"] == permanent["recommendedAction"]
    assert failure["error_category"] == "nonServiceFailure"
    assert permanent["recommendedAction"] in result_text(summary, "report.html")


def test_a_record_without_a_log_entry_becomes_unconfirmed_after_the_timeout(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(log_delay=3600)
    drop(csv_bytes([worker(1), worker(2)]))

    soon = confirm()
    assert soon["unconfirmed"] == 0 and soon["open_records"] == 2

    later = confirm(clock=lambda: utcnow() + dt.timedelta(minutes=121))
    assert later["unconfirmed"] == 2 and later["completed_runs"] == 1
    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"unconfirmed": 2}
    assert {r["entra_status"] for r in ledger(summary)} == {"unconfirmed"}


def test_two_sends_of_one_worker_take_its_entries_in_order(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(1, JobTitle="Engineer")]), "a.csv")
    confirm()  # the first run completes and its entry is consumed
    drop(csv_bytes([worker(1, JobTitle="Manager")]), "b.csv")
    time.sleep(1.1)  # the log has second precision: sends in one second are told apart only
    # by their outcomes (test_matching)
    emulator.set_faults(fail_records={"1": {"errorCode": "Denied"}})
    drop(csv_bytes([worker(1, JobTitle="Director")]), "c.csv")

    confirm()

    first, second, third = sorted(runs(), key=lambda s: s["started"])
    assert [ledger(s)[0]["entra_status"] for s in (first, second, third)] == [
        "success",
        "success",
        "failure",
    ]
    assert ledger(first)[0]["entra_action"] == "create"
    assert ledger(second)[0]["entra_action"] == "update"
    # The consumed entries are remembered, so none is matched twice by a later pass.
    checkpoint = store().read_json(STATE_CONTAINER, CHECKPOINT)
    assert checkpoint is not None and len(checkpoint[0]["consumed"]) == 3


def test_a_pass_after_a_crash_merges_tracked_batches_again_without_harm(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(log_delay=1.0)
    drop(csv_bytes([worker(n) for n in range(1, 4)]))
    kept = {n: store().read_json(STATE_CONTAINER, n) for n in state_names(PENDING)}
    confirm()  # merged into the outcome file; nothing in the log yet
    # As if that pass had died after saving the outcome file, before deleting the batches.
    for name, found in kept.items():
        assert found is not None
        store().write_json(STATE_CONTAINER, name, found[0])
    time.sleep(1.1)

    again = confirm()

    assert again["matched"] == 3 and again["completed_runs"] == 1
    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"success": 3}
    assert {r["sends"] for r in ledger(summary)} == {"1"}
    assert state_names(PENDING) == []


def test_retries_wait_while_the_job_is_not_running(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(
        fail_records={"1": {"errorCode": "ServiceUnavailable", "errorCategory": "failure"}}
    )
    drop(csv_bytes([worker(1)]))

    report = confirm(job_active=False)

    assert report["retried"] == 0 and report["open_records"] == 1
    assert sent_external_ids(emulator).count("1") == 1


def test_a_retry_refused_by_graph_is_a_permanent_failure(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(
        fail_records={"1": {"errorCode": "ServiceUnavailable", "errorCategory": "failure"}}
    )
    drop(csv_bytes([worker(1)]))
    emulator.set_faults(status_sequence=[400])

    confirm()

    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"failure": 1}
    (failure,) = summary["outcomes"]["failures"]
    assert "HTTP 400" in failure["reason"]


def test_an_interrupted_run_stays_open_until_it_has_sent_everything(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning.functions.blob_trigger import RunInterrupted

    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    data = csv_bytes([worker(n) for n in range(1, 81)])  # two bulk requests
    emulator.set_faults(status_sequence=[202, 503, 503])
    with pytest.raises(RunInterrupted):
        drop(data)

    early = confirm()

    assert early["matched"] == 50 and early["completed_runs"] == 0
    (summary,) = runs()
    assert summary["outcomes"]["status"] == "pending"  # every sent record is final, but...
    assert summary["outcomes"]["counts"] == {"success": 50}  # ... 30 are not sent yet

    drop(data)  # the host retries the blob: the run resumes at the second request
    late = confirm()

    assert late["completed_runs"] == 1
    (summary,) = runs()
    assert summary["status"] == "complete"
    assert (summary["outcomes"]["status"], summary["outcomes"]["records"]) == ("complete", 80)
    assert summary["outcomes"]["counts"] == {"success": 80}
    assert {r["entra_status"] for r in ledger(summary)} == {"success"}
    assert len(ledger(summary)) == 80


def test_a_worker_sent_again_within_seconds_gets_its_own_entries_for_each_send(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(1, JobTitle="Engineer")]), "a.csv")
    time.sleep(1.1)  # a second later: the log's precision
    drop(csv_bytes([worker(1, JobTitle="Director")]), "b.csv")

    report = confirm()

    assert report["matched"] == 2 and report["completed_runs"] == 2
    first, second = (ledger(s)[0] for s in sorted(runs(), key=lambda s: s["started"]))
    assert (first["entra_action"], second["entra_action"]) == ("create", "update")
    assert first["log_time"] < second["log_time"]
    entries = [e for e in emulator.logs() if e["sourceIdentity"]["id"] == "1"]
    assert len({e["changeId"] for e in entries}) == 2


def test_a_pass_cut_short_by_its_budget_goes_on_from_the_checkpoint(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(n) for n in range(1, 41)]), "a.csv")
    time.sleep(1.1)
    drop(csv_bytes([worker(n) for n in range(41, 81)]), "b.csv")
    emulator.set_faults(log_rate_limit=(2, 1.0))
    fast = {"log_read_requests": 2, "log_read_window_seconds": 1.0, "log_overlap_seconds": 0}

    # Two reads a second: some 8 pages (56 entries) before the budget, into the second file.
    cut = confirm(page_size=7, deadline=time.monotonic() + 5.5, **fast)

    assert cut["log"]["stopped"] == "budget"
    assert 40 < cut["matched"] < 80 and cut["completed_runs"] == 1
    checkpoint = store().read_json(STATE_CONTAINER, CHECKPOINT)
    assert checkpoint is not None and checkpoint[0]["cursor"]

    rest = confirm(page_size=7, **fast)

    assert cut["matched"] + rest["matched"] == 80
    assert cut["completed_runs"] + rest["completed_runs"] == 2
    # The second pass started at the checkpoint, not at the oldest send.
    assert rest["entries_read"] < 80
    rows = [row for s in runs() for row in ledger(s)]
    assert len(rows) == 80 and {r["entra_status"] for r in rows} == {"success"}
    checkpoint = store().read_json(STATE_CONTAINER, CHECKPOINT)
    assert checkpoint is not None and len(checkpoint[0]["consumed"]) == 80
    assert {r["sends"] for r in rows} == {"1"}


@pytest.mark.parametrize("late", [1, 6])
def test_sends_tracked_after_the_log_was_read_past_them_are_found_by_the_cheaper_way(
    env: dict[str, str], emulator: GraphEmulator, late: int
) -> None:
    """Sends whose entries the log was read past before they were tracked: one is looked up
    on its own (one read instead of a page more); six are cheaper to find by reading that
    stretch of the log again (two pages more instead of six reads). The read ahead starts in
    the second of the checkpoint (the log's precision), so it reads the last file's ten
    entries again (two pages of seven)."""
    drop(csv_bytes([worker(n) for n in range(1, late + 1)]), "a.csv")
    hidden = {n: store().read_json(STATE_CONTAINER, n) for n in state_names(PENDING)}
    for name in hidden:  # as if their tracking were written only after the next pass read
        store().delete(STATE_CONTAINER, name)
    for part, first_id in enumerate((100, 110)):
        time.sleep(1.1)  # each file's entries in a second of their own
        drop(csv_bytes([worker(n) for n in range(first_id, first_id + 10)]), f"b{part}.csv")
    first = confirm(page_size=7, log_overlap_seconds=0)
    assert first["matched"] == 20 and first["log"]["entries"] == late + 20
    for name, found in hidden.items():
        assert found is not None
        store().write_json(STATE_CONTAINER, name, found[0])

    again = confirm(page_size=7, log_overlap_seconds=0)

    assert again["matched"] == late and again["open_records"] == 0
    reading = again["log"]
    if late == 1:
        assert (reading["lookups"], reading["pages"]) == (1, 2)
    else:
        assert reading["lookups"] == 0 and reading["pages"] == 4  # 26 entries again


def test_a_pass_that_dies_after_its_checkpoint_loses_no_outcome_and_gives_none_away(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint (entries consumed, and whose change they are) is saved before the
    outcome files. A pass that dies in between leaves the record pending with its entry
    consumed: the next pass gives it that entry again, and the worker's next send (a second
    later) gets its own."""
    drop(csv_bytes([worker(1, JobTitle="Engineer")]), "a.csv")

    saves: list[int] = []
    save = Confirmer._save

    def die_at_the_outcome_file(self: Confirmer, run: Any) -> None:
        saves.append(1)
        if len(saves) == 2:  # the first save merges the tracked batch; the second is after
            raise RuntimeError("the instance was stopped")
        save(self, run)

    with monkeypatch.context() as patch:
        patch.setattr(Confirmer, "_save", die_at_the_outcome_file)
        with pytest.raises(RuntimeError):
            confirm()
    checkpoint = store().read_json(STATE_CONTAINER, CHECKPOINT)
    assert checkpoint is not None and len(checkpoint[0]["consumed"]) == 1
    time.sleep(1.1)
    drop(csv_bytes([worker(1, JobTitle="Director")]), "b.csv")

    report = confirm()

    assert report["matched"] == 2 and report["completed_runs"] == 2
    first, second = (ledger(s)[0] for s in sorted(runs(), key=lambda s: s["started"]))
    assert (first["entra_action"], second["entra_action"]) == ("create", "update")
    assert first["match"] == second["match"] == ""


def test_graph_dropping_log_reads_never_fails_the_pass(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(n) for n in range(1, 4)]))
    emulator.set_faults(read_sequence=[0] * 6)  # every read's connection dropped

    cut = confirm(deadline=time.monotonic() + 4.0)

    # The first drop is waited out on the pace (2 s), the next backoff (4 s) is more than the
    # budget: the reading stops, the pass ends, nothing is lost.
    assert cut["log"]["stopped"].startswith("held until ") and cut["matched"] == 0
    assert cut["open_records"] == 3
    emulator.set_faults(read_sequence=[0])  # one more drop, then Graph answers

    later = confirm()

    assert later["matched"] == 3 and later["completed_runs"] == 1


def test_a_skipped_manager_settles_from_a_read_to_the_end_less_the_overlap() -> None:
    """In a quiet log (read to its end, no cursor yet: the skip came from a per-worker
    lookup) the log counts as read up to that read less the overlap, not up to the read."""
    from provisioning.reconcile.confirm import MANAGER_SETTLE
    from provisioning.reconcile.log_checkpoint import LogCheckpoint
    from provisioning.reconcile.run_outcomes import RunOutcomes

    skipped = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    overlap = dt.timedelta(seconds=60)
    confirmer = Confirmer(
        Settings(log_overlap_seconds=overlap.total_seconds()),
        None,  # type: ignore[arg-type]  # nothing is noted: the record names no manager
        log_source=None,  # type: ignore[arg-type]
        poster=None,
        sleep=_no_sleep,
        clock=utcnow,
    )

    def settles(complete: dt.datetime) -> bool:
        record = {"manager": "pending", "manager_skipped_at": iso(skipped), "log_time": ""}
        run = RunOutcomes("r", "p/", "file", {"b": record})
        checkpoint = LogCheckpoint(complete=iso(complete))
        confirmer._settle_managers(checkpoint, [(run, "b", record)], skipped, TIMEOUT)
        return record["manager"] == "unresolved"

    just_past = skipped + MANAGER_SETTLE + dt.timedelta(seconds=1)
    assert not settles(just_past)  # read then, but only what was older than the overlap
    assert settles(just_past + overlap)


TIMEOUT = dt.timedelta(minutes=120)


def test_a_log_read_graph_refuses_stops_the_reading_and_logs_no_message(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Graph's error message may quote the query, whose per-worker form names an HR id: the
    pass says only what kind of error stopped it."""
    drop(csv_bytes([worker(1)]))
    emulator.set_faults(read_sequence=[500])

    with caplog.at_level("INFO"):
        report = confirm()

    assert report["log"]["stopped"] == "graph: GraphError HTTP 500"
    assert report["open_records"] == 1
    messages = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("provisioning"))
    assert "stopped (graph: GraphError HTTP 500)" in messages
    from graph_emulator.server import FAULT_BODIES

    assert FAULT_BODIES[500][1] not in messages
