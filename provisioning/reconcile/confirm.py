"""What Entra did with each record Graph accepted: provisioning-log entries matched to the
tracked records (``provisioning.runs.tracking``), transient failures re-sent, the rest reported.

Per run, ``state/outcomes/<run-id>.json`` holds one entry per record (by bulkId), merged from
the run's tracked batches. A record is ``pending`` until a log entry for its externalId dated
after its send appears; then it takes the entry's status: ``success``, ``warning``,
``skipped`` or ``failure``. A failure Entra calls transient goes to ``retrying`` and is sent
again (bounded by ``max_record_attempts``); a record with no entry after
``outcome_timeout_minutes`` is ``unconfirmed``. When every record of a run is final the run's
results (ledger, failures, summary, report) say ``complete`` and its outcome file is removed;
a file run that may still resume stays open until it has sent everything.

Matching is by ``sourceIdentity.id`` (the externalId) and time: several sends of one worker
take that worker's entries in order, and an entry used once is never used again (its id is
kept in ``state/outcomes-consumed.json`` for as long as it can still be in the query window).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from ..clock import iso, parse_iso
from ..convert.bulk import Operation
from ..graph.outcomes import graph_reason
from ..graph.provisioning_logs import LogEntry
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..jml.ordering import SendGate
from ..runs.claims import Results
from ..runs.tracking import pending_runs, read_batch, track
from ..settings import STATE_CONTAINER, Settings
from ..status import FINAL_OUTCOMES, RESUMABLE
from ..storage import BlobStore, PreconditionFailed
from .outcome_results import write_results
from .run_outcomes import OUTCOMES, RunOutcomes, ordinal

log = logging.getLogger(__name__)

CONSUMED = "outcomes-consumed.json"
# Our clock and Entra's may disagree a little, and a record's send time is taken after the 202
# arrived: an entry up to this much older than the send can still be the send's.
TOLERANCE = dt.timedelta(minutes=2)
# Codes Entra gives to conditions that pass (throttling, timeouts, service trouble). The
# category "failure" (as opposed to "nonServiceFailure") is read the same way: Microsoft does
# not define the categories, and their names are all there is to go on.
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "Timeout",
        "TooManyRequests",
        "InternalServerError",
        "SystemForCrossDomainIdentityManagementServiceUnavailable",
    }
)


def is_transient(entry: LogEntry, extra_codes: frozenset[str]) -> bool:
    return entry.error_category == "failure" or (entry.error_code or "") in (
        TRANSIENT_CODES | extra_codes
    )


class Confirmer:
    """One pass over every run with records whose outcome is not final."""

    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        *,
        entries: Callable[[dt.datetime], AsyncIterable[LogEntry]],
        poster: Any,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self._entries = entries
        self._poster = poster
        self._sleep = sleep
        self._clock = clock
        self._extra_codes = settings.transient_error_codes
        # Workers with a record still awaiting its outcome after the pass (the drift report
        # leaves them out: Entra may not have applied them yet).
        self.open_ids: frozenset[str] = frozenset()

    async def run(self, *, job_active: bool, keep_alive: Callable[[], None]) -> dict[str, Any]:
        now = self._clock()
        runs = self._load_runs()
        keep_alive()
        counts = {"runs": len(runs), "matched": 0, "unconfirmed": 0, "retried": 0}
        open_records = [(run, r) for run in runs.values() for r in run.open_records()]
        pending = [(run, r) for run, r in open_records if r["state"] == "pending"]
        if pending:
            counts["matched"] = await self._match(pending, keep_alive)
        timeout = dt.timedelta(minutes=self.settings.outcome_timeout_minutes)
        for run, record in pending:
            if record["state"] == "pending" and now - parse_iso(record["sent"]) > timeout:
                record.update(state="unconfirmed", reason="no provisioning-log entry in time")
                run.changed = True
                counts["unconfirmed"] += 1
        retrying = [
            (run, bulk)
            for run in runs.values()
            for bulk, r in run.records.items()
            if r["state"] == "retrying"
        ]
        retry_report: dict[str, Any] = {}
        if retrying and job_active:
            retry_report = await self._retry(retrying, now, keep_alive)
            counts["retried"] = retry_report.get("records_accepted", 0)
        finished = []
        for run in runs.values():
            done = run.all_final and self._sending_done(run)
            if run.changed or done:
                self._save(run)
                write_results(self.store, run, done, self._clock())
                keep_alive()
            if done:
                self.store.delete(STATE_CONTAINER, run.name)
                finished.append(run.run_id)
        counts["completed_runs"] = len(finished)
        still_open = [r["id"] for run in runs.values() for r in run.open_records()]
        self.open_ids = frozenset(still_open)
        counts["open_records"] = len(still_open)
        log.info("outcomes: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
        return {**counts, "completed": finished, "retry": retry_report}

    # --- merging tracked batches ---------------------------------------------------------

    def _load_runs(self) -> dict[str, RunOutcomes]:
        runs: dict[str, RunOutcomes] = {}
        for blob in self.store.list(STATE_CONTAINER, OUTCOMES):
            found = self.store.read_json(STATE_CONTAINER, blob.name)
            if found is not None:
                data, etag = found
                runs[data["run_id"]] = RunOutcomes(
                    data["run_id"], data["results_prefix"], data["kind"], data["records"], etag
                )
        merged: list[str] = []
        for run_id, names in sorted(pending_runs(self.store).items()):
            for name in sorted(names):
                batch = read_batch(self.store, name)
                if batch is None:
                    continue
                info, sent = batch
                run = runs.get(run_id)
                if run is None:
                    run = runs[run_id] = RunOutcomes(run_id, info["results_prefix"], info["kind"])
                self._merge(run, info, sent)
                merged.append(name)
        # Saved before the batches go: a crash in between merges them again, which changes
        # nothing (a send time only moves forward).
        for run in runs.values():
            if run.changed:
                self._save(run)  # still ``changed``: its results are written at the end
        for name in merged:
            self.store.delete(STATE_CONTAINER, name)
        return runs

    def _merge(self, run: RunOutcomes, info: dict[str, Any], sent: list[Any]) -> None:
        accepted_at = info["accepted_at"]
        attempt = int(info.get("attempt", 1))
        for item in sent:
            record = run.records.get(item.bulk_id)
            if record is None:
                run.records[item.bulk_id] = {
                    "id": item.external_id,
                    "record": item.record,
                    "line": item.line,
                    "batch": info["batch"],
                    "action": item.action,
                    "sent": accepted_at,
                    "sends": attempt,
                    "state": "pending",
                }
                run.changed = True
            elif parse_iso(accepted_at) > parse_iso(record["sent"]):
                # A resend (after a crash, or a retry): its own log entry is awaited.
                record.update(
                    sent=accepted_at, state="pending", sends=max(record["sends"], attempt)
                )
                run.changed = True

    def _save(self, run: RunOutcomes) -> None:
        data = {
            "run_id": run.run_id,
            "results_prefix": run.results_prefix,
            "kind": run.kind,
            "records": run.records,
        }
        # The reconcile lease keeps other passes out; the ETag catches anyone who did not ask.
        if run.etag is None:
            try:
                run.etag = self.store.write_json(
                    STATE_CONTAINER, run.name, data, create_only=True, indent=None
                )
                return
            except PreconditionFailed:
                raise RuntimeError(
                    f"outcomes of run {run.run_id} were created by another pass"
                ) from None
        run.etag = self.store.write_json(
            STATE_CONTAINER, run.name, data, etag=run.etag, indent=None
        )

    # --- matching log entries ------------------------------------------------------------

    async def _match(
        self, pending: list[tuple[RunOutcomes, dict[str, Any]]], keep_alive: Callable[[], None]
    ) -> int:
        by_id: dict[str, list[tuple[RunOutcomes, dict[str, Any]]]] = {}
        for run, record in pending:
            by_id.setdefault(record["id"], []).append((run, record))
        since = min(parse_iso(r["sent"]) for _, r in pending) - TOLERANCE
        consumed = self._consumed()
        found: dict[str, list[LogEntry]] = {}
        seen = 0
        async for entry in self._entries(since):
            seen += 1
            if seen % 1000 == 0:
                keep_alive()
            if entry.source_id in by_id and entry.id not in consumed:
                found.setdefault(entry.source_id, []).append(entry)
        matched = 0
        for external_id, waiting in by_id.items():
            entries = sorted(found.get(external_id, []), key=lambda e: e.at)
            for run, record in sorted(waiting, key=lambda item: item[1]["sent"]):
                earliest = parse_iso(record["sent"]) - TOLERANCE
                hit = next((e for e in entries if e.at >= earliest), None)
                if hit is None:
                    continue
                entries.remove(hit)
                consumed[hit.id] = iso(hit.at)
                self._apply(record, hit)
                run.changed = True
                matched += 1
        self._save_consumed(consumed, since)
        return matched

    def _apply(self, record: dict[str, Any], entry: LogEntry) -> None:
        record.update(
            entra_action=entry.action,
            target_id=entry.target_id,
            log_id=entry.id,
            log_time=iso(entry.at),
            error_code=entry.error_code,
            error_category=entry.error_category,
            reason=entry.reason,
            recommended_action=entry.recommended_action,
        )
        if entry.status != "failure":
            record["state"] = entry.status if entry.status in FINAL_OUTCOMES else "success"
            return
        transient = is_transient(entry, self._extra_codes)
        if transient and record["sends"] < self.settings.max_record_attempts:
            record["state"] = "retrying"
        else:
            record["state"] = "failure"
            record["transient"] = transient

    def _consumed(self) -> dict[str, str]:
        found = self.store.read_json(STATE_CONTAINER, CONSUMED)
        return dict(found[0]) if found else {}

    def _save_consumed(self, consumed: dict[str, str], since: dt.datetime) -> None:
        # Entries older than every open send can never match again: forget them.
        horizon = since - TOLERANCE
        kept = {k: v for k, v in consumed.items() if parse_iso(v) >= horizon}
        self.store.write_json(STATE_CONTAINER, CONSUMED, kept, indent=None)

    # --- retries -------------------------------------------------------------------------

    async def _retry(
        self,
        retrying: list[tuple[RunOutcomes, str]],
        now: dt.datetime,
        keep_alive: Callable[[], None],
    ) -> dict[str, Any]:
        """Send the worker's current record again: what Entra last accepted, which is also what
        the failed send carried unless a newer send followed (then it is the newer one). It
        goes through the send gate with the order of that record, so it never overtakes newer
        data."""
        gate = SendGate.from_settings(self.store, self.settings, sleep=self._sleep)
        state = gate.view.state
        state.fold()  # the records to send again are the shards'
        ids = {run.records[bulk]["id"] for run, bulk in retrying}
        current, known = state.records(ids), state.lookup(ids)
        pass_id = f"{now:%Y%m%dT%H%M%S%f}"
        items: list[Outgoing] = []
        owner: dict[str, tuple[RunOutcomes, str]] = {}
        for run, bulk in retrying:
            record = run.records[bulk]
            data, worker = current.get(record["id"]), known.get(record["id"])
            if data is None or worker is None:
                record.update(state="failure", reason="no accepted record of this worker to resend")
                run.changed = True
                continue
            if worker.fingerprint is None:
                # A later send of the worker is waiting for its answer (its run resumes it):
                # the accepted record is older than that and must not follow it.
                record.update(state="superseded", reason="a later send of this worker follows")
                run.changed = True
                continue
            # bulkIds only need to be unique within one request.
            wire = f"retry-{len(items):06d}"
            owner[wire] = (run, bulk)
            op = Operation(wire, record["id"], record["line"], data, record=ordinal(record))
            items.append(Outgoing(op, worker.order, worker.feed, "retry", resend=True))
        report: dict[str, Any] = {"requests": [], "records_accepted": 0}
        sender = Sender(
            self.settings,
            self._poster,
            gate,
            sleep=self._sleep,
            keep_alive=keep_alive,
            clock=self._clock,
        )

        def settle(batch: SentBatch) -> None:
            for item in batch.superseded:
                run, bulk = owner[item.op.bulk_id]
                run.records[bulk].update(state="superseded", reason="newer HR data was sent")
                run.changed = True
            if batch.outcome is None:
                return
            result = batch.outcome
            report["requests"].append(
                {
                    "status": result.status,
                    "http_status": result.http_status,
                    "request_id": result.request_id,
                    "records": len(batch.sent),
                }
            )
            if batch.accepted:
                report["records_accepted"] += len(batch.accepted)
                self._track_retry(
                    [owner[item.op.bulk_id] for item in batch.accepted], pass_id, batch.index
                )
            for item, outcome in batch.rejected:
                run, bulk = owner[item.op.bulk_id]
                run.changed = True
                reason = graph_reason(outcome, "answered the retry")
                if batch.stop is None:  # Graph refused the data itself: sending it again fails
                    run.records[bulk].update(state="failure", reason=reason, transient=False)
                else:
                    run.records[bulk]["last_retry_error"] = reason

        await sender.deliver(
            items,
            request_id=lambda index, part: client_request_id(f"retry-{pass_id}", index, part),
            on_batch=settle,
        )
        return report

    def _track_retry(self, sent: list[tuple[RunOutcomes, str]], pass_id: str, index: int) -> None:
        accepted_at = self._clock()
        by_run: dict[str, tuple[RunOutcomes, list[Operation]]] = {}
        for run, bulk in sent:
            record = run.records[bulk]
            record.update(state="pending", sent=iso(accepted_at), sends=record["sends"] + 1)
            run.changed = True
            # Tracked under the record's own bulkId, so its next log entry lands on it.
            by_run.setdefault(run.run_id, (run, []))[1].append(
                Operation(bulk, record["id"], record["line"], {}, record=ordinal(record))
            )
        for run, ops in by_run.values():
            track(
                self.store,
                run_id=run.run_id,
                results_prefix=run.results_prefix,
                kind=run.kind,
                batch=f"retry-{pass_id}-{index:04d}",
                operations=ops,
                accepted_at=accepted_at,
                attempt=max(run.records[op.bulk_id]["sends"] for op in ops),
            )

    # --- results -------------------------------------------------------------------------

    def _sending_done(self, run: RunOutcomes) -> bool:
        """False while a file run may still send batches (running, or stopped/interrupted/failed
        and resumable): its outcomes are not complete before the run is."""
        if run.kind != "file":
            return True  # releases, flushes, retries and fixes are never resumed
        summary = Results(self.store, run.results_prefix).read_json("summary.json")
        return summary is not None and summary.get("status") not in RESUMABLE
