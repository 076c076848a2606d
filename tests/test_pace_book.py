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
