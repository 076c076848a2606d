"""What one bulk request did, in the forms the results keep (provisioning/graph/outcomes.py).

The outcome of every status the Graph emulator can answer comes from the real Submitter over
HTTP (msgraph-sdk's pipeline, the real managed-identity credential); the rules checked are the
README's ("Statuses and exit codes"): a batch Graph accepted goes on, a 400 (bad data) is
reported and the run goes on, a 401/403 refuses the app (the run ends ``failed``, the records
are not counted as refused), and transient failures that outlast the retries interrupt the run
(resumable, nothing counted as refused).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_emulator import GraphEmulator
from provisioning.convert.bulk import BulkRequest, serialize
from provisioning.graph.client import GraphClient, JobStatus
from provisioning.graph.outcomes import (
    batch_entry,
    count_batch,
    graph_reason,
    job_stop_reason,
    outcome_record,
    stop_reason,
)
from provisioning.graph.pacing import RateLimiter, retry_policy_for
from provisioning.graph.submit import Attempt, BatchOutcome, Submitter
from provisioning.settings import Settings
from tests.graphs import emulator_settings, scim_operations

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
COUNTS = ("records_sent", "records_accepted", "records_rejected_by_graph")

# The HTTP statuses by the rule the README gives them. 0: no answer (connection dropped).
ACCEPTED = (202,)
REFUSED_DATA = (400, 409)  # permanent, the batch's own: reported, the run goes on
# Permanent, the app's (404: the service principal or job does not exist): stops "failed".
REFUSED_APP = (401, 403, 404)
TRANSIENT = (0, 408, 429, 502, 503, 504)  # retried; outlasting the retries interrupts
BUCKET_FULL = (500,)  # the emulator's 500 is Microsoft's bucket full: every sender pauses


def request(count: int = 3, prefix: str = "E") -> BulkRequest:
    return BulkRequest(7, scim_operations(count, prefix, first_line=2, digits=4))


def graph_settings(emu: GraphEmulator, **changes: Any) -> Settings:
    return emulator_settings(emu, **{"max_attempts": 2, "retry_max_seconds": 0.02, **changes})


def submit(emu: GraphEmulator, bulk: BulkRequest, **changes: Any) -> BatchOutcome:
    """One submit of ``bulk`` through the real client and Submitter."""
    settings = graph_settings(emu, **changes)

    async def go() -> BatchOutcome:
        async with GraphClient.from_settings(settings) as client:
            limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_window_seconds)
            submitter = Submitter(client, limiter, retry_policy_for(settings))
            return await submitter.submit(serialize(bulk.operations), "crid-outcomes")

    return asyncio.run(go())


def counted(entry: dict[str, Any], records: int) -> dict[str, int]:
    counts = dict.fromkeys(COUNTS, 0)
    count_batch(counts, records, entry)
    return counts


def outcome(status: str, http_status: int, **extra: Any) -> BatchOutcome:
    return BatchOutcome(status, http_status, "crid", **extra)  # type: ignore[arg-type]


# --- every status the emulator answers, through the real Submitter -------------------------


@pytest.mark.parametrize(
    "http_status", ACCEPTED + REFUSED_DATA + REFUSED_APP + TRANSIENT + BUCKET_FULL
)
def test_each_http_status_follows_the_documented_rule(emu: GraphEmulator, http_status: int) -> None:
    emu.set_faults(status_sequence=[http_status, http_status], retry_after_seconds=0)
    bulk = request(3)
    result = submit(emu, bulk)
    record = outcome_record(bulk, result, resent=False)
    entry = batch_entry(bulk, record, resent=False, earlier=False)
    counts = counted(entry, len(bulk.operations))
    stop = stop_reason(result)
    applied = {u["employeeId"] for u in emu.directory()}

    assert counts["records_sent"] == 3  # whatever happened, the records went out
    if http_status in ACCEPTED:
        assert (result.status, stop) == ("accepted", None)
        assert counts == {"records_sent": 3, "records_accepted": 3, "records_rejected_by_graph": 0}
        assert applied == {"E0000", "E0001", "E0002"}
        return
    assert applied == set()  # nothing of a refused or failed request reached the directory
    assert counts["records_accepted"] == 0
    if http_status in REFUSED_DATA:
        assert result.status == "rejected" and stop is None  # the run goes on
        assert len(result.attempts) == 1  # resending the same data cannot succeed
        assert counts["records_rejected_by_graph"] == 3
    elif http_status in BUCKET_FULL:
        assert result.status == "failed" and result.error_code == "BucketFull"
        assert len(result.attempts) == 1  # not retried within minutes: paused instead
        assert stop is not None and stop[0] == "paused"
        assert "bucket" in stop[1] and f"sending resumes at {result.resume_at}" in stop[1]
        assert counts["records_rejected_by_graph"] == 0  # resumable: not the records' fault
    elif http_status in REFUSED_APP:
        assert result.status == "rejected" and len(result.attempts) == 1
        assert stop is not None and stop[0] == "failed"
        assert f"HTTP {http_status}" in stop[1] and "refused the app" in stop[1]
        assert f"request-id {result.request_id}" in stop[1] and result.request_id
        assert counts["records_rejected_by_graph"] == 0  # the app is refused, not the records
    else:
        assert result.status == "failed"
        assert len(result.attempts) == 2  # retried up to PROVISIONING_MAX_ATTEMPTS
        assert stop is not None and stop[0] == "interrupted"
        assert "kept failing" in stop[1] and f"HTTP {http_status}" in stop[1]
        assert counts["records_rejected_by_graph"] == 0  # resumable: not the records' fault
    assert entry["status"] == result.status and entry["http_status"] == http_status
    assert [a["status"] for a in record["attempts"]] == [http_status] * len(result.attempts)


def test_a_transient_failure_then_acceptance_goes_on(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[503], retry_after_seconds=0)
    bulk = request(2)
    result = submit(emu, bulk)
    entry = batch_entry(bulk, outcome_record(bulk, result, False), resent=False, earlier=False)
    assert stop_reason(result) is None
    assert (entry["status"], entry["http_status"], entry["attempts"]) == ("accepted", 202, 2)
    assert counted(entry, 2)["records_accepted"] == 2


def test_a_retry_after_longer_than_allowed_pauses_without_waiting(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[429], retry_after_seconds=3600)
    result = submit(emu, request(1), max_attempts=5, max_wait_seconds=30)
    stop = stop_reason(result)
    assert result.status == "failed" and result.error_code == "Throttled"
    assert len(result.attempts) == 1  # given up at once, not after an hour
    assert stop is not None and stop[0] == "paused"
    assert "Retry-After of 3600 s" in stop[1] and f"resumes at {result.resume_at}" in stop[1]


def test_a_backoff_longer_than_allowed_interrupts_without_waiting(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[503], retry_after=False)
    result = submit(
        emu,
        request(1),
        max_attempts=5,
        max_wait_seconds=30,
        retry_base_seconds=3600,
        retry_max_seconds=7200,
    )
    stop = stop_reason(result)
    assert result.status == "failed" and result.error_code == "WaitTooLong"
    assert len(result.attempts) == 1
    assert stop is not None and stop[0] == "interrupted"
    assert "WaitTooLong" in stop[1] and "PROVISIONING_MAX_WAIT_SECONDS" in stop[1]


def test_graph_error_text_and_ids_reach_the_reason(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[403])
    result = submit(emu, request(1))
    stop = stop_reason(result)
    assert stop is not None
    assert result.error_code and result.error_code in stop[1]
    assert result.error_message and result.error_message in stop[1]
    assert stop[1].startswith(f"Graph refused the app (HTTP 403, request-id {result.request_id})")


# --- the job's state -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (
            {"job_status": "Quarantine", "quarantine_reason": "EncounteredQuarantineException"},
            "the provisioning job is in quarantine (EncounteredQuarantineException); "
            "fix it in Entra, then restart",
        ),
        (
            {"job_status": "Paused"},
            "the provisioning job is paused; uploads would be accepted but not processed",
        ),
        (
            {"job_status": "NotConfigured"},
            "the provisioning job is not configured (NotConfigured); configure the API-driven "
            "provisioning app in Entra and start provisioning",
        ),
    ],
)
def test_job_stop_reason_of_the_job_graph_reports(
    emu: GraphEmulator, faults: dict[str, str], expected: str
) -> None:
    emu.set_faults(**faults)
    settings = graph_settings(emu)

    async def read() -> JobStatus:
        async with GraphClient.from_settings(settings) as client:
            return await client.job_status()

    job = asyncio.run(read())
    assert not job.sends
    assert job_stop_reason(job) == expected


def test_job_stop_reason_of_a_quarantine_without_reason() -> None:
    reason = job_stop_reason(JobStatus("Quarantine"))
    assert "quarantine (unknown reason)" in reason


# --- the stop rule and the counts, for any outcome -----------------------------------------

http_statuses = st.one_of(
    st.sampled_from((0, 202, 400, 401, 403, 404, 429, 503)), st.integers(0, 599)
)


@given(
    status=st.sampled_from(("accepted", "rejected", "failed")),
    http_status=http_statuses,
    records=st.integers(0, 50),
)
@settings(max_examples=300, deadline=None)
def test_stop_rule_and_counts_agree(status: str, http_status: int, records: int) -> None:
    result = outcome(status, http_status, request_id="rid", error_code="Code")
    stop = stop_reason(result)
    entry = batch_entry(
        None, {"status": status, "http_status": http_status}, resent=False, earlier=False
    )
    counts = counted(entry, records)
    app_refused = status == "rejected" and http_status in REFUSED_APP
    # Exactly one of: goes on, interrupted (resumable), failed (the app refused).
    if status == "failed":
        assert stop is not None and stop[0] == "interrupted"
    elif app_refused:
        assert stop is not None and stop[0] == "failed"
    else:
        assert stop is None
    # Records counted refused only when Graph refused them for their data.
    assert counts["records_sent"] == records
    assert counts["records_accepted"] == (records if status == "accepted" else 0)
    refused = status == "rejected" and not app_refused
    assert counts["records_rejected_by_graph"] == (records if refused else 0)
    assert counts["records_accepted"] + counts["records_rejected_by_graph"] <= records


def test_counts_add_up_over_a_run() -> None:
    counts = dict.fromkeys(COUNTS, 0)
    for status, http_status, records in [
        ("accepted", 202, 50),
        ("rejected", 400, 50),
        ("rejected", 401, 50),
        ("rejected", 403, 10),
        ("failed", 503, 20),
        ("accepted", 202, 7),
    ]:
        count_batch(counts, records, {"status": status, "http_status": http_status})
    assert counts == {"records_sent": 187, "records_accepted": 57, "records_rejected_by_graph": 50}


def test_count_batch_leaves_other_counts_alone() -> None:
    counts = {**dict.fromkeys(COUNTS, 0), "records_superseded": 4}
    count_batch(counts, 3, {"status": "superseded"})
    assert counts == {**dict.fromkeys(COUNTS, 0), "records_sent": 3, "records_superseded": 4}


# --- reasons -------------------------------------------------------------------------------


def test_graph_reason_joins_what_graph_said() -> None:
    full = outcome("rejected", 400, request_id="rid-1", error_code="X", error_message="bad")
    assert graph_reason(full, "refused the batch") == (
        "Graph refused the batch (HTTP 400, request-id rid-1) X: bad"
    )
    only_message = outcome("failed", 0, error_message="timeout (ReadTimeout)")
    assert graph_reason(only_message, "kept failing") == (
        "Graph kept failing (HTTP 0) timeout (ReadTimeout)"  # no request-id: none is named
    )
    nothing_said = outcome("rejected", 409, request_id="r")
    assert graph_reason(nothing_said, "refused the batch") == (
        "Graph refused the batch (HTTP 409, request-id r)"  # no trailing space
    )
    only_code = outcome("rejected", 401, request_id="r", error_code="InvalidAuthenticationToken")
    assert graph_reason(only_code, "refused the app").endswith(") InvalidAuthenticationToken")


# --- the batch record and the summary entry ------------------------------------------------


def attempts() -> list[Attempt]:
    return [
        Attempt("2025-01-31T12:00:00.000Z", 0, error="timeout", maybe_applied=True),
        Attempt("2025-01-31T12:00:02.000Z", 202, request_id="rid-2", duration_ms=40),
    ]


def test_outcome_record_keeps_everything_the_batch_file_needs() -> None:
    bulk = request(4)
    result = BatchOutcome(
        "accepted",
        202,
        "crid-9",
        request_id="rid-2",
        location="https://graph/loc",
        attempts=attempts(),
        maybe_applied_attempts=1,
    )
    record = outcome_record(bulk, result, resent=True)
    assert record["batch"] == 7 and record["operations"] == 4
    assert record["resent_after_crash"] is True
    assert record["maybe_applied_before_last"] is True
    assert (record["status"], record["http_status"], record["request_id"]) == (
        "accepted",
        202,
        "rid-2",
    )
    assert record["client_request_id"] == "crid-9"
    assert [a["status"] for a in record["attempts"]] == [0, 202]
    assert json.loads(json.dumps(record)) == record  # stored as JSON as it is


def test_batch_entry_read_back_from_its_file_is_the_entry_of_the_live_batch() -> None:
    """A resumed run rebuilds its batch list from the batch files: the same entries."""
    bulk = request(5)
    result = BatchOutcome(
        "rejected",
        400,
        "crid-3",
        request_id="rid-3",
        error_code="InvalidDataFormat",
        error_message="Invalid Data Format: x",
        attempts=attempts(),
    )
    record = outcome_record(bulk, result, resent=False)
    record["maybe_applied_twice"] = True
    live = batch_entry(bulk, record, resent=False, earlier=False)
    stored = json.loads(json.dumps(record))
    replayed = batch_entry(None, stored, resent=False, earlier=True)
    assert {**live, "sent_in_earlier_attempt": True} == replayed
    assert live == {
        "batch": 7,
        "status": "rejected",
        "http_status": 400,
        "request_id": "rid-3",
        "client_request_id": "crid-3",
        "error_code": "InvalidDataFormat",
        "error_message": "Invalid Data Format: x",
        "operations": 5,
        "attempts": 2,
        "sent_in_earlier_attempt": False,
        "resent_after_crash": False,
        "maybe_applied_twice": True,
        "first_sent": "2025-01-31T12:00:00.000Z",
    }


def test_batch_entry_resent_flag_from_the_call_or_the_record() -> None:
    record = {"batch": 2, "status": "accepted", "http_status": 202, "operations": 3}
    assert batch_entry(None, record, resent=True, earlier=False)["resent_after_crash"] is True
    marked = {**record, "resent_after_crash": True}
    assert batch_entry(None, marked, resent=False, earlier=True)["resent_after_crash"] is True
    plain = batch_entry(None, record, resent=False, earlier=True)
    assert plain["resent_after_crash"] is False and plain["maybe_applied_twice"] is False
    # No attempt recorded: none counted, and no first send time is made up.
    assert plain["attempts"] == 0 and "first_sent" not in plain
    assert plain["operations"] == 3
