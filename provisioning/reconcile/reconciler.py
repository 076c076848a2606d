"""One reconciliation pass, run by the timer (and ``python -m provisioning reconcile``):

1. job health and call quota -> ``results/health.json`` (an unhealthy job sends nothing);
2. sweep ``hr-inbound`` for files no run has processed;
3. release held changes that are due, and approved leavers;
4. outcomes of sent records from the provisioning logs, with retries of transient failures;
5. the drift report, when the last one is older than ``drift_interval_hours``.

Passes never overlap: each holds a lease on ``state/locks/reconcile``, and a pass that cannot
get it returns ``busy`` at once. Every step works from what is in state, not from the time it
was scheduled, so a late (past-due) pass simply finds more to do, and a pass interrupted half
way leaves nothing that the next one does not pick up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..changes.flush import flush, stale_outbox
from ..clock import iso, parse_iso, utcnow
from ..convert.bulk import Operation
from ..graph.client import GraphClient, GraphUnavailable
from ..graph.provisioning_logs import GraphLog
from ..graph.tenant_pace import TenantPace
from ..runs.drop import DropProcessor
from ..runs.release import Releaser
from ..runs.sweep import Sweeper
from ..settings import INBOUND_CONTAINER, RESULTS_CONTAINER, STATE_CONTAINER, Settings
from ..storage import BlobStore, Lease, LeaseKeeper
from .confirm import Confirmer
from .drift_report import drift_report
from .health import record_backlog, record_health
from .manager_links import follow_up
from .resend import resend

log = logging.getLogger(__name__)

LOCK = "locks/reconcile"
# The sweep stops starting new files after this long, so one pass ends well within the
# Functions timeout and the other steps still run; the rest is picked up by the next pass.
SWEEP_BUDGET_SECONDS = 300.0


def take_lock(store: BlobStore, settings: Settings) -> Lease | None:
    """The lease that keeps reconciliation passes (and ``python -m provisioning release``)
    from running at the same time; None while someone else holds it."""
    if not store.exists(STATE_CONTAINER, LOCK):
        store.write_bytes(STATE_CONTAINER, LOCK, b"", "text/plain")
    return store.acquire_lease(STATE_CONTAINER, LOCK, settings.lease_seconds)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        graph: GraphClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self._sleep = sleep
        self._clock = clock

    async def run(self, *, sweep: bool = True, drift: bool | None = None) -> dict[str, Any]:
        """One pass. ``drift``: None runs the report when due, True always, False never."""
        self.store.ensure_containers(INBOUND_CONTAINER, RESULTS_CONTAINER, STATE_CONTAINER)
        lease = take_lock(self.store, self.settings)
        if lease is None:
            log.info("reconcile: another pass is running")
            return {"status": "busy"}
        keeper = LeaseKeeper(lease, self.settings.lease_seconds, self._sleep)
        started = self._clock()
        begun = time.monotonic()
        # Sortable to the microsecond: passes of one second are listed in the order they ran.
        pass_id = f"{started:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        report: dict[str, Any] = {"pass": pass_id, "started": iso(started)}
        try:
            try:
                job = await self.graph.job_status()
            except GraphUnavailable as exc:
                # Graph or the token endpoint is down: nothing this pass can do; the next
                # pass finds everything where this one left it.
                log.warning("reconcile: Graph unavailable (%s); pass skipped", exc.reason)
                report.update(status="interrupted", reason=exc.reason)
                return report
            health = record_health(self.settings, self.store, job, started)
            report["health"] = {"healthy": health["healthy"], "job": health["job"]["code"]}
            active = health["healthy"]
            if sweep:
                processor = DropProcessor(
                    self.settings, self.store, self.graph, sleep=keeper.sleep, clock=self._clock
                )
                report["sweep"] = await Sweeper(
                    self.settings, self.store, processor, clock=self._clock
                ).sweep(budget_seconds=SWEEP_BUDGET_SECONDS)
                keeper.renew_if_due()
            if active:
                released = await Releaser(
                    self.settings,
                    self.store,
                    self.graph,
                    sleep=keeper.sleep,
                    keep_alive=keeper.renew_if_due,
                    clock=self._clock,
                ).release()
                report["release"] = {
                    k: released.get(k)
                    for k in ("status", "due_held", "records_accepted", "results")
                }
                if stale_outbox(self.store, started):
                    # The safety net of the HTTP changes: their queue message never came, or
                    # went to the poison queue; nothing accepted may wait forever.
                    flushed = await flush(
                        self.settings, self.store, self.graph, sleep=keeper.sleep, clock=self._clock
                    )
                    report["flush"] = {k: flushed.get(k) for k in ("status", "records_accepted")}
                    keeper.renew_if_due()
            read_pace = TenantPace.for_log_reads(self.store, self.settings, sleep=keeper.sleep)
            confirmer = Confirmer(
                self.settings,
                self.store,
                log_source=GraphLog(self.graph, pace=read_pace),
                poster=self.graph,
                sleep=keeper.sleep,
                clock=self._clock,
            )
            report["outcomes"] = await confirmer.run(
                job_active=active,
                keep_alive=keeper.renew_if_due,
                deadline=begun + self.settings.reconcile_budget_seconds,
            )
            record_backlog(self.store, report["outcomes"]["backlog"])
            if active:
                report["manager_followup"] = await follow_up(
                    self.settings,
                    self.store,
                    self.graph,
                    sleep=keeper.sleep,
                    keep_alive=keeper.renew_if_due,
                    clock=self._clock,
                    pending=confirmer.open_ids,
                )
            if drift or (drift is None and self._drift_due(started)):
                report["drift"] = await self._drift(confirmer.open_ids, active, keeper)
            report.update(status="complete", finished=iso(self._clock()))
        finally:
            report["duration_seconds"] = round(time.monotonic() - begun, 3)
            report.setdefault("status", "interrupted")
            self.store.write_json(
                RESULTS_CONTAINER, f"reconcile/{started:%Y-%m-%d}/{report['pass']}.json", report
            )
            lease.release()
        return report

    def _drift_due(self, now: dt.datetime) -> bool:
        hours = self.settings.drift_interval_hours
        if hours <= 0:
            return False
        found = self.store.read_json(RESULTS_CONTAINER, "drift/latest.json")
        if found is None:
            return True
        last = found[0].get("generated")
        if not isinstance(last, str):
            return True
        return now - parse_iso(last) >= dt.timedelta(hours=hours)

    async def _drift(
        self, pending: frozenset[str], active: bool, keeper: LeaseKeeper
    ) -> dict[str, Any]:
        result = await drift_report(
            self.settings, self.store, self.graph, pending=pending, clock=self._clock
        )
        keeper.renew_if_due()
        summary = {k: v for k, v in result.items() if k not in ("report", "operations")}
        if self.settings.drift_auto_fix and active and result["operations"]:
            summary["fix"] = await self._send_fixes(
                result["operations"], result["results_prefix"], keeper
            )
        return summary

    async def _send_fixes(
        self, ops: list[Operation], prefix: str, keeper: LeaseKeeper
    ) -> dict[str, Any]:
        """Re-send HR records to undo drift; their outcomes are confirmed like any run's. Each
        carries the order of the record it re-sends, so a newer change is never undone."""
        resent = await resend(
            self.settings,
            self.store,
            self.graph,
            ops,
            kind="drift-fix",
            action="drift fix",
            results_prefix=prefix,
            sleep=keeper.sleep,
            keep_alive=keeper.renew_if_due,
            clock=self._clock,
        )
        return resent.report
