"""Health of the provisioning job and of our daily call budget, written to
``results/health.json`` on every reconciliation pass.

A paused or quarantined job still answers 202 to bulkUpload and then processes nothing, so it
is logged as an error (``provisioning job unhealthy: ...``; an alert rule in infra/ fires on
it) and the pass sends nothing new. Calls near the daily quota are logged as a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..clock import iso
from ..graph.client import JobStatus
from ..graph.outcomes import job_stop_reason
from ..graph.quota import CallCounter
from ..settings import RESULTS_CONTAINER, Settings
from ..storage import BlobStore

log = logging.getLogger(__name__)

HEALTH_BLOB = "health.json"


def assess(job: JobStatus, calls: int, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """The health report (pure): job state, quota use, and what a person should know."""
    warnings: list[str] = []
    share = 100.0 * calls / settings.daily_call_quota
    near = share >= settings.quota_warn_percent
    percent = round(share, 1)
    if job.code != "Active":
        warnings.append(job_stop_reason(job))
    if near:
        warnings.append(
            f"{calls} bulkUpload calls in the last 24 hours: {percent} % of the daily quota of "
            f"{settings.daily_call_quota}; at the quota Graph answers 429 until the window moves"
        )
    return {
        "checked": iso(now),
        "healthy": job.code == "Active",
        "job": {"code": job.code, "quarantine_reason": job.quarantine_reason},
        "quota": {
            "calls_last_24h": calls,
            "daily_quota": settings.daily_call_quota,
            "percent": percent,
            "warn_percent": settings.quota_warn_percent,
            "near": near,
        },
        "warnings": warnings,
    }


def record_health(
    settings: Settings, store: BlobStore, job: JobStatus, now: dt.datetime
) -> dict[str, Any]:
    counter = CallCounter(store)
    report = assess(job, counter.last_24h(now), settings, now)
    counter.prune(now)
    store.write_json(RESULTS_CONTAINER, HEALTH_BLOB, report)
    if not report["healthy"]:
        log.error("provisioning job unhealthy: %s", report["warnings"][0])
    if report["quota"]["near"]:
        log.warning("daily call quota near: %s", report["warnings"][-1])
    return report
