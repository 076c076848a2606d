"""The one pace of the tenant, kept in storage: every sender of every process draws its sends
from ``state/pace.json`` (:mod:`provisioning.graph.pace_book`), so file runs, releases, HTTP
flushes and reconciliation passes on any number of instances stay together within Graph's
limits, stop together on a 429's Retry-After and pause together when Graph's bucket is full.

Why a schedule in one blob, written under its ETag: the send gate already lets one process
send at a time, so the blob sees little contention; one conditional write per send (a read
too when another process wrote since) costs a few milliseconds next to a bulkUpload call; and
the same write counts the call against the daily quota, so the budget is exact across
senders. Short leases on slots
would need a blob per slot and a listing per send.

Interactive work (HTTP changes) reserves the next free slot whenever it falls; bulk work (file
runs, releases, retries, drift fixes) only takes a slot that is free now, so a change waits at
most for the window to move, never behind a 100,000-row file.

When storage is slow (a read or write takes longer than PROVISIONING_PACE_STORAGE_TIMEOUT_SECONDS)
or fails, the process paces itself at PROVISIONING_PACE_FALLBACK_SHARE of the limit for a
while and tries the book again: it keeps working, more slowly, and any 429 it earns is honoured.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Literal, TypeVar

from azure.core.exceptions import AzureError

from ..documents import DocumentError, read_document
from ..settings import STATE_CONTAINER, Settings
from ..storage import BlobStore, PreconditionFailed
from .pace_book import (
    PENALTY_REASON,
    Limits,
    PaceBook,
    Paused,
    QuotaExhausted,
    give_back,
    next_slot,
    penalise,
    reserve,
)
from .pace_book import pause as pause_book
from .pacing import Clock, Permit, RateLimiter, Sleep, WaitTooLong

log = logging.getLogger(__name__)

PACE_BLOB = "pace.json"
# Provisioning-log reads have a pace of their own (Graph throttles them apart from bulkUpload):
# the same schedule rules, in their own blob.
READ_PACE_BLOB = "read-pace.json"
# Log reads have no daily quota; the book's count is kept but never reaches this.
_NO_QUOTA = 2**62
Priority = Literal["interactive", "bulk"]
T = TypeVar("T")
# Conditional writes of the book before it counts as too busy (storage is then "slow").
_ATTEMPTS = 20
# After storage was slow, the fallback pace is used this long before the book is tried again.
_FALLBACK_SECONDS = 10.0
# A slot slept on longer than this is checked against the book again before it is used: a
# penalty or pause set meanwhile by another sender wins.
_RECHECK_SECONDS = 1.0
# A slot reached later than this share of the margin (a slow storage write, a busy event loop)
# is not used: the next window is counted from the slot, so a send later than the margin could
# share a window with the sends after it. The other half covers the way from here to Graph.
_LATE_SHARE = 0.5
# Slots reached late this many times in a row: storage is too slow for the book.
_LATE_ATTEMPTS = 3


class StorageSlow(Exception):
    """The pace document could not be read or written in time."""


def read_book(store: BlobStore, blob: str = PACE_BLOB) -> PaceBook:
    """The tenant's pace document as stored now (empty when none was written yet)."""
    found = read_document(store, STATE_CONTAINER, blob, PaceBook)
    return found[0] if found else PaceBook()


def limits_for(settings: Settings) -> Limits:
    return Limits(
        settings.rate_limit_requests,
        settings.rate_limit_window_seconds,
        settings.pace_margin_seconds,
        settings.daily_call_quota,
    )


