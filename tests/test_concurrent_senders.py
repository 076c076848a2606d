"""Concurrent senders (issue 14): three separate processes send at once (a file drop, a release
of held changes and an HTTP flush) to one Graph emulator that enforces one tenant limit. Each
process has its own interpreter, event loop, GraphClient and BlobStore (benchmarks/senders.py);
they share only Azurite, where the tenant's pace (``state/pace.json``) lives.

The limit is small (3 requests per 2 s) next to what the processes could send (bulk requests
of 5 records), so the pace is what holds them back: paced per process (a RateLimiter each, as
before the tenant's pace), the three together go over the limit and draw 429s, and this test
fails. Paced for the tenant, the emulator never counts more than the limit in any window and
answers no 429, and every record of the three sources reaches the directory exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from benchmarks.senders import Job, Report, most_in_window, run_senders
from devtools.azurite import Azurite
from devtools.local_env import FAST_RETRIES, MSI_CONFLICTS, local_settings
from graph_emulator import GraphEmulator
from provisioning.graph.client import JobStatus
from provisioning.graph.tenant_pace import read_book
from provisioning.runs.drop import DropProcessor
from provisioning.settings import INBOUND_CONTAINER, Settings, load_settings
from provisioning.storage import BlobStore
from tests.columns import csv_bytes, worker
from tests.e2e import functions

REQUESTS, WINDOW = 3, 2.0  # the tenant's limit, at the emulator and in the settings
BATCH = 5  # records per bulk request of a file run and a release (a flush sends 50)
# The workers of each source, and the job title that tells them apart in the directory.
SOURCES: dict[str, tuple[range, str]] = {
    "drop": (range(1000, 1040), "Dropped"),  # 8 requests
    "release": (range(2000, 2060), "Released"),  # 12 requests
    "flush": (range(3000, 3100), "Flushed"),  # 2 requests
}
DROP_BLOB = "feed/concurrent.csv"
HELD_BLOB = "prep/held.csv"


@pytest.fixture
def tenant(
    azurite: Azurite, clean_storage: Azurite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GraphEmulator, dict[str, str]]]:
    """The emulator enforcing the tenant's limit, and the settings of every process (this one
    included) pointing at it and at Azurite."""
    with GraphEmulator(rate_limit=(REQUESTS, WINDOW)) as emu:
        env = local_settings(
            azurite,
            emu,
            **FAST_RETRIES,
            PROVISIONING_RATE_LIMIT_REQUESTS=str(REQUESTS),
            PROVISIONING_RATE_LIMIT_WINDOW_SECONDS=str(WINDOW),
            PROVISIONING_BATCH_SIZE=str(BATCH),
        )
        for name in MSI_CONFLICTS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield emu, env


def rows(source: str, **columns: str) -> list[dict[str, str]]:
    ids, title = SOURCES[source]
    return [worker(n, JobTitle=title, **columns) for n in ids]


class HoldOnly:
    """Graph for a run that holds everything it plans: the job is active, and nothing may be
    sent. (The real client would cost this process the SDK's import, seconds of CPU the sender
    processes need while they start.)"""

    async def job_status(self) -> JobStatus:
        return JobStatus("Active")

    async def ready(self) -> None:
        raise AssertionError("the preparation asked for a token to send")

    async def post_bulk(self, body: bytes, client_request_id: str) -> Any:
        raise AssertionError("the preparation sent a request")


def hold_joiners(settings: Settings, store: BlobStore) -> None:
    """The release's work: joiners a file run held for their hire date, due today. The run
    was 20 days ago; they were hired 17 days after it, beyond the 14-day look-ahead."""
    today = dt.datetime.now(dt.UTC)
    then = today - dt.timedelta(days=20)
    hired = (today - dt.timedelta(days=3)).date().isoformat()
    store.write_bytes(
        INBOUND_CONTAINER, HELD_BLOB, csv_bytes(rows("release", HireDate=hired)), "text/csv"
    )
    stream = store.open_read(INBOUND_CONTAINER, HELD_BLOB)
    assert stream is not None
    processor = DropProcessor(settings, store, HoldOnly(), clock=lambda: then)
    with stream:
        outcome = asyncio.run(processor.process(f"{INBOUND_CONTAINER}/{HELD_BLOB}", stream))
    assert outcome.status == "complete", outcome
    assert outcome.counts.get("requests", 0) == 0, outcome


def accept_changes() -> None:
    """The flush's work: changes accepted by the HTTP API (POST /api/changes, 50 records a
    call), waiting in the outbox."""
    records = rows("flush")
    for start in range(0, len(records), 50):
        request = func.HttpRequest(
            method="POST",
            url="http://localhost/api/changes",
            headers={"Content-Type": "application/json"},
            params={},
            body=json.dumps(records[start : start + 50]).encode(),
        )
        response = functions()["post_changes"].get_user_function()(request)
        assert response.status_code == 202, response.get_body()


def source_of(upload: dict[str, Any]) -> str:
    number = int(upload["records"][0][1])
    return next(name for name, (ids, _) in SOURCES.items() if number in ids)


def shared_full_windows(uploads: list[dict[str, Any]]) -> set[frozenset[str]]:
    """The sets of sources that filled a window together: every window (t - WINDOW, t] ending
    at a request that holds the limit's worth of requests, from more than one source."""
    timeline = sorted((u["time"], source_of(u)) for u in uploads)
    shared = set()
    for end, (moment, _) in enumerate(timeline):
        inside = [source for at, source in timeline[: end + 1] if at > moment - WINDOW]
        if len(inside) >= REQUESTS and len(set(inside)) > 1:
            shared.add(frozenset(inside))
    return shared


