"""Our own count of bulkUpload calls, against the daily quota of the provisioning job.

Graph does not say how much of the quota (2,000 or 6,000 calls per 24 hours) is left until it
answers 429, so every call is counted here: one small blob per hour in ``state/calls/``, written
with ETags so two instances counting at once lose nothing. The count is advisory (it warns in
``health.json``); a counting failure never fails a call.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..settings import STATE_CONTAINER
from ..storage import BlobStore

log = logging.getLogger(__name__)

_CALLS = "calls/"
_MAX_CONFLICTS = 50


def _hour_name(moment: dt.datetime) -> str:
    return f"{_CALLS}{moment.astimezone(dt.UTC):%Y%m%d%H}.json"


class CallCounter:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def add(self, calls: int, moment: dt.datetime) -> None:
        name = _hour_name(moment)

        def counted(data: Any | None) -> dict[str, Any]:
            return {"calls": int((data or {}).get("calls", 0)) + calls}

        try:
            if not self.store.update_json(STATE_CONTAINER, name, counted, attempts=_MAX_CONFLICTS):
                log.warning("call counter %s kept changing; %d calls not counted", name, calls)
        except Exception:  # counting is advisory: the call itself went through
            log.warning("could not count %d bulkUpload calls", calls, exc_info=True)

    def last_24h(self, now: dt.datetime) -> int:
        """Calls in the current hour and the 23 before it (the quota is a rolling 24 hours;
        counting whole hours errs on the side of warning early)."""
        total = 0
        for hours in range(24):
            found = self.store.read_json(
                STATE_CONTAINER, _hour_name(now - dt.timedelta(hours=hours))
            )
            if found is not None:
                total += int(found[0].get("calls", 0))
        return total

    def prune(self, now: dt.datetime) -> None:
        oldest = _hour_name(now - dt.timedelta(hours=48))
        for blob in self.store.list(STATE_CONTAINER, _CALLS):
            if blob.name < oldest:
                self.store.delete(STATE_CONTAINER, blob.name)
