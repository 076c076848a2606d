"""The reconciliation timer end to end: binding metadata, one pass doing every step, job health
stopping sends, overlapping passes, past-due catch-up, drift scheduling, the CLI.

Real parts: the timer function from app.get_functions() called with a real TimerRequest,
Azurite, the Graph emulator over HTTP with the real managed-identity credential."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import azure.functions as func
import pytest

from graph_emulator import GraphEmulator
from provisioning import cli
from provisioning.clock import utcnow
from provisioning.functions.services import open_services
from provisioning.reconcile.reconciler import Reconciler
from provisioning.settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, functions, runs, sent_external_ids, store


def the_timer() -> Any:
    return functions()["reconcile"]


def tick(past_due: bool = False) -> None:
    asyncio.run(the_timer().get_user_function()(func.timer.TimerRequest(past_due=past_due)))


def passes() -> list[dict[str, Any]]:
    names = sorted(b.name for b in store().list(RESULTS_CONTAINER, "reconcile/"))
    out = []
    for name in names:
        found = store().read_json(RESULTS_CONTAINER, name)
        assert found is not None
        out.append(found[0])
    return out


def reconcile(**kwargs: Any) -> dict[str, Any]:
    settings = Settings()

    async def go() -> dict[str, Any]:
        async with open_services(settings) as (blobs, graph):
            return await Reconciler(settings, blobs, graph).run(**kwargs)

    return asyncio.run(go())


def test_binding_metadata() -> None:
    bindings = [json.loads(b) for b in the_timer().get_raw_bindings()]
    assert bindings == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%PROVISIONING_RECONCILE_SCHEDULE%",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ]
    assert Settings().reconcile_schedule == "0 */10 * * * *"


def test_a_timer_pass_confirms_outcomes_and_reports_health(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(fail_records={"3": {"errorCode": "Conflict", "recommendedAction": "Fix"}})
    drop(csv_bytes([worker(n) for n in range(1, 6)]))

    tick()

    (summary,) = runs()
    assert summary["outcomes"]["status"] == "complete"
    assert summary["outcomes"]["counts"] == {"success": 4, "failure": 1}
    (report,) = passes()
    assert report["status"] == "complete"
    assert report["health"] == {"healthy": True, "job": "Active"}
    assert report["outcomes"]["completed"] == [summary["run_id"]]
    assert report["release"]["status"] == "nothing-due"
    health = store().read_json(RESULTS_CONTAINER, "health.json")
    assert health is not None and health[0]["healthy"]


def test_a_quarantined_job_is_reported_and_nothing_is_sent(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    transient = {"errorCode": "ServiceUnavailable", "errorCategory": "failure"}
    emulator.set_faults(fail_records={"1": transient})
    drop(csv_bytes([worker(1)]))
    emulator.set_faults(job_status="Quarantine", quarantine_reason="TooManyDeletes")
    caplog.set_level("INFO")

    tick()

    (report,) = passes()
    assert report["health"] == {"healthy": False, "job": "Quarantine"}
    assert "release" not in report and report["outcomes"]["retried"] == 0
    assert sent_external_ids(emulator) == ["1"]  # the retry waits for a healthy job
    assert any(
        r.levelname == "ERROR" and r.getMessage().startswith("provisioning job unhealthy")
        for r in caplog.records
    )


def test_overlapping_passes_do_not_both_run(env: dict[str, str], emulator: GraphEmulator) -> None:
    drop(csv_bytes([worker(n) for n in range(1, 4)]))
    settings = Settings()

    async def both() -> list[dict[str, Any]]:
        async with (
            open_services(settings) as (a_store, a_graph),
            open_services(settings) as (b_store, b_graph),
        ):
            return list(
                await asyncio.gather(
                    Reconciler(settings, a_store, a_graph).run(),
                    Reconciler(settings, b_store, b_graph).run(),
                )
            )

    results = asyncio.run(both())

    assert sorted(r["status"] for r in results) == ["busy", "complete"]
    (summary,) = runs()
    assert summary["outcomes"]["counts"] == {"success": 3}
    # Once the first pass is over, the lock is free again.
    assert reconcile()["status"] == "complete"


def test_a_past_due_pass_catches_up_once(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    drop(csv_bytes([worker(1)]), "a.csv")
    drop(csv_bytes([worker(2)]), "b.csv")
    caplog.set_level("INFO")

    tick(past_due=True)
    tick()

    first, second = passes()
    assert first["outcomes"]["completed_runs"] == 2
    assert second["outcomes"]["runs"] == 0  # nothing left: no double work
    assert sorted(sent_external_ids(emulator)) == ["1", "2"]
    assert any("schedule was missed" in r.getMessage() for r in caplog.records)


def test_drift_runs_when_due_and_not_again_within_the_interval(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    drop(csv_bytes([worker(1)]))

    first = reconcile()
    second = reconcile()
    forced = reconcile(drift=True)

    assert "drift" in first and "drift" not in second and "drift" in forced
    assert first["drift"]["results_prefix"] != forced["drift"]["results_prefix"]


def test_drift_interval_zero_turns_it_off(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_DRIFT_INTERVAL_HOURS", "0")
    assert "drift" not in reconcile()


def test_the_cli_runs_one_pass(
    env: dict[str, str], emulator: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    drop(csv_bytes([worker(1)]))

    code = cli.main(["reconcile", "--no-drift", "--no-sweep"])

    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "complete" and "sweep" not in printed and "drift" not in printed
    assert printed["outcomes"]["completed_runs"] == 1


def test_outcomes_wait_for_the_timeout_before_unconfirmed(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.set_faults(log_delay=3600)
    drop(csv_bytes([worker(1)]))
    settings = Settings()

    async def later() -> dict[str, Any]:
        async with open_services(settings) as (blobs, graph):
            return await Reconciler(
                settings, blobs, graph, clock=lambda: utcnow() + dt.timedelta(hours=3)
            ).run(drift=False)

    assert reconcile(drift=False)["outcomes"]["unconfirmed"] == 0
    assert asyncio.run(later())["outcomes"]["unconfirmed"] == 1


def test_drift_auto_fix_resends_and_its_outcomes_are_confirmed(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(csv_bytes([worker(1), worker(2)]))
    reconcile(drift=False)  # the drop's outcomes confirmed: nothing pending
    with emulator.state.lock:  # someone disabled worker 2's account by hand in Entra
        emulator.state.users[emulator.state.by_employee_id["2"]]["accountEnabled"] = False
    monkeypatch.setenv("PROVISIONING_DRIFT_AUTO_FIX", "true")

    fixed = reconcile(drift=True)

    assert fixed["drift"]["counts"]["mismatches"] == 1
    assert fixed["drift"]["fix"]["records_accepted"] == 1
    enabled = {u["employeeId"]: u["accountEnabled"] for u in emulator.directory()}
    assert enabled == {"1": True, "2": True}
    # The fix is a tracked run like any other: the next pass confirms it.
    after = reconcile(drift=True)
    assert after["outcomes"]["completed_runs"] == 1
    assert after["drift"]["counts"]["mismatches"] == 0
    prefix = fixed["drift"]["results_prefix"]
    found = store().read_json(RESULTS_CONTAINER, f"{prefix}summary.json")
    assert found is not None and found[0]["outcomes"]["counts"] == {"success": 1}


def test_a_pass_releases_a_joiner_whose_day_came_and_confirms_it(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    today = utcnow().date()
    hire = today + dt.timedelta(days=30)  # beyond the 14-day look-ahead: held until day 16
    drop(csv_bytes([worker(1), worker(2, HireDate=hire.isoformat())]))
    assert sent_external_ids(emulator) == ["1"]
    settings = Settings()

    def at(days: int) -> dict[str, Any]:
        moment = dt.datetime.combine(today + dt.timedelta(days=days), dt.time(12), dt.UTC)

        async def go() -> dict[str, Any]:
            async with open_services(settings) as (blobs, graph):
                return await Reconciler(settings, blobs, graph, clock=lambda: moment).run(
                    drift=False
                )

        return asyncio.run(go())

    assert at(15)["release"]["status"] == "nothing-due"
    released = at(16)
    assert released["release"]["records_accepted"] == 1
    assert sorted(sent_external_ids(emulator)) == ["1", "2"]
    # The released record is tracked like any other send: the same pass waits for its entry.
    assert released["outcomes"]["open_records"] == 1
    summary = store().read_json(RESULTS_CONTAINER, f"{released['release']['results']}summary.json")
    assert summary is not None and summary[0]["outcomes"]["counts"] == {"pending": 1}


def test_the_cli_release_waits_for_a_running_pass(
    env: dict[str, str], emulator: GraphEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioning.reconcile.reconciler import take_lock

    blobs = store()
    blobs.ensure_containers(STATE_CONTAINER)
    lease = take_lock(blobs, Settings())  # as a timer pass holds it
    assert lease is not None

    assert cli.main(["release"]) == 3  # unfinished: README, "Statuses and exit codes"
    assert "busy" in capsys.readouterr().out
    lease.release()
    assert cli.main(["release"]) == 0
    assert "nothing-due" in capsys.readouterr().out
