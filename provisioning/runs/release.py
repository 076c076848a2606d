"""Release what waits: future-dated joiners and leavers whose day has come, and leavers a
person approved after the safety threshold held them. The reconciliation timer calls this;
``python -m provisioning release`` runs it once.

A held change is deleted only after Graph accepted the request carrying it, so a crash in
between sends it again on the next release (the same complete record; the results say so).
Each is checked against the current state in the send gate: a held change or an approved
leaver whose worker Entra got newer HR data for is ``superseded`` and dropped, never sent; an
approval request a newer run of its full feed superseded is closed without sending anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..clock import iso, utcnow
from ..convert.bulk import Operation
from ..graph.client import GraphUnavailable
from ..graph.outcomes import job_stop_reason
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..jml.lifecycle import Held, today_in
from ..jml.ordering import SendGate
from ..jml.state import WorkerState, id_hash
from ..settings import Settings
from ..storage import BlobStore
from .batchbook import BatchBook
from .claims import Results, new_run_id
from .reports import render_run_html

log = logging.getLogger(__name__)


class Releaser:
    """Sends the held changes that are due and the leavers a person approved, oldest due first,
    each with the order of its HR data, so a newer change sent meanwhile is never undone."""

    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        graph: Any,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        keep_alive: Callable[[], None] = lambda: None,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self.state = WorkerState(store)
        self._sleep = sleep
        self._keep_alive = keep_alive
        self._clock = clock

    async def release(self) -> dict[str, Any]:
        started = self._clock()
        begun = time.monotonic()
        run_id = new_run_id(started, "release0")
        results = Results(self.store, f"runs/{started:%Y-%m-%d}/{run_id}/")
        summary: dict[str, Any] = {"run_id": run_id, "kind": "release", "started": iso(started)}
        gate = SendGate.from_settings(self.store, self.settings, sleep=self._sleep)
        today = today_in(self.settings.hr_timezone, started).isoformat()
        due = [h for h in self.state.held() if h.due <= today and h.record is not None]
        approved, stale = self._approvals()
        summary["due_held"] = len(due)
        summary["approved_runs"] = [r["run_id"] for r in approved]
        summary["superseded_approvals"] = [r["run_id"] for r in stale]
        if not due and not approved:
            summary.update(status="nothing-due", finished=iso(self._clock()))
            return summary
        try:
            job = await self.graph.job_status()
        except GraphUnavailable as exc:
            return self._finish(results, summary, "interrupted", exc.reason, begun)
        if not job.sends:
            return self._finish(results, summary, "stopped", job_stop_reason(job), begun)
        book = BatchBook(self.store, results, run_id=run_id, kind="release")
        stop = await self._send(run_id, gate, book, due, approved)
        book.close()
        summary.update(book.summary())
        status, reason = stop or ("complete", None)
        return self._finish(results, summary, status, reason, begun)

    def _approvals(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(approval requests approved and due to send, stale requests closed now)."""
        requests = self.state.approval_requests()
        stale = [r for r in requests if r.get("superseded_by")]
        for request in stale:
            # A newer run of the feed restated every worker: these leavers are stale.
            self.state.close_request(request["run_id"])
            log.warning(
                "approval request of run %s closed: superseded by run %s",
                request["run_id"],
                request["superseded_by"],
            )
        approved = [
            r
            for r in requests
            if not r.get("superseded_by") and self.state.is_approved(r["run_id"])
        ]
        return approved, stale

    async def _send(
        self,
        run_id: str,
        gate: SendGate,
        book: BatchBook,
        due: list[Held],
        approved: list[dict[str, Any]],
    ) -> tuple[str, str] | None:
        """Send the due held changes (oldest due first), then the approved leavers; settle
        each once Graph accepted it (or newer data made it stale)."""
        # bulkId -> (held change, approval run) to settle once Graph accepted it
        settle: dict[str, tuple[Held | None, str | None]] = {}

        def items() -> Iterator[Outgoing]:
            for held in sorted(due, key=lambda h: (h.due, h.kind, h.external_id)):
                bulk = f"held-{id_hash(held.external_id)[:12]}-{held.kind}-{held.due}"
                settle[bulk] = (held, None)
                op = Operation(bulk, held.external_id, 0, dict(held.record or {}))
                yield Outgoing(op, held.order, held.feed, f"{held.kind} (held until {held.due})")
            for waiting in approved:
                run = waiting["run_id"]
                for external_id, record in sorted(waiting["leavers"].items()):
                    bulk = f"approved-{id_hash(run)[:8]}-{id_hash(external_id)[:12]}"
                    settle[bulk] = (None, run)
                    op = Operation(bulk, external_id, 0, {**record, "active": False})
                    yield Outgoing(
                        op, waiting.get("order", ""), waiting["feed"], "leaver (approved)"
                    )

        unsent_approvals: set[str] = set()

        def record(batch: SentBatch) -> None:
            book.record(batch, resent=False, accepted_at=self._clock())
            for item in batch.sent:
                approval = settle[item.op.bulk_id][1]
                if approval is not None and item not in batch.accepted:
                    unsent_approvals.add(approval)
            # A held change is done once accepted, or once newer data made it stale.
            for item in [*batch.accepted, *batch.superseded]:
                held = settle[item.op.bulk_id][0]
                if held is not None:
                    self.state.drop_held(held)

        sender = Sender(
            self.settings,
            self.graph,
            gate,
            sleep=self._sleep,
            keep_alive=self._keep_alive,
            clock=self._clock,
        )
        stop = (
            await sender.deliver(
                items(),
                request_id=lambda index, part: client_request_id(run_id, index, part),
                on_batch=record,
            )
        ).stop
        if stop is None:
            for approval_request in approved:
                if approval_request["run_id"] not in unsent_approvals:
                    self.state.close_request(approval_request["run_id"])
        return stop

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
