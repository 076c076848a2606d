"""Change records in ``state``: where they live, and Entra's outcomes put on them."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

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


def record_entra_outcomes(
    store: BlobStore,
    change_id: str,
    outcomes: dict[int, dict[str, Any]],
    final_states: Collection[str],
) -> None:
    """Put Entra's outcome of each record (by index) on the change, for ``GET /api/changes``;
    its ``outcomes`` are complete once every record sent has one of ``final_states``.

    Written by the reconciliation timer; ETag-conditional, so a flush updating the same change
    at the same moment is read again rather than overwritten."""

    def with_outcomes(change: dict[str, Any] | None) -> dict[str, Any] | None:
        if change is None:
            return None
        for record in change["records"]:
            if record["index"] in outcomes:
                record["entra"] = outcomes[record["index"]]
        sent = [r for r in change["records"] if r["status"] == "sent"]
        complete = all(r.get("entra", {}).get("status") in final_states for r in sent)
        change["outcomes"] = "complete" if complete else "pending"
        return change

    name = f"{CHANGES_PREFIX}{change_id}.json"
    if not store.update_json(STATE_CONTAINER, name, with_outcomes, attempts=MAX_CONFLICTS):
        log.warning("change %s kept changing; its Entra outcomes wait for the next pass", change_id)
