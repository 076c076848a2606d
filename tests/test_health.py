"""Job health and the daily call quota: results/health.json, error logs, the call counter.

Real parts: Azurite, the Graph emulator's job endpoint through msgraph-sdk, the real
GraphClient built by open_services (which counts every bulkUpload call)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import utcnow
from provisioning.functions.services import open_services
from provisioning.graph.client import JobStatus
from provisioning.graph.quota import CallCounter
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

    assert CallCounter(store()).last_24h(utcnow()) == len(emulator.uploads()) == 4


def test_concurrent_counting_loses_nothing(env: dict[str, str]) -> None:
    store().ensure_containers(STATE_CONTAINER)
    now = utcnow()

    def count() -> None:
        counter = CallCounter(store())
        for _ in range(10):
            counter.add(1, now)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert CallCounter(store()).last_24h(now) == 40


def test_the_window_is_24_hours_and_old_hours_are_pruned(env: dict[str, str]) -> None:
    store().ensure_containers(STATE_CONTAINER)
    now = dt.datetime(2026, 11, 25, 12, 30, tzinfo=dt.UTC)
    counter = CallCounter(store())
    counter.add(5, now)
    counter.add(7, now - dt.timedelta(hours=23))
    counter.add(100, now - dt.timedelta(hours=24))  # outside the window
    counter.add(1, now - dt.timedelta(hours=50))
    assert counter.last_24h(now) == 12
    counter.prune(now)
    assert len(list(store().list(STATE_CONTAINER, "calls/"))) == 3


def test_a_warning_when_the_quota_is_near(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    store().ensure_containers(STATE_CONTAINER)
    CallCounter(store()).add(1700, utcnow())
    caplog.set_level("INFO")

    report = check()

    assert report["healthy"] and report["quota"]["near"]
    assert report["quota"]["calls_last_24h"] == 1700 and report["quota"]["percent"] == 85.0
    assert any(r.levelname == "WARNING" and "quota" in r.getMessage() for r in caplog.records)


def test_assess_thresholds() -> None:
    settings = Settings(daily_call_quota=6000, quota_warn_percent=50)
    now = utcnow()
    assert not assess(JobStatus("Active"), 2999, settings, now)["quota"]["near"]
    assert assess(JobStatus("Active"), 3000, settings, now)["quota"]["near"]
