"""The daily call quota as a budget: a file that needs three days of quota is sent over three
(simulated) days, joiners first, then leavers, then movers, with no call refused by Graph; the
plan and the report say so before the first request goes.

Real parts: Azurite, the Graph emulator with its tenant-wide daily quota and its clock moved on
a day at a time (``advance``), the sweep and the drop run with the same clock moved on."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import parse_iso, utcnow
from provisioning.functions.services import open_services
from provisioning.runs.drop import DropProcessor
from provisioning.runs.sweep import Sweeper
from provisioning.settings import INBOUND_CONTAINER, STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import result_text, runs, store

pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)
QUOTA = 4  # bulkUpload calls per 24 hours, in the emulator and in the settings
BATCH = 5
# A day and a bit: a call counts until 24 hours after the end of its 10-minute bucket.
DAY_AND_A_BIT = dt.timedelta(hours=24, minutes=11)


class Days:
    """The app's clock and the emulator's, moved on together."""

    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return utcnow() + self.offset

    def next_day(self) -> None:
        self.offset += DAY_AND_A_BIT
        self.emulator.advance(DAY_AND_A_BIT.total_seconds())


def sweep(clock: Callable[[], dt.datetime]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            processor = DropProcessor(settings, blobs, graph, clock=clock)
            return await Sweeper(settings, blobs, processor, clock=clock).sweep()

    return asyncio.run(run())


def put(name: str, rows: list[dict[str, str]]) -> None:
    store().ensure_containers(INBOUND_CONTAINER, STATE_CONTAINER)
    store().write_bytes(INBOUND_CONTAINER, name, csv_bytes(rows), "text/csv")


def accepted_ids(emulator: GraphEmulator, since: int) -> list[str]:
    return [
        external_id
        for upload in emulator.uploads()[since:]
        if upload["status"] == 202
        for _, external_id in upload["records"]
    ]


@pytest.fixture
def quota_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", str(BATCH))
    monkeypatch.setenv("PROVISIONING_LEAVER_THRESHOLD_PERCENT", "100")
    monkeypatch.setenv("PROVISIONING_LEAVER_THRESHOLD_COUNT", "1000")
    return env


def test_a_file_needing_three_days_of_quota_goes_over_three_days_in_order(
    quota_env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = Days(emulator)
    # Day 0, no quota to speak of: 40 workers exist.
    put("day0.csv", [worker(n) for n in range(1, 41)])
    assert sweep(days.now)["processed"] == {"complete": 1}
    days.next_day()

    # The quota now: QUOTA calls a day, in Entra and in the app.
    emulator.set_faults(daily_quota=QUOTA)
    monkeypatch.setenv("PROVISIONING_DAILY_CALL_QUOTA", str(QUOTA))
    joiners = [worker(n) for n in range(101, 121)]  # 4 requests
    leavers = [worker(n, WorkerStatus="Inactive") for n in range(1, 21)]  # 4 requests
    movers = [worker(n, JobTitle="Manager") for n in range(21, 41)]  # 4 requests
    put("big.csv", movers + leavers + joiners)  # in the file, the movers come first
    before = len(emulator.uploads())

    day1 = sweep(days.now)
    assert day1["processed"] == {"paused": 1}
    summary = runs()[-1]
    assert summary["status"] == "paused" and "daily quota of 4" in summary["reason"]
    budget = summary["plan"]["budget"]
    assert budget["requests_needed"] == 3 * QUOTA and budget["fits_now"] is False
    assert [(p["part"], p["requests"]) for p in budget["parts"]] == [
        ("joiners", 4),
        ("leavers", 4),
        ("movers", 4),
    ]
    firsts = [parse_iso(p["first_request"]) for p in budget["parts"]]
    assert firsts[0] <= days.now()  # joiners today
    assert dt.timedelta(hours=23) < firsts[1] - firsts[0] < dt.timedelta(hours=25)
    assert dt.timedelta(hours=23) < firsts[2] - firsts[1] < dt.timedelta(hours=25)
    assert "sent over the days" in budget["reason"]
    assert "Spread over days by the daily quota" in result_text(summary, "report.html")
    assert sorted(accepted_ids(emulator, before)) == sorted(r["WorkerID"] for r in joiners)

    # Nothing goes while the quota is used up: the sweep waits.
    assert sweep(days.now)["deferred_for_pause"] == 1
    day2_from = len(emulator.uploads())
    assert day2_from == before + QUOTA

    days.next_day()
    assert sweep(days.now)["processed"] == {"paused": 1}
    assert sorted(accepted_ids(emulator, day2_from)) == sorted(r["WorkerID"] for r in leavers)
    day3_from = len(emulator.uploads())

    days.next_day()
    assert sweep(days.now)["processed"] == {"complete": 1}
    assert sorted(accepted_ids(emulator, day3_from)) == sorted(r["WorkerID"] for r in movers)

    statuses = [u["status"] for u in emulator.uploads()]
    assert 429 not in statuses  # Graph never refused a call: the budget kept the quota
    assert emulator.pacing()["throttled"]["quota"] == 0
    assert len(accepted_ids(emulator, before)) == 60  # every record once
    directory = {u["employeeId"]: u for u in emulator.directory()}
    assert all(directory[str(n)]["accountEnabled"] is False for n in range(1, 21))
    assert all(directory[str(n)]["jobTitle"] == "Manager" for n in range(21, 41))
