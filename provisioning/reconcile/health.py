"""Health of the provisioning job and of the tenant's sending (the daily call budget, a
bucket-full pause), written to ``results/health.json`` on every reconciliation pass, with the
outcome backlog (records awaiting their provisioning-log entries, and how long reading them
takes at Graph's throttle) once the pass has read the log.

A paused or quarantined job still answers 202 to bulkUpload and then processes nothing, so it
is logged as an error (``provisioning job unhealthy: ...``; an alert rule in infra/ fires on
it) and the pass sends nothing new. Calls near the daily quota, and sending held by a pause or
by the quota, are logged as warnings. The calls are those of the tenant's pace
(``state/pace.json``): every bulkUpload attempt of every sender takes a slot there first.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..clock import iso, iso_at
from ..graph.client import JobStatus
from ..graph.outcomes import job_stop_reason
from ..graph.pace_book import PaceBook, hold, quota_frees, used_today
from ..graph.tenant_pace import limits_for, read_book
from ..settings import RESULTS_CONTAINER, Settings
from ..storage import BlobStore

log = logging.getLogger(__name__)

HEALTH_BLOB = "health.json"


def assess(job: JobStatus, book: PaceBook, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """The health report (pure): job state, quota use, a pause, and what a person should
    know."""
    moment = now.timestamp()
    calls = used_today(book, moment)
    frees = quota_frees(book, moment)
    held = hold(book, moment, limits_for(settings))
    warnings: list[str] = []
    share = 100.0 * calls / settings.daily_call_quota
    near = share >= settings.quota_warn_percent
    percent = round(share, 1)
    if not job.sends:
        warnings.append(job_stop_reason(job))
    elif job.code == "NotRun":
        warnings.append(
            "the provisioning job has not completed its first cycle (NotRun): what is sent "
            "waits in Entra until it does; check that provisioning was started"
        )
    if near:
        warnings.append(
            f"{calls} bulkUpload calls in the last 24 hours: {percent} % of the daily quota of "
            f"{settings.daily_call_quota}; at the quota sending waits until the window moves"
        )
    if held is not None:
        warnings.append(f"sending is held until {iso_at(held[0])}: {held[1]}")
    return {
        "checked": iso(now),
        "healthy": job.sends,
        "job": {"code": job.code, "quarantine_reason": job.quarantine_reason},
        "quota": {
            "calls_last_24h": calls,
            "daily_quota": settings.daily_call_quota,
            "percent": percent,
            "warn_percent": settings.quota_warn_percent,
            "near": near,
            "next_free": iso_at(frees[0][0]) if frees else None,
        },
        "sending": {
            "held": held is not None,
            "until": iso_at(held[0]) if held else None,
            "reason": held[1] if held else None,
            "bucket_full_pause_until": (
                iso_at(book.paused_until) if book.paused_until > moment else None
            ),
        },
        "warnings": warnings,
    }


def record_health(
    settings: Settings, store: BlobStore, job: JobStatus, now: dt.datetime
) -> dict[str, Any]:
    report = assess(job, read_book(store), settings, now)
    store.write_json(RESULTS_CONTAINER, HEALTH_BLOB, report)
    if not report["healthy"]:
        log.error("provisioning job unhealthy: %s", report["warnings"][0])
    if report["quota"]["near"]:
        log.warning(
            "daily call quota near: %d calls in the last 24 hours, quota %d",
            report["quota"]["calls_last_24h"],
            settings.daily_call_quota,
        )
    if report["sending"]["held"]:
        sending = report["sending"]
        log.warning("sending held until %s: %s", sending["until"], sending["reason"])
    return report


def record_backlog(store: BlobStore, backlog: dict[str, Any]) -> None:
    """The outcome backlog (records awaiting their log entries, the log pages left and how
    long they take at Graph's read throttle) into ``health.json``, beside the job's health."""

    def change(current: Any) -> Any:
        report = dict(current) if isinstance(current, dict) else {}
        report["outcomes"] = backlog
        return report

    store.update_json(RESULTS_CONTAINER, HEALTH_BLOB, change)
    if backlog.get("passes", 0) > 1:
        log.warning(
            "outcome backlog: %d records await their provisioning-log entries, about %d s of "
            "reading at Graph's throttle (%d passes)",
            backlog["records_awaiting_log"],
            backlog["eta_seconds"],
            backlog["passes"],
        )
