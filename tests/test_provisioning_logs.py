"""Reading provisioning-log entries (provisioning/graph/provisioning_logs.py) from the Graph
emulator over real HTTP: msgraph-sdk's request builder and pipeline, the real managed-identity
credential, ``@odata.nextLink`` paging, the job and time filters, and the parsing into
``LogEntry`` of entries shaped like Microsoft's sample page
(tests/data/microsoft/provisioning-log-sample.json)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
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
from provisioning.clock import iso
from provisioning.convert.bulk import Operation, serialize
from provisioning.graph.client import GraphClient, GraphError
from provisioning.graph.provisioning_logs import (
    PAGE_SIZE,
    LogEntry,
    entry_of,
    log_filter,
    provisioning_entries,
)
from provisioning.settings import Settings

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
# Microsoft's sample page (MIT, see tests/data/microsoft/LICENSE-Microsoft-samples), from the
# history of its API-driven inbound provisioning samples (Samples/InboundAPI_logSample.txt).
SAMPLE_PATH = (
    Path(__file__).resolve().parent / "data" / "microsoft" / "provisioning-log-sample.json"
)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def sample_entries() -> list[dict[str, Any]]:
    page = json.loads(SAMPLE_PATH.read_text("utf-8"))
    entries: list[dict[str, Any]] = page["value"]
    return entries


# --- the emulator, and what our client reads from it ---------------------------------------


@pytest.fixture
def two_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    """An emulator whose service principal has two provisioning jobs (ours is ``job_id``), with
    the managed-identity variables pointing at it."""
    sp = "7d5b4f64-5c2a-4d0e-9b1e-0d6a3c1f2e11"
    ours = "API2AAD.0123456789abcdef0123456789abcdef.8c0b1f8e-3f7c-4a44-9a0c-5a1b2c3d4e5f"
    other = "API2AAD.fedcba9876543210fedcba9876543210.1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    with GraphEmulator(jobs={sp: [ours, other]}, rate_limit=None) as emulator:
        for name in MSI_CONFLICTS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
        yield emulator


def settings_for(emu: GraphEmulator, job_id: str | None = None) -> Settings:
    return Settings(
        graph_url=emu.graph_url,
        service_principal_id=emu.sp_id,
        job_id=job_id or emu.job_id,
        credential="auto",
        request_timeout_seconds=5.0,
    )


def users(*ids: str, active: bool = True) -> list[Operation]:
    return [
        Operation(
            f"b-{ext}",
            ext,
            2 + i,
            {
                "schemas": [CORE],
                "externalId": ext,
                "userName": f"{ext.lower()}@contoso.test",
                "displayName": f"Person {ext}",
                "active": active,
            },
        )
        for i, ext in enumerate(ids)
    ]


def upload(emu: GraphEmulator, ops: list[Operation], job_id: str | None = None) -> None:
    """One bulkUpload through our client (one provisioning cycle in the emulator)."""

    async def go() -> int:
        async with GraphClient.from_settings(settings_for(emu, job_id)) as client:
            return (await client.post_bulk(serialize(ops), "crid-logs")).status

    assert asyncio.run(go()) == 202
    time.sleep(0.005)  # the next cycle gets a later millisecond


def read(
    emu: GraphEmulator,
    since: dt.datetime = EPOCH,
    *,
    page_size: int = PAGE_SIZE,
    job_id: str | None = None,
) -> list[LogEntry]:
    settings = settings_for(emu, job_id)

    async def go() -> list[LogEntry]:
        async with GraphClient.from_settings(settings) as client:
            return [
                e
                async for e in provisioning_entries(
                    client.sdk, client.job_id, since, page_size=page_size
                )
            ]

    return asyncio.run(go())


def seed(emu: GraphEmulator, entries: list[dict[str, Any]]) -> None:
    """Put entries (Microsoft's sample, re-targeted at the emulator's job) into the emulator's
    provisioning log, as if its provisioning service had written them."""
    state = emu.state
    with state.lock:
        for entry in entries:
            moment = dt.datetime.fromisoformat(entry["activityDateTime"].replace("Z", "+00:00"))
            micros = round(moment.timestamp() * 1_000_000)
            state.log_records.append(
                LogRecord(state._next_seq(), micros, 0.0, {**entry, "jobId": emu.job_id})
            )


def test_every_page_is_followed(emu: GraphEmulator) -> None:
    ids = [f"P{n:03d}" for n in range(23)]
    upload(emu, users(*ids[:10]))
    upload(emu, users(*ids[10:]))
    entries = read(emu, page_size=5)  # 5 pages: 5, 5, 5, 5, 3
    assert [e.source_id for e in entries] == ids  # all of them, each once, in send order
    assert len({e.id for e in entries}) == 23
    assert read(emu, page_size=1000) == entries  # one page or five: the same entries


def test_entries_come_oldest_first(emu: GraphEmulator) -> None:
    for n in range(4):
        upload(emu, users(f"O{n}"))
    entries = read(emu, page_size=2)
    assert [e.source_id for e in entries] == ["O0", "O1", "O2", "O3"]
    times = [e.at for e in entries]
    assert times == sorted(times) and len(set(times)) == 4


def test_only_entries_after_since_are_read(emu: GraphEmulator) -> None:
    upload(emu, users("EARLY1", "EARLY2"))
    (first, _) = read(emu)
    upload(emu, users("LATE1"))
    upload(emu, users("LATE2"))
    # ``gt``: an entry exactly at ``since`` is not read again.
    assert [e.source_id for e in read(emu, first.at)] == ["LATE1", "LATE2"]
    assert [e.source_id for e in read(emu, first.at - dt.timedelta(milliseconds=1))] == [
        "EARLY1",
        "EARLY2",
        "LATE1",
        "LATE2",
    ]
    assert read(emu, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == []


def test_only_our_jobs_entries_are_read(two_jobs: GraphEmulator) -> None:
    other = two_jobs.jobs[two_jobs.sp_id][1]
    upload(two_jobs, users("MINE1"))
    upload(two_jobs, users("THEIRS1", "THEIRS2"), job_id=other)
    upload(two_jobs, users("MINE2"))
    assert [e.source_id for e in read(two_jobs, page_size=1)] == ["MINE1", "MINE2"]
    assert [e.source_id for e in read(two_jobs, job_id=other)] == ["THEIRS1", "THEIRS2"]
    assert len(two_jobs.logs()) == 4


def test_entries_are_parsed_into_what_reconciliation_needs(emu: GraphEmulator) -> None:
    emu.set_faults(
        fail_records={
            "F1": {
                "errorCode": "AzureActiveDirectoryConflict",
                "errorCategory": "nonServiceFailure",
                "reason": "userPrincipalName is taken",
                "recommendedAction": "Give the worker another userName.",
            }
        }
    )
    upload(emu, users("C1", "F1"))
    upload(emu, users("C1", active=False))  # the same worker disabled
    upload(emu, users("C1", active=False))  # nothing left to change
    by_action = {(e.source_id, e.action): e for e in read(emu)}
    directory = {u["employeeId"]: u for u in emu.directory()}
    created = by_action[("C1", "create")]
    assert created.status == "success" and created.target_id == directory["C1"]["id"]
    assert created.error_code is None and created.reason is None
    assert created.at.tzinfo is not None and created.at.utcoffset() == dt.timedelta(0)
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
    raw = {e["id"]: e for e in emu.logs()}
    for entry in by_action.values():
        assert iso(entry.at) == raw[entry.id]["activityDateTime"]


def test_a_failing_page_raises_instead_of_ending_the_read(emu: GraphEmulator) -> None:
    upload(emu, users(*(f"R{n}" for n in range(6))))
    emu.set_faults(read_sequence=[200, 500])  # page 1 comes, page 2 fails
    got: list[LogEntry] = []

    async def go() -> None:
        async with GraphClient.from_settings(settings_for(emu)) as client:
            async for entry in provisioning_entries(client.sdk, client.job_id, EPOCH, 3):
                got.append(entry)

    with pytest.raises(GraphError) as caught:
        asyncio.run(go())
    assert caught.value.status == 500
    assert 0 < len(got) < 6  # what came before the failure, and no silent end


def test_a_refused_read_raises_with_graphs_status(emu: GraphEmulator) -> None:
    upload(emu, users("X1"))
    emu.set_faults(read_sequence=[403])
    with pytest.raises(GraphError) as caught:
        read(emu)
    assert caught.value.status == 403


def test_microsofts_sample_entries_read_over_http(emu: GraphEmulator) -> None:
    sample = sample_entries()
    seed(emu, sample)
    entries = read(emu, page_size=4)
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
        assert entry.at == dt.datetime.fromisoformat(raw["activityDateTime"].replace("Z", "+00:00"))
    # One record sent once made two entries in one cycle (create, then the manager update).
    changes: dict[str, list[str]] = {}
    for entry in entries:
        changes.setdefault(by_id[entry.id]["changeId"], []).append(entry.action)
    assert ["create", "update"] in changes.values()
    since = dt.datetime(2023, 1, 3, 21, 40, 53, tzinfo=dt.UTC)
    later = read(emu, since)
    assert {e.source_id for e in later} == {"10018", "10019", "10020"}
    assert all(e.at > since for e in later)


# --- parsing, without HTTP ------------------------------------------------------------------


def test_sample_entries_parse_and_keep_no_hr_values() -> None:
    for raw in sample_entries():
        entry = entry_of(raw)
        assert entry is not None
        kept = repr(entry)
        assert raw["targetIdentity"]["displayName"] not in kept
        upn = raw["targetIdentity"]["details"].get("UserPrincipalName")
        assert upn is None or upn not in kept
        for prop in raw["modifiedProperties"]:
            for value in (prop["oldValue"], prop["newValue"]):
                # Ids (the employeeId, a manager's object id) may be kept; other values never.
                if value and value not in (entry.source_id, entry.target_id):
                    assert value not in kept


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
    blank = entry_of(
        {
            "id": "e1",
            "sourceIdentity": {"id": "S"},
            "targetIdentity": {"id": ""},
            "activityDateTime": "2025-01-31T12:00:00.1234567Z",
            "provisioningAction": "",
            "provisioningStatusInfo": {"status": "failure", "errorInformation": {"errorCode": ""}},
        }
    )
    assert blank is not None
    assert (blank.action, blank.status, blank.target_id, blank.error_code) == (
        "other",
        "failure",
        None,
        None,
    )
    assert blank.at == dt.datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)


def test_log_filter_quotes_the_job_id_and_uses_gt() -> None:
    since = dt.datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert log_filter("API2AAD.x.y", since) == (
        "jobId eq 'API2AAD.x.y' and activityDateTime gt 2025-01-31T12:00:00.123Z"
    )
    assert log_filter("it's", since).startswith("jobId eq 'it''s' and ")


@given(st.text(alphabet=st.sampled_from("ab'\" ="), max_size=12))
def test_a_quoted_job_id_is_one_odata_string(job_id: str) -> None:
    text = log_filter(job_id, EPOCH)
    literal = text[len("jobId eq '") : text.index("' and activityDateTime gt ")]
    # Every quote inside is doubled: the literal cannot end early and add a clause.
    assert literal.replace("''", "").count("'") == 0
    assert literal.replace("''", "'") == job_id