def describe(reports: list[Report], uploads: list[dict[str, Any]]) -> str:
    """Each process's status, reason and time span, then each request's time (from the start)
    status and source: for a failure message."""
    begun = min((r.started for r in reports if r.started), default=0.0)
    lines = [
        f"{r.role}: {r.status} ({r.result.get('reason')}) {r.started - begun:.2f}-"
        f"{r.finished - begun:.2f} s, exit {r.exitcode} {r.error or ''}"
        for r in reports
    ]
    lines += [f"{u['time'] - begun:7.3f} {u['status']} {source_of(u)}" for u in uploads]
    return "\n".join(lines)


def test_three_processes_keep_one_tenant_limit(
    tenant: tuple[GraphEmulator, dict[str, str]], tmp_path: Path
) -> None:
    emu, env = tenant
    settings = load_settings()
    store = BlobStore.from_settings(settings)

    def prepare() -> None:
        # While the three processes start: held joiners now due, changes in the outbox, and
        # a file for the drop; nothing sent yet.
        store.ensure_containers(INBOUND_CONTAINER)
        hold_joiners(settings, store)
        accept_changes()
        store.write_bytes(INBOUND_CONTAINER, DROP_BLOB, csv_bytes(rows("drop")), "text/csv")
        assert emu.uploads() == []

    jobs = [Job("drop", {"blob": DROP_BLOB}), Job("release"), Job("flush")]
    begun = time.monotonic()
    reports = run_senders(jobs, env, tmp_path, prepare=prepare, timeout=120)
    seconds = time.monotonic() - begun
    uploads = emu.uploads()
    assert [(r.role, r.status) for r in reports] == [
        ("drop", "complete"),
        ("release", "complete"),
        ("flush", "complete"),
    ], describe(reports, uploads)

    # Never over the limit, no 429: every request the emulator received is counted, refused
    # or not (the emulator refuses the excess with 429, so what it admitted never is over).
    assert [u for u in uploads if u["status"] != 202] == [], describe(reports, uploads)
    assert emu.count_429() == 0
    assert emu.max_in_window(WINDOW) <= REQUESTS
    assert most_in_window((u["time"] for u in uploads), WINDOW) <= REQUESTS
    assert read_book(store).blocked_until == 0  # no sender was ever told to back off

    # Every record of the three sources sent exactly once, and in the directory as sent.
    sent = [ext for u in uploads for _, ext in u["records"]]
    expected = {str(n): title for ids, title in SOURCES.values() for n in ids}
    assert Counter(sent) == Counter(expected.keys())
    users = {u["employeeId"]: u for u in emu.directory()}
    assert {ext: u["jobTitle"] for ext, u in users.items()} == expected
    assert all(u["accountEnabled"] is True for u in users.values())

    # The three ran at once and held each other back: windows the limit filled with requests
    # of two processes or three, into which each alone, paced on its own, would have sent
    # more. (Their requests need not interleave: the send gate lets one process send at a
    # time and often serves them one after the other; each hands over to the next within a
    # window, which is where senders paced on their own go over.)
    assert max(r.started for r in reports) < min(r.finished for r in reports)
    assert shared_full_windows(uploads), describe(reports, uploads)
    assert seconds < 60, describe(reports, uploads)
