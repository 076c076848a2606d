"""Process one HR file dropped into ``hr-inbound``: convert, submit to Graph, record results.

Exactly once: the file's content hash names its claim in ``state``; a second drop of the same
content (or a second trigger for the same drop) finds the claim and is recorded as a duplicate.
Resumable: a new attempt plans the file again against the state as it is then (what Graph
accepted is unchanged and not sent again; what newer data restated is superseded) and numbers
its batches on from the claim's checkpoint. Workers of a request whose answer was lost in a
crash are known from the send gate's record (``provisioning.jml.ordering``): they are sent again
with the same bulkIds, and the results say so: never silently twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError

from ..clock import iso, utcnow
from ..convert.mapping import Mapping, load_mapping
from ..convert.pipeline import Conversion, Source
from ..convert.rows import FileError
from ..convert.validation import RowError
from ..documents import DocumentError
from ..graph.client import GraphApi, GraphUnavailable
from ..graph.outcomes import TextToBlob, job_stop_reason
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..graph.tenant_pace import limits_for, read_book
from ..jml.ordering import ALL, GateBusy, SendGate
from ..jml.planning import (
    PlanResult,
    SendPlan,
    feed_of,
    make_plan,
    policy_for,
    send_operations,
)
from ..jml.state import WorkerState
from ..settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
from ..status import FINAL, log_level
from ..storage import BlobStore, LeaseKeeper, PreconditionFailed
from .batchbook import BatchBook
from .budget import budget
from .claims import Claim, ClaimStore, Results
from .reports import RejectedCsv, render_run_html
from .seen import write_marker
from .spool import Readable, spool, sweep_stale

log = logging.getLogger(__name__)


def sent_status(summary: dict[str, Any]) -> tuple[str, str | None]:
    """How a run that sent all it could ended, from its counts: ``complete`` only when no
    record was rejected, by validation or by Graph; ``rejected`` when no record got in."""
    invalid = int(summary.get("rows_rejected") or 0)
    refused = int(summary.get("records_rejected_by_graph") or 0)
    conflicts = int((summary.get("plan") or {}).get("counts", {}).get("conflict") or 0)
    if not invalid and not refused and not conflicts:
        # A header and nothing else: nobody changed, or an export that lost its rows.
        return "complete", None if summary.get("rows_read") else "the file holds no records"
    parts = []
    if invalid:
        parts.append(f"{invalid} rows rejected by validation (rejected.csv)")
    if conflicts:
        parts.append(f"{conflicts} externalIds differ only in case from known workers' (plan.json)")
    if refused:
        parts.append(f"{refused} records refused by Graph (ledger.csv, batch table)")
    # Valid records Graph did not refuse: accepted now or earlier, unchanged, held, superseded.
    got_in = int(summary.get("users") or 0) - refused - conflicts
    status = "partly-rejected" if got_in > 0 else "rejected"
    return status, "; ".join(parts)


# A plan made while other senders changed its workers is made again, at most this often.
_PLAN_ATTEMPTS = 3


@dataclass
class RunOutcome:
    """What one invocation did; ``retry`` asks the host to try again later."""

    status: str
    run_id: str
    results: str
    reason: str | None = None
    duplicate_of: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def retry(self) -> bool:
        return self.status == "interrupted"


class DropProcessor:
    """One run of a dropped HR file: claim its content (exactly once, whatever the path that
    found it), spool it, plan it against the worker state, send what the plan sends through
    the one sender, and write the results; a run that stopped resumes from its checkpoint."""

    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        graph: GraphApi,
        *,
        mapping: Mapping | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.graph = graph
        self.mapping = mapping or load_mapping(settings.mapping)
        self.claims = ClaimStore(store)
        self._sleep = sleep
        self._clock = clock

    async def process(self, blob_name: str, stream: Readable) -> RunOutcome:
        self.store.ensure_containers(RESULTS_CONTAINER, STATE_CONTAINER)
        # Copies of HR files left by runs that were killed (personal data): gone now.
        sweep_stale()
        with spool(stream) as spooled:
            return await self.process_file(
                blob_name, spooled.path, spooled.content_hash, spooled.size
            )

    async def process_file(self, blob: str, path: Path, content_hash: str, size: int) -> RunOutcome:
        """Process a file already spooled to ``path`` whose SHA-256 is ``content_hash``; whatever
        the outcome, the blob is marked as seen."""
        try:
            outcome = await self._claim_and_run(blob, path, content_hash, size)
        except Exception as exc:
            self.mark_seen(blob, size, content_hash, "error", type(exc).__name__)
            raise
        self.mark_seen(blob, size, content_hash, outcome.status, outcome.reason)
        return outcome

    def mark_seen(
        self, blob: str, size: int, content_hash: str, status: str, reason: str | None = None
    ) -> None:
        """Record in ``state/seen/`` what became of ``blob``, for the sweep of hr-inbound.

        Best effort: without its marker, the sweep reads the file again and finds its claim.
        """
        try:
            write_marker(
                self.store, self.claims, blob, size, content_hash, status, reason, self._clock()
            )
        except Exception:
            log.warning("could not mark %s as seen (%s)", blob, status, exc_info=True)

    async def _claim_and_run(
        self, blob: str, path: Path, content_hash: str, size: int
    ) -> RunOutcome:
        claim = self.claims.load(content_hash)
        if claim is None:
            claim = Claim.new(content_hash, blob, self._clock())
            if not self.claims.create(claim):
                claim = self.claims.load(content_hash)
                assert claim is not None
        if claim.status in FINAL:
            return self._duplicate(claim, blob)
        lease = self.claims.lease(claim, self.settings.lease_seconds)
        if lease is None:
            log.warning("run %s is being processed by another instance", claim.run_id)
            return RunOutcome("busy", claim.run_id, claim.results_prefix)
        try:
            # Re-read under the lease: the other holder may have finished just before.
            current = self.claims.load(content_hash)
            assert current is not None
            if current.status in FINAL:
                return self._duplicate(current, blob)
            return await self._run(
                current,
                blob,
                path,
                size,
                LeaseKeeper(lease, self.settings.lease_seconds, self._sleep),
            )
        finally:
            lease.release()

    def _duplicate(self, claim: Claim, blob: str) -> RunOutcome:
        moment = self._clock()
        record = {"blob": blob, "at": iso(moment)}
        log.info("duplicate of run %s (content %s)", claim.run_id, claim.content_hash[:12])
        dup = Claim.new(claim.content_hash, blob, moment)
        Results(self.store, dup.results_prefix).write_json(
            "summary.json",
            {
                "run_id": dup.run_id,
                "status": "duplicate",
                "duplicate_of": claim.run_id,
                "duplicate_of_results": claim.results_prefix,
                "original_status": claim.status,
                "source_blob": blob,
                "content_hash": claim.content_hash,
                "started": record["at"],
                "finished": record["at"],
                "note": "the same file content was already processed; nothing was sent",
            },
        )
        return RunOutcome("duplicate", dup.run_id, dup.results_prefix, duplicate_of=claim.run_id)

    async def _run(
        self, claim: Claim, blob: str, path: Path, size: int, keeper: LeaseKeeper
    ) -> RunOutcome:
        begun = time.monotonic()
        results = Results(self.store, claim.results_prefix)
        summary = self._begin(claim, blob, size, keeper)
        results.write_json("summary.json", summary)
        status, reason = await self._convert_plan_send(claim, blob, path, results, summary, keeper)
        return self._finish(claim, results, summary, status, reason, keeper, begun)

    def _begin(self, claim: Claim, blob: str, size: int, keeper: LeaseKeeper) -> dict[str, Any]:
        """Count the attempt on the claim (now ``running``) and start the run's summary."""
        claim.attempts += 1
        resumed_from = claim.next_batch if claim.attempts > 1 else None
        claim.status, claim.reason = "running", None
        self.claims.save(claim, keeper.lease)
        feed = feed_of(blob)
        return {
            "run_id": claim.run_id,
            "status": "running",
            "source_blob": blob,
            "source_bytes": size,
            "content_hash": claim.content_hash,
            "mapping": self.mapping.source,
            "feed": feed,
            "feed_mode": self.settings.feed_mode(feed),
            "order": claim.data_order,
            "attempt": claim.attempts,
            "resumed_from_batch": resumed_from,
            "started": iso(self._clock()),
            "first_started": claim.created,
        }

    async def _convert_plan_send(
        self,
        claim: Claim,
        blob: str,
        path: Path,
        results: Results,
        summary: dict[str, Any],
        keeper: LeaseKeeper,
    ) -> tuple[str, str | None]:
        """The run itself, once the job is known to be active: plan the file against the
        state, send what the plan sends; (status, reason) of how it ended."""
        try:
            job = await self.graph.job_status()
        except GraphUnavailable as exc:
            return "interrupted", exc.reason
        if not job.sends:
            reason = job_stop_reason(job)
            log.error("run %s stopped before sending: %s", claim.run_id, reason)
            return "stopped", reason

        source = Source(Path(blob).name, lambda: path.open("rb"))

        def conversion(on_reject: Callable[[RowError], None] | None = None) -> Conversion:
            return Conversion(
                source,
                self.mapping,
                fmt=self.settings.input_format,
                batch_size=self.settings.batch_size,
                on_reject=on_reject,
                content_hash=claim.content_hash,
            )

        gate = SendGate.from_settings(self.store, self.settings, sleep=keeper.sleep)
        try:
            planned = await self._plan(claim, gate, summary["feed"], conversion, results, summary)
        except FileError as exc:
            summary["file_error"] = str(exc)
            return "rejected", str(exc)
        except (GateBusy, PreconditionFailed) as exc:
            # The gate stayed taken, or its lease lapsed under slow storage: try again later.
            return "interrupted", str(exc)
        if isinstance(planned, str):
            return "superseded", planned
        send_plan, in_flight = planned
        stop = await self._send(
            claim, gate, send_plan, conversion, results, summary, keeper, in_flight
        )
        if stop:
            return stop
        if summary.get("plan", {}).get("held_for_approval"):
            return "held-for-approval", (
                f"{summary['plan']['counts']['leaver']} leavers exceed the threshold of "
                f"{summary['plan']['leaver_threshold']}; approve run {claim.run_id} to send them"
            )
        return sent_status(summary)

    async def _send(
        self,
        claim: Claim,
        gate: SendGate,
        send_plan: SendPlan,
        conversion: Callable[..., Conversion],
        results: Results,
        summary: dict[str, Any],
        keeper: LeaseKeeper,
        in_flight: set[str],
    ) -> tuple[str, str] | None:
        """Send what the plan sends, batch by batch, checkpointing the claim; (status, reason)
        when the run stops early. ``in_flight``: workers an earlier attempt sent without learning
        Graph's answer."""
        rejected_blob = self.store.staged(RESULTS_CONTAINER, results.path("rejected.csv"))
        rejected = RejectedCsv(TextToBlob(rejected_blob))
        book = BatchBook(self.store, results, run_id=claim.run_id, kind="file")
        first = claim.next_batch
        # Batches answered after the last checkpoint (a crash in between) keep their number.
        while (done := results.read_json(results.batch_name(first))) is not None and done.get(
            "status"
        ) in ("accepted", "rejected", "superseded"):
            first += 1
        book.replay(first)  # what earlier attempts sent
        conversions: list[Conversion] = []

        def next_conversion(first: bool) -> Conversion:
            conversions.append(conversion(rejected if first else None))
            return conversions[-1]

        state = gate.view.state
        absent_records = state.records(send_plan.absent) if send_plan.absent else {}
        order = claim.data_order
        items = (
            Outgoing(op, order, owner, action)
            for op, action, owner in send_operations(
                next_conversion, send_plan, absent_records, claim.content_hash
            )
        )
        full = self.settings.feed_mode(send_plan.feed) == "full"

        def record(batch: SentBatch) -> None:
            resent = bool(in_flight & {item.op.external_id for item in batch.sent})
            book.record(batch, resent=resent, accepted_at=self._clock())
            if batch.stop is None:
                # A stopped batch keeps its number: its next attempt sends it again.
                claim.next_batch = batch.index + 1
                self.claims.save(claim, keeper.lease)

        sender = Sender.keeping(keeper, self.settings, self.graph, gate, clock=self._clock)
        delivery = await sender.deliver(
            items,
            request_id=lambda index, part: client_request_id(claim.content_hash, index, part),
            on_batch=record,
            first_index=first,
            guard=(send_plan.feed, order) if full else None,
        )
        if conversions:
            summary.update(conversions[0].summary.as_dict())
        summary.update(book.summary())
        if delivery.resume_at:
            summary["resume_at"] = delivery.resume_at
        rejected_blob.commit("text/csv; charset=utf-8")
        book.close()
        return delivery.stop

    async def _plan(
        self,
        claim: Claim,
        gate: SendGate,
        feed: str,
        conversion: Callable[..., Conversion],
        results: Results,
        summary: dict[str, Any],
    ) -> tuple[SendPlan, set[str]] | str:
        """Plan the file against the state as it is now (every attempt: a resumed run never
        replays an older plan), publish what the plan restates, and apply its side effects.
        Returns the plan and the workers an earlier attempt of this run sent without learning
        Graph's answer (sent again now, and marked so); or, instead, why the run is superseded
        by a newer run of its full feed."""
        order = claim.data_order
        mode = self.settings.feed_mode(feed)
        state = gate.view.state
        for attempt in range(1, _PLAN_ATTEMPTS + 1):
            async with gate.holding():
                await gate.turn()
                watermarks = dict(gate.view.watermarks)
            if mode == "full" and watermarks.get(feed, "") > order:
                return (
                    f"a newer run of feed {feed} was accepted; this older file is not sent "
                    "(newest HR data wins)"
                )
            state.fold()  # everything up to the turn just taken is in the shards
            index = state.index()
            gate.view.seed(index)
            made = make_plan(
                conversion(),
                policy_for(self.settings, feed, self._clock(), order=order, watermarks=watermarks),
                state,
                index,
            )
            plan = made.plan
            interest = plan.decisions.keys() | {k for k, v in index.items() if v.feed == feed}
            async with gate.holding():
                turn = await gate.turn()
                if ALL in turn.touched:
                    moved = set(interest)
                else:
                    # Newer data needs no new plan (the send gate supersedes this file's
                    # records); older data accepted meanwhile for a worker the plan leaves
                    # alone would stay in Entra: plan again.
                    moved = {
                        ext
                        for ext in turn.touched & interest
                        if gate.view.newest(ext) < order and plan.sends(ext) is None
                    }
                if moved and attempt < _PLAN_ATTEMPTS:
                    log.info(
                        "run %s: %d workers changed while planning; planning again",
                        claim.run_id,
                        len(moved),
                    )
                    continue
                turn.publish(
                    "restated",
                    [
                        (
                            ext,
                            index[ext].fingerprint,
                            index[ext].active,
                            plan.decisions[ext].feed,
                            order,
                            None,
                        )
                        for ext in plan.restated
                    ],
                    watermark=(feed, order) if mode == "full" else None,
                )
            break
        self._apply_plan(claim, state, made, (feed, mode), results, summary)
        lost = {k for k, v in index.items() if v.fingerprint is None and v.order == order}
        return SendPlan.of(plan), lost

    def _apply_plan(
        self,
        claim: Claim,
        state: WorkerState,
        made: PlanResult,
        feed_mode: tuple[str, str],
        results: Results,
        summary: dict[str, Any],
    ) -> None:
        """What a plan does besides sending: held changes kept or cancelled, approval requests
        superseded or made, and the plan written (plan.json, the summary, one log line)."""
        plan, (feed, mode), order = made.plan, feed_mode, claim.data_order
        for held in plan.cancel:
            state.drop_held(held)
        for held in plan.hold:
            state.hold(held)
        if mode == "full":
            for old in state.supersede_requests(feed, order, claim.run_id):
                log.warning("run %s supersedes the approval request of run %s", claim.run_id, old)
        if plan.held_for_approval:
            state.request_approval(
                claim.run_id,
                feed,
                {
                    ext: made.leaver_records[ext]
                    for ext in plan.held_for_approval
                    if ext in made.leaver_records
                },
                order,
            )
        report = made.report()
        report["budget"] = self._budget(SendPlan.of(plan))
        summary["plan"] = report
        results.write_json("plan.json", report)
        if not report["budget"].get("fits_now", True):
            log.warning("run %s: %s", claim.run_id, report["budget"]["reason"])
        log.info(
            "run %s plan: %s",
            claim.run_id,
            ", ".join(f"{k}={v}" for k, v in report["counts"].items()),
        )

    def _budget(self, send_plan: SendPlan) -> dict[str, Any]:
        """The run's calls against the daily quota (``runs.budget``); an empty budget when the
        tenant's pace cannot be read (the send then finds out for itself)."""
        try:
            book = read_book(self.store)
        except (DocumentError, AzureError) as exc:
            log.warning("the daily quota could not be checked before sending: %s", exc)
            return {}
        now = self._clock().timestamp()
        return budget(send_plan, self.settings.batch_size, book, now, limits_for(self.settings))

    def _finish(
        self,
        claim: Claim,
        results: Results,
        summary: dict[str, Any],
        status: str,
        reason: str | None,
        keeper: LeaseKeeper,
        begun: float,
    ) -> RunOutcome:
        claim.status, claim.reason = status, reason
        self.claims.save(claim, keeper.lease)
        summary.update(
            status=status,
            reason=reason,
            finished=iso(self._clock()),
            duration_seconds=round(time.monotonic() - begun, 3),
            next_batch=None if status in FINAL else claim.next_batch,
        )
        results.write_json("summary.json", summary)
        results.write_text("report.html", render_run_html(summary), "text/html; charset=utf-8")
        counts = {
            k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)
        }
        # Rejections are what a person must act on: a warning (some) or an error (all), which
        # the alerts in infra/ pick up.
        # The alerts in infra/modules/alerts.bicep match these lines by level and text.
        level = log_level(status)
        log.log(
            level,
            "run %s %s: %s",
            claim.run_id,
            status,
            ", ".join(f"{k}={v}" for k, v in counts.items() if k != "source_bytes"),
        )
        return RunOutcome(status, claim.run_id, claim.results_prefix, reason, counts=counts)
