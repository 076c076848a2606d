"""Job health, the daily call quota and a bucket-full pause: results/health.json and its logs.

Real parts: Azurite, the Graph emulator's job endpoint through msgraph-sdk, the tenant's pace
(state/pace.json), which counts every bulkUpload attempt of every sender."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import iso, utcnow
from provisioning.functions.services import open_services
from provisioning.graph.client import JobStatus
from provisioning.graph.pace_book import BUCKET, PaceBook, pause
from provisioning.graph.tenant_pace import PACE_BLOB, read_book
from provisioning.reconcile.health import assess, record_health
from provisioning.settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, store


def check(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings()

    async def go() -> dict[str, Any]:
        async with open_services(settings) as (blobs, graph):
            blobs.ensure_containers(RESULTS_CONTAINER, STATE_CONTAINER)
            return record_health(settings, blobs, await graph.job_status(), utcnow())

    return asyncio.run(go())


def health_json() -> dict[str, Any]:
    found = store().read_json(RESULTS_CONTAINER, "health.json")
    assert found is not None
    return found[0]


def test_an_active_job_is_healthy(env: dict[str, str], emulator: GraphEmulator) -> None:
    report = check()
    assert report["healthy"] and report["warnings"] == []
    assert health_json() == report


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        ("Quarantine", "TooManyDeletes", "quarantine (TooManyDeletes)"),
        ("Paused", None, "paused"),
    ],
)
def test_quarantine_or_pause_is_written_and_logged_as_an_error(
    env: dict[str, str],
    emulator: GraphEmulator,
    caplog: pytest.LogCaptureFixture,
    status: str,
    reason: str | None,
    words: str,
) -> None:
    emulator.set_faults(job_status=status, quarantine_reason=reason)
    caplog.set_level("INFO")

    report = check()

    assert not report["healthy"]
    assert health_json()["job"] == {"code": status, "quarantine_reason": reason}
    assert words in health_json()["warnings"][0]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        f"provisioning job unhealthy: {report['warnings'][0]}"
    ]


def test_every_bulk_upload_call_is_counted(env: dict[str, str], emulator: GraphEmulator) -> None:
    emulator.set_faults(status_sequence=[429])  # a throttled call counts too
    drop(csv_bytes([worker(n) for n in range(1, 121)]))  # three bulk requests, one retried

    report = check()
    assert report["quota"]["calls_last_24h"] == len(emulator.uploads()) == 4
    assert sum(read_book(store()).calls.values()) == 4


def write_book(book: PaceBook) -> None:
    store().ensure_containers(STATE_CONTAINER, RESULTS_CONTAINER)
    store().write_json(STATE_CONTAINER, PACE_BLOB, book.dump())


def test_a_warning_when_the_quota_is_near(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow().timestamp()
    write_book(PaceBook(calls={str(int(now // BUCKET) * BUCKET): 1700}))
    caplog.set_level("INFO")

    report = check()

    assert report["healthy"] and report["quota"]["near"]
    assert report["quota"]["calls_last_24h"] == 1700 and report["quota"]["percent"] == 85.0
    assert not report["sending"]["held"]
    assert any(r.levelname == "WARNING" and "quota" in r.getMessage() for r in caplog.records)


def test_a_used_up_quota_says_when_sending_goes_on(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    bucket = int(utcnow().timestamp() // BUCKET) * BUCKET
    write_book(PaceBook(calls={str(bucket): 2000}))

    report = check()

    frees = dt.datetime.fromtimestamp(bucket + BUCKET + 86_400, dt.UTC)
    assert report["sending"]["held"] and report["quota"]["next_free"] == iso(frees)
    assert report["sending"]["until"] == iso(frees)
    assert "daily quota of 2000" in report["sending"]["reason"]
    assert any(iso(frees) in warning for warning in report["warnings"])
    assert health_json()["sending"] == report["sending"]


def test_a_bucket_full_pause_and_its_end_are_in_health_json(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    book = PaceBook()
    now = utcnow().timestamp()
    pause(book, now, 600.0, "Graph's bucket for the job is full")
    write_book(book)
    caplog.set_level("INFO")

    report = check()

    until = iso(dt.datetime.fromtimestamp(now + 600.0, dt.UTC))
    assert report["healthy"]  # the job itself is fine
    assert report["sending"] == {
        "held": True,
        "until": until,
        "reason": "Graph's bucket for the job is full",
        "bucket_full_pause_until": until,
    }
    assert any(
        r.levelname == "WARNING" and f"sending held until {until}" in r.getMessage()
        for r in caplog.records
    )


def test_assess_thresholds() -> None:
    settings = Settings(daily_call_quota=6000, quota_warn_percent=50)
    now = utcnow()
    bucket = str(int(now.timestamp() // BUCKET) * BUCKET)
    below, at = PaceBook(calls={bucket: 2999}), PaceBook(calls={bucket: 3000})
    assert not assess(JobStatus("Active"), below, settings, now)["quota"]["near"]
    assert assess(JobStatus("Active"), at, settings, now)["quota"]["near"]


def test_a_job_before_its_first_cycle_is_healthy_with_a_warning(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(job_status="NotRun")
    caplog.set_level("INFO")
    report = check()
    assert report["healthy"] and report["job"]["code"] == "NotRun"
    assert "has not completed its first cycle" in report["warnings"][0]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_job_not_configured_is_unhealthy(env: dict[str, str], emulator: GraphEmulator) -> None:
    emulator.set_faults(job_status="NotConfigured")
    report = check()
    assert not report["healthy"] and "not configured" in report["warnings"][0]


def test_the_outcome_backlog_and_its_eta_are_in_health_json(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_reconcile import tick

    emulator.set_faults(log_delay=3600)  # Entra has not written the entries yet
    drop(csv_bytes([worker(n) for n in range(1, 4)]))

    tick()

    backlog = health_json()["outcomes"]
    assert health_json()["healthy"] is True  # the job's health is still there beside it
    assert backlog["records_open"] == 3 and backlog["records_awaiting_log"] == 3
    # One page of 1,000 at 5 reads per 10 s: two seconds of reading, one pass.
    assert (backlog["log_pages"], backlog["eta_seconds"], backlog["passes"]) == (1, 2, 1)
    assert backlog["last_pass_stopped"] == "done"

    emulator.advance(3601)  # the entries are visible now
    tick()

    backlog = health_json()["outcomes"]
    assert (backlog["records_open"], backlog["log_pages"], backlog["eta_seconds"]) == (0, 0, 0)
    assert backlog["cursor"] is not None and backlog["cursor_lag_seconds"] >= 0
