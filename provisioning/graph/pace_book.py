"""The tenant's send schedule (pure): one document every sender of every process and function
reads and writes, so Graph's limits are kept for the tenant, not per process.

Graph counts bulkUpload calls for the tenant: at most 40 per 5-second window and 2,000 per 24
hours with Entra ID P1/P2 (6,000 with Entra ID Governance), "API-driven inbound provisioning
concepts", https://learn.microsoft.com/en-us/entra/identity/app-provisioning/inbound-provisioning-api-concepts.
The document (``state/pace.json``, :class:`PaceBook`) holds:

* ``slots``: the wall-clock times handed out for sends in the last windows. A sender reserves
  one slot per send (one conditional write), sleeps until it and sends; new slots always go
  after the last one, so checking the window that ends at the new slot is enough. Windows are
  ``window + margin`` long: the margin absorbs the spread of the time a request takes to reach
  Graph (a request that reached Graph late must not share Graph's window with one sent a
  window after it).
* ``blocked_until``: a 429's Retry-After, for every sender.
* ``paused_until`` / ``paused_reason``: the bucket-full pause (a circuit breaker), for every
  sender.
* ``calls``: reserved sends per 10-minute bucket over the last 24 hours, against the daily
  quota. A bucket counts until 24 hours after its end, so the count errs on the safe side, and
  a slot counts once reserved (one that was not used is given back).

Everything here is pure: times are wall-clock seconds (``time.time``) passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from ..documents import Document

DAY = 86_400.0
BUCKET = 600  # seconds per bucket of the call count
# Slots kept in the book once they left every window: none are needed, one window is kept so
# a late reader still sees the recent past.
_KEEP_FACTOR = 2


class PaceBook(Document):
    """``state/pace.json``: the tenant's send schedule, penalty, pause and call count."""

    WHAT: ClassVar[str] = "pace document"

    slots: list[float] = Field(default_factory=list)
    blocked_until: float = 0.0
    paused_until: float = 0.0
    paused_reason: str | None = None
    calls: dict[str, int] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    """The tenant's limits as configured: ``requests`` per ``window`` seconds (plus ``margin``)
    and ``quota`` calls per 24 hours."""

    requests: int
    window: float
    margin: float
    quota: int

    @property
    def span(self) -> float:
        """How long a slot counts against the window."""
        return self.window + self.margin


class Paused(Exception):
    """Nobody sends until ``until`` (wall-clock seconds): Graph's bucket is full."""

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason


class QuotaExhausted(Exception):
    """The daily call quota is used up until ``until`` (wall-clock seconds)."""

    def __init__(self, until: float, quota: int) -> None:
        super().__init__(f"the daily quota of {quota} bulkUpload calls is used up")
        self.until = until
        self.quota = quota