class TenantPace:
    """One sender's handle on the tenant's pace; the same interface as :class:`RateLimiter`
    (``acquire``, ``release``, ``penalise``, ``pause``), so the Submitter takes either."""

    def __init__(
        self,
        store: BlobStore,
        settings: Settings,
        *,
        priority: Priority = "bulk",
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        blob: str = PACE_BLOB,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.blob = blob
        self.limits = limits or limits_for(settings)
        self.priority = priority
        self._clock = clock
        self._sleep = sleep
        self._timeout = settings.pace_storage_timeout_seconds
        share = max(1, math.floor(self.limits.requests * settings.pace_fallback_share))
        self._fallback = RateLimiter(share, self.limits.span, sleep=sleep)
        self._fallback_until = -math.inf
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()
        # The book as this sender last wrote it, with its ETag (None: read it first).
        self._last: tuple[PaceBook, str | None] | None = None
        self.waited_seconds = 0.0
        self.fallback_sends = 0

    # ------------------------------------------------------------ storage
    async def _io(self, work: Callable[[], T]) -> T:
        """``work`` (blocking storage calls) in a thread, within the storage timeout."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(work), self._timeout)
        except (TimeoutError, AzureError, DocumentError) as exc:
            raise StorageSlow(f"{type(exc).__name__}: {exc}"[:200]) from exc

    def _update(self, change: Callable[[PaceBook], T]) -> T:
        """Apply ``change`` to the book under its ETag; what ``change`` returned. The book this
        sender wrote last is tried first, without reading it again: the send gate lets one
        process send at a time, so it is most often still the current one (one storage round
        trip per send instead of two); when someone wrote since, it is read again."""
        for _ in range(_ATTEMPTS):
            if self._last is None:
                found = read_document(self.store, STATE_CONTAINER, self.blob, PaceBook)
                self._last = found or (PaceBook(), None)
            book, etag = self._last[0].model_copy(deep=True), self._last[1]
            result = change(book)
            try:
                if etag is None:
                    written = self.store.write_json(
                        STATE_CONTAINER, self.blob, book.dump(), create_only=True, indent=None
                    )
                else:
                    written = self.store.write_json(
                        STATE_CONTAINER, self.blob, book.dump(), etag=etag, indent=None
                    )
            except PreconditionFailed:
                self._last = None  # someone else wrote: read it again
                time.sleep(random.uniform(0, 0.01))
                continue
            self._last = (book, written)
            return result
        raise StorageSlow(f"{STATE_CONTAINER}/{self.blob} kept changing")

    def _write_later(self, change: Callable[[PaceBook], object]) -> None:
        """Write ``change`` in the background (``penalise`` and ``pause`` are called from sync
        code); :meth:`aclose` waits for it."""

        async def write() -> None:
            try:
                await self._io(lambda: self._update(change))
            except StorageSlow as exc:
                log.warning("could not write the pace document: %s", exc)

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def aclose(self) -> None:
        """Wait for the penalty and pause writes still under way."""
        if self._writes:
            await asyncio.gather(*self._writes)

    # ------------------------------------------------------------ pacing
    async def acquire(self, max_wait: float = math.inf, sleep: Sleep | None = None) -> Permit:
        """Wait for this sender's next slot and return its permit. Raises ``WaitTooLong``
        (nothing sent, no slot kept) when it would come later than ``max_wait`` seconds from
        now, :class:`Paused` during a bucket-full pause and :class:`QuotaExhausted` once the
        daily quota is used up."""
        sleep = sleep or self._sleep
        deadline = self._clock() + max_wait
        horizon = math.inf if self.priority == "interactive" else 0.0
        late = 0
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._fallback_until:
                    return await self._fallback_acquire(deadline - now, sleep)
                try:
                    slot, book, now = await self._io(partial(self._reserve, horizon))
                except StorageSlow as exc:
                    self._fall_back(str(exc), now)
                    continue
                due = slot if slot is not None else next_slot(book, now, self.limits)
                if due > deadline:
                    if slot is not None:
                        await self._give_back(slot)
                    if book.blocked_until >= due:
                        # Graph's own Retry-After, longer than a run may wait: every sender
                        # pauses until then (the daily quota used up answers a day).
                        raise Paused(book.blocked_until, PENALTY_REASON)
                    raise WaitTooLong(due - now, max_wait, "window")
                if due > now:
                    self.waited_seconds += due - now
                    await sleep(due - now)
                if slot is None:
                    continue  # bulk: the slot may be free now; try for it again
                if due - now > _RECHECK_SECONDS and await self._overtaken(slot):
                    continue
                if self._clock() - slot > self.limits.margin * _LATE_SHARE:
                    await self._give_back(slot)
                    late += 1
                    if late == _LATE_ATTEMPTS:
                        self._fall_back(f"{late} slots in a row were reached late", self._clock())
                    continue
                return Permit(slot)

    def _fall_back(self, reason: str, now: float) -> None:
        """Storage is too slow for the book: this process paces itself for a while."""
        log.warning(
            "pace document slow or unavailable (%s): pacing this process at %d "
            "requests per %.2f s for %.0f s",
            reason,
            self._fallback.requests,
            self._fallback.window_seconds,
            _FALLBACK_SECONDS,
        )
        self._fallback_until = now + _FALLBACK_SECONDS

    def _reserve(self, horizon: float) -> tuple[float | None, PaceBook, float]:
        """(slot or None, the book as written, the time it was read): the time is taken after
        the read, just before the write, so a slot due "now" is not already late by the time
        the read took."""

        def change(book: PaceBook) -> tuple[float | None, PaceBook, float]:
            now = self._clock()
            return reserve(book, now, self.limits, horizon), book, now

        return self._update(change)

    async def _overtaken(self, slot: float) -> bool:
        """After a long sleep on ``slot``: True (and the slot given back) when another sender
        set a penalty or pause over it meanwhile."""
        try:
            book = await self._io(partial(read_book, self.store, self.blob))
        except StorageSlow:
            return False
        if book.paused_until > slot or book.blocked_until > slot:
            await self._give_back(slot)
            return True
        return False

    async def _give_back(self, slot: float) -> None:
        try:
            await self._io(lambda: self._update(lambda book: give_back(book, slot)))
        except StorageSlow as exc:
            log.warning("could not give an unused slot back: %s", exc)

    async def _fallback_acquire(self, max_wait: float, sleep: Sleep) -> Permit:
        permit = await self._fallback.acquire(max_wait, sleep)
        self.fallback_sends += 1
        return permit

    @classmethod
    def for_log_reads(
        cls, store: BlobStore, settings: Settings, *, clock: Clock = time.time, sleep: Sleep
    ) -> TenantPace:
        """The pace of provisioning-log reads, shared by every process: Graph throttles
        identity and access reports at 5 requests per 10 s per app per tenant
        (https://learn.microsoft.com/graph/throttling-limits). One reader at a time waits
        for the next slot whenever it falls (interactive)."""
        limits = Limits(
            settings.log_read_requests,
            settings.log_read_window_seconds,
            settings.pace_margin_seconds,
            _NO_QUOTA,
        )
        return cls(
            store,
            settings,
            priority="interactive",
            clock=clock,
            sleep=sleep,
            blob=READ_PACE_BLOB,
            limits=limits,
        )

    def release(self, permit: Permit) -> None:
        self._fallback.release(permit)

    def penalise(self, seconds: float) -> None:
        """Graph answered 429 with Retry-After: every sender waits ``seconds``."""
        now = self._clock()
        self._fallback.penalise(seconds)
        self._write_later(lambda book: penalise(book, now, seconds))

    def pause(self, seconds: float, reason: str) -> None:
        """Graph's bucket is full: every sender stops for ``seconds``."""
        now = self._clock()
        self._fallback.pause(seconds, reason)
        self._write_later(lambda book: pause_book(book, now, seconds, reason))


__all__ = [
    "PACE_BLOB",
    "READ_PACE_BLOB",
    "Paused",
    "QuotaExhausted",
    "StorageSlow",
    "TenantPace",
    "limits_for",
    "read_book",
]
