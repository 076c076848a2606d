"""Reading provisioning-log entries (provisioning/graph/provisioning_logs.py) from the Graph
emulator over real HTTP: msgraph-sdk's request builder and pipeline, the real managed-identity
credential, ``@odata.nextLink`` paging, the job, worker and time filters, reads paced by the
tenant's log-read pace in Azurite against the emulator's 5-per-10-s throttle (and its 429s), and
the parsing into ``LogEntry`` of entries shaped like Microsoft's sample page
(tests/data/microsoft/provisioning-log-sample.json)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.local_env import MSI_CONFLICTS
from graph_emulator import GraphEmulator
from graph_emulator.state import LogRecord
from provisioning.convert.bulk import Operation, serialize
from provisioning.graph.client import GraphClient, GraphError
from provisioning.graph.provisioning_logs import (
    PAGE_SIZE,
    GraphLog,
    LogEntry,
    entry_of,
    log_filter,
)
from provisioning.graph.tenant_pace import TenantPace
from provisioning.settings import Settings
from provisioning.storage import BlobStore

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
# Microsoft's sample page (MIT, see tests/data/microsoft/LICENSE-Microsoft-samples), from the
# history of its API-driven inbound provisioning samples (Samples/InboundAPI_logSample.txt).
SAMPLE_PATH = (
    Path(__file__).resolve().parent / "data" / "microsoft" / "provisioning-log-sample.json"
)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# activityDateTime as real entries (and the emulator's) print it: whole seconds.
SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def sample_entries() -> list[dict[str, Any]]:
    page = json.loads(SAMPLE_PATH.read_text("utf-8"))
    entries: list[dict[str, Any]] = page["value"]
    return entries


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the emulator, and what our client reads from it ---------------------------------------


@pytest.fixture
def logs(emu: GraphEmulator) -> GraphEmulator:
    """The emulator without its log-read throttle (5 per 10 s), for the tests about paging,
    filters and parsing that read more often than that; the throttle has tests of its own."""
    emu.set_faults(log_rate_limit=None)
    return emu


@pytest.fixture
def two_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    """An emulator whose service principal has two provisioning jobs (ours is ``job_id``), with
    the managed-identity variables pointing at it (no throttle of bulkUpload or log reads)."""
    sp = "7d5b4f64-5c2a-4d0e-9b1e-0d6a3c1f2e11"
    ours = "API2AAD.0123456789abcdef0123456789abcdef.8c0b1f8e-3f7c-4a44-9a0c-5a1b2c3d4e5f"
    other = "API2AAD.fedcba9876543210fedcba9876543210.1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    with GraphEmulator(jobs={sp: [ours, other]}, rate_limit=None, log_rate_limit=None) as emulator:
        for name in MSI_CONFLICTS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
        yield emulator


def settings_for(emu: GraphEmulator, job_id: str | None = None, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "graph_url": emu.graph_url,
        "service_principal_id": emu.sp_id,
        "job_id": job_id or emu.job_id,
        "credential": "auto",
        "request_timeout_seconds": 5.0,
        **changes,
    }
    return Settings(**values)


def users(*ids: str, active: bool = True, manager: str | None = None) -> list[Operation]:
    ops = []
    for i, ext in enumerate(ids):
        data: dict[str, Any] = {
            "schemas": [CORE],
            "externalId": ext,
            "userName": f"{ext.lower()}@contoso.test",
            "displayName": f"Person {ext}",
            "active": active,
        }
        if manager is not None:
            data["schemas"].append(ENTERPRISE)
            data[ENTERPRISE] = {"manager": {"value": manager}}
        ops.append(Operation(f"b-{ext}", ext, 2 + i, data))
    return ops


def upload(emu: GraphEmulator, ops: list[Operation], job_id: str | None = None) -> None:
    """One bulkUpload through our client (one provisioning cycle in the emulator: its entries
    share one second)."""

    async def go() -> int:
        async with GraphClient.from_settings(settings_for(emu, job_id)) as client:
            return (await client.post_bulk(serialize(ops), "crid-logs")).status

    assert asyncio.run(go()) == 202


def next_second(emu: GraphEmulator) -> None:
    """Move the emulator clock on a second: the next cycle's entries print a later second."""
    emu.advance(1.0)


