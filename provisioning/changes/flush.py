"""The flush: sends everything waiting in the outbox, coalesced, in full bulk requests.

Triggered through a storage queue message made visible after the coalescing window (and by the
reconciliation timer for outbox entries left waiting). One flush at a time holds the outbox
lock; per worker only the newest waiting change is sent, the older ones are superseded."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import utcnow
from ..convert.bulk import MAX_OPERATIONS, Operation
from ..documents import DocumentError, read_document, update_document
from ..graph.client import GraphApi, GraphUnavailable
from ..graph.outcomes import graph_reason, job_stop_reason, refuses_the_app
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..jml.ordering import SendGate
from ..jml.state import WorkerState
from ..runs.tracking import track_accepted
from ..settings import STATE_CONTAINER, Settings
from ..storage import BlobStore, LeaseKeeper
from .records import (
    FLUSH_SCHEDULED,
    MAX_CONFLICTS,
    OUTBOX_LOCK,
    OUTBOX_PREFIX,
    ChangeRecord,
    OutboxEntry,
    RecordFault,
    change_name,
)

log = logging.getLogger(__name__)


# An outbox entry this old was not flushed by its queue message (lost, poisoned, or its flush
# stopped early): the reconciliation timer flushes it instead.
STALE_OUTBOX = dt.timedelta(minutes=5)


def stale_outbox(store: BlobStore, now: dt.datetime) -> int:
    """How many outbox entries waited longer than ``STALE_OUTBOX``."""
    return sum(
        1
        for b in store.list(STATE_CONTAINER, OUTBOX_PREFIX)
        if now - b.last_modified > STALE_OUTBOX
    )


async def flush(
    settings: Settings,
    store: BlobStore,
    graph: GraphApi,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], Any] = utcnow,
) -> dict[str, Any]:
    """Send everything waiting in the outbox; one flush at a time (blob lease, kept through
    every wait). Per worker only the newest change goes; a 400 is narrowed to the records
    that caused it, so one caller's bad record never sinks another caller's."""
    if not store.exists(STATE_CONTAINER, OUTBOX_LOCK):
        store.write_bytes(STATE_CONTAINER, OUTBOX_LOCK, b"", "text/plain")
    lease = store.acquire_lease(STATE_CONTAINER, OUTBOX_LOCK, settings.lease_seconds)
    if lease is None:
        return {"status": "busy"}
    keeper = LeaseKeeper(lease, settings.lease_seconds, sleep)
    started = time.monotonic()
    begun_at = clock()
    flush_id = f"{begun_at:%Y%m%dT%H%M%S}-flush-{uuid.uuid4().hex[:6]}"
    totals = {
        "changes": 0,
        "records_sent": 0,
        "records_accepted": 0,
        "records_superseded": 0,
        "requests": 0,
    }
    try:
        # New calls from here on schedule a new flush rather than rely on this one.
        store.delete(STATE_CONTAINER, FLUSH_SCHEDULED)
        names = sorted(b.name for b in store.list(STATE_CONTAINER, OUTBOX_PREFIX))
        if not names:
            return {"status": "nothing-queued", **totals}
        try:
            job = await graph.job_status()
        except GraphUnavailable as exc:
            log.error("flush %s interrupted: %s", flush_id, exc.reason)
            return {"status": "interrupted", "reason": exc.reason, **totals}
        if not job.sends:
            reason = job_stop_reason(job)
            log.error("flush %s stopped: %s", flush_id, reason)
            return {"status": "stopped", "reason": reason, **totals}
        changes = _waiting_changes(store, names)
        items, older = _newest_per_worker(changes)
        outcome_of: dict[str, dict[str, Any]] = {
            item.op.bulk_id: {"status": "superseded", "request_id": None, "error": None}
            for item in older
        }
        totals["records_superseded"] += len(older)
        gate = SendGate.from_settings(store, settings, sleep=keeper.sleep)
        sender = Sender.keeping(keeper, settings, graph, gate, clock=clock, priority="interactive")

        def record(batch: SentBatch) -> None:
            _settle(outcome_of, batch)
            track_accepted(
                store,
                batch,
                run_id=flush_id,
                results_prefix=f"runs/{begun_at:%Y-%m-%d}/{flush_id}/",
                kind="changes",
                accepted_at=clock(),
            )

        delivery = await sender.deliver(
            items,
            request_id=lambda index, part: client_request_id(flush_id, index, part),
            on_batch=record,
            narrow=True,
            batch_size=MAX_OPERATIONS,
        )
        totals["requests"] += delivery.requests
        totals["records_sent"] += delivery.sent
        totals["records_accepted"] += delivery.accepted
        totals["records_superseded"] += delivery.superseded
        for change in changes:
            settled = _update_change(store, change, outcome_of)
            totals["changes"] += 1
            if settled:
                store.delete(STATE_CONTAINER, f"{OUTBOX_PREFIX}{change.id}.json")
        # Fold now, so the next call's plan sees what this flush sent.
        WorkerState(store).fold()
        if delivery.stop:
            # interrupted, or paused (bucket full, daily quota): the changes stay in the
            # outbox; a paused flush is picked up again by the timer once the pause is over.
            status, stop = delivery.stop
            log.error("flush %s %s: %s", flush_id, status, stop)
            return {"status": status, "reason": stop, **totals}
        return {"status": "complete", **totals, "seconds": round(time.monotonic() - started, 3)}
    finally:
        lease.release()


def _waiting_changes(store: BlobStore, names: list[str]) -> list[ChangeRecord]:
    """The change records the outbox points at, oldest HR data first; an entry whose change
    record is gone is dropped.

    An outbox entry or a change record this version cannot use (written by a newer version of
    the app, or not what it should be) is skipped with a warning, and both are left as they
    are: its records are not sent by this version (it cannot tell what they are), the other
    changes are. The entry stays in the outbox, so every flush (and the timer, for entries
    left waiting) says so again until a person fixes it or the version that wrote it runs."""
    changes = []
    for name in names:
        try:
            pointer = read_document(store, STATE_CONTAINER, name, OutboxEntry)
            if pointer is None:
                continue
            found = read_document(
                store, STATE_CONTAINER, change_name(pointer[0].change), ChangeRecord
            )
        except DocumentError as exc:
            log.warning("%s; skipped: its change waits in the outbox", exc)
            continue
        if found is None:
            store.delete(STATE_CONTAINER, name)
            continue
        changes.append(found[0])
    return sorted(changes, key=lambda c: c.order)


def _newest_per_worker(
    changes: list[ChangeRecord],
) -> tuple[list[Outgoing], list[Outgoing]]:
    """(records to send, older records of the same workers): one operation per worker and
    per request, the newest change's; every bulkId once."""
    newest: dict[str, Outgoing] = {}
    older: list[Outgoing] = []
    for change in changes:  # oldest first
        waiting = {r.index for r in change.records if r.status in ("queued", "retrying")}
        for item in change.ops:
            if item.index not in waiting:
                continue
            op = Operation(item.bulkId, item.externalId, item.index, item.data)
            outgoing = Outgoing(op, change.order, item.feed, f"change {change.id}")
            before = newest.get(op.external_id)
            if before is not None:
                older.append(before)
            newest[op.external_id] = outgoing
    return list(newest.values()), older


