"""Provisioning-log entries of our job (``GET /auditLogs/provisioning``), through msgraph-sdk.

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

from .runs import iso

# Graph pages provisioning logs by 50 unless asked otherwise; a larger $top means fewer calls
# (a server that caps it lower still pages correctly through @odata.nextLink).
PAGE_SIZE = 500


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
    if value is None:
        return None
    text = getattr(value, "value", value)
    return str(text) if text != "" else None


def entry_of(item: Any) -> LogEntry | None:
    """The fields we use of one SDK ``ProvisioningObjectSummary``; None without a source id."""
    source = getattr(getattr(item, "source_identity", None), "id", None)
    when = getattr(item, "activity_date_time", None)
    if not source or when is None:
        return None
    info = getattr(item, "provisioning_status_info", None)
    error = getattr(info, "error_information", None)
    return LogEntry(
        id=str(item.id or ""),
        at=when if when.tzinfo else when.replace(tzinfo=dt.UTC),
        source_id=str(source),
        action=_text(getattr(item, "provisioning_action", None)) or "other",
        status=_text(getattr(info, "status", None)) or "unknown",
        target_id=_text(getattr(getattr(item, "target_identity", None), "id", None)),
        error_code=_text(getattr(error, "error_code", None)),
        error_category=_text(getattr(error, "error_category", None)),
        reason=_text(getattr(error, "reason", None)),
        recommended_action=_text(getattr(error, "recommended_action", None)),
    )


async def provisioning_entries(
    sdk: GraphServiceClient, job_id: str, since: dt.datetime, page_size: int = PAGE_SIZE
) -> AsyncIterator[LogEntry]:
    """Entries of the job after ``since``, oldest first, following ``@odata.nextLink``."""
    query = ProvisioningRequestBuilder.ProvisioningRequestBuilderGetQueryParameters(
        filter=log_filter(job_id, since), top=page_size, orderby=["activityDateTime asc"]
    )
    page = await sdk.audit_logs.provisioning.get(
        request_configuration=RequestConfiguration(query_parameters=query)
    )
    while page is not None:
        for item in page.value or []:
            entry = entry_of(item)
            if entry is not None:
                yield entry
        if not page.odata_next_link:
            return
        page = await sdk.audit_logs.provisioning.with_url(page.odata_next_link).get()
