"""Records Graph accepted and whose outcome in Entra is not known yet.

A 202 only means Entra queued the records; what it did with each one shows up minutes later in
the provisioning logs. Every sender (file runs, releases, HTTP flushes, retries, drift fixes)
calls :func:`track` right after a 202, one small blob per accepted bulk request, and the
reconciliation timer (``provisioning.reconcile.reconciler``) matches them to log entries. Blob
names carry run ids and batch numbers only, never HR ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..clock import iso
from ..convert.bulk import Operation
from ..graph.sender import SentBatch
from ..settings import STATE_CONTAINER
from ..storage import BlobStore

PENDING = "pending/"


@dataclass(frozen=True, slots=True)
class Sent:
    """One record of one accepted bulk request."""

    bulk_id: str
    external_id: str
    line: int
    action: str
    record: int | str = ""  # ordinal in the file; absent from batches tracked before it was kept


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
    store.write_json(
        STATE_CONTAINER,
        batch_name(run_id, label),
        {
            "run_id": run_id,
            "results_prefix": results_prefix,
            "kind": kind,
            "batch": label,
            "accepted_at": iso(accepted_at),
            "attempt": attempt,
            "records": [
                [
                    op.bulk_id,
                    op.external_id,
                    op.line,
                    (actions or {}).get(op.bulk_id, ""),
                    op.record or "",
                ]
                for op in operations
            ],
        },
    )


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
    found = store.read_json(STATE_CONTAINER, name)
    if found is None:
        return None
    data = found[0]
    return data, [Sent(*record) for record in data["records"]]
