"""Records Graph accepted and whose outcome in Entra is not known yet.

A 202 only means Entra queued the records; what it did with each one shows up minutes later in
the provisioning logs. Every sender (file runs, releases, HTTP flushes, retries, drift fixes)
calls :func:`track` right after a 202, one small blob per accepted bulk request, and the
reconciliation timer (``provisioning.reconcile.reconciler``) matches them to log entries. Blob
names carry run ids and batch numbers only, never HR ids.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator

from ..clock import iso
from ..convert.bulk import Operation
from ..documents import Document, DocumentError, read_document
from ..graph.sender import SentBatch
from ..settings import STATE_CONTAINER
from ..storage import BlobStore

log = logging.getLogger(__name__)

PENDING = "pending/"


@dataclass(frozen=True, slots=True)
class Sent:
    """One record of one accepted bulk request."""

    bulk_id: str
    external_id: str
    line: int
    action: str
    record: int | str = ""  # ordinal in the file; absent from batches tracked before it was kept


def _with_ordinal(value: Any) -> Any:
    # Batches tracked before ordinals were kept have four items: the ordinal is "" (unknown).
    return [*value, ""] if isinstance(value, list) and len(value) == 4 else value


# [bulkId, externalId, line, action, ordinal in the file] of one record (a list: 50 of them
# per blob, read once).
SentRecord = Annotated[tuple[str, str, int, str, int | str], BeforeValidator(_with_ordinal)]


class PendingBatch(Document):
    """``pending/<run-id>/<batch>.json``: the records of one accepted bulk request."""

    WHAT: ClassVar[str] = "pending batch"

    run_id: str
    results_prefix: str
    kind: str
    batch: str
    accepted_at: str
    attempt: int = 1  # absent from batches tracked before resends were counted
    records: list[SentRecord]


def batch_name(run_id: str, batch: str) -> str:
    return f"{PENDING}{run_id}/{batch}.json"


def track(
    store: BlobStore,
    *,
    run_id: str,
    results_prefix: str,
    kind: str,
    batch: int | str,
    operations: Iterable[Operation],
    accepted_at: dt.datetime,
    actions: dict[str, str] | None = None,
    attempt: int = 1,
) -> None:
    """Remember the records of one accepted bulk request of run ``run_id``.

    Written again with the same name when a batch is resent after a crash: the later
    acceptance time wins, which is the one whose log entries count. ``attempt`` counts the
    sends of these records (retries of failed records send them again)."""
    label = f"{batch:06d}" if isinstance(batch, int) else batch
    # One blob per accepted request, written without reading anything; the model is built
    # from the app's own values, so it is not validated again (model_construct).
    document = PendingBatch.model_construct(
        run_id=run_id,
        results_prefix=results_prefix,
        kind=kind,
        batch=label,
        accepted_at=iso(accepted_at),
        attempt=attempt,
        records=[
            (
                op.bulk_id,
                op.external_id,
                op.line,
                (actions or {}).get(op.bulk_id, ""),
                op.record or "",
            )
            for op in operations
        ],
    )
    store.write_json(STATE_CONTAINER, batch_name(run_id, label), document.dump())


def track_accepted(
    store: BlobStore,
    batch: SentBatch,
    *,
    run_id: str,
    results_prefix: str,
    kind: str,
    accepted_at: dt.datetime,
) -> None:
    """Remember what Graph accepted of ``batch`` (nothing when it accepted nothing)."""
    if batch.accepted:
        track(
            store,
            run_id=run_id,
            results_prefix=results_prefix,
            kind=kind,
            batch=batch.index,
            operations=[item.op for item in batch.accepted],
            accepted_at=accepted_at,
            actions={item.op.bulk_id: item.action for item in batch.accepted},
        )


def pending_runs(store: BlobStore) -> dict[str, list[str]]:
    """Blob names of tracked batches, by run id."""
    runs: dict[str, list[str]] = {}
    for blob in store.list(STATE_CONTAINER, PENDING):
        run_id = blob.name[len(PENDING) :].split("/", 1)[0]
        runs.setdefault(run_id, []).append(blob.name)
    return runs


def read_batch(store: BlobStore, name: str) -> tuple[dict[str, Any], list[Sent]] | None:
    """The batch's keys as written (without the version: ``run_id``, ``results_prefix``,
    ``kind``, ``batch``, ``accepted_at``, ``attempt`` when it was written, ``records``) and
    its records; None if the blob is gone, or cannot be used.

    A batch this version cannot use (written by a newer version of the app, or not a pending
    batch) is skipped with a warning naming it, and left as it is: the outcome pass only
    deletes the batches it merged, so its records wait, and nothing else waits for them (one
    unreadable blob must not stop the outcomes of every other run)."""
    try:
        found = read_document(store, STATE_CONTAINER, name, PendingBatch)
    except DocumentError as exc:
        log.warning("%s; skipped: the outcomes of its records wait", exc)
        return None
    if found is None:
        return None
    batch = found[0]
    return batch.stored(), [Sent(*record) for record in batch.records]
