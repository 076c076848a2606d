"""Provisioning-log entries of our job (``GET /auditLogs/provisioning``), through msgraph-sdk's
request builder and pipeline, parsed as plain JSON (see ``graph.client.json_pages``).

Only the fields reconciliation needs are kept, and never the display names, the steps'
``details`` or the modified property values the entries carry (HR data stays out of memory and
logs): of the steps, only whether one skipped a property (``EntrySynchronizationSkip``, the
manager Entra could not resolve yet), and Entra's own words about it; of the modified
properties, only whether the manager was set.

The filter uses ``gt`` on ``activityDateTime``, which the provisioning-log page documents (eq,
contains, gt, lt: https://learn.microsoft.com/graph/api/provisioningobjectsummary-list).
``activityDateTime`` has second precision in real entries (Microsoft's sample page), so a
time is floored to its second and the filter starts one second before it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.audit_logs.provisioning.provisioning_request_builder import (
    ProvisioningRequestBuilder,
)

from ..clock import iso, parse_iso
from .client import GraphClient, ReadPace, json_pages

# Reads are throttled per request (5 per 10 s), not per entry, so the fewer pages the better.
# Microsoft documents no maximum $top for this resource; 1,000 is the largest page Graph's
# other activity-log lists (signIns, directoryAudits) serve, and what the emulator allows. An
# entry is a few KB: a page of 1,000 is a few MB while parsed (benchmarks/reconcile.py).
PAGE_SIZE = 1000
SKIP_STEP = "EntrySynchronizationSkip"
MANAGER = "manager"


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
    # One send of one record gives one or more entries with its changeId (a create, then an
    # update once a manager sent in the same cycle resolves).
    change_id: str | None = None
    cycle_id: str | None = None
    # Properties a step skipped (the manager Entra could not resolve), Entra's words about it
    # (they quote the user's UPN: private results only, never a log line), and whether this
    # entry set the manager.
    skipped: tuple[str, ...] = ()
    skip_reason: str | None = None
    skipped_manager: str | None = None
    manager_set: bool = False


def _second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def log_filter(job_id: str, since: dt.datetime, source_id: str | None = None) -> str:
    """Entries of the job from ``since``'s second on (``gt`` the second before), and of one
    worker when ``source_id`` is given (the per-worker query of Microsoft's Postman
    collection)."""
    quoted = job_id.replace("'", "''")
    start = _second(since) - dt.timedelta(seconds=1)
    text = f"jobId eq '{quoted}' and activityDateTime gt {iso(start)}"
    if source_id is not None:
        text += " and sourceIdentity/id eq '{}'".format(source_id.replace("'", "''"))
    return text


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _skips(steps: Any) -> tuple[tuple[str, ...], str | None, str | None]:
    """(properties skipped, Entra's words, the manager reference that did not resolve). The
    skip step's details name the reference as a key (``{"10019": "manager Add", "PropertyName":
    "manager", ...}`` in Microsoft's sample): an HR id, kept in state, never logged."""
    skipped: list[str] = []
    reason = manager = None
    for step in steps if isinstance(steps, list) else ():
        if not isinstance(step, dict) or step.get("name") != SKIP_STEP:
            continue
        details = step.get("details")
        details = details if isinstance(details, dict) else {}
        name = _text(details.get("PropertyName"))
        skipped.append(name or "unknown")
        reason = reason or _text(step.get("description"))
        if name == MANAGER and manager is None:
            manager = next(
                (
                    str(key)
                    for key, value in details.items()
                    if isinstance(value, str) and value.startswith(f"{MANAGER} ")
                ),
                None,
            )
    return tuple(skipped), reason, manager


def entry_of(item: dict[str, Any]) -> LogEntry | None:
    """The fields we use of one provisioning-log entry (JSON); None without a source id."""
    source = (item.get("sourceIdentity") or {}).get("id")
    when = item.get("activityDateTime")
    if not source or not when:
        return None
    info = item.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    skipped, skip_reason, skipped_manager = _skips(item.get("provisioningSteps"))
    modified = item.get("modifiedProperties") or []
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
        change_id=_text(item.get("changeId")),
        cycle_id=_text(item.get("cycleId")),
        skipped=skipped,
        skip_reason=skip_reason,
        skipped_manager=skipped_manager,
        manager_set=any(isinstance(p, dict) and p.get("displayName") == MANAGER for p in modified),
    )


class GraphLog:
    """The job's provisioning log, read page by page, paced with every other reader."""

    def __init__(
        self, graph: GraphClient, *, pace: ReadPace | None = None, page_size: int = PAGE_SIZE
    ) -> None:
        self.sdk = graph.sdk
        self.job_id = graph.job_id
        # Paced reads have their token before their slot (GraphClient.authenticate).
        self.authenticate = graph.authenticate
        self.pace = pace
        self.page_size = page_size

    async def pages(
        self,
        since: dt.datetime,
        *,
        source_id: str | None = None,
        max_wait: Callable[[], float] | None = None,
    ) -> AsyncIterator[list[LogEntry]]:
        """Pages of entries from ``since`` on (of one worker with ``source_id``), oldest
        first, following ``@odata.nextLink``. A read that would wait longer than
        ``max_wait()`` raises the pace's ``WaitTooLong`` before it is sent."""
        query = ProvisioningRequestBuilder.ProvisioningRequestBuilderGetQueryParameters(
            filter=log_filter(self.job_id, since, source_id),
            top=self.page_size,
            orderby=["activityDateTime asc"],
        )
        config = RequestConfiguration(query_parameters=query)
        async for page in json_pages(
            self.sdk.request_adapter,
            self.sdk.audit_logs.provisioning,
            config,
            pace=self.pace,
            max_wait=max_wait or (lambda: math.inf),
            authenticate=self.authenticate,
        ):
            yield [e for e in map(entry_of, page) if e is not None]
