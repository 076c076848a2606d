"""Sender processes that send to Graph at the same moment, each in its own interpreter.

Used by tests/test_concurrent_senders.py (a file drop, a release and an HTTP flush at once) and
by ``benchmarks/submit.py --senders N`` (N shares of one set of records). :func:`run_senders`
starts one process per :class:`Job` with the ``spawn`` method, so each has its own interpreter,
event loop, ``GraphClient`` and ``BlobStore`` and shares nothing with the others but the storage
account and Graph, as instances of the Function App do. Each process loads the app's settings
from the environment it is given, opens its services and prepares its work, then waits at a
barrier until every process is ready, so the sends start together. What each did comes back
as a :class:`Report`.

Roles:

* ``drop``: ``DropProcessor.process`` of ``hr-inbound/<blob>`` (as its blob trigger would);
* ``release``: ``Releaser.release`` (the held changes that are due);
* ``flush``: ``provisioning.changes.flush.flush`` (the outbox of the HTTP change API);
* ``submit``: ``count`` records from number ``first`` delivered by one ``Sender`` (the
  benchmark; see :func:`bench_user`).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import multiprocessing
import os
import threading
import time
import traceback
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Barrier

    from provisioning.graph.client import GraphClient
    from provisioning.settings import Settings
    from provisioning.storage import BlobStore

Role = Literal["drop", "release", "flush", "submit"]
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
# Longest wait at the barrier for the other processes to be ready (imports, services).
READY_SECONDS = 120.0
Work = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Job:
    """One sender process: its role and the role's arguments (plain JSON values)."""

    role: Role
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """What one sender process did: ``status`` is its run's (``complete`` when all went well;
    ``crashed`` with ``error`` when it raised; ``no report`` when it died or timed out);
    ``ready`` the wall-clock second it was ready to send, ``started``/``finished`` those around
    its work (after the barrier)."""

    role: str
    status: str
    ready: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exitcode: int | None = None


def bench_user(i: int) -> dict[str, Any]:
    """The benchmark's i-th user (external id ``B<i>``): small and valid."""
    external_id = f"B{i:07d}"
    return {
        "schemas": [CORE],
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.test",
        "displayName": f"Bench User {i}",
        "name": {"givenName": "Bench", "familyName": f"User{i}"},
        "active": True,
    }


def most_in_window(times: Iterable[float], seconds: float) -> int:
    """The most ``times`` in any window ``(t - seconds, t]``: how the emulator counts."""
    ordered = sorted(times)
    best = 0
    for end, moment in enumerate(ordered):
        start = bisect.bisect_right(ordered, moment - seconds, 0, end + 1)
        best = max(best, end - start + 1)
    return best