def read_pages(
    emu: GraphEmulator,
    since: dt.datetime = EPOCH,
    *,
    page_size: int = PAGE_SIZE,
    job_id: str | None = None,
    source_id: str | None = None,
    store: BlobStore | None = None,
    settings: Settings | None = None,
) -> list[list[LogEntry]]:
    """The pages ``GraphLog.pages`` yields; paced by the tenant's log-read pace in ``store``
    when one is given."""
    settings = settings or settings_for(emu, job_id)

    async def go() -> list[list[LogEntry]]:
        pace = (
            TenantPace.for_log_reads(store, settings, sleep=asyncio.sleep)
            if store is not None
            else None
        )
        async with GraphClient.from_settings(settings) as client:
            log = GraphLog(client, pace=pace, page_size=page_size)
            pages = [page async for page in log.pages(since, source_id=source_id)]
        if pace is not None:
            await pace.aclose()
        return pages

    return asyncio.run(go())


def read(
    emu: GraphEmulator,
    since: dt.datetime = EPOCH,
    *,
    page_size: int = PAGE_SIZE,
    job_id: str | None = None,
    source_id: str | None = None,
) -> list[LogEntry]:
    pages = read_pages(emu, since, page_size=page_size, job_id=job_id, source_id=source_id)
    return [entry for page in pages for entry in page]


def seed(emu: GraphEmulator, entries: list[dict[str, Any]]) -> None:
    """Put entries (Microsoft's sample, re-targeted at the emulator's job) into the emulator's
    provisioning log, as if its provisioning service had written them."""
    state = emu.state
    with state.lock:
        for entry in entries:
            seconds = int(at(entry["activityDateTime"]).timestamp())
            state.log_records.append(
                LogRecord(state._next_seq(), seconds, 0.0, {**entry, "jobId": emu.job_id})
            )


