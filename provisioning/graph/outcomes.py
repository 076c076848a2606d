"""What one bulk request did, in the forms the results keep: batch records, ledger rows,
counts, and the reasons a run stops. Shared by the drop runs and the releases."""

from __future__ import annotations

from typing import Any

from ..convert.bulk import BulkRequest
from ..storage import StagedBlob
from .client import JobStatus
from .submit import PAUSED_CODES, BatchOutcome

LEDGER_COLUMNS = (
    "batch",
    "record",
    "line",
    "externalId",
    "bulkId",
    "action",
    "status",
    "http_status",
    "request_id",
)


class TextToBlob:
    """The ``write(str)`` a csv.writer needs, onto a staged blob."""

    def __init__(self, blob: StagedBlob) -> None:
        self.blob = blob

    def write(self, text: str) -> int:
        # A lone surrogate (from a JSON \ud800 escape) is not UTF-8: written escaped, no crash.
        self.blob.write(text.encode("utf-8", "backslashreplace"))
        return len(text)


def job_stop_reason(job: JobStatus) -> str:
    if job.code == "Quarantine":
        why = job.quarantine_reason or "unknown reason"
        return f"the provisioning job is in quarantine ({why}); fix it in Entra, then restart"
    if job.code == "Paused":
        return "the provisioning job is paused; uploads would be accepted but not processed"
    if job.code == "NotConfigured":
        return (
            "the provisioning job is not configured (NotConfigured); configure the API-driven "
            "provisioning app in Entra and start provisioning"
        )
    return f"the provisioning job is not running (status {job.code}); start provisioning"


def graph_reason(result: BatchOutcome, what: str) -> str:
    detail = ": ".join(p for p in (result.error_code, result.error_message) if p)
    request = f", request-id {result.request_id}" if result.request_id else ""
    said = f" {detail}" if detail else ""
    return f"Graph {what} (HTTP {result.http_status}{request}){said}"


def outcome_record(request: BulkRequest, result: BatchOutcome, resent: bool) -> dict[str, Any]:
    record = result.as_dict()
    record["batch"] = request.index
    record["operations"] = len(request.operations)
    record["resent_after_crash"] = resent
    return record


def batch_entry(
    request: BulkRequest | None, outcome: dict[str, Any], *, resent: bool, earlier: bool
) -> dict[str, Any]:
    """A batch as the summary lists it (``request`` None: read back from its batch file)."""
    entry = {
        key: outcome.get(key)
        for key in (
            "batch",
            "status",
            "http_status",
            "request_id",
            "client_request_id",
            "error_code",
            "error_message",
        )
    }
    entry["operations"] = (
        len(request.operations) if request is not None else outcome.get("operations", 0)
    )
    entry["attempts"] = len(outcome.get("attempts") or [])
    entry["sent_in_earlier_attempt"] = earlier
    entry["resent_after_crash"] = resent or bool(outcome.get("resent_after_crash"))
    entry["maybe_applied_twice"] = bool(outcome.get("maybe_applied_twice"))
    attempts = outcome.get("attempts") or []
    if attempts:
        entry["first_sent"] = attempts[0].get("started_at")
    return entry


# Answers that refuse the app, not the records: 401/403 (no token, no permission) and 404 (the
# service principal or job named in PROVISIONING_SERVICE_PRINCIPAL_ID/JOB_ID does not exist, a
# configuration error). Every further request would be refused too: the run stops, resumable,
# and its records are sent again once the app is fixed, never counted as refused.
REFUSES_THE_APP = frozenset({401, 403, 404})


def refuses_the_app(result: BatchOutcome) -> bool:
    return result.status == "rejected" and result.http_status in REFUSES_THE_APP


def count_batch(counts: dict[str, int], records: int, entry: dict[str, Any]) -> None:
    counts["records_sent"] += records
    if entry["status"] == "accepted":
        counts["records_accepted"] += records
    elif entry["status"] == "rejected" and entry.get("http_status") not in REFUSES_THE_APP:
        # Refused for their data; an answer that refuses the app refuses no record.
        counts["records_rejected_by_graph"] += records


def stop_reason(result: BatchOutcome) -> tuple[str, str] | None:
    """(run status, reason) when a batch's outcome ends the run, else None.

    Transient errors that outlasted the retries interrupt it (resumable); an answer that refuses
    the app (``REFUSES_THE_APP``) fails it, resumable too. A 400 does not stop it: that batch's
    data is reported and the others go on."""
    if result.status == "failed" and result.error_code in PAUSED_CODES:
        return "paused", result.error_message or "sending is paused"
    if result.status == "failed":
        return "interrupted", graph_reason(result, "kept failing")
    if refuses_the_app(result):
        return "failed", graph_reason(result, "refused the app")
    return None
