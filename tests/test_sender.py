"""The one sender (provisioning/graph/sender.py) over real HTTP to the Graph emulator, with the
send gate on Azurite: one pace for every sender of the process, each batch handed to the
caller's ``on_batch``, one stop rule, and the caller's lease kept through every wait."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.graph.client import GraphClient
from provisioning.graph.sender import Outgoing, Sender, SentBatch
from provisioning.jml.ordering import SendGate, new_order
from provisioning.settings import Settings
from provisioning.storage import BlobStore
from tests.graphs import emulator_settings, scim_operations

if TYPE_CHECKING:
    pass

pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ORDER = new_order(dt.datetime(2026, 12, 2, tzinfo=dt.UTC), "test")


def settings_for(emu: GraphEmulator, **changes: Any) -> Settings:
    return emulator_settings(emu, **{"lease_seconds": 15, "batch_size": 1, **changes})


def outgoing(prefix: str, count: int) -> list[Outgoing]:
    return [Outgoing(op, ORDER, "hr", "joiner") for op in scim_operations(count, prefix, digits=4)]


def test_every_sender_draws_from_the_tenant_pace(emu: GraphEmulator, store: BlobStore) -> None:
    """Two senders one after the other (a release, then a flush in the same pass) share the
    window kept in storage: the second waits for room instead of starting a window of its own,
    so Entra's limit is never exceeded and no request draws a 429."""
    emu.set_faults(rate_limit=[3, 2.0])
    settings = settings_for(emu, rate_limit_requests=3, rate_limit_window_seconds=2.0)

    async def run() -> tuple[int, int, float]:
        client = GraphClient.from_settings(settings)
        try:
            totals, waited = [], 0.0
            for name in ("release", "flush"):
                gate = SendGate.from_settings(store, settings)
                sender = Sender(settings, client, gate)
                delivery = await sender.deliver(
                    outgoing(name.upper()[:3], 3),
                    request_id=lambda index, part, name=name: f"{name}-{index}-{part}",
                )
                totals.append(delivery.accepted)
                waited += sender.pace.waited_seconds
            return totals[0], totals[1], waited
        finally:
            await client.close()

    first, second, waited = asyncio.run(run())
    uploads = emu.uploads()
    assert (first, second) == (3, 3)
    assert [u["status"] for u in uploads] == [202] * 6  # not one 429, not one retry
    assert waited > 1.0  # the second sender waited for the first one's window


def test_each_batch_goes_to_on_batch_and_the_delivery_adds_them_up(
    emu: GraphEmulator, store: BlobStore
) -> None:
    settings = settings_for(emu, batch_size=2, rate_limit_requests=100)
    seen: list[SentBatch] = []
    alive: list[int] = []

    async def run() -> Any:
        client = GraphClient.from_settings(settings)
        try:
            sender = Sender(
                settings,
                client,
                SendGate.from_settings(store, settings),
                keep_alive=lambda: alive.append(len(seen)),
            )
            return await sender.deliver(
                outgoing("ONB", 5),
                request_id=lambda index, part: f"batch-{index}-{part}",
                on_batch=seen.append,
                first_index=7,
            )
        finally:
            await client.close()

    delivery = asyncio.run(run())
    assert [batch.index for batch in seen] == [7, 8, 9]
    assert [len(batch.accepted) for batch in seen] == [2, 2, 1]
    assert (delivery.requests, delivery.sent, delivery.accepted, delivery.stop) == (3, 5, 5, None)
    # The lease is renewed before and after every batch, and on_batch sees each batch once.
    assert alive == [0, 0, 1, 1, 2, 2]
    assert [u["client_request_id"] for u in emu.uploads()] == [
        "batch-7-0",
        "batch-8-0",
        "batch-9-0",
    ]


def test_a_refused_app_stops_the_delivery_after_that_batch(
    emu: GraphEmulator, store: BlobStore
) -> None:
    """The one stop rule: a 403 refuses the app, so no further batch is sent; the stopped batch
    still reaches on_batch (its caller records it) and nothing is counted as accepted."""
    emu.set_faults(status_sequence=[202, 403])
    settings = settings_for(emu, rate_limit_requests=100)
    seen: list[SentBatch] = []

    async def run() -> Any:
        client = GraphClient.from_settings(settings)
        try:
            sender = Sender(settings, client, SendGate.from_settings(store, settings))
            return await sender.deliver(
                outgoing("STP", 4),
                request_id=lambda index, part: f"stop-{index}-{part}",
                on_batch=seen.append,
            )
        finally:
            await client.close()

    delivery = asyncio.run(run())
    assert [len(batch.accepted) for batch in seen] == [1, 0]
    assert seen[-1].stop is not None and seen[-1].stop[0] == "failed"
    assert delivery.stop == seen[-1].stop
    assert (delivery.sent, delivery.accepted) == (2, 1)
    assert len(emu.uploads()) == 2  # the two batches after the stop were never sent


def test_the_pace_waits_through_the_callers_sleep(emu: GraphEmulator, store: BlobStore) -> None:
    """A wait for the window sleeps through the caller's sleep (the one that renews its lease),
    never through a sleep of its own that would let the lease lapse."""
    settings = settings_for(emu, rate_limit_requests=1, rate_limit_window_seconds=0.5)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(seconds)

    async def run() -> Any:
        client = GraphClient.from_settings(settings)
        try:
            gate = SendGate.from_settings(store, settings, sleep=sleep)
            sender = Sender(settings, client, gate, sleep=sleep)
            return await sender.deliver(
                outgoing("SLP", 3), request_id=lambda index, part: f"slp-{index}-{part}"
            )
        finally:
            await client.close()

    delivery = asyncio.run(run())
    assert delivery.accepted == 3
    # Two waits for the window (each up to half a second), both through ``sleep``.
    assert len([seconds for seconds in slept if seconds > 0.1]) >= 2
