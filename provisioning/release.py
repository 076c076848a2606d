"""Release what waits: future-dated joiners and leavers whose day has come, and leavers a
person approved after the safety threshold held them. The reconciliation timer calls this;
``python -m provisioning release`` runs it once.

A held change is deleted only after Graph accepted the request carrying it, so a crash in
between sends it again on the next release (the same complete record; the results say so).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .bulk import Operation, batches
from .drop import GraphApi
from .lifecycle import Held, today_in
from .outcomes import (
    LEDGER_COLUMNS,
    TextToBlob,
    accepted_entry,
    batch_entry,
    count_batch,
    job_stop_reason,
    ledger_row,
    outcome_record,
    stop_reason,
)
from .pacing import limiter_for, retry_policy_for
from .reports import render_run_html
from .runs import Results, client_request_id, iso, new_run_id, utcnow
from .settings import RESULTS_CONTAINER, Settings
from .state import WorkerState, accepted_seq, id_hash
from .storage import BlobStore
from .submit import Submitter
from .tracking import track

log = logging.getLogger(__name__)


class Releaser:
    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        graph: GraphApi,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self.state = WorkerState(store)
        self._sleep = sleep
        self._clock = clock

    async def release(self) -> dict[str, Any]:
        started = self._clock()
        begun = time.monotonic()
        run_id = new_run_id(started, "release0")
        results = Results(self.store, f"runs/{started:%Y-%m-%d}/{run_id}/")
        summary: dict[str, Any] = {"run_id": run_id, "kind": "release", "started": iso(started)}
        self.state.fold()
        today = today_in(self.settings.hr_timezone, started).isoformat()
        due = [h for h in self.state.held() if h.due <= today and h.record is not None]
        approved = [
            r for r in self.state.approval_requests() if self.state.is_approved(r["run_id"])
        ]
        summary["due_held"] = len(due)
        summary["approved_runs"] = [r["run_id"] for r in approved]
        if not due and not approved:
            summary.update(status="nothing-due", finished=iso(self._clock()))
            return summary
        job = await self.graph.job_status()
        if job.code != "Active":
            return self._finish(results, summary, "stopped", job_stop_reason(job), begun)

        # bulkId -> what to do once Graph accepted it
        settle: dict[str, tuple[str, str, Held | None, str | None]] = {}

        def operations() -> Any:
            for held in sorted(due, key=lambda h: (h.due, h.kind, h.external_id)):
                bulk = f"held-{id_hash(held.external_id)[:12]}-{held.kind}-{held.due}"
                settle[bulk] = (f"{held.kind} (held until {held.due})", held.feed, held, None)
                yield Operation(bulk, held.external_id, 0, dict(held.record or {}))
            for waiting in approved:
                run = waiting["run_id"]
                for external_id, record in sorted(waiting["leavers"].items()):
                    bulk = f"approved-{id_hash(run)[:8]}-{id_hash(external_id)[:12]}"
                    settle[bulk] = ("leaver (approved)", waiting["feed"], None, run)
                    yield Operation(bulk, external_id, 0, {**record, "active": False})

        submitter = Submitter(
            self.graph,
            limiter_for(self.settings, self._sleep),
            retry_policy_for(self.settings),
            sleep=self._sleep,
        )
        ledger_blob = self.store.staged(RESULTS_CONTAINER, results.path("ledger.csv"))
        ledger = csv.writer(TextToBlob(ledger_blob))
        ledger.writerow(LEDGER_COLUMNS)
        counts = {"records_sent": 0, "records_accepted": 0, "records_rejected_by_graph": 0}
        batch_log: list[dict[str, Any]] = []
        unsent_approvals: set[str] = set()
        stop: tuple[str, str] | None = None
        for request in batches(operations(), self.settings.batch_size):
            result = await submitter.submit(request.body, client_request_id(run_id, request.index))
            outcome = outcome_record(request, result, resent=False)
            results.write_json(results.batch_name(request.index), outcome)
            entry = batch_entry(request, outcome, resent=False, earlier=False)
            batch_log.append(entry)
            count_batch(counts, request, entry["status"])
            for op in request.operations:
                action, _feed, _held, approval = settle[op.bulk_id]
                ledger.writerow(ledger_row(request.index, op, action, entry))
                if result.status != "accepted" and approval is not None:
                    unsent_approvals.add(approval)
            if result.status == "accepted":
                entries = [accepted_entry(op, settle[op.bulk_id][1]) for op in request.operations]
                self.state.record_accepted(accepted_seq(run_id, request.index), entries)
                track(
                    self.store,
                    run_id=run_id,
                    results_prefix=results.prefix,
                    kind="release",
                    batch=request.index,
                    operations=request.operations,
                    accepted_at=self._clock(),
                    actions={
                        bulk: settle[bulk][0] for bulk in (op.bulk_id for op in request.operations)
                    },
                )
                for op in request.operations:
                    held = settle[op.bulk_id][2]
                    if held is not None:
                        self.state.drop_held(held)
            else:
                stop = stop_reason(result)
                if stop is not None:
                    break
        if stop is None:
            for approval_request in approved:
                if approval_request["run_id"] not in unsent_approvals:
                    self.state.close_request(approval_request["run_id"])
        ledger_blob.commit("text/csv; charset=utf-8")
        summary.update(counts)
        summary["requests"] = len(batch_log)
        summary["batches"] = batch_log
        status, reason = stop or ("complete", None)
        return self._finish(results, summary, status, reason, begun)

    def _finish(
        self,
        results: Results,
        summary: dict[str, Any],
        status: str,
        reason: str | None,
        begun: float,
    ) -> dict[str, Any]:
        summary.update(
            status=status,
            reason=reason,
            finished=iso(self._clock()),
            duration_seconds=round(time.monotonic() - begun, 3),
        )
        results.write_json("summary.json", summary)
        results.write_text("report.html", render_run_html(summary), "text/html; charset=utf-8")
        log.info(
            "release %s %s: due=%s approved=%s accepted=%s",
            summary["run_id"],
            status,
            summary.get("due_held"),
            len(summary.get("approved_runs", [])),
            summary.get("records_accepted", 0),
        )
        summary["results"] = results.prefix
        return summary
