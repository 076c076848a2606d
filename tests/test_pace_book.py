"""The tenant's send schedule (provisioning/graph/pace_book.py), pure: whatever the order and
timing of reservations, no window ever holds more than the limit, a penalty or pause holds
every slot after it, and the quota is never passed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.graph.pace_book import (
    BUCKET,
    DAY,
    Limits,
    PaceBook,
    Paused,
    QuotaExhausted,
    give_back,
    hold,
    pause,
    penalise,
    reserve,
    schedule,
    used_today,
)

LIMITS = Limits(requests=4, window=1.0, margin=0.1, quota=1_000)


def most_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - span:
            start += 1
        best = max(best, end - start + 1)
    return best


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 0.7), st.sampled_from(["interactive", "bulk"])), max_size=60
    )
)
def test_no_window_ever_holds_more_than_the_limit(steps: list[tuple[float, str]]) -> None:
    """Senders asking at any moments, interactive (any slot) or bulk (only a slot free now):
    the slots handed out never put more than ``requests`` in any window of ``window + margin``
    seconds, and each slot is at or after the moment it was asked for."""
    book, now, handed = PaceBook(), 1_000.0, []
    for pause_before, priority in steps:
        now += pause_before
        horizon = math.inf if priority == "interactive" else 0.0
        slot = reserve(book, now, LIMITS, horizon)
        if slot is not None:
            assert slot >= now
            handed.append(slot)
        else:
            assert priority == "bulk"
    assert most_in_window(handed, LIMITS.span) <= LIMITS.requests
    assert used_today(book, now + LIMITS.span) == len(handed)


def test_bulk_waits_without_reserving_while_interactive_takes_the_next_slot() -> None:
    book, now = PaceBook(), 100.0
    for _ in range(LIMITS.requests):
        assert reserve(book, now, LIMITS, 0.0) == now
    assert reserve(book, now, LIMITS, 0.0) is None  # bulk: the window is full, nothing taken
    interactive = reserve(book, now, LIMITS)
    assert interactive == pytest.approx(now + LIMITS.span)
    # the bulk sender, back when the window moved, comes after the change
    later = now + LIMITS.span
    assert reserve(book, later, LIMITS, 0.0) in (None, later)
    assert len(book.slots) in (LIMITS.requests + 1, LIMITS.requests + 2)


def test_a_penalty_holds_every_later_slot() -> None:
    book = PaceBook()
    penalise(book, 10.0, 30.0)
    assert reserve(book, 11.0, LIMITS) == 40.0
    assert reserve(book, 11.0, LIMITS, 0.0) is None  # bulk does not reserve during it
    penalise(book, 12.0, math.inf)  # a nonsense Retry-After changes nothing
    penalise(book, 12.0, -5)
    assert book.blocked_until == 40.0


def test_a_pause_stops_everyone_until_it_ends_and_the_longer_pause_wins() -> None:
    book = PaceBook()
    pause(book, 0.0, 600.0, "bucket full")
    pause(book, 10.0, 60.0, "shorter")  # does not shorten it
    with pytest.raises(Paused) as caught:
        reserve(book, 599.0, LIMITS)
    assert (caught.value.until, caught.value.reason) == (600.0, "bucket full")
    assert hold(book, 599.0, LIMITS) == (600.0, "bucket full")
    assert reserve(book, 600.0, LIMITS) == 600.0
    assert hold(book, 600.0, LIMITS) is None


def test_the_quota_is_never_passed_and_frees_24_hours_after_its_bucket() -> None:
    limits = Limits(requests=1_000, window=1.0, margin=0.0, quota=5)
    book, start = PaceBook(), 10 * BUCKET + 30.0
    taken = [reserve(book, start + i, limits) for i in range(5)]
    assert None not in taken
    with pytest.raises(QuotaExhausted) as caught:
        reserve(book, start + 10, limits)
    frees = 11 * BUCKET + DAY  # the bucket ends at 11 * BUCKET; it counts 24 hours after
    assert caught.value.until == frees
    assert hold(book, start + 10, limits) is not None
    with pytest.raises(QuotaExhausted):
        reserve(book, frees - 1, limits)
    assert reserve(book, frees, limits) == frees


def test_a_slot_given_back_leaves_the_schedule_and_the_quota() -> None:
    book = PaceBook()
    first = reserve(book, 5.0, LIMITS)
    second = reserve(book, 6.0, LIMITS)
    assert first is not None and second is not None
    give_back(book, first)
    assert book.slots == [second] and used_today(book, 6.0) == 1
    give_back(book, first)  # a slot no longer in the book changes nothing
    assert book.slots == [second] and used_today(book, 6.0) == 1


def test_the_book_forgets_what_no_window_or_quota_needs() -> None:
    book = PaceBook()
    for i in range(3):
        reserve(book, float(i), LIMITS)
    reserve(book, DAY * 2, LIMITS)
    assert book.slots == [DAY * 2]
    assert list(book.calls) == [str(int(DAY * 2 // BUCKET) * BUCKET)]


def test_a_send_bigger_than_the_quota_is_spread_over_days_in_its_order() -> None:
    limits = Limits(requests=40, window=5.0, margin=0.25, quota=100)
    now = 1_000 * BUCKET + 10.0
    book = PaceBook(calls={str(int(now // BUCKET) * BUCKET - 6 * BUCKET): 30})  # 70 left
    parts = schedule(book, now, limits, [("joiners", 70), ("leavers", 50), ("movers", 160)])
    joiners, leavers, movers = parts
    # the joiners take what is left today
    assert (joiners.first, joiners.last) == (now, now)
    # the 30 calls of an hour ago come back first, then today's own 70, the next day
    earlier_frees = int(now // BUCKET) * BUCKET - 5 * BUCKET + DAY
    own_frees = int(now // BUCKET) * BUCKET + BUCKET + DAY
    assert (leavers.first, leavers.last) == (earlier_frees, own_frees)
    # the movers need the rest of day 2 and two more days
    assert movers.first == own_frees and movers.last > own_frees + DAY
    assert [p.name for p in parts] == ["joiners", "leavers", "movers"]


@given(
    quota=st.integers(1, 50),
    used=st.integers(0, 60),
    parts=st.lists(st.integers(0, 120), min_size=1, max_size=4),
)
def test_a_schedule_never_spends_more_than_the_quota_in_any_day(
    quota: int, used: int, parts: list[int]
) -> None:
    """Replaying the schedule request by request: no 24 hours ever hold more calls than the
    quota (the calls counted before included), and parts never go back in time."""
    limits = Limits(requests=1_000, window=1.0, margin=0.0, quota=quota)
    now = 500 * BUCKET + 1.0
    book = PaceBook(calls={str(499 * BUCKET): min(used, quota)})
    planned = schedule(book, now, limits, [(f"p{i}", n) for i, n in enumerate(parts)])
    firsts = [p.first for p in planned if p.requests]
    assert firsts == sorted(firsts)
    # every part's requests really fit: reserving them at the planned times never fails
    for part in planned:
        for _ in range(part.requests):
            at = max(part.first, now)
            while True:
                try:
                    reserve(book, at, limits)
                    break
                except QuotaExhausted as exc:
                    assert exc.until <= part.last, (exc.until, part)
                    at = exc.until


def test_a_slot_from_a_clock_far_ahead_does_not_hold_everyone() -> None:
    """A writer whose clock ran ahead (or a test clock): its slot is forgotten, not waited for."""
    book = PaceBook()
    reserve(book, 10 * DAY, LIMITS)
    assert reserve(book, 1_000.0, LIMITS) == 1_000.0
    assert book.slots == [1_000.0]
