"""What Entra did with each record Graph accepted: provisioning-log entries matched to the
tracked records (``provisioning.runs.tracking``), transient failures re-sent, the rest reported.

Per run, ``state/outcomes/<run-id>.json`` holds one entry per record (by bulkId), merged from
the run's tracked batches. A record is ``pending`` until the group of log entries of its send
is found (:mod:`.matching`: entries grouped by ``changeId``, groups given to a worker's sends in
order); then it takes the group's status: ``success``, ``warning``, ``skipped`` or
``failure``. A failure Entra calls transient goes to ``retrying`` and is sent again (bounded by
``max_record_attempts``); a record with no entry after ``outcome_timeout_minutes`` is
``unconfirmed``. A manager Entra skipped (``EntrySynchronizationSkip``) keeps the record open
(``manager`` ``pending``) until a later entry of the same change sets it, or, after
:data:`MANAGER_SETTLE` more of the log was read, is ``unresolved``: the link goes to
``state/manager-links.json`` and is followed up (:mod:`.manager_links`). When every record of a
run is final the run's results (ledger, failures, summary, report) say ``complete`` and its
outcome file is removed; a file run that may still resume stays open until it has sent
everything.

The log is read under Graph's throttle (5 requests per 10 s) from a checkpoint
(:mod:`.log_checkpoint`), through one read pace shared by every process, within the pass's
time budget: a pass that runs out of time stops between two pages and the next goes on from
where it stopped. Records whose entries were not found where they should have been (tracked
after the log was read past them, or written late) are looked up per worker
(``sourceIdentity/id eq``) or read again, whichever costs fewer requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol

from ..clock import iso, iso_at, parse_iso
from ..convert.bulk import Operation
from ..documents import read_document
from ..errors import GraphServiceError
from ..graph.outcomes import graph_reason
from ..graph.pace_book import Paused
from ..graph.pacing import WaitTooLong
from ..graph.provisioning_logs import LogEntry
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..jml.ordering import SendGate
from ..runs.claims import Results
from ..runs.tracking import pending_runs, read_batch, track
from ..settings import STATE_CONTAINER, Settings
from ..status import FINAL_OUTCOMES, RESUMABLE
from ..storage import BlobStore, PreconditionFailed
from .log_checkpoint import CHECKPOINT, LEGACY_CONSUMED, LogCheckpoint, estimate_pages
from .manager_links import Unresolved, note_resolved, note_unresolved_many
from .matching import Group, Send, assign, groups_of
from .outcome_results import write_results
from .run_outcomes import OUTCOMES, RunOutcomes, ordinal

log = logging.getLogger(__name__)

# Our clock and Entra's may disagree a little, and a record's send time is taken after the 202
# arrived: an entry up to this much older than the send can still be the send's.
TOLERANCE = dt.timedelta(minutes=2)
# A skipped manager is set by an update of the same change seconds later (Microsoft's sample:
# two seconds). Once the log was read this far past the skip without it, it is unresolved.
MANAGER_SETTLE = dt.timedelta(minutes=5)
# A record whose entries were not where they should have been is looked up again after this,
# doubled at each lookup (until its outcome times out).
LOOKUP_BACKOFF = dt.timedelta(minutes=5)
# Entra writes a send's entries minutes after it at most (Microsoft: expect them 5-10 minutes
# after the upload). A send still without one when the log was read this far past it is
# looked up on its own, in case its entries became visible only after they were read past.
LATE_AFTER = dt.timedelta(minutes=30)
# Tracked batches read (and deleted) at once while merging.
_STORAGE_THREADS = 16
_FORGET_THREADS = 4
# What a pass keeps of its budget for what follows the reading (results, retries, drift).
RESULTS_SHARE = 0.2
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


class ProvisioningLog(Protocol):
    """The job's provisioning log (``provisioning.graph.provisioning_logs.GraphLog``)."""

    page_size: int

    def pages(
        self,
        since: dt.datetime,
        *,
        source_id: str | None = None,
        max_wait: Callable[[], float] | None = None,
    ) -> AsyncIterator[list[LogEntry]]: ...


Open = tuple[RunOutcomes, str, dict[str, Any]]  # run, bulkId, record


def _awaiting(record: dict[str, Any]) -> bool:
    """Waiting for log entries: its own, or a later one of its change setting its manager."""
    return record["state"] == "pending" or record.get("manager") == "pending"


