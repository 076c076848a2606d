"""The tenant's pace in storage (provisioning/graph/tenant_pace.py) on Azurite: senders that
share nothing but the storage account keep one window, see each other's 429 penalty and
bucket-full pause, stay within the daily quota, and keep working when storage is slow."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient

from provisioning.graph.pace_book import Paused, QuotaExhausted
from provisioning.graph.tenant_pace import TenantPace, read_book
from provisioning.settings import Settings
from provisioning.storage import BlobStore
from tests.test_pace_book import most_in_window

if TYPE_CHECKING:
    from tests.conftest import Azurite


def pace_settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "rate_limit_requests": 5,
        "rate_limit_window_seconds": 0.5,
        # The margin absorbs the time between a slot and the send (a storage write here).
        "pace_margin_seconds": 0.15,
        **changes,
    }
    return Settings(**values)


async def take(pace: TenantPace, count: int, times: list[float]) -> None:
    for _ in range(count):
        permit = await pace.acquire(max_wait=30)
        times.append(time.time())
        pace.release(permit)


def test_senders_sharing_only_storage_keep_one_window(store: BlobStore) -> None:
    """Three senders, each with its own handle (as three processes have), asking at once: the
    sends they are allowed never put more than 5 in any 0.5 s, yet the window is used."""
    settings = pace_settings()
    times: list[float] = []

    async def run() -> None:
        paces = [TenantPace(store, settings) for _ in range(3)]
        await asyncio.gather(*(take(pace, 10, times) for pace in paces))

    started = time.time()
    asyncio.run(run())
    elapsed = time.time() - started
    assert len(times) == 30
    assert most_in_window(times, 0.5) <= 5
    # 30 sends at 5 per 0.65 s need 5 windows after the first burst: not much more
    assert elapsed < 6 * 0.65 + 1.5, elapsed


class SlowWrites(BlobStore):
    """Azurite, with this handle's first ``slow`` writes returning ``delay`` seconds after they
    were made: a slot reserved "now" comes back late (storage slow for a moment, a busy event
    loop)."""

    def __init__(self, store: BlobStore, delay: float, slow: int = 1) -> None:
        super().__init__(store._service)
        self.delay, self.slow = delay, slow
        self.writes = 0

    def write_json(self, *args: Any, **kwargs: Any) -> str:
        etag = super().write_json(*args, **kwargs)
        self.writes += 1
        if self.writes <= self.slow:
            time.sleep(self.delay)
        return etag


def test_a_slot_reached_late_is_taken_again(store: BlobStore) -> None:
    """One sender's slot write comes back 0.3 s late while two others fill the window: that
    slot is given back and taken again, since sent that late it would share a window with the
    sends after it (the next window is counted from the slot)."""
    settings = pace_settings()
    times: list[float] = []

    async def run() -> None:
        paces = [TenantPace(SlowWrites(store, delay=0.3), settings)]
        paces += [TenantPace(store, settings) for _ in range(2)]
        await asyncio.gather(*(take(pace, 4, times) for pace in paces))

    asyncio.run(run())
    assert len(times) == 12
    assert most_in_window(times, 0.5) <= 5
    assert sum(read_book(store).calls.values()) == 12  # the late slot went back: one call each


def test_slots_reached_late_three_times_in_a_row_fall_back_to_the_local_pace(
    store: BlobStore,
) -> None:
    """Every write of the book comes back late: after three slots given back, the process
    paces itself (PROVISIONING_PACE_FALLBACK_SHARE of the limit) instead of trying forever."""
    settings = pace_settings()
    times: list[float] = []

    async def run() -> TenantPace:
        pace = TenantPace(SlowWrites(store, delay=0.2, slow=1000), settings)
        await take(pace, 2, times)
        return pace

    pace = asyncio.run(run())
    assert pace.fallback_sends == 2
    assert sum(read_book(store).calls.values()) == 0  # every late slot went back


def test_one_senders_429_holds_every_sender(store: BlobStore) -> None:
    settings = pace_settings()

    async def run() -> tuple[Paused, float]:
        first, second = TenantPace(store, settings), TenantPace(store, settings)
        first.penalise(20.0)
        await first.aclose()  # the penalty is in storage
        with pytest.raises(Paused) as caught:  # longer than the sender may wait: a pause
            await second.acquire(max_wait=5.0)
        third = TenantPace(store, settings, priority="interactive")
        started = time.time()
        await third.acquire(max_wait=30.0)  # a sender that may wait: waits it out
        return caught.value, time.time() - started

    paused, waited = asyncio.run(run())
    assert paused.until == pytest.approx(time.time() + 20.0 - waited, abs=2)
    assert waited > 15
    assert len(read_book(store).slots) == 1  # the slot the second could not use went back


def test_a_bucket_full_pause_stops_every_sender_until_it_ends(store: BlobStore) -> None:
    settings = pace_settings()

    async def run() -> Paused:
        first, second = TenantPace(store, settings), TenantPace(store, settings)
        first.pause(600.0, "bucket full")
        await first.aclose()
        with pytest.raises(Paused) as caught:
            await second.acquire()
        return caught.value

    paused = asyncio.run(run())
    assert paused.reason == "bucket full"
    assert paused.until == pytest.approx(time.time() + 600, abs=5)


def test_the_daily_quota_is_shared_and_never_passed(store: BlobStore) -> None:
    settings = pace_settings(rate_limit_requests=100, daily_call_quota=7)
    times: list[float] = []

    async def run() -> int:
        paces = [TenantPace(store, settings) for _ in range(3)]
        refused = 0
        for pace in paces * 3:
            try:
                await take(pace, 1, times)
            except QuotaExhausted:
                refused += 1
        return refused

    refused = asyncio.run(run())
    assert (len(times), refused) == (7, 2)
    assert sum(read_book(store).calls.values()) == 7


def test_interactive_work_goes_before_bulk_work_waiting_for_the_window(store: BlobStore) -> None:
    """The window is full; a bulk sender waits for it without holding a slot, so a change that
    arrives meanwhile takes the next slot and goes first."""
    settings = pace_settings(rate_limit_window_seconds=1.0)
    order: list[str] = []

    async def run() -> None:
        bulk = TenantPace(store, settings, priority="bulk")
        change = TenantPace(store, settings, priority="interactive")
        await take(bulk, 5, [])  # the window is full now

        async def send(pace: TenantPace, name: str, delay: float) -> None:
            await asyncio.sleep(delay)
            await pace.acquire(max_wait=10)
            order.append(name)

        await asyncio.gather(send(bulk, "bulk", 0.0), send(change, "change", 0.2))

    asyncio.run(run())
    assert order == ["change", "bulk"]


def test_slow_storage_falls_back_to_a_share_of_the_limit(azurite: Azurite) -> None:
    """Storage that does not answer (nothing listens where it should be): each send still goes,
    paced by the process alone at PROVISIONING_PACE_FALLBACK_SHARE of the limit."""
    dead = azurite.connection_string.replace(str(azurite.blob_port), "9")
    settings = pace_settings(
        rate_limit_requests=8, pace_storage_timeout_seconds=0.3, pace_fallback_share=0.25
    )
    times: list[float] = []

    async def run() -> TenantPace:
        with BlobStore(BlobServiceClient.from_connection_string(dead)) as slow:
            pace = TenantPace(slow, settings)
            await take(pace, 6, times)
            return pace

    pace = asyncio.run(run())
    assert pace.fallback_sends == 6
    assert most_in_window(times, 0.5) <= 2  # 25 % of 8 per window
