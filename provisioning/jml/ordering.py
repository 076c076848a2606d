"""Newest HR data wins: the order of every piece of HR data, and the send gate that enforces it
at the moment of sending.

The rule: per worker, the newest HR data accepted by this app wins, whatever path it takes to
Entra (file run, HTTP change, release of a held change or an approval, retry, drift fix, resume).
Older data never reaches Entra after newer data.

- **Order.** Every piece of HR data gets an order when the app accepts it: a dropped file when
  its content is first claimed, an HTTP change when it is received. An order is a string that
  sorts by that moment (UTC, microseconds), then by the run or change id. Releases, retries and
  drift fixes carry the order of the data they send.
- **What Entra got.** The worker state keeps, per worker, the newest order that reached Entra,
  and per full feed the newest run that restated the whole feed (its "watermark": every worker
  the feed owns is restated by it, listed or not).
- **The gate.** Every bulk request goes out during a turn of the send gate: a lease on
  ``state/locks/send``, whose JSON holds a generation counter and the watermarks. In its turn a
  sender reads what other senders did since its last turn (the deltas numbered by the
  generation), drops every record whose worker Entra already got newer data for (reported as
  ``superseded``), writes the request's delta as ``sending`` before the POST and ``accepted``
  or ``void`` after. Turns are serial across every process, so no two senders can pass each
  other between the check and the POST; a sender that dies holding the gate leaves a
  ``sending`` delta, which counts as possibly applied.

Assumption (not documented by Microsoft): Entra applies the bulk requests it accepted for one
job in the order it accepted them. The gate guarantees that order; the rest is Entra's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..settings import STATE_CONTAINER, Settings
from ..storage import BlobStore, Lease, PreconditionFailed
from .lifecycle import Known
from .state import GATE, Change, DeltaStatus, WorkerState

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


# A sender waiting for the gate says so at every look, so whoever holds the gate then sees it:
# bulk senders here (the holder steps aside at the end of its slice), interactive ones (HTTP
# changes) in their own blob, which a holder reads after every request and steps aside for at
# once. Every look, not only the first: a holder only counts knocks made since it took the
# gate, so a waiter that knocked once would be invisible to the next holder and could starve.
KNOCK = "locks/send-knock"
KNOCK_INTERACTIVE = "locks/send-knock-interactive"
# Longest pause between two looks at a taken gate (seconds); a holder that stepped aside for a
# waiter stays away twice as long, so the waiter's next look finds the gate free.
_POLL_MAX = 0.1
# A view further behind than this many deltas reads the shards again instead of the deltas.
MAX_CATCH_UP = 2000
# In ``Turn.touched``: the workers touched are not known (the view was far behind).
ALL = "\x00all"


class GateBusy(Exception):
    """The send gate stayed taken longer than the longest wait allowed: try again later."""


def new_order(moment: dt.datetime, tag: str) -> str:
    """The order of HR data accepted at ``moment`` (``tag``: its run or change id)."""
    return f"{moment.astimezone(dt.UTC):%Y%m%dT%H%M%S.%f}Z-{tag}"


@dataclass
class OrderView:
    """What one sender knows of the newest order Entra got per worker and per full feed,
    brought up to date at each turn of the gate from the deltas of the other senders."""

    state: WorkerState
    gen: int
    known: dict[str, tuple[str, str]] = field(default_factory=dict)  # ext -> (order, feed)
    watermarks: dict[str, str] = field(default_factory=dict)
    # True when ``known`` holds every worker of the state (seeded from the whole index).
    complete: bool = False
    _looked_up: set[str] = field(default_factory=set)

    def seed(self, index: dict[str, Known]) -> None:
        for ext, item in index.items():
            self.merge(ext, item.order, item.feed)
        self.complete = True

    def merge(self, ext: str, order: str, feed: str) -> None:
        before = self.known.get(ext)
        self.known[ext] = (max(before[0], order) if before else order, feed)

    def ensure(self, ids: Iterable[str]) -> None:
        """Read from the shards what is not known of these workers."""
        if self.complete:
            return
        missing = {i for i in ids if i not in self._looked_up}
        if missing:
            for ext, item in self.state.lookup(missing).items():
                self.merge(ext, item.order, item.feed)
            self._looked_up |= missing

    def catch_up(self, top: int, sending: dict[str, Any] | None = None) -> set[str]:
        """Apply the deltas up to generation ``top``; returns the workers they touched.
        ``sending``: the gate's pending request, whose delta its sender (now gone, or it would
        still hold the gate) never wrote: what it carried may have been applied."""
        touched: set[str] = set()
        if top - self.gen > MAX_CATCH_UP:
            # Far behind (a long plan while others sent): reading every delta would cost more
            # than reading the shards of the workers still to send.
            self.complete = False
            self._looked_up.clear()
            self.gen = top
            return {ALL}
        for gen in range(self.gen + 1, top + 1):
            delta = self.state.read_delta(gen, sending)
            if delta is None:
                # Folded and pruned meanwhile: the shards have it; read them again when needed.
                self.complete = False
                self._looked_up.clear()
                continue
            if delta["status"] == "void":
                continue
            for change in delta["changes"]:
                self.merge(change[0], change[4], change[3])
                touched.add(change[0])
        self.gen = max(self.gen, top)
        return touched

    def newest(self, ext: str, *, watermark: bool = True) -> str:
        """The newest order Entra got for this worker, with its owning feed's watermark unless
        ``watermark`` is False."""
        order, feed = self.known.get(ext, ("", ""))
        return max(order, self.watermarks.get(feed, "")) if watermark else order


class Turn:
    """One turn of the gate: the checks and records of one bulk request (or publication)."""

    def __init__(self, gate: SendGate, touched: set[str]) -> None:
        self._gate = gate
        self.touched = touched  # workers other senders changed since this sender's last turn

    @property
    def view(self) -> OrderView:
        return self._gate.view

    def watermark(self, feed: str) -> str:
        return self.view.watermarks.get(feed, "")

    def newer(self, ext: str, order: str, *, resend: bool = False) -> bool:
        """Whether Entra already got HR data newer than ``order`` for this worker.

        ``resend``: the record is the state's own (a retry, a drift fix), restated by every
        newer run that left it unchanged, so a full feed's watermark says nothing about it;
        only a newer record accepted for the worker makes it stale."""
        return self.view.newest(ext, watermark=not resend) > order

    def publish(
        self,
        status: DeltaStatus,
        changes: list[Change],
        *,
        watermark: tuple[str, str] | None = None,
    ) -> int:
        """Move the generation on with what this turn does; returns the new generation.

        ``sending``: the changes ride in the gate blob itself (one write before the POST);
        :meth:`settle` writes the delta once Graph answered. Otherwise the delta is written
        first, so a generation never names a delta that was never written."""
        gate = self._gate
        gen = int(gate.data.get("gen", 0)) + 1
        data: dict[str, Any] = {"gen": gen, "feeds": dict(gate.data.get("feeds", {}))}
        if watermark is not None:
            feed, order = watermark
            data["feeds"][feed] = max(data["feeds"].get(feed, ""), order)
        if status == "sending":
            data["sending"] = {"gen": gen, "at": _iso_now(), "changes": changes}
        else:
            gate.view.state.write_delta(gen, status, changes)
        gate.write(data)
        view = gate.view
        view.gen = gen
        view.watermarks = dict(data["feeds"])
        for change in changes:
            view.merge(change[0], change[4], change[3])
        return gen

    def settle(self, gen: int, status: DeltaStatus, changes: list[Change]) -> None:
        """Write the delta of ``gen`` once Graph answered: accepted, or void (not applied)."""
        self._gate.view.state.write_delta(gen, status, changes)


class SendGate:
    """The tenant-wide gate every bulk request passes: one holder at a time, across processes.

    A holder keeps the gate for a slice of ``slice_seconds`` (a few requests in a row: two
    storage writes per request instead of five), then gives others their turn; a holder gives
    way after its current request to an ``interactive`` waiter (an HTTP change), so a change
    never waits behind a large file's slice. ``sleep`` is
    the caller's (it keeps the caller's own lease while waiting); the gate's lease is renewed
    in the background while held (a POST can take as long as the request timeout, a retry wait
    as long as ``max_wait_seconds``). Every write of the gate blob is conditional on the lease,
    so a holder whose lease lapsed fails before its POST rather than after."""

    def __init__(
        self,
        store: BlobStore,
        view: OrderView,
        *,
        lease_seconds: int,
        max_wait_seconds: float,
        sleep: Sleep = asyncio.sleep,
        slice_seconds: float = 2.0,
        interactive: bool = False,
    ) -> None:
        self.store = store
        self.interactive = interactive
        self.view = view
        self.data: dict[str, Any] = {}
        self._lease_seconds = lease_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._slice = slice_seconds
        self._lease: Lease | None = None
        self._held_since = 0.0
        self._held_since_wall = 0.0
        self._yielded = False  # gave the gate up to a waiting sender
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, store: BlobStore, settings: Settings, *, sleep: Sleep = asyncio.sleep
    ) -> SendGate:
        """A gate whose view starts where the shards are complete: its first turn reads the
        deltas since (cheaper than folding them, which a file run does before it plans)."""
        state = WorkerState(store)
        return cls(
            store,
            OrderView(state, state.folded()),
            lease_seconds=settings.lease_seconds,
            max_wait_seconds=settings.max_wait_seconds,
            sleep=sleep,
        )

    def write(self, data: dict[str, Any]) -> None:
        if self._lease is None:
            raise RuntimeError("the send gate is not held")
        self.store.write_json(STATE_CONTAINER, GATE, data, lease=self._lease, indent=None)
        self.data = data

    async def _acquire(self) -> Lease:
        begun = time.monotonic()
        pause = 0.02
        while True:
            try:
                lease = self.store.acquire_lease(STATE_CONTAINER, GATE, self._lease_seconds)
            except FileNotFoundError:
                with contextlib.suppress(PreconditionFailed):  # someone else created it
                    self.store.write_json(STATE_CONTAINER, GATE, {"gen": 0}, create_only=True)
                continue
            if lease is not None:
                return lease
            knock = KNOCK_INTERACTIVE if self.interactive else KNOCK
            self.store.write_json(STATE_CONTAINER, knock, {"at": time.time()}, indent=None)
            if time.monotonic() - begun > self._max_wait:
                raise GateBusy(
                    f"the send gate stayed taken for more than {self._max_wait:.0f} s "
                    "(PROVISIONING_MAX_WAIT_SECONDS)"
                )
            await self._sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, _POLL_MAX)

    def _knocked(self, knock: str) -> bool:
        """Whether another sender waited (``knock``: bulk or interactive) while this one held
        the gate."""
        found = self.store.read_json(STATE_CONTAINER, knock)
        return bool(found and float(found[0].get("at", 0)) >= self._held_since_wall)

    async def _keep(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                lease.renew()
            except Exception:
                log.warning("send gate lease could not be renewed", exc_info=True)

    async def turn(self, ids: Iterable[str] = ()) -> Turn:
        """A turn: the gate held (taken anew once the slice is over), what others did since
        this sender's last turn applied to its view, and ``ids`` known."""
        touched: set[str] = set()
        if self._lease is not None and time.monotonic() - self._held_since > self._slice:
            self.pause()
        if self._lease is None:
            if self._yielded:
                # Someone waits: stay away long enough for their next look, so a large file
                # never starves a small HTTP change.
                self._yielded = False
                await self._sleep(_POLL_MAX * 2)
            self._lease = await self._acquire()
            self._held_since = time.monotonic()
            self._held_since_wall = time.time()
            self._keeper = asyncio.create_task(self._keep(self._lease))
            self.data = self.view.state.gate()
            touched = self.view.catch_up(int(self.data.get("gen", 0)), self.data.get("sending"))
            self.view.watermarks = dict(self.data.get("feeds", {}))
        self.view.ensure(ids)
        return Turn(self, touched)

    def pause(self) -> None:
        """Between two requests: give the gate up once the slice is over, or at once when an
        interactive sender waits, so the caller's own work in between (its results, the next
        batch of a long file) never keeps the others out."""
        if self._lease is None:
            return
        over = time.monotonic() - self._held_since > self._slice
        waiting = self._knocked(KNOCK_INTERACTIVE) or (over and self._knocked(KNOCK))
        if waiting or over:
            self.release()
            self._yielded = waiting

    def release(self) -> None:
        """Give the gate up (best effort; an unreleased lease expires by itself)."""
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[SendGate]:
        """Turns taken inside are released at the end, whatever happens."""
        try:
            yield self
        finally:
            self.release()


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
