"""Process one HR file dropped into ``hr-inbound``: convert, submit to Graph, record results.

Exactly once: the file's content hash names its claim in ``state``; a second drop of the same
content (or a second trigger for the same drop) finds the claim and is recorded as a duplicate.
Resumable: the claim's checkpoint says which bulk request is next; a new attempt converts the
file again (conversion is deterministic: same batches, same bulkIds) and sends only from there.
A batch whose answer was lost in a crash (``in_flight``) is sent again with the same bulkIds and
client-request-id, and the results say so: never silently twice.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .bulk import Operation, batches
from .graph import JobStatus
from .mapping import Mapping, load_mapping
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
from .pipeline import Conversion, Source
from .planning import SendPlan, feed_of, make_plan, policy_for, send_operations
from .readers import FileError
from .reports import RejectedCsv, render_run_html
from .runs import FINAL, Claim, ClaimStore, Results, client_request_id, iso, utcnow
from .settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
from .state import WorkerState, accepted_seq
from .storage import BlobStore, Lease
from .submit import Submitter
from .tracking import track
from .validation import RowError

log = logging.getLogger(__name__)

_SPOOL_CHUNK = 1 << 20

# In ``state``: one marker per blob name saying what became of it, for the sweep of hr-inbound.
SEEN_PREFIX = "seen/"
# Outcomes that count towards max_file_attempts; a stopped job or a busy claim is not the file's
# fault, and the other outcomes are final.
FAILING = frozenset({"interrupted", "failed", "error"})


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class GraphApi(Protocol):
    async def post_bulk(self, body: bytes, client_request_id: str) -> Any: ...

    async def job_status(self) -> JobStatus: ...


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


def spool(stream: Readable, folder: str | None = None) -> tuple[Path, str, int]:
    """Copy a stream to a temporary file in chunks, hashing it on the way."""
    digest = hashlib.sha256()
    fd, name = tempfile.mkstemp(prefix="hr-drop-", dir=folder)
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(_SPOOL_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return Path(name), digest.hexdigest(), size


def seen_name(blob: str) -> str:
    """The marker of ``blob``, named as the trigger names it (``hr-inbound/<name>``)."""
    return f"{SEEN_PREFIX}{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:32]}.json"


class LeaseKeeper:
    """Holds the claim's lease through long waits (a bucket-full backoff lasts minutes)."""

    def __init__(
        self, lease: Lease, seconds: int, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.lease = lease
        self._every = seconds / 3
        self._sleep = sleep
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self._renewed > self._every:
            self.lease.renew()
            self._renewed = time.monotonic()

    async def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.renew_if_due()
            await self._sleep(min(left, self._every))
        self.renew_if_due()


class DropProcessor:
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
        self._limiter = limiter_for(settings, sleep)

    async def process(self, blob_name: str, stream: Readable) -> RunOutcome:
        self.store.ensure_containers(RESULTS_CONTAINER, STATE_CONTAINER)
        path, content_hash, size = spool(stream)
        try:
            return await self.process_file(blob_name, path, content_hash, size)
        finally:
            path.unlink(missing_ok=True)

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
        name = seen_name(blob)
        try:
            claim = self.claims.load(content_hash)
            if status == "duplicate" and claim is not None and claim.blob == blob:
                # An event delivered twice: what became of this blob is what its run did.
                status, reason = claim.status, claim.reason
            found = self.store.read_json(STATE_CONTAINER, name)
            earlier = found[0] if found and found[0].get("content_hash") == content_hash else {}
            failed_attempts = earlier.get("failed_attempts", 0) + (1 if status in FAILING else 0)
            self.store.write_json(
                STATE_CONTAINER,
                name,
                {
                    "blob": blob,
                    "size": size,
                    "content_hash": content_hash,
                    "status": status,
                    "reason": reason,
                    "run_id": claim.run_id if claim else None,
                    "results": claim.results_prefix if claim else None,
                    "attempts": claim.attempts if claim else None,
                    "failed_attempts": failed_attempts,
                    "at": iso(self._clock()),
                },
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
        started = self._clock()
        begun = time.monotonic()
        claim.attempts += 1
        resumed_from = claim.next_batch if claim.attempts > 1 else None
        claim.status, claim.reason = "running", None
        self.claims.save(claim, keeper.lease)
        results = Results(self.store, claim.results_prefix)
        summary: dict[str, Any] = {
            "run_id": claim.run_id,
            "status": "running",
            "source_blob": blob,
            "source_bytes": size,
            "content_hash": claim.content_hash,
            "mapping": self.mapping.source,
            "attempt": claim.attempts,
            "resumed_from_batch": resumed_from,
            "started": iso(started),
            "first_started": claim.created,
        }
        results.write_json("summary.json", summary)

        job = await self.graph.job_status()
        if job.code != "Active":
            reason = job_stop_reason(job)
            log.error("run %s stopped before sending: %s", claim.run_id, reason)
            return self._finish(claim, results, summary, "stopped", reason, keeper, begun)

        state = WorkerState(self.store)
        state.fold()
        feed = feed_of(blob)
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

        try:
            send_plan = self._plan(claim, state, feed, conversion, results, summary)
        except FileError as exc:
            return self._finish(claim, results, summary, "rejected", str(exc), keeper, begun)

        rejected_blob = self.store.staged(RESULTS_CONTAINER, results.path("rejected.csv"))
        ledger_blob = self.store.staged(RESULTS_CONTAINER, results.path("ledger.csv"))
        ledger = csv.writer(TextToBlob(ledger_blob))
        ledger.writerow(LEDGER_COLUMNS)
        rejected = RejectedCsv(TextToBlob(rejected_blob))
        conversions: list[Conversion] = []

        def next_conversion(first: bool) -> Conversion:
            conversions.append(conversion(rejected if first else None))
            return conversions[-1]

        absent_records = state.records(send_plan.absent) if send_plan.absent else {}
        stream = send_operations(next_conversion, send_plan, absent_records, claim.content_hash)
        actions: dict[str, str] = {}

        def operations() -> Iterator[Operation]:
            for op, action in stream:
                actions[op.bulk_id] = action
                yield op

        submitter = Submitter(
            self.graph, self._limiter, retry_policy_for(self.settings), sleep=keeper.sleep
        )
        batch_log: list[dict[str, Any]] = []
        counts = {"records_sent": 0, "records_accepted": 0, "records_rejected_by_graph": 0}
        stop: tuple[str, str] | None = None
        for request in batches(operations(), self.settings.batch_size):
            keeper.renew_if_due()
            if request.index < claim.next_batch:
                outcome = results.read_json(results.batch_name(request.index))
                entry = batch_entry(request, outcome, resent=False, earlier=True)
            else:
                resent = claim.in_flight == request.index
                claim.in_flight = request.index
                self.claims.save(claim, keeper.lease)
                result = await submitter.submit(
                    request.body, client_request_id(claim.content_hash, request.index)
                )
                outcome = outcome_record(request, result, resent)
                results.write_json(results.batch_name(request.index), outcome)
                entry = batch_entry(request, outcome, resent=resent, earlier=False)
                stop = stop_reason(result)
                if stop is None:
                    if result.status == "accepted":
                        # Remembered only once Entra took it; the claim moves on after.
                        state.record_accepted(
                            accepted_seq(claim.run_id, request.index),
                            [accepted_entry(op, feed) for op in request.operations],
                        )
                        track(
                            self.store,
                            run_id=claim.run_id,
                            results_prefix=claim.results_prefix,
                            kind="file",
                            batch=request.index,
                            operations=request.operations,
                            accepted_at=self._clock(),
                            actions=actions,
                        )
                    claim.next_batch, claim.in_flight = request.index + 1, None
                    self.claims.save(claim, keeper.lease)
            batch_log.append(entry)
            if stop:
                break
            count_batch(counts, request, entry["status"])
            for op in request.operations:
                ledger.writerow(ledger_row(request.index, op, actions.get(op.bulk_id, ""), entry))
        if conversions:
            summary.update(conversions[0].summary.as_dict())
        summary.update(counts)
        summary["requests"] = len(batch_log)
        summary["batches"] = batch_log
        rejected_blob.commit("text/csv; charset=utf-8")
        ledger_blob.commit("text/csv; charset=utf-8")
        if stop:
            return self._finish(claim, results, summary, stop[0], stop[1], keeper, begun)
        if summary.get("plan", {}).get("held_for_approval"):
            reason = (
                f"{summary['plan']['counts']['leaver']} leavers exceed the threshold of "
                f"{summary['plan']['leaver_threshold']}; approve run {claim.run_id} to send them"
            )
            return self._finish(claim, results, summary, "held-for-approval", reason, keeper, begun)
        return self._finish(claim, results, summary, "complete", None, keeper, begun)

    def _plan(
        self,
        claim: Claim,
        state: WorkerState,
        feed: str,
        conversion: Callable[..., Conversion],
        results: Results,
        summary: dict[str, Any],
    ) -> SendPlan:
        """The run's plan: made once, stored, and read back when the run resumes."""
        stored = self.store.read_json(STATE_CONTAINER, f"runs/{claim.run_id}/plan.json")
        if stored is not None:
            summary["plan"] = results.read_json("plan.json")
            return SendPlan.from_dict(stored[0])
        made = make_plan(conversion(), policy_for(self.settings, feed, self._clock()), state)
        plan = made.plan
        for held in plan.cancel:
            state.drop_held(held)
        for held in plan.hold:
            state.hold(held)
        if plan.held_for_approval:
            state.request_approval(
                claim.run_id,
                feed,
                {
                    ext: made.leaver_records[ext]
                    for ext in plan.held_for_approval
                    if ext in made.leaver_records
                },
            )
        report = made.report()
        summary["plan"] = report
        results.write_json("plan.json", report)
        send_plan = SendPlan.of(plan)
        self.store.write_json(
            STATE_CONTAINER, f"runs/{claim.run_id}/plan.json", send_plan.as_dict()
        )
        log.info(
            "run %s plan: %s",
            claim.run_id,
            ", ".join(f"{k}={v}" for k, v in report["counts"].items()),
        )
        return send_plan

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
        claim.status, claim.reason = status, reason  # type: ignore[assignment]
        if status in FINAL:
            claim.in_flight = None
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
        log.info(
            "run %s %s: %s",
            claim.run_id,
            status,
            ", ".join(f"{k}={v}" for k, v in counts.items() if k != "source_bytes"),
        )
        return RunOutcome(status, claim.run_id, claim.results_prefix, reason, counts=counts)