def _settle(outcome_of: dict[str, dict[str, Any]], batch: SentBatch) -> None:
    for item in batch.accepted:
        request_id = batch.outcome.request_id if batch.outcome else None
        outcome_of[item.op.bulk_id] = {"status": "sent", "request_id": request_id, "error": None}
    for item in batch.superseded:
        outcome_of[item.op.bulk_id] = {"status": "superseded", "request_id": None, "error": None}
    for item, outcome in batch.rejected:
        # Refused for its data: final. Anything else (throttling, outage): sent again later.
        final = outcome.status == "rejected" and not refuses_the_app(outcome)
        outcome_of[item.op.bulk_id] = {
            "status": "rejected" if final else "retrying",
            "request_id": outcome.request_id,
            "error": graph_reason(outcome, "answered"),
        }


def _update_change(
    store: BlobStore, change: ChangeRecord, outcome_of: dict[str, dict[str, Any]]
) -> bool:
    """Put the flush's outcome on the change record (ETag-conditional: the timer may write
    Entra's outcomes at the same moment); True when nothing of it waits any more.

    A record that became unusable since it was read (a newer version of the app wrote it) is
    not written over: a warning, and False, so its outbox entry stays."""
    by_index = {item.index: item.bulkId for item in change.ops}

    def updated(current: ChangeRecord | None) -> ChangeRecord | None:
        if current is None:
            return None
        for record in current.records:
            result = outcome_of.get(by_index.get(record.index, ""))
            if result is None:
                continue
            record.status = result["status"]
            record.request_id = result["request_id"]
            if result["error"]:
                current.errors.append(RecordFault(index=record.index, reason=result["error"]))
        statuses = {r.status for r in current.records if r.status != "not-sent"}
        if statuses & {"queued", "retrying"}:
            current.status = "retrying" if "retrying" in statuses else current.status
        elif statuses <= {"superseded"}:
            current.status = "superseded"
        elif statuses <= {"sent", "superseded"}:
            current.status = "sent"
        else:
            current.status = "partly-rejected"
        return current

    name = change_name(change.id)
    try:
        if not update_document(
            store, STATE_CONTAINER, name, ChangeRecord, updated, attempts=MAX_CONFLICTS
        ):
            log.warning(
                "change %s kept changing; its flush outcome is written next time", change.id
            )
            return False
        found = read_document(store, STATE_CONTAINER, name, ChangeRecord)
    except DocumentError as exc:
        log.warning("%s; the flush's outcome is not put on it, it stays in the outbox", exc)
        return False
    return found is None or not any(r.status in ("queued", "retrying") for r in found[0].records)
