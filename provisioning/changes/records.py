"""Change records in ``state``: where they live, their documents, and Entra's outcomes put on
them.

A change record (``changes/<id>.json``, :class:`ChangeRecord`) is written by the accept
(``provisioning.changes.accept``), updated by the flush and by the reconciliation timer, and
read by ``GET /api/changes/{id}``; an outbox entry (``outbox/<id>.json``, :class:`OutboxEntry`)
points the flush at a change waiting to be sent. Both are versioned documents
(``provisioning.documents``); what a reader does with one this version cannot use is said where
it reads it: never is one written over or dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..documents import Document, DocumentError, Part, none, update_document
from ..jml.state import HeldChange
from ..settings import STATE_CONTAINER
from ..storage import BlobStore

log = logging.getLogger(__name__)


API_FEED = "api"


# In ``state``: the change records, the outbox pointing at those waiting to be sent, the lock
# of the flush and the marker of a flush already scheduled.
CHANGES_PREFIX = "changes/"


OUTBOX_PREFIX = "outbox/"


OUTBOX_LOCK = "locks/outbox"


FLUSH_SCHEDULED = "locks/flush-scheduled"


MAX_CONFLICTS = 10

# A change from its record's creation to its outbox entry ("accepting"), then as the API shows
# it (provisioning.changes.models.ChangeStatus).
StoredChangeStatus = Literal[
    "accepting", "queued", "done", "sent", "partly-rejected", "retrying", "superseded"
]
# Of one record of a change (provisioning.changes.models.RecordStatus).
StoredRecordStatus = Literal["queued", "not-sent", "sent", "rejected", "retrying", "superseded"]


class RecordState(Part):
    """One record of a call: its planned action and what became of it."""

    index: int
    externalId: str
    action: str
    status: StoredRecordStatus
    request_id: str | None = None
    # Entra's outcome, from the provisioning logs (written by the reconciliation timer).
    entra: dict[str, Any] | None = Field(default=None, exclude_if=none)


class ChangeOperation(Part):
    """One operation to send: the record as mapped, with its bulkId and owning feed."""

    index: int
    externalId: str
    bulkId: str
    feed: str
    data: dict[str, Any]


class RecordFault(Part):
    """Graph's error for a record it did not accept."""

    index: int
    reason: str


class ChangeRecord(Document):
    """``changes/<id>.json``: one accepted call, as planned, and what became of each record.

    Records accepted before orders, body hashes and held changes were kept lack those keys:
    they read with the defaults the code always assumed for them."""

    WHAT: ClassVar[str] = "change record"

    id: str
    status: StoredChangeStatus
    received: str
    order: str = ""
    body_hash: str | None = None
    mapping: str | None = None
    records: list[RecordState]
    errors: list[RecordFault] = Field(default_factory=list)
    ops: list[ChangeOperation] = Field(default_factory=list)
    hold: list[HeldChange] = Field(default_factory=list)
    cancel: list[HeldChange] = Field(default_factory=list)
    # "complete" once every record sent has a final outcome in Entra (the timer).
    outcomes: Literal["pending", "complete"] | None = Field(default=None, exclude_if=none)


class OutboxEntry(Document):
    """``outbox/<id>.json``: a change waiting for the flush."""

    WHAT: ClassVar[str] = "outbox entry"

    change: str
    order: str = ""


class FlushScheduled(Document):
    """``locks/flush-scheduled``: a flush is scheduled (only whether it exists matters)."""

    WHAT: ClassVar[str] = "flush marker"

    at: str


def change_name(change_id: str) -> str:
    return f"{CHANGES_PREFIX}{change_id}.json"


def record_entra_outcomes(
    store: BlobStore,
    change_id: str,
    outcomes: dict[int, dict[str, Any]],
    final_states: Collection[str],
) -> None:
    """Put Entra's outcome of each record (by index) on the change, for ``GET /api/changes``;
    its ``outcomes`` are complete once every record sent has one of ``final_states``.

    Written by the reconciliation timer; ETag-conditional, so a flush updating the same change
    at the same moment is read again rather than overwritten. A change record this version
    cannot use is skipped with a warning and left as it is: the outcomes are in the run's
    results and ledger too, and one unreadable record must not stop the timer's pass."""

    def with_outcomes(change: ChangeRecord | None) -> ChangeRecord | None:
        if change is None:
            return None
        for record in change.records:
            if record.index in outcomes:
                record.entra = outcomes[record.index]
        sent = [r for r in change.records if r.status == "sent"]
        complete = all((r.entra or {}).get("status") in final_states for r in sent)
        change.outcomes = "complete" if complete else "pending"
        return change

    name = change_name(change_id)
    try:
        done = update_document(
            store, STATE_CONTAINER, name, ChangeRecord, with_outcomes, attempts=MAX_CONFLICTS
        )
    except DocumentError as exc:
        log.warning("%s; Entra's outcomes are not put on it", exc)
        return
    if not done:
        log.warning("change %s kept changing; its Entra outcomes wait for the next pass", change_id)
