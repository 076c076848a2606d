"""The one way bulk requests reach Graph: batches, each sent in a turn of the send gate.

Per batch: take a turn of the gate (``provisioning.jml.ordering``), drop the records whose worker
Entra already got newer HR data for (``superseded``), record the request as ``sending``,
submit it (paced by the process's one limiter and retried by ``provisioning.graph.submit``),
record what Graph accepted, and apply the one stop rule (``outcomes.stop_reason``). A 400 can be
narrowed to the records that caused it, so one bad record does not sink the others of its
request. Every path to Graph (file runs, releases, HTTP flushes, outcome retries, drift fixes)
calls :meth:`Sender.deliver`; what each records about a batch (its ledger, tracking for
outcomes, its own state) is its ``on_batch`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..clock import utcnow
from ..convert.bulk import BulkRequest, Operation, batches
from ..jml.lifecycle import fingerprint
from ..jml.ordering import GateBusy, SendGate, Turn
from ..jml.state import Change
from ..settings import Settings
from ..storage import LeaseKeeper, PreconditionFailed
from .outcomes import stop_reason
from .pacing import Pacer, retry_policy_for
from .submit import BatchOutcome, Submitter
from .tenant_pace import Priority, TenantPace

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send: its operation, the order of its HR data, the feed that owns the
    worker once Entra accepts it, and the action a person reads (joiner, leaver, ...)."""

    op: Operation
    order: str
    feed: str
    action: str
    # The state's own record sent again (retry, drift fix): see ``Turn.newer``.
    resend: bool = False

    def change(self, accepted: bool) -> Change:
        data = self.op.data
        active = data.get("active") is not False
        if not accepted:  # sent, but whether Entra got it is not known
            return (self.op.external_id, None, active, self.feed, self.order, None)
        return (self.op.external_id, fingerprint(data), active, self.feed, self.order, data)


@dataclass
class SentBatch:
    """What became of one batch."""

    index: int
    sent: list[Outgoing] = field(default_factory=list)
    superseded: list[Outgoing] = field(default_factory=list)
    accepted: list[Outgoing] = field(default_factory=list)
    # Records Graph refused, each with the answer of the request that isolated it.
    rejected: list[tuple[Outgoing, BatchOutcome]] = field(default_factory=list)
    outcome: BatchOutcome | None = None  # of the whole request; None when nothing was sent
    requests: int = 0
    stop: tuple[str, str] | None = None
    # Some attempt may have reached Graph without an answer: possibly applied twice (when
    # accepted later) or possibly applied at all (when not).
    maybe_applied: bool = False

    @property
    def request(self) -> BulkRequest:
        return BulkRequest(self.index, [item.op for item in self.sent])


@dataclass
class Delivery:
    """What one :meth:`Sender.deliver` came to, over all its batches."""

    requests: int = 0
    sent: int = 0
    accepted: int = 0
    superseded: int = 0
    # (status, reason) of the batch that stopped the delivery; None when everything was sent.
    stop: tuple[str, str] | None = None
    # When sending may go on (ISO 8601 UTC), when the delivery stopped "paused".
    resume_at: str | None = None

    def add(self, batch: SentBatch) -> None:
        self.requests += batch.requests
        self.sent += len(batch.sent)
        self.accepted += len(batch.accepted)
        self.superseded += len(batch.superseded)
        self.stop = batch.stop
        if batch.stop is not None and batch.stop[0] == "paused" and batch.outcome is not None:
            self.resume_at = batch.outcome.resume_at


