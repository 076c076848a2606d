"""Records the state already holds, sent again through the send gate as a run of their own
(drift fixes, manager follow-ups): each carries the order of the worker's last accepted record,
so a newer change is never undone, and what Graph accepts is tracked for the outcome pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..convert.bulk import Operation
from ..graph.outcomes import graph_reason
from ..graph.sender import Outgoing, Sender, SentBatch
from ..graph.submit import client_request_id
from ..jml.ordering import SendGate
from ..runs.tracking import track_accepted
from ..settings import Settings
from ..storage import BlobStore


@dataclass
class Resent:
    """What :func:`resend` came to. ``report`` is for the pass's report (counts and Graph's
    answers, no HR ids); ``sent`` and ``accepted`` are the workers, for the caller's state."""

    report: dict[str, Any]
    sent: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)


async def resend(
    settings: Settings,
    store: BlobStore,
    graph: Any,
    operations: Sequence[Operation],
    *,
    kind: str,
    action: str,
    results_prefix: str,
    sleep: Callable[[float], Awaitable[None]],
    keep_alive: Callable[[], None],
    clock: Callable[[], dt.datetime],
    gate: SendGate | None = None,
) -> Resent:
    """Send ``operations`` (records of workers the state knows) as the run whose id is the
    last part of ``results_prefix``, tracked with ``kind`` and each record's ``action``.

    A worker the state does not know, or whose last send is unanswered (its run resumes it),
    is left out. ``gate``: one whose state is already folded (else one is made and folded).
    Returns the report ``{"records", "records_accepted", "records_superseded", "requests",
    "errors"}`` with the workers sent and accepted."""
    run_id = results_prefix.rstrip("/").rsplit("/", 1)[-1]
    if gate is None:
        gate = SendGate.from_settings(store, settings, sleep=sleep)
        gate.view.state.fold()
    known = gate.view.state.lookup(op.external_id for op in operations)
    items = [
        Outgoing(op, known[op.external_id].order, known[op.external_id].feed, action, resend=True)
        for op in operations
        if op.external_id in known and known[op.external_id].fingerprint is not None
    ]
    out = Resent({})
    errors: list[str] = []

    def record(batch: SentBatch) -> None:
        track_accepted(
            store,
            batch,
            run_id=run_id,
            results_prefix=results_prefix,
            kind=kind,
            accepted_at=clock(),
        )
        out.sent.update(item.op.external_id for item in batch.sent)
        out.accepted.update(item.op.external_id for item in batch.accepted)
        if batch.outcome is not None and not batch.outcome.accepted:
            errors.append(graph_reason(batch.outcome, "answered"))

    sender = Sender(settings, graph, gate, sleep=sleep, keep_alive=keep_alive, clock=clock)
    delivery = await sender.deliver(
        items,
        request_id=lambda index, part: client_request_id(run_id, index, part),
        on_batch=record,
    )
    out.report = {
        "records": len(operations),
        "records_accepted": delivery.accepted,
        "records_superseded": delivery.superseded,
        "requests": delivery.requests,
        "errors": errors,
    }
    return out
