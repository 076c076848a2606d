"""Graph's bucket is full (HTTP 500, Microsoft's bucket-full message) for longer than any retry
budget: every sender pauses PROVISIONING_BUCKET_FULL_PAUSE_MINUTES (scaled down here), the runs
that meet it end ``paused`` without counting an attempt against their file, and the sweep
resumes them once the pause is over. Nothing reaches hr-inbound/failed/, every record is
delivered exactly once, and the run ends complete.

Real parts: the blob function through ``app.get_functions()``, Azurite, the Graph emulator's
bucket-full stretch (it answers 500 for a set time, whatever the client does)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.functions.services import open_services
from provisioning.graph.tenant_pace import read_book
from provisioning.runs.drop import DropProcessor
from provisioning.runs.seen import seen_name
from provisioning.runs.sweep import Sweeper
from provisioning.settings import INBOUND_CONTAINER, STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, runs, store

pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)
PAUSE_SECONDS = 1.2
STORM_SECONDS = 4.0  # longer than the retry budget and than several pauses


@pytest.fixture
def short_pause(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PROVISIONING_BUCKET_FULL_PAUSE_MINUTES", str(PAUSE_SECONDS / 60))
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "3")
    return env


def sweep() -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            return await Sweeper(settings, blobs, DropProcessor(settings, blobs, graph)).sweep()

    return asyncio.run(run())


def marker(name: str) -> dict[str, Any]:
    found = store().read_json(STATE_CONTAINER, seen_name(f"{INBOUND_CONTAINER}/{name}"))
    assert found is not None
    return dict(found[0])


def accepted_ids(emulator: GraphEmulator) -> Counter[str]:
    """How many times each externalId reached Entra in an accepted request."""
    return Counter(
        external_id
        for upload in emulator.uploads()
        if upload["status"] == 202
        for _, external_id in upload["records"]
    )


def test_a_bucket_full_storm_pauses_everyone_and_the_file_completes_after_it(
    short_pause: dict[str, str], emulator: GraphEmulator
) -> None:
    emulator.bucket_full_for(60)  # until the first run met it ...
    drop(csv_bytes([worker(n) for n in range(1, 121)]))  # three bulk requests
    emulator.bucket_full_for(STORM_SECONDS)  # ... and STORM_SECONDS more from then
    started = time.monotonic()

    (first,) = runs()
    assert first["status"] == "paused"
    assert (
        "bucket" in first["reason"]
        and f"sending resumes at {first['resume_at']}" in first["reason"]
    )
    book = read_book(store())
    assert book.paused_until > time.time()  # every sender now waits, not only this run
    seen = marker("workers.csv")
    assert seen["status"] == "paused" and seen["failed_attempts"] == 0
    # One bucket-full answer, then no retry and no other request until the pause ends.
    assert [u["status"] for u in emulator.uploads()] == [500]

    sweeps: list[dict[str, Any]] = []
    while time.monotonic() - started < STORM_SECONDS + 10 * PAUSE_SECONDS:
        sweeps.append(sweep())
        if marker("workers.csv")["status"] == "complete":
            break
        time.sleep(PAUSE_SECONDS / 4)

    final = marker("workers.csv")
    assert final["status"] == "complete", final
    assert final["failed_attempts"] == 0
    assert not list(store().list(INBOUND_CONTAINER, "failed/"))
    assert any(s["deferred_for_pause"] for s in sweeps)  # the sweep waited out the pause
    delivered = accepted_ids(emulator)
    assert len(delivered) == 120 and set(delivered.values()) == {1}  # each exactly once
    assert len(emulator.directory()) == 120
    bucket_full = [u for u in emulator.uploads() if u["status"] == 500]
    # Each 500 started a pause: no two of them closer than the pause (nobody hammered Graph).
    times = sorted(u["time"] for u in bucket_full)
    assert all(b - a >= PAUSE_SECONDS * 0.9 for a, b in itertools.pairwise(times))
    (summary,) = runs()  # one run, resumed after each pause
    assert summary["status"] == "complete" and summary["attempt"] > 2
    assert summary["records_accepted"] == 120