def test_every_page_is_followed(logs: GraphEmulator) -> None:
    ids = [f"P{n:03d}" for n in range(23)]
    upload(logs, users(*ids[:10]))
    upload(logs, users(*ids[10:]))
    pages = read_pages(logs, page_size=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    entries = [e for page in pages for e in page]
    assert [e.source_id for e in entries] == ids  # all of them, each once, in send order
    assert len({e.id for e in entries}) == 23
    assert read_pages(logs) == [entries]  # one page of PAGE_SIZE or five: the same entries


def test_entries_come_oldest_first(logs: GraphEmulator) -> None:
    for n in range(4):
        upload(logs, users(f"O{n}a", f"O{n}b"))
        next_second(logs)
    entries = read(logs, page_size=3)
    assert [e.source_id for e in entries] == [f"O{n}{x}" for n in range(4) for x in "ab"]
    times = [e.at for e in entries]
    # One cycle's entries share its second; the cycles' seconds come in order.
    assert times == sorted(times) and len(set(times)) == 4
    assert all(t.microsecond == 0 for t in times)


def test_only_entries_from_the_second_of_since_on_are_read(logs: GraphEmulator) -> None:
    upload(logs, users("EARLY1", "EARLY2"))
    (early, _) = read(logs)
    next_second(logs)
    upload(logs, users("LATE1"))
    next_second(logs)
    upload(logs, users("LATE2"))
    late1, late2 = read(logs, early.at + dt.timedelta(seconds=1))
    assert (late1.source_id, late2.source_id) == ("LATE1", "LATE2")
    assert early.at < late1.at < late2.at
    # ``since`` is floored to its second and the filter is ``gt`` the second before: the
    # entries of since's own second are read again (second precision cannot tell them apart).
    assert [e.source_id for e in read(logs, early.at)] == ["EARLY1", "EARLY2", "LATE1", "LATE2"]
    within = late1.at + dt.timedelta(milliseconds=999)
    assert [e.source_id for e in read(logs, within)] == ["LATE1", "LATE2"]
    assert [e.source_id for e in read(logs, late2.at)] == ["LATE2"]
    assert [e.source_id for e in read(logs, early.at - dt.timedelta(milliseconds=1))] == [
        "EARLY1",
        "EARLY2",
        "LATE1",
        "LATE2",
    ]
    assert read(logs, late2.at + dt.timedelta(seconds=1)) == []
    assert read(logs, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == []


def test_only_our_jobs_entries_are_read(two_jobs: GraphEmulator) -> None:
    other = two_jobs.jobs[two_jobs.sp_id][1]
    upload(two_jobs, users("MINE1"))
    upload(two_jobs, users("THEIRS1", "THEIRS2"), job_id=other)
    upload(two_jobs, users("MINE2"))
    assert [e.source_id for e in read(two_jobs, page_size=1)] == ["MINE1", "MINE2"]
    assert [e.source_id for e in read(two_jobs, job_id=other)] == ["THEIRS1", "THEIRS2"]
    assert len(two_jobs.logs()) == 4


def test_one_workers_entries_are_read_with_source_id(two_jobs: GraphEmulator) -> None:
    """The per-worker query (``sourceIdentity/id eq``), still within our job and time."""
    other = two_jobs.jobs[two_jobs.sp_id][1]
    upload(two_jobs, users("W1", "W2", "D'Arcy"))
    upload(two_jobs, users("W1"), job_id=other)  # the same worker in the other job
    next_second(two_jobs)
    upload(two_jobs, users("W1", "D'Arcy", active=False))
    mine = read(two_jobs, source_id="W1", page_size=1)
    assert [(e.source_id, e.action) for e in mine] == [("W1", "create"), ("W1", "disable")]
    quoted = read(two_jobs, source_id="D'Arcy")
    assert [e.action for e in quoted] == ["create", "disable"]
    assert {e.source_id for e in quoted} == {"D'Arcy"}
    assert [e.action for e in read(two_jobs, mine[1].at, source_id="W1")] == ["disable"]
    assert read(two_jobs, source_id="W3") == []
    assert read(two_jobs, source_id="W") == []  # eq, not a prefix
    theirs = read(two_jobs, job_id=other, source_id="W1")
    # One tenant, one directory: W1 exists already, so the other job's entry changes nothing.
    assert [(e.source_id, e.action, e.status) for e in theirs] == [("W1", "other", "skipped")]


def test_entries_are_parsed_into_what_reconciliation_needs(logs: GraphEmulator) -> None:
    logs.set_faults(
        fail_records={
            "F1": {
                "errorCode": "AzureActiveDirectoryConflict",
                "errorCategory": "nonServiceFailure",
                "reason": "userPrincipalName is taken",
                "recommendedAction": "Give the worker another userName.",
            }
        }
    )
    upload(logs, users("C1", "F1"))
    upload(logs, users("C1", active=False))  # the same worker disabled
    upload(logs, users("C1", active=False))  # nothing left to change
    by_action = {(e.source_id, e.action): e for e in read(logs)}
    directory = {u["employeeId"]: u for u in logs.directory()}
    created = by_action[("C1", "create")]
    assert created.status == "success" and created.target_id == directory["C1"]["id"]
    assert created.error_code is None and created.reason is None
    assert created.at.tzinfo is not None and created.at.utcoffset() == dt.timedelta(0)
    assert (created.skipped, created.skip_reason, created.manager_set) == ((), None, False)
    failed = by_action[("F1", "create")]
    assert (failed.status, failed.error_code, failed.error_category) == (
        "failure",
        "AzureActiveDirectoryConflict",
        "nonServiceFailure",
    )
    assert failed.reason == "userPrincipalName is taken"
    assert failed.recommended_action == "Give the worker another userName."
    assert failed.target_id is None  # no account: an empty target id is None
    assert by_action[("C1", "disable")].status == "success"
    assert by_action[("C1", "other")].status == "skipped"
    # One change per record sent, one cycle per request.
    assert len({e.change_id for e in by_action.values()}) == 4
    assert failed.cycle_id == created.cycle_id != by_action[("C1", "disable")].cycle_id
    raw = {e["id"]: e for e in logs.logs()}
    for entry in by_action.values():
        assert SECONDS.match(raw[entry.id]["activityDateTime"])
        assert entry.at == at(raw[entry.id]["activityDateTime"])
        assert entry.change_id == raw[entry.id]["changeId"]
        assert entry.cycle_id == raw[entry.id]["cycleId"]


def test_a_manager_resolved_later_in_the_request_is_read_as_two_entries(
    logs: GraphEmulator,
) -> None:
    """As the sample's 10018 and 10019: the create skips the manager (status success), and the
    update of the same change 2 s later sets it."""
    ops = [*users("A", manager="B"), *users("B")]
    upload(logs, ops)
    (create_a, create_b) = read(logs)  # the follow-up shows 2 s later
    logs.advance(2.0)
    entries = read(logs)
    assert [(e.source_id, e.action, e.status) for e in entries] == [
        ("A", "create", "success"),
        ("B", "create", "success"),
        ("A", "update", "success"),
    ]
    assert entries[:2] == [create_a, create_b]
    follow_up = entries[2]
    assert create_a.skipped == ("manager",) and not create_a.manager_set
    assert create_a.skip_reason is not None and "B" in create_a.skip_reason
    assert (follow_up.skipped, follow_up.manager_set) == ((), True)
    assert follow_up.change_id == create_a.change_id != create_b.change_id
    assert follow_up.cycle_id == create_a.cycle_id
    assert follow_up.at - create_a.at == dt.timedelta(seconds=2)
    assert (create_b.skipped, create_b.manager_set) == ((), False)


def test_a_failing_page_raises_instead_of_ending_the_read(logs: GraphEmulator) -> None:
    upload(logs, users(*(f"R{n}" for n in range(6))))
    logs.set_faults(read_sequence=[200, 500])  # page 1 comes, page 2 fails
    got: list[list[LogEntry]] = []

    async def go() -> None:
        async with GraphClient.from_settings(settings_for(logs)) as client:
            async for page in GraphLog(client, page_size=3).pages(EPOCH):
                got.append(page)

    with pytest.raises(GraphError) as caught:
        asyncio.run(go())
    assert caught.value.status == 500
    assert [[e.source_id for e in page] for page in got] == [["R0", "R1", "R2"]]  # no silent end


def test_a_refused_read_raises_with_graphs_status(logs: GraphEmulator) -> None:
    upload(logs, users("X1"))
    logs.set_faults(read_sequence=[403])
    with pytest.raises(GraphError) as caught:
        read(logs)
    assert caught.value.status == 403


def test_a_paced_read_stays_within_the_log_read_throttle(
    emu: GraphEmulator, store: BlobStore
) -> None:
    """Seven pages against Graph's five reads per 10 s per app (the emulator's default): the
    tenant's log-read pace (in Azurite) waits for the window, so Graph never answers 429."""
    assert emu.log_reads()["log_rate_limit"] == [5, 10.0]
    ids = [f"T{n}" for n in range(7)]
    upload(emu, users(*ids))
    started = time.monotonic()
    pages = read_pages(emu, page_size=1, store=store)
    took = time.monotonic() - started
    assert [[e.source_id for e in page] for page in pages] == [[i] for i in ids]
    reads = emu.log_reads()
    assert (reads["admitted"], reads["throttled"]) == (7, 0)
    assert reads["max_in_window"] == 5
    assert took >= 10.0  # the sixth read waited for the window
    assert emu.pacing()["log_reads"]["throttled"] == 0


def test_a_slow_token_comes_before_the_read_slot(emu: GraphEmulator, store: BlobStore) -> None:
    """The managed-identity endpoint takes 0.6 s for the reader's first token. Asked for after
    the first read's slot, it would make that read reach Graph 0.6 s late (more than the
    pace's margin) and the sixth read, whose slot counts from the first's, would share Graph's
    window with it: a 429. The token comes before the slot, so Graph answers none."""
    emu.set_faults(log_rate_limit=(5, 2.0), token_latency_ms=600)
    ids = [f"S{n}" for n in range(7)]
    upload(emu, users(*ids))
    settings = settings_for(emu, log_read_requests=5, log_read_window_seconds=2.0)
    pages = read_pages(emu, page_size=1, store=store, settings=settings)
    assert [[e.source_id for e in page] for page in pages] == [[i] for i in ids]
    reads = emu.log_reads()
    assert (reads["admitted"], reads["throttled"]) == (7, 0)


def test_a_read_answered_429_asks_the_page_again(emu: GraphEmulator, store: BlobStore) -> None:
    """A pace allowing more than Graph does: the 429's Retry-After goes on the pace, the same
    page is asked again, and every entry comes once."""
    emu.set_faults(log_rate_limit=(2, 1.0))
    ids = [f"Q{n}" for n in range(6)]
    upload(emu, users(*ids))
    settings = settings_for(emu, log_read_requests=20, log_read_window_seconds=1.0)
    pages = read_pages(emu, page_size=1, store=store, settings=settings)
    entries = [e for page in pages for e in page]
    assert [e.source_id for e in entries] == ids
    assert len({e.id for e in entries}) == 6
    reads = emu.log_reads()
    assert reads["throttled"] >= 1
    assert reads["admitted"] == 6  # each page admitted once, after its 429s
    assert reads["max_in_window"] <= 2


def test_microsofts_sample_entries_read_over_http(logs: GraphEmulator) -> None:
    sample = sample_entries()
    seed(logs, sample)
    entries = read(logs, page_size=4)
    assert len(entries) == len(sample) == 15
    by_id = {e["id"]: e for e in sample}
    assert {e.id for e in entries} == set(by_id)
    assert [e.at for e in entries] == sorted(e.at for e in entries)  # the page was newest first
    for entry in entries:
        raw = by_id[entry.id]
        assert entry.source_id == raw["sourceIdentity"]["id"]
        assert entry.target_id == raw["targetIdentity"]["id"]
        assert entry.action == raw["provisioningAction"]
        assert entry.status == raw["provisioningStatusInfo"]["status"] == "success"
        assert entry.at == at(raw["activityDateTime"])
        assert entry.change_id == raw["changeId"] and entry.cycle_id == raw["cycleId"]
    # One record sent once made two entries in one cycle (create, then the manager update).
    changes: dict[str, list[str]] = {}
    for entry in entries:
        changes.setdefault(by_id[entry.id]["changeId"], []).append(entry.action)
    assert ["create", "update"] in changes.values()
    # From 21:40:53 on (a time within it is floored): the two follow-ups of that second too.
    since = dt.datetime(2023, 1, 3, 21, 40, 53, 500000, tzinfo=dt.UTC)
    later = read(logs, since)
    assert sorted(e.source_id for e in later) == (
        ["10015", "10016", "10018", "10018", "10019", "10019", "10020"]
    )
    assert all(e.at >= since.replace(microsecond=0) for e in later)
    after = read(logs, dt.datetime(2023, 1, 3, 21, 40, 54, tzinfo=dt.UTC))
    assert {e.source_id for e in after} == {"10018", "10019", "10020"}
    assert [e.source_id for e in read(logs, since, source_id="10018")] == ["10018", "10018"]


# --- parsing, without HTTP ------------------------------------------------------------------


def test_sample_entries_parse_and_keep_no_hr_values() -> None:
    for raw in sample_entries():
        entry = entry_of(raw)
        assert entry is not None
        # Entra's own words about a skipped manager are kept as they are (they quote the UPN:
        # private results only, see LogEntry); nothing else carries an HR value.
        skips = [s for s in raw["provisioningSteps"] if s["name"] == "EntrySynchronizationSkip"]
        assert entry.skip_reason == (skips[0]["description"] if skips else None)
        kept = repr(dataclasses.replace(entry, skip_reason=None))
        assert raw["targetIdentity"]["displayName"] not in kept
        upn = raw["targetIdentity"]["details"].get("UserPrincipalName")
        assert upn is None or upn not in kept
        for prop in raw["modifiedProperties"]:
            for value in (prop["oldValue"], prop["newValue"]):
                # Ids (the employeeId, a manager's object id) may be kept, and the words True
                # and False (manager_set=False); other values never.
                if value and value not in (entry.source_id, entry.target_id, "True", "False"):
                    assert value not in kept


def test_the_sample_create_skips_the_manager_its_update_sets() -> None:
    """The sample's 10018: a create whose manager (10019, in the same request) Entra could not
    resolve yet, then an update of the same change that sets it."""
    raw = [e for e in sample_entries() if e["sourceIdentity"]["id"] == "10018"]
    by_action = {e["provisioningAction"]: e for e in raw}
    create = entry_of(by_action["create"])
    update = entry_of(by_action["update"])
    assert create is not None and update is not None
    assert create.skipped == ("manager",) and not create.manager_set
    assert create.skip_reason is not None
    assert create.skip_reason.startswith("We were unable to assign 10019 as the manager of ")
    assert (update.skipped, update.skip_reason, update.manager_set) == ((), None, True)
    assert create.change_id == update.change_id == by_action["create"]["changeId"]
    assert create.cycle_id == update.cycle_id == by_action["create"]["cycleId"]
    assert (create.at, update.at) == (
        dt.datetime(2023, 1, 3, 22, 40, 48, tzinfo=dt.UTC),
        dt.datetime(2023, 1, 3, 22, 40, 50, tzinfo=dt.UTC),
    )
    # The manager's object id the update set is not kept: only that it was set.
    assert by_action["update"]["modifiedProperties"][0]["newValue"] not in repr(update)


def test_a_skip_step_without_a_property_name_counts_as_unknown() -> None:
    raw = copy.deepcopy(sample_entries()[2])  # 10018's create
    for step in raw["provisioningSteps"]:
        if step["name"] == "EntrySynchronizationSkip":
            step["details"] = {}
            step["description"] = ""
    entry = entry_of(raw)
    assert entry is not None
    assert (entry.skipped, entry.skip_reason) == (("unknown",), None)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sourceIdentity": None}, "no source identity"),
        ({"sourceIdentity": {"id": ""}}, "an empty source id"),
        ({"activityDateTime": None}, "no time"),
    ],
)
def test_an_entry_without_source_or_time_is_skipped(change: dict[str, Any], reason: str) -> None:
    raw = {**copy.deepcopy(sample_entries()[0]), **change}
    assert entry_of(raw) is None, reason