def _behind(record: dict[str, Any], cursor: dt.datetime | None) -> bool:
    if cursor is None:
        return False
    earliest = parse_iso(record["sent"]) - TOLERANCE
    tracked = record.get("tracked_at_cursor")
    return (tracked is not None and parse_iso(tracked) > earliest) or (
        cursor - earliest > LATE_AFTER
    )


def _lookup_due(record: dict[str, Any], now: dt.datetime) -> bool:
    looked = int(record.get("looked", 0))
    if not looked:
        return True
    return now - parse_iso(record["looked_at"]) >= LOOKUP_BACKOFF * 2 ** (looked - 1)


class Confirmer:
    """One pass over every run with records whose outcome is not final."""

    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        *,
        log_source: ProvisioningLog,
        poster: Any,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self._log = log_source
        self._poster = poster
        self._sleep = sleep
        self._clock = clock
        self._extra_codes = settings.transient_error_codes
        self._overlap = dt.timedelta(seconds=settings.log_overlap_seconds)
        self._cursor: str | None = None
        self._forgetting: asyncio.Future[None] | None = None
        self._legacy = False  # state/outcomes-consumed.json was read (and is to be removed)
        # Workers with a record still awaiting its outcome after the pass (the drift report
        # leaves them out: Entra may not have applied them yet).
        self.open_ids: frozenset[str] = frozenset()

    async def run(
        self,
        *,
        job_active: bool,
        keep_alive: Callable[[], None],
        deadline: float = math.inf,
    ) -> dict[str, Any]:
        """One pass; ``deadline`` (``time.monotonic()``) is when the pass must be done: the
        reading stops in time to leave :data:`RESULTS_SHARE` of what is left for the rest."""
        now = self._clock()
        began = mark = time.monotonic()
        timing: dict[str, float] = {}

        def lap(phase: str) -> None:
            nonlocal mark
            timing[phase] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()

        read_until = began + (deadline - began) * (1 - RESULTS_SHARE)
        checkpoint = self._checkpoint()
        self._cursor = checkpoint.cursor
        runs = self._load_runs()
        keep_alive()
        lap("load")
        counts: dict[str, Any] = {"runs": len(runs), "matched": 0, "unconfirmed": 0, "retried": 0}
        open_records = [
            (run, bulk, r)
            for run in runs.values()
            for bulk, r in run.records.items()
            if _awaiting(r)
        ]
        reading: dict[str, Any] = {"pages": 0, "lookups": 0, "entries": 0, "stopped": "done"}
        if open_records:
            # When every record of the open runs was sent (entries of ours still ahead).
            tracked = [parse_iso(r["sent"]) for run in runs.values() for r in run.records.values()]
            found = await self._read(
                checkpoint, open_records, tracked, now, read_until, reading, keep_alive
            )
            lap("read")
            counts["matched"] = self._match(checkpoint, runs, open_records, found, now)
            lap("match")
        timeout = dt.timedelta(minutes=self.settings.outcome_timeout_minutes)
        for run, _bulk, record in open_records:
            if record["state"] == "pending" and now - parse_iso(record["sent"]) > timeout:
                if record.get("match") == "waiting":
                    record["match"] = "ambiguous"
                    reason = (
                        "the provisioning log cannot tell this send's entries from another "
                        "send of the same worker"
                    )
                else:
                    reason = "no provisioning-log entry in time"
                record.update(state="unconfirmed", reason=reason)
                run.changed = True
                counts["unconfirmed"] += 1
        self._settle_managers(checkpoint, open_records, now, timeout)
        # Saved before the outcome files: a pass that dies in between leaves records pending
        # whose entries the checkpoint gives to them (``changes``), and the next pass applies
        # them again; saved after, a re-read entry could go to a worker's next send.
        reading["seconds"] = round(time.monotonic() - began, 3)
        mark = time.monotonic()
        self._save_checkpoint(
            checkpoint, [r for run in runs.values() for r in run.open_records()], reading, now
        )
        lap("checkpoint")
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
        mark = time.monotonic()  # the retries are not timed
        for run in runs.values():
            done = run.all_final and self._sending_done(run)
            if run.changed or done:
                self._save(run)
                write_results(self.store, run, done, self._clock())
                keep_alive()
            if done:
                self.store.delete(STATE_CONTAINER, run.name)
                finished.append(run.run_id)
        lap("results")
        if self._forgetting is not None:
            await self._forgetting
        counts["completed_runs"] = len(finished)
        still_open = [r for run in runs.values() for r in run.open_records()]
        self.open_ids = frozenset(r["id"] for r in still_open)
        counts["open_records"] = len(still_open)
        timing["total"] = round(time.monotonic() - began, 3)
        counts["log"] = {**reading, "timing": timing}
        counts["backlog"] = self._backlog(checkpoint, still_open, reading, deadline - began, now)
        log.info(
            "outcomes: %s",
            ", ".join(
                f"{k}={v}" for k, v in {**counts, **reading}.items() if k not in ("log", "backlog")
            ),
        )
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
        names = [n for _, run_names in sorted(pending_runs(self.store).items()) for n in run_names]
        # A day-1 load tracks thousands of batches: their blobs are read (and, once merged,
        # deleted) a few at a time in parallel, which storage serves far faster than in turn.
        with ThreadPoolExecutor(_STORAGE_THREADS) as pool:
            for name, batch in zip(
                names, pool.map(partial(read_batch, self.store), names), strict=True
            ):
                if batch is None:
                    continue
                info, sent = batch
                run_id = info["run_id"]
                run = runs.get(run_id)
                if run is None:
                    run = runs[run_id] = RunOutcomes(run_id, info["results_prefix"], info["kind"])
                self._merge(run, info, sent)
                merged.append(name)
        # Saved before the batches go: a pass that dies in between merges them again, which
        # changes nothing (a send time only moves forward).
        for run in runs.values():
            if run.changed:
                self._save(run)  # still ``changed``: its results are written at the end
        # Thousands of deletes after a day-1 load: done in the background while the log is
        # read (the reading mostly waits for Graph's throttle), awaited at the end.
        self._forgetting = asyncio.get_running_loop().run_in_executor(None, self._forget, merged)
        return runs

    def _forget(self, names: list[str]) -> None:
        # Few threads: more would take the GIL from the reader, whose requests must leave on
        # their pace slots (one late by more than the pace's margin can earn a 429).
        with ThreadPoolExecutor(_FORGET_THREADS) as pool:
            list(pool.map(partial(self.store.delete, STATE_CONTAINER), names))

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
                    **self._seen_from(),
                }
                run.changed = True
            elif parse_iso(accepted_at) > parse_iso(record["sent"]):
                # A resend (after a crash, or a retry): its own log entry is awaited.
                record.update(
                    sent=accepted_at,
                    state="pending",
                    sends=max(record["sends"], attempt),
                    **self._seen_from(),
                )
                run.changed = True

    def _seen_from(self) -> dict[str, str]:
        """Where the log was read to when a send was tracked: its entries may be behind it."""
        return {"tracked_at_cursor": self._cursor} if self._cursor else {}

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

    # --- reading the log ---------------------------------------------------------------

    def _checkpoint(self) -> LogCheckpoint:
        found = read_document(self.store, STATE_CONTAINER, CHECKPOINT, LogCheckpoint)
        checkpoint = found[0] if found else LogCheckpoint()
        job_id = self.settings.job_id
        if checkpoint.job_id != job_id:
            # Another job's log (the app was pointed at a new job): nothing of it applies.
            checkpoint = LogCheckpoint(job_id=job_id)
        legacy = self.store.read_json(STATE_CONTAINER, LEGACY_CONSUMED)
        self._legacy = legacy is not None
        if legacy is not None and isinstance(legacy[0], dict):
            checkpoint.consumed.update({str(k): str(v) for k, v in legacy[0].items()})
        return checkpoint

    async def _read(
        self,
        checkpoint: LogCheckpoint,
        awaiting: list[Open],
        tracked: list[dt.datetime],
        now: dt.datetime,
        read_until: float,
        reading: dict[str, Any],
        keep_alive: Callable[[], None],
    ) -> dict[str, list[LogEntry]]:
        """The unconsumed entries of the workers awaiting an outcome, read in order from the
        checkpoint, and per worker for records whose entries should have been read already;
        whatever costs fewer requests. Stops cleanly when the budget or Graph says so."""
        workers = {r["id"] for _, _, r in awaiting}
        oldest = min(parse_iso(r["sent"]) for _, _, r in awaiting) - TOLERANCE
        cursor = checkpoint.cursor_time()
        start = oldest if cursor is None else max(cursor, oldest)
        # Sends whose entries may lie before where the read starts: tracked after the log was
        # read past their send, or without an entry long after the log was read past it
        # (written late). Looked up again with a growing interval.
        behind = [
            r
            for _, _, r in awaiting
            if r["state"] == "pending" and _behind(r, cursor) and _lookup_due(r, now)
        ]
        stray = {r["id"] for r in behind}
        page_size = self._log.page_size
        if stray:
            again = min(parse_iso(r["sent"]) for r in behind) - TOLERANCE
            if len(stray) > estimate_pages(checkpoint, again, page_size) - estimate_pages(
                checkpoint, start, page_size
            ):
                start, stray = again, set()  # reading that stretch again costs less
        # Few workers await entries and much of the log lies ahead (entries of records final
        # already, or of other writers to the job): looking each up costs fewer reads than
        # paging through it. The cursor then stays; paging wins again as sends accumulate.
        read_to = checkpoint.read_to_time()
        ahead = estimate_pages(checkpoint, start, page_size) + math.ceil(
            # A send closer to what was read than the clocks' tolerance may be read already.
            sum(1 for t in tracked if read_to is None or t - TOLERANCE > read_to) / page_size
        )
        rest = workers - stray
        scan = not rest or len(rest) >= ahead
        if not scan:
            stray |= rest
        found: dict[str, list[LogEntry]] = {}

        def max_wait() -> float:
            return read_until - time.monotonic()

        def take(page: list[LogEntry]) -> None:
            reading["entries"] += len(page)
            for entry in page:
                if entry.source_id in workers and (
                    entry.id not in checkpoint.consumed
                    or (entry.change_id or "") in checkpoint.changes
                ):
                    found.setdefault(entry.source_id, []).append(entry)

        try:
            for worker in sorted(stray):
                since = min(parse_iso(r["sent"]) for _, _, r in awaiting if r["id"] == worker)
                async for page in self._log.pages(
                    since - TOLERANCE, source_id=worker, max_wait=max_wait
                ):
                    reading["lookups"] += 1
                    take(page)
                for record in behind:
                    if record["id"] == worker:
                        record["looked"] = int(record.get("looked", 0)) + 1
                        record["looked_at"] = iso(now)
            if not scan:
                return found
            reading_from = self._clock()
            async for page in self._log.pages(start, max_wait=max_wait):
                reading["pages"] += 1
                take(page)
                if not page:
                    continue
                for entry in page:
                    if read_to is None or entry.at > read_to:
                        checkpoint.count(entry.at)
                last = max(e.at for e in page)
                read_to = last if read_to is None else max(read_to, last)
                # Read in full up to here: what is older than the overlap before the time of
                # this read was visible when it was made.
                settled = min(last, self._clock() - self._overlap)
                cursor = settled if cursor is None else max(cursor, settled)
                checkpoint.cursor, checkpoint.read_to = iso(cursor), iso(read_to)
                keep_alive()
            # Read to the end: every entry visible when the read began was seen.
            checkpoint.complete = iso(reading_from)
        except WaitTooLong:
            reading["stopped"] = "budget"
        except Paused as exc:
            # A wait Graph asked for (Retry-After), or a backoff after it could not be
            # reached, outlasts the budget: the next pass reads on after it.
            reading["stopped"] = f"held until {iso_at(exc.until)}"
        except GraphServiceError as exc:
            # Graph down, or still throttling after every retry: what was read counts, the
            # rest waits for the next pass. Only the kind and status are said: Graph's message
            # may quote the filter, and a per-worker lookup's names an HR id.
            status = getattr(exc, "status", None)
            reading["stopped"] = f"graph: {type(exc).__name__}" + (
                f" HTTP {status}" if status else ""
            )
            log.warning("outcomes: reading the provisioning log stopped (%s)", reading["stopped"])
        return found

    # --- matching log entries ------------------------------------------------------------

    def _match(
        self,
        checkpoint: LogCheckpoint,
        runs: dict[str, RunOutcomes],
        awaiting: list[Open],
        found: dict[str, list[LogEntry]],
        now: dt.datetime,
    ) -> int:
        by_worker: dict[str, list[Open]] = {}
        for item in awaiting:
            by_worker.setdefault(item[2]["id"], []).append(item)
        matched = 0
        resolved: list[str] = []
        for worker, entries in found.items():
            fresh: list[LogEntry] = []
            recovered: dict[str, list[LogEntry]] = {}
            for entry in entries:
                owner = checkpoint.changes.get(entry.change_id or "")
                if owner is None:
                    fresh.append(entry)
                    continue
                # An entry of a change already given to a send is that send's, whatever was
                # sent since: a later one updates it; all of them again if the send is still
                # pending (the last pass died before its outcome file was saved).
                run = runs.get(owner[0])
                record = run.records.get(owner[1]) if run else None
                if run is None or record is None:
                    checkpoint.consumed[entry.id] = iso(entry.at)
                elif (
                    record["state"] == "pending"
                    and record.get("change_id") != entry.change_id
                    and entry.at >= parse_iso(record["sent"]) - TOLERANCE
                ):
                    recovered.setdefault(entry.change_id or "", []).append(entry)
                elif entry.id not in checkpoint.consumed:
                    checkpoint.consumed[entry.id] = iso(entry.at)
                    self._apply_later(record, entry, resolved)
                    run.changed = True
            for change_id, group_entries in recovered.items():
                run_id, bulk, _ = checkpoint.changes[change_id]
                (group,) = groups_of(group_entries)
                self._give(checkpoint, runs[run_id], bulk, group, resolved)
                matched += 1
            sends = {
                (run.run_id, bulk): (run, record)
                for run, bulk, record in by_worker.get(worker, [])
                if record["state"] == "pending"
            }
            if not sends or not fresh:
                continue
            plan = assign(
                [Send(key, parse_iso(r["sent"])) for key, (_, r) in sends.items()],
                groups_of(fresh),
                TOLERANCE,
            )
            for key, group in plan.matched.items():
                self._give(checkpoint, sends[key][0], key[1], group, resolved)
                matched += 1
            for key in plan.waiting:
                run, record = sends[key]
                if record.get("match") != "waiting":
                    record["match"] = "waiting"
                    run.changed = True
            for key, tied in plan.ambiguous.items():
                run, record = sends[key]
                for group in tied:
                    for entry in group.entries:
                        checkpoint.consumed[entry.id] = iso(entry.at)
                statuses = "/".join(sorted({g.status for g in tied}))
                record.update(
                    state="unconfirmed",
                    match="ambiguous",
                    reason=(
                        f"{len(tied)} sends of this worker have log entries in the same second "
                        f"with different outcomes ({statuses}): the log cannot tell which is "
                        "this send's"
                    ),
                )
                run.changed = True
        if resolved:
            note_resolved(self.store, resolved)
        return matched

    def _give(
        self,
        checkpoint: LogCheckpoint,
        run: RunOutcomes,
        bulk: str,
        group: Group,
        resolved: list[str],
    ) -> None:
        """``group`` is the send's: its entries consumed, its change remembered as the send's,
        its outcome the record's."""
        record = run.records[bulk]
        for entry in group.entries:
            checkpoint.consumed[entry.id] = iso(entry.at)
        checkpoint.changes[group.change_id] = [run.run_id, bulk, iso(group.first.at)]
        self._apply(record, group)
        if group.manager == "set":
            resolved.append(record["id"])
        record.pop("match", None)
        run.changed = True

    def _apply(self, record: dict[str, Any], group: Group) -> None:
        first, failed = group.first, group.failure
        said = failed or group.entries[-1]
        record.update(
            entra_action=first.action,
            target_id=first.target_id or said.target_id,
            log_id=first.id,
            log_time=iso(first.at),
            change_id=group.change_id,
            error_code=said.error_code,
            error_category=said.error_category,
            reason=said.reason,
            recommended_action=said.recommended_action,
        )
        manager = group.manager
        if manager is None:
            record.pop("manager", None)
            record.pop("manager_reason", None)
        else:
            record["manager"] = manager
            record["manager_reason"] = group.skip_reason if manager == "pending" else None
            if manager == "pending":
                record["manager_skipped_at"] = iso(next(e.at for e in group.entries if e.skipped))
                record["manager_ref"] = group.skipped_manager
        self._set_state(record, group.status, failed)

    def _apply_later(self, record: dict[str, Any], entry: LogEntry, resolved: list[str]) -> None:
        """A later entry of a record's change: the manager set, or a failure after all."""
        if entry.manager_set and record.get("manager") in ("pending", "unresolved"):
            resolved.append(record["id"])
            record.update(manager="set", manager_reason=None)
        if entry.status == "failure" and record["state"] != "failure":
            record.update(
                error_code=entry.error_code,
                error_category=entry.error_category,
                reason=entry.reason,
                recommended_action=entry.recommended_action,
            )
            self._set_state(record, "failure", entry)

    def _set_state(self, record: dict[str, Any], status: str, failed: LogEntry | None) -> None:
        if status != "failure" or failed is None:
            record["state"] = status if status in FINAL_OUTCOMES else "success"
            return
        transient = is_transient(failed, self._extra_codes)
        if transient and record["sends"] < self.settings.max_record_attempts:
            record["state"] = "retrying"
        else:
            record["state"] = "failure"
            record["transient"] = transient

    def _settle_managers(
        self,
        checkpoint: LogCheckpoint,
        awaiting: list[Open],
        now: dt.datetime,
        timeout: dt.timedelta,
    ) -> None:
        """A skipped manager no later entry set, once the log was read well past the skip (or
        the outcome timed out): unresolved, and handed to the follow-up."""
        # How far the log is known to be read: its cursor, or (in a quiet log, read to its
        # end) the time of that read less the overlap.
        cursor, complete = checkpoint.cursor_time(), checkpoint.complete_time()
        known = [t for t in (cursor, complete - self._overlap if complete else None) if t]
        read = max(known) if known else None
        unresolved: list[Unresolved] = []
        for run, _bulk, record in awaiting:
            if record.get("manager") != "pending":
                continue
            skipped = parse_iso(record.get("manager_skipped_at") or record["log_time"])
            read_past = read is not None and read - skipped > MANAGER_SETTLE
            if read_past or now - skipped > timeout:
                record["manager"] = "unresolved"
                run.changed = True
                if record.get("manager_ref"):
                    unresolved.append(
                        Unresolved(
                            record["id"], record["manager_ref"], skipped, record["manager_reason"]
                        )
                    )
        if unresolved:
            note_unresolved_many(self.store, unresolved)

    def _backlog(
        self,
        checkpoint: LogCheckpoint,
        still_open: list[dict[str, Any]],
        reading: dict[str, Any],
        budget: float,
        now: dt.datetime,
    ) -> dict[str, Any]:
        """What is left to read, and how long it takes at the read pace: each record awaiting
        its entry has at least one ahead of the cursor (for ``health.json``)."""
        awaiting = sum(1 for r in still_open if _awaiting(r))
        pages = math.ceil(awaiting / self._log.page_size)
        settings = self.settings
        eta = pages * settings.log_read_window_seconds / settings.log_read_requests
        cursor = checkpoint.cursor_time()
        backlog: dict[str, Any] = {
            "records_open": len(still_open),
            "records_awaiting_log": awaiting,
            "log_pages": pages,
            "eta_seconds": round(eta),
            "cursor": checkpoint.cursor,
            "cursor_lag_seconds": round((now - cursor).total_seconds()) if cursor else None,
            "last_pass_stopped": reading["stopped"],
        }
        if math.isfinite(budget) and budget > 0:
            backlog["passes"] = math.ceil(eta / (budget * (1 - RESULTS_SHARE)))
        return backlog

    def _save_checkpoint(
        self,
        checkpoint: LogCheckpoint,
        still_open: list[dict[str, Any]],
        reading: dict[str, Any],
        now: dt.datetime,
    ) -> None:
        cursor = checkpoint.cursor_time()
        horizon = (cursor or now) - MANAGER_SETTLE
        sent = [parse_iso(r["sent"]) for r in still_open if "sent" in r]
        if sent:
            horizon = min(horizon, min(sent) - TOLERANCE)
        checkpoint.prune(horizon - TOLERANCE)
        checkpoint.last_pass = {**reading, "at": iso(now), "open_records": len(still_open)}
        self.store.write_json(STATE_CONTAINER, CHECKPOINT, checkpoint.dump(), indent=None)
        if self._legacy:  # taken over: the checkpoint holds its ids now
            self.store.delete(STATE_CONTAINER, LEGACY_CONSUMED)
            self._legacy = False

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
            record.update(
                state="pending",
                sent=iso(accepted_at),
                sends=record["sends"] + 1,
                **self._seen_from(),
            )
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