def _bucket(moment: float) -> int:
    return int(moment // BUCKET) * BUCKET


def prune(book: PaceBook, now: float, limits: Limits) -> None:
    """Forget slots no window needs and call buckets older than the quota's 24 hours. A slot
    further ahead than any sender can reserve (a writer whose clock ran ahead) is forgotten
    too: trusted, it would hold every sender until that time."""
    horizon = now - _KEEP_FACTOR * limits.span
    ahead = max(now, book.blocked_until) + _KEEP_FACTOR * limits.span
    book.slots = [s for s in book.slots if horizon < s <= ahead]
    oldest = now - DAY - BUCKET
    book.calls = {k: v for k, v in book.calls.items() if int(k) > oldest}


def quota_frees(book: PaceBook, now: float) -> list[tuple[float, int]]:
    """(when, calls) the quota gets back, oldest first: each bucket 24 hours after its end."""
    return sorted(
        (int(k) + BUCKET + DAY, v) for k, v in book.calls.items() if int(k) + BUCKET + DAY > now
    )


def used_today(book: PaceBook, now: float) -> int:
    """Calls counted against the 24 hours ending ``now``."""
    return sum(calls for _, calls in quota_frees(book, now))


def quota_back_at(book: PaceBook, now: float, limits: Limits) -> float | None:
    """When the quota has a call again, if it is used up now; None while it has calls left."""
    frees = quota_frees(book, now)
    if sum(calls for _, calls in frees) < limits.quota:
        return None
    return frees[0][0]


def next_slot(book: PaceBook, now: float, limits: Limits) -> float:
    """The earliest time a new send may go: after the penalty, after the last slot handed
    out, and once the window ending there holds fewer than ``requests`` slots."""
    at = max(now, book.blocked_until, book.slots[-1] if book.slots else now)
    if len(book.slots) >= limits.requests:
        at = max(at, book.slots[-limits.requests] + limits.span)
    return at


def reserve(book: PaceBook, now: float, limits: Limits, horizon: float = math.inf) -> float | None:
    """Hand out the next slot if it is due within ``horizon`` seconds, and count it against
    the quota; None (nothing written) when it is due later. Raises :class:`Paused` during a
    pause and :class:`QuotaExhausted` when the quota has no call left."""
    prune(book, now, limits)
    if book.paused_until > now:
        raise Paused(book.paused_until, book.paused_reason or "sending is paused")
    back = quota_back_at(book, now, limits)
    if back is not None:
        raise QuotaExhausted(back, limits.quota)
    at = next_slot(book, now, limits)
    if at > now + horizon:
        return None
    book.slots.append(at)
    key = str(_bucket(at))
    book.calls[key] = book.calls.get(key, 0) + 1
    return at


def give_back(book: PaceBook, at: float) -> None:
    """A slot that was not used (a penalty or pause came first, or the wait was too long)
    leaves the schedule and the quota. Removing a slot only ever makes a window emptier, so
    slots handed out after it stay valid."""
    if at in book.slots:
        book.slots.remove(at)
        key = str(_bucket(at))
        if book.calls.get(key, 0) > 0:
            book.calls[key] -= 1


def penalise(book: PaceBook, now: float, seconds: float) -> None:
    """Graph answered 429 with Retry-After: nobody sends for ``seconds``."""
    if seconds > 0 and math.isfinite(seconds):
        book.blocked_until = max(book.blocked_until, now + seconds)


def pause(book: PaceBook, now: float, seconds: float, reason: str) -> None:
    """Graph's bucket is full: nobody sends for ``seconds`` (a longer pause already set wins)."""
    if now + seconds > book.paused_until:
        book.paused_until = now + seconds
        book.paused_reason = reason


PENALTY_REASON = "Graph asked every sender to wait (429 with Retry-After)"


def hold(book: PaceBook, now: float, limits: Limits) -> tuple[float, str] | None:
    """(until, why) when no sender may send now: a bucket-full pause, a 429's Retry-After, or
    the daily quota used up; None otherwise."""
    if book.paused_until > now:
        return book.paused_until, book.paused_reason or "sending is paused"
    if book.blocked_until > now:
        return book.blocked_until, PENALTY_REASON
    back = quota_back_at(book, now, limits)
    if back is not None:
        return back, f"the daily quota of {limits.quota} bulkUpload calls is used up"
    return None


@dataclass(frozen=True, slots=True)
class Part:
    """When a part of a send can go under the daily quota: its first and last request at the
    earliest (wall-clock seconds)."""

    name: str
    requests: int
    first: float
    last: float


def schedule(
    book: PaceBook, now: float, limits: Limits, parts: list[tuple[str, int]]
) -> list[Part]:
    """When each part (name, requests), sent in the order given, can go at the earliest under
    the daily quota: what is left of it now, then the calls freed as the 24 hours move (those
    already counted, and this send's own once 24 hours old). The rate limit is left out: it
    costs seconds where the quota costs days."""
    left = max(0, limits.quota - used_today(book, now))
    frees = quota_frees(book, now)  # (when, calls), oldest first
    at, out = now, []
    for name, requests in parts:
        need, first = requests, None
        while need > 0:
            if left == 0:
                at, left = max(at, frees[0][0]), frees[0][1]
                frees.pop(0)
            take = min(left, need)
            first = at if first is None else first
            need, left = need - take, left - take
            # what this part spends now frees a day later, after everything counted before it
            frees.append((_bucket(at) + BUCKET + DAY, take))
            frees.sort()
        out.append(Part(name, requests, now if first is None else first, at))
    return out