def test_missing_parts_get_neutral_values() -> None:
    entry = entry_of({"sourceIdentity": {"id": 42}, "activityDateTime": "2025-01-31T12:00:00Z"})
    assert entry == LogEntry(
        id="",
        at=dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC),
        source_id="42",
        action="other",
        status="unknown",
    )
    assert (entry.change_id, entry.cycle_id, entry.skipped, entry.manager_set) == (
        None,
        None,
        (),
        False,
    )
    blank = entry_of(
        {
            "id": "e1",
            "sourceIdentity": {"id": "S"},
            "targetIdentity": {"id": ""},
            "activityDateTime": "2025-01-31T12:00:00.1234567Z",
            "provisioningAction": "",
            "provisioningStatusInfo": {"status": "failure", "errorInformation": {"errorCode": ""}},
            "changeId": "",
            "provisioningSteps": None,
            "modifiedProperties": None,
        }
    )
    assert blank is not None
    assert (blank.action, blank.status, blank.target_id, blank.error_code) == (
        "other",
        "failure",
        None,
        None,
    )
    assert (blank.change_id, blank.skipped, blank.manager_set) == (None, (), False)
    assert blank.at == dt.datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)


def test_log_filter_quotes_the_job_id_and_starts_a_second_before_since() -> None:
    since = dt.datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert log_filter("API2AAD.x.y", since) == (
        "jobId eq 'API2AAD.x.y' and activityDateTime gt 2025-01-31T11:59:59.000Z"
    )
    assert log_filter("API2AAD.x.y", since.replace(microsecond=0)) == log_filter(
        "API2AAD.x.y", since
    )
    assert log_filter("it's", since).startswith("jobId eq 'it''s' and ")


