"""Provisioning-log entries of our job (``GET /auditLogs/provisioning``), through msgraph-sdk's
request builder and pipeline, parsed as plain JSON (see ``graph.json_pages``).

Only the fields reconciliation needs are kept, and never the display names or modified
property values the entries carry (HR data stays out of memory and logs). The filter uses
``gt`` on ``activityDateTime``: the provisioning-log page documents eq, contains, gt and lt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.audit_logs.provisioning.provisioning_request_builder import (
    ProvisioningRequestBuilder,
)

from ..clock import iso, parse_iso
from .client import json_pages

# Graph pages provisioning logs by 50 unless asked otherwise. Entries are large (steps,
# modified properties): one page of 500 held ~30 MB in memory while parsed (measured with
# benchmarks/reconcile.py --memory), one of 100 about a fifth of that, for 5x the calls.
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: str
    at: dt.datetime
    source_id: str  # the record's externalId
    action: str  # create, update, disable, delete, stagedDelete, other
    status: str  # success, warning, failure, skipped
    target_id: str | None = None
    error_code: str | None = None
    error_category: str | None = None
    reason: str | None = None
    recommended_action: str | None = None


def log_filter(job_id: str, since: dt.datetime) -> str:
    quoted = job_id.replace("'", "''")
    return f"jobId eq '{quoted}' and activityDateTime gt {iso(since)}"


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def entry_of(item: dict[str, Any]) -> LogEntry | None:
    """The fields we use of one provisioning-log entry (JSON); None without a source id."""
    source = (item.get("sourceIdentity") or {}).get("id")
    when = item.get("activityDateTime")
    if not source or not when:
        return None
    info = item.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    return LogEntry(
        id=str(item.get("id") or ""),
        at=parse_iso(when),
        source_id=str(source),
        action=_text(item.get("provisioningAction")) or "other",
        status=_text(info.get("status")) or "unknown",
        target_id=_text((item.get("targetIdentity") or {}).get("id")),
        error_code=_text(error.get("errorCode")),
        error_category=_text(error.get("errorCategory")),
        reason=_text(error.get("reason")),
        recommended_action=_text(error.get("recommendedAction")),
    )


async def provisioning_entries(
    sdk: GraphServiceClient, job_id: str, since: dt.datetime, page_size: int = PAGE_SIZE
) -> AsyncIterator[LogEntry]:
    """Entries of the job after ``since``, oldest first, following ``@odata.nextLink``."""
    query = ProvisioningRequestBuilder.ProvisioningRequestBuilderGetQueryParameters(
        filter=log_filter(job_id, since), top=page_size, orderby=["activityDateTime asc"]
    )
    config = RequestConfiguration(query_parameters=query)
    async for page in json_pages(sdk.request_adapter, sdk.audit_logs.provisioning, config):
        for item in page:
            entry = entry_of(item)
            if entry is not None:
                yield entry
