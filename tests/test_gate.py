"""The send gate against a real Azurite: two senders (each with its own view, as two processes
would have) see each other's records, in order, and never hold the gate at once."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from provisioning.jml import ordering
from provisioning.jml.ordering import GateBusy, OrderView, SendGate, new_order
from provisioning.jml.state import WorkerState
from provisioning.settings import Settings
from provisioning.storage import BlobStore

if TYPE_CHECKING:
    pass

FEED = "employees"


def sender(store: BlobStore, *, max_wait: float = 30) -> SendGate:
    return SendGate.from_settings(store, Settings(lease_seconds=15, max_wait_seconds=max_wait))


def change(ext: str, order: str, fp: str | None = "fp") -> tuple[object, ...]:
    return (ext, fp, True, FEED, order, None if fp is None else {"externalId": ext})


def test_orders_sort_by_time_then_tag() -> None:
    import datetime as dt

    early = dt.datetime(2026, 12, 1, 9, 0, 0, 1, tzinfo=dt.UTC)
    later = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert new_order(early, "b") > new_order(later, "a")  # 08:00 UTC is earlier than 09:00
    assert new_order(early, "a") < new_order(early, "b")


def test_a_sender_sees_what_another_accepted_and_never_overtakes_it(store: BlobStore) -> None:
    async def run() -> None:
        first, second = sender(store), sender(store)
        async with first.holding():
            turn = await first.turn(["X"])
            turn.publish("accepted", [change("X", "o5")])  # type: ignore[list-item]
        async with second.holding():
            turn = await second.turn(["X", "Y"])
            assert "X" in turn.touched
            assert turn.newer("X", "o3") and not turn.newer("X", "o5")
            assert not turn.newer("X", "o7") and not turn.newer("Y", "o1")

    asyncio.run(run())


def test_a_full_feed_watermark_supersedes_older_data_but_not_resends(store: BlobStore) -> None:
    async def run() -> None:
        first, second = sender(store), sender(store)
        async with first.holding():
            turn = await first.turn()
            turn.publish("accepted", [change("X", "o1")])  # type: ignore[list-item]
            turn.publish("restated", [], watermark=(FEED, "o9"))
        async with second.holding():
            turn = await second.turn(["X"])
            assert turn.watermark(FEED) == "o9"
            assert turn.newer("X", "o5")  # an HTTP change older than the full file
            assert not turn.newer("X", "o1", resend=True)  # the state's record, restated

    asyncio.run(run())


def test_a_request_left_sending_by_a_dead_sender_counts_as_applied(store: BlobStore) -> None:
    async def run() -> None:
        dead = sender(store)
        turn = await dead.turn(["X"])
        turn.publish("sending", [change("X", "o8", fp=None)])  # type: ignore[list-item]
        dead.release()  # as the lease of a killed process expires
        later = sender(store)
        async with later.holding():
            turn = await later.turn(["X"])
            assert turn.newer("X", "o2")

    asyncio.run(run())
    state = WorkerState(store)
    state.fold()
    assert state.index()["X"].fingerprint is None and state.index()["X"].order == "o8"


def test_one_holder_at_a_time_and_a_bounded_wait(store: BlobStore) -> None:
    async def run() -> None:
        holder, waiter = sender(store), sender(store, max_wait=1)
        await holder.turn()
        # Within its slice the holder keeps the gate without taking it again.
        lease = holder._lease
        await holder.turn()
        assert holder._lease is lease
        with pytest.raises(GateBusy):
            await waiter.turn()
        holder.release()
        async with waiter.holding():
            await waiter.turn()

    asyncio.run(run())


def test_a_view_far_behind_reads_the_shards_again(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ordering, "MAX_CATCH_UP", 2)

    async def run() -> None:
        behind = SendGate(
            store, OrderView(WorkerState(store), 0), lease_seconds=15, max_wait_seconds=30
        )
        ahead = sender(store)
        async with ahead.holding():
            turn = await ahead.turn()
            for n in range(4):
                turn.publish("accepted", [change(f"W{n}", f"o{n}")])  # type: ignore[list-item]
        WorkerState(store).fold()
        async with behind.holding():
            turn = await behind.turn(["W3"])
            assert ordering.ALL in turn.touched
            assert turn.newer("W3", "o2") and not turn.newer("W3", "o3")

    asyncio.run(run())


def holding_loop(gate: SendGate, stop: asyncio.Event, turns: list[float]) -> Any:
    """A sender with endless work: a turn, a request's worth of time, a pause, again."""

    async def run() -> None:
        async with gate.holding():
            while not stop.is_set():
                await gate.turn()
                turns.append(time.monotonic())
                await asyncio.sleep(0.03)  # the POST
                gate.pause()

    return run()


def test_an_interactive_waiter_gets_the_gate_after_the_current_request(store: BlobStore) -> None:
    """A large file holds the gate request after request; an HTTP change waiting for it gets it
    after the file's current request, not at the end of the file's slice."""

    async def run() -> float:
        stop = asyncio.Event()
        busy = SendGate.from_settings(store, Settings(lease_seconds=15))
        busy._slice = 30.0  # a slice far longer than the wait allowed below
        task = asyncio.create_task(holding_loop(busy, stop, []))
        await asyncio.sleep(0.3)
        change = SendGate(
            store,
            busy.view,
            lease_seconds=15,
            max_wait_seconds=5,
            interactive=True,
        )
        begun = time.monotonic()
        async with change.holding():
            await change.turn()
            waited = time.monotonic() - begun
        stop.set()
        await task
        return waited

    assert asyncio.run(run()) < 1.0


def test_a_bulk_waiter_is_not_starved_by_two_others_taking_turns(store: BlobStore) -> None:
    """Two senders with endless work hand the gate to each other; a third, waiting, gets a
    turn within a slice or two (it knocks at every look, so each new holder sees it)."""

    async def run() -> float:
        stop = asyncio.Event()
        settings = Settings(lease_seconds=15, max_wait_seconds=10)
        busy = [SendGate.from_settings(store, settings) for _ in range(2)]
        for gate in busy:
            gate._slice = 0.3
        tasks = [asyncio.create_task(holding_loop(g, stop, [])) for g in busy]
        await asyncio.sleep(0.5)
        waiter = SendGate.from_settings(store, settings)
        begun = time.monotonic()
        async with waiter.holding():
            await waiter.turn()
            waited = time.monotonic() - begun
        stop.set()
        await asyncio.gather(*tasks)
        return waited

    assert asyncio.run(run()) < 2.0