# ---------------------------------------------------------------- the parent
def run_senders(
    jobs: Sequence[Job],
    env: Mapping[str, str],
    workdir: Path,
    *,
    prepare: Callable[[], None] | None = None,
    timeout: float = 300.0,
) -> list[Report]:
    """Run ``jobs`` in separate processes that start sending together; their reports, in the
    order of ``jobs``. ``env``: the app settings (environment variables) of every process.
    ``prepare`` runs here while the processes start (they load the app, open their services
    and warm their Graph client): they are let go once it returned and all of them are ready.
    A process still running ``timeout`` seconds after that is killed (``no report``)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs) + 1)
    outputs = [workdir / f"sender-{index}-{job.role}.json" for index, job in enumerate(jobs)]
    processes = [
        context.Process(
            target=_child,
            args=(job, dict(env), barrier, str(out)),
            name=f"sender-{index}-{job.role}",
        )
        for index, (job, out) in enumerate(zip(jobs, outputs, strict=True))
    ]
    for process in processes:
        process.start()
    try:
        if prepare is not None:
            prepare()
        barrier.wait(READY_SECONDS)
    except threading.BrokenBarrierError:
        pass  # a process failed before it was ready: its report says why
    except BaseException:
        barrier.abort()
        _stop(processes)
        raise
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    _stop(processes)
    reports = []
    for job, process, out in zip(jobs, processes, outputs, strict=True):
        if out.exists():
            data = json.loads(out.read_text())
            reports.append(Report(**data, exitcode=process.exitcode))
        else:
            reports.append(Report(job.role, "no report", exitcode=process.exitcode))
    return reports


def _stop(processes: Iterable[BaseProcess]) -> None:
    """Kill the sender processes still running (only these, by their own handles)."""
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join(10)


# ---------------------------------------------------------------- a sender process
def _child(job: Job, env: dict[str, str], barrier: Barrier, out: str) -> None:
    from devtools.local_env import MSI_CONFLICTS

    for name in MSI_CONFLICTS:
        os.environ.pop(name, None)
    os.environ.update(env)
    logging.basicConfig(
        level=logging.WARNING, format=f"[{job.role} %(process)d] %(levelname)s %(name)s %(message)s"
    )
    # kiota warns when msgraph's generated request builders are imported
    warnings.filterwarnings("ignore", "GetQueryParameters is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "This class is deprecated", DeprecationWarning)
    report: dict[str, Any]
    try:
        report = asyncio.run(_run(job, barrier))
    except BaseException:
        report = {"role": job.role, "status": "crashed", "error": traceback.format_exc()}
        barrier.abort()  # the others need not wait for this one
    Path(out).write_text(json.dumps(report))


async def _run(job: Job, barrier: Barrier) -> dict[str, Any]:
    from provisioning.functions.services import open_services, sender_settings

    settings = sender_settings()
    async with open_services(settings) as (store, graph):
        work = _prepare(job, settings, store, graph)
        # The first call to Graph imports the SDK's request builders and fetches the token:
        # done now, so the work starts without them (a GET, not counted against any limit).
        await graph.job_status()
        ready = time.time()
        barrier.wait(READY_SECONDS)
        started = time.time()
        result = await work()
        finished = time.time()
    return {
        "role": job.role,
        "status": str(result.get("status")),
        "ready": ready,
        "started": started,
        "finished": finished,
        "result": result,
    }


def _prepare(job: Job, settings: Settings, store: BlobStore, graph: GraphClient) -> Work:
    """The role's work, ready to start: what can be done before sending is done here."""
    args = job.args
    if job.role == "drop":
        from provisioning.runs.drop import DropProcessor
        from provisioning.settings import INBOUND_CONTAINER

        processor = DropProcessor(settings, store, graph)

        async def drop() -> dict[str, Any]:
            stream = store.open_read(INBOUND_CONTAINER, args["blob"])
            if stream is None:
                return {"status": "missing"}
            with stream:
                outcome = await processor.process(f"{INBOUND_CONTAINER}/{args['blob']}", stream)
            return {"status": outcome.status, "reason": outcome.reason, "counts": outcome.counts}

        return drop
    if job.role == "release":
        from provisioning.runs.release import Releaser

        releaser = Releaser(settings, store, graph)
        return releaser.release
    if job.role == "flush":
        from provisioning.changes.flush import flush

        async def flush_outbox() -> dict[str, Any]:
            return await flush(settings, store, graph)

        return flush_outbox
    if job.role == "submit":
        return _submitter(settings, store, graph, int(args["first"]), int(args["count"]))
    raise ValueError(f"unknown role {job.role!r}")


def _submitter(
    settings: Settings, store: BlobStore, graph: GraphClient, first: int, count: int
) -> Work:
    """``count`` benchmark users from ``first``, delivered by one Sender as a bulk run would:
    through the send gate and the tenant's pace."""
    from provisioning.clock import utcnow
    from provisioning.convert.bulk import Operation, bulk_id
    from provisioning.graph.sender import Outgoing, Sender, SentBatch
    from provisioning.graph.submit import client_request_id
    from provisioning.jml.ordering import SendGate, new_order

    tag = f"bench{first:07d}"
    order = new_order(utcnow(), tag)
    items = [
        Outgoing(
            Operation(bulk_id("0123456789abcdef", i + 1), f"B{i:07d}", i + 1, bench_user(i)),
            order,
            "bench",
            "joiner",
        )
        for i in range(first, first + count)
    ]
    gate = SendGate.from_settings(store, settings)
    # The state is empty and only this run sends these workers: nothing to look up per batch
    # (a file run seeds its view from the state's index the same way).
    gate.view.seed({})
    sender = Sender(settings, graph, gate)
    statuses: list[int] = []
    accepted: list[int] = []

    def record(batch: SentBatch) -> None:
        if batch.outcome is not None:
            statuses.extend(a.status for a in batch.outcome.attempts)
            if batch.outcome.accepted:
                accepted.append(batch.index)

    async def submit() -> dict[str, Any]:
        delivery = await sender.deliver(
            items,
            request_id=lambda index, part: client_request_id(tag, index, part),
            on_batch=record,
        )
        status = "complete" if delivery.stop is None else delivery.stop[0]
        return {
            "status": status,
            "reason": delivery.stop[1] if delivery.stop else None,
            "requests": delivery.requests,
            "requests_accepted": len(accepted),
            "records_accepted": delivery.accepted,
            "attempts": len(statuses),
            "answered_429": statuses.count(429),
            "other_failures": sum(1 for s in statuses if s not in (202, 429)),
            "pace_waited": round(sender.pace.waited_seconds, 3),
        }

    return submit