class Sender:
    """Sends for one caller, paced by the tenant's one pace (``TenantPace``, in storage; or
    ``pace``). ``priority``: "interactive" for HTTP changes, which take the next free slot
    ahead of bulk work. ``sleep`` is the caller's and ``keep_alive`` renews its lease when due:
    every wait (pacing, backoff, Retry-After, a busy gate) sleeps through ``sleep``, and
    ``keep_alive`` runs before and after each batch, so a delivery never outlives the lease it
    holds. ``clock`` is the caller's wall clock, the one the tenant's schedule is kept in."""

    def __init__(
        self,
        settings: Settings,
        graph: Any,
        gate: SendGate,
        *,
        sleep: Sleep = asyncio.sleep,
        keep_alive: Callable[[], None] = lambda: None,
        priority: Priority = "bulk",
        pace: Pacer | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.gate = gate
        # The gate knocks as this sender's work is: an interactive waiter gets it at once.
        gate.interactive = priority == "interactive"
        self._keep_alive = keep_alive
        self.pace = pace or TenantPace(
            gate.store,
            settings,
            priority=priority,
            sleep=sleep,
            clock=lambda: clock().timestamp(),
        )
        self.submitter = Submitter(
            graph,
            self.pace,
            retry_policy_for(settings),
            sleep=sleep,
            bucket_full_pause=settings.bucket_full_pause_minutes * 60,
        )

    @classmethod
    def keeping(
        cls,
        keeper: LeaseKeeper,
        settings: Settings,
        graph: Any,
        gate: SendGate,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        priority: Priority = "bulk",
    ) -> Sender:
        """A sender for a caller holding a lease through ``keeper``: every wait renews it."""
        return cls(
            settings,
            graph,
            gate,
            sleep=keeper.sleep,
            keep_alive=keeper.renew_if_due,
            priority=priority,
            clock=clock,
        )

    async def deliver(
        self,
        items: Iterable[Outgoing],
        *,
        request_id: Callable[[int, int], str],
        on_batch: Callable[[SentBatch], None] = lambda batch: None,
        first_index: int = 1,
        narrow: bool = False,
        guard: tuple[str, str] | None = None,
        batch_size: int | None = None,
    ) -> Delivery:
        """Send ``items`` in batches numbered from ``first_index``, hand each batch's fate to
        ``on_batch`` (still in the gate's turn, so what it records precedes any newer send), and
        stop after a batch that stops the delivery.

        ``request_id(index, part)`` names the client-request-id of batch ``index`` (part 0;
        narrowed halves count up). ``guard`` = (feed, order): stop as ``superseded`` once a
        newer run of that full feed has published its watermark."""
        size = batch_size or self.settings.batch_size
        by_op: dict[int, Outgoing] = {}
        delivery = Delivery()

        def operations() -> Iterable[Operation]:
            for item in items:
                by_op[id(item.op)] = item
                yield item.op

        # Closing the pace waits for its penalty and pause writes to reach storage.
        async with self.gate.holding(), contextlib.aclosing(self.pace):
            for request in batches(operations(), size):
                self._keep_alive()
                batch = SentBatch(first_index + request.index - 1)
                outgoing = [by_op.pop(id(op)) for op in request.operations]
                try:
                    turn = await self.gate.turn(op.external_id for op in request.operations)
                    await self._turn(turn, batch, outgoing, request_id, narrow, guard)
                except GateBusy as exc:
                    batch.stop = ("interrupted", str(exc))
                except PreconditionFailed:
                    # The gate's lease lapsed (storage too slow to renew it): nothing was sent.
                    self.gate.release()
                    batch.stop = ("interrupted", "the send gate was lost before sending")
                self._keep_alive()
                delivery.add(batch)
                on_batch(batch)
                if batch.stop is not None:
                    break
                self.gate.pause()
        return delivery

    async def _turn(
        self,
        turn: Turn,
        batch: SentBatch,
        outgoing: list[Outgoing],
        request_id: Callable[[int, int], str],
        narrow: bool,
        guard: tuple[str, str] | None,
    ) -> None:
        if guard is not None and turn.watermark(guard[0]) > guard[1]:
            batch.stop = (
                "superseded",
                f"a newer run of feed {guard[0]} restated it; nothing more of this run is sent",
            )
            return
        for item in outgoing:
            newer = turn.newer(item.op.external_id, item.order, resend=item.resend)
            (batch.superseded if newer else batch.sent).append(item)
        if not batch.sent:
            return
        gen = turn.publish("sending", [item.change(False) for item in batch.sent])
        outcome = await self._submit(batch, batch.sent, request_id, 0)
        batch.outcome = outcome
        if outcome.accepted:
            batch.accepted = list(batch.sent)
        elif narrow and outcome.http_status == 400 and len(batch.sent) > 1:
            await self._narrow(batch, batch.sent, request_id)
        else:
            batch.rejected = [(item, outcome) for item in batch.sent]
            batch.stop = stop_reason(outcome)
        accepted = {id(item) for item in batch.accepted}
        changes = [item.change(True) for item in batch.accepted]
        if batch.maybe_applied:
            changes += [item.change(False) for item in batch.sent if id(item) not in accepted]
        turn.settle(gen, "accepted" if changes else "void", changes)

    async def _submit(
        self,
        batch: SentBatch,
        items: list[Outgoing],
        request_id: Callable[[int, int], str],
        part: int,
    ) -> BatchOutcome:
        body = BulkRequest(batch.index, [item.op for item in items]).body
        outcome = await self.submitter.submit(body, request_id(batch.index, part))
        batch.requests += 1
        if outcome.maybe_applied_attempts:
            batch.maybe_applied = True
        return outcome

    async def _narrow(
        self,
        batch: SentBatch,
        items: list[Outgoing],
        request_id: Callable[[int, int], str],
    ) -> None:
        """Graph refused the request for its data: send the halves apart, down to single
        records, so the records that caused the 400 are the only ones refused."""
        queue = [items[: len(items) // 2], items[len(items) // 2 :]]
        while queue and batch.stop is None:
            part = queue.pop(0)
            outcome = await self._submit(batch, part, request_id, batch.requests)
            if outcome.accepted:
                batch.accepted += part
            elif outcome.http_status == 400 and len(part) > 1:
                queue[:0] = [part[: len(part) // 2], part[len(part) // 2 :]]
            else:
                batch.rejected += [(item, outcome) for item in part]
                batch.stop = stop_reason(outcome)
                if batch.stop is not None:
                    # What the stop left unsent shares its fate: sent again another time.
                    batch.rejected += [(item, outcome) for rest in queue for item in rest]
        log.info(
            "batch %d narrowed in %d requests: %d accepted, %d refused",
            batch.index,
            batch.requests,
            len(batch.accepted),
            len(batch.rejected),
        )