def test_log_filter_with_a_source_id_adds_the_per_worker_clause() -> None:
    since = dt.datetime(2025, 1, 31, 12, 0, 0, tzinfo=dt.UTC)
    assert log_filter("J", since, "10018") == (
        "jobId eq 'J' and activityDateTime gt 2025-01-31T11:59:59.000Z"
        " and sourceIdentity/id eq '10018'"
    )
    assert log_filter("J", since, "D'Arcy").endswith(" and sourceIdentity/id eq 'D''Arcy'")


@given(st.text(alphabet=st.sampled_from("ab'\" ="), max_size=12))
def test_a_quoted_job_id_is_one_odata_string(job_id: str) -> None:
    text = log_filter(job_id, EPOCH)
    literal = text[len("jobId eq '") : text.index("' and activityDateTime gt ")]
    # Every quote inside is doubled: the literal cannot end early and add a clause.
    assert literal.replace("''", "").count("'") == 0
    assert literal.replace("''", "'") == job_id


@given(st.text(alphabet=st.sampled_from("ab'\" ="), max_size=12))
def test_a_quoted_source_id_is_one_odata_string(source_id: str) -> None:
    text = log_filter("J", EPOCH, source_id)
    head = (
        "jobId eq 'J' and activityDateTime gt 1999-12-31T23:59:59.000Z and sourceIdentity/id eq '"
    )
    assert text.startswith(head) and text.endswith("'")
    literal = text[len(head) : -1]
    assert literal.replace("''", "").count("'") == 0
    assert literal.replace("''", "'") == source_id
