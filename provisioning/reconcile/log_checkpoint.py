"""Where the outcome passes are in the job's provisioning log: ``state/log-checkpoint.json``.

Graph lets an app read the log 5 times per 10 s (``PROVISIONING_LOG_READ_*``), so a 100,000-record
day reads for minutes at best, longer than one pass may take; and the log keeps every entry,
so a pass that started again from the oldest open send each time would read most entries over
and over. The checkpoint makes each entry read about once:

- ``cursor``: up to where the log was read in full. Entries can become visible some time after
  their ``activityDateTime``, so a page read at time R vouches only for entries older than
  R less ``PROVISIONING_LOG_OVERLAP_SECONDS``: the cursor is the older of that and the page's
  last entry, and the next pass reads from there. Reading a backlog (entries older than the
  overlap) re-reads nothing; reading the newest entries re-reads the overlap;
- ``read_to``: the newest entry read (entries past it are counted in ``density``), and
  ``complete``: when the last read that went to the end of the log began;
- ``consumed``: the entries already given to a send (id -> time), never given again, kept while
  a pass can still read them;
- ``changes``: the send each matched ``changeId`` went to, so a later entry of the same change
  (the update that sets a manager seconds after the create) goes to that send and never to the
  worker's next one;
- ``density``: entries read per second (the log's precision), to estimate what reading a
  stretch of the log again would cost (:func:`estimate_pages`) against looking workers up one
  by one;
- ``last_pass``: what the last pass read, and why it stopped (for ``health.json``).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, ClassVar

from pydantic import Field

from ..clock import iso, parse_iso
from ..documents import Document

CHECKPOINT = "log-checkpoint.json"
# The store of consumed entry ids before the checkpoint existed: read once, then removed.
LEGACY_CONSUMED = "outcomes-consumed.json"


class LogCheckpoint(Document):
    WHAT: ClassVar[str] = "provisioning-log checkpoint"

    job_id: str = ""
    cursor: str | None = None
    read_to: str | None = None
    # When the last read that went to the end of the log began.
    complete: str | None = None
    consumed: dict[str, str] = Field(default_factory=dict)
    # changeId -> [run id, bulkId, time of its first entry]
    changes: dict[str, list[str]] = Field(default_factory=dict)
    density: dict[str, int] = Field(default_factory=dict)
    last_pass: dict[str, Any] = Field(default_factory=dict)

    def cursor_time(self) -> dt.datetime | None:
        return parse_iso(self.cursor) if self.cursor else None

    def complete_time(self) -> dt.datetime | None:
        return parse_iso(self.complete) if self.complete else None

    def read_to_time(self) -> dt.datetime | None:
        return parse_iso(self.read_to) if self.read_to else None

    def count(self, moment: dt.datetime) -> None:
        """One more entry read at ``moment`` (for the first time: past the cursor)."""
        key = str(int(moment.timestamp()))
        self.density[key] = self.density.get(key, 0) + 1

    def prune(self, horizon: dt.datetime) -> None:
        """Forget what no pass can read again: entries older than ``horizon``."""
        edge = iso(horizon)
        self.consumed = {k: v for k, v in self.consumed.items() if v >= edge}
        self.changes = {k: v for k, v in self.changes.items() if v[2] >= edge}
        floor = horizon.timestamp() - 1
        self.density = {k: v for k, v in self.density.items() if int(k) >= floor}


def estimate_pages(checkpoint: LogCheckpoint, start: dt.datetime, page_size: int) -> int:
    """Pages a read from ``start`` up to the cursor would take again, from what was counted."""
    floor = int(start.timestamp())
    entries = sum(v for k, v in checkpoint.density.items() if int(k) >= floor)
    return math.ceil(entries / page_size)
