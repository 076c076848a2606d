"""Log entries to sends (``provisioning.reconcile.matching``), first on Microsoft's own log page:
one send can have two entries (a create whose manager was skipped, the update setting it, one
``changeId``), and a worker sent twice within seconds gets a group per send, the first send's
update arriving after the second send's entry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioning.graph.provisioning_logs import LogEntry, entry_of
from provisioning.reconcile.matching import Send, assign, groups_of

SAMPLE = Path(__file__).parent / "data" / "microsoft" / "provisioning-log-sample.json"
TOLERANCE = dt.timedelta(minutes=2)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def sample_entries() -> dict[str, list[LogEntry]]:
    by_worker: dict[str, list[LogEntry]] = {}
    for item in json.loads(SAMPLE.read_text(encoding="utf-8"))["value"]:
        entry = entry_of(item)
        assert entry is not None
        by_worker.setdefault(entry.source_id, []).append(entry)
    return by_worker


def test_microsofts_sample_gives_every_send_its_final_outcome() -> None:
    entries = sample_entries()
    # When the sends were accepted, as the sample's cycles imply: one upload at 20:40, one at
    # 21:40 sent again four seconds later, one at 22:40.
    sends = {
        "1514131211": ["2023-01-03T20:40:44Z"],
        "10015": ["2023-01-03T21:40:46Z", "2023-01-03T21:40:50Z"],
        "10016": ["2023-01-03T21:40:46Z", "2023-01-03T21:40:50Z"],
        "10017": ["2023-01-03T21:40:46Z", "2023-01-03T21:40:50Z"],
        "10018": ["2023-01-03T22:40:47Z"],
        "10019": ["2023-01-03T22:40:47Z"],
        "10020": ["2023-01-03T22:40:47Z"],
    }
    outcome: dict[tuple[str, int], tuple[str, str | None, int, str]] = {}
    for worker, times in sends.items():
        plan = assign(
            [Send((worker, str(i)), at(t)) for i, t in enumerate(times)],
            groups_of(entries[worker]),
            TOLERANCE,
        )
        assert not plan.waiting and not plan.ambiguous
        for (_, index), group in plan.matched.items():
            outcome[(worker, int(index))] = (
                group.status,
                group.manager,
                len(group.entries),
                group.first.action,
            )
    assert outcome == {
        ("1514131211", 0): ("success", None, 1, "create"),
        # The first send of each: created, manager skipped, set by the change's own update
        # seven seconds later, after the second send's entry.
        ("10015", 0): ("success", "set", 2, "create"),
        ("10016", 0): ("success", "set", 2, "create"),
        ("10017", 0): ("success", "set", 2, "create"),
        ("10015", 1): ("success", "set", 1, "update"),
        ("10016", 1): ("success", "set", 1, "update"),
        ("10017", 1): ("success", "set", 1, "update"),
        # 10018's two entries are one send; 10020's manager (10010) never arrived.
        ("10018", 0): ("success", "set", 2, "create"),
        ("10019", 0): ("success", "set", 2, "create"),
        ("10020", 0): ("success", "pending", 1, "create"),
    }


def test_the_skip_keeps_entras_words_and_no_hr_value_is_kept() -> None:
    (entry,) = sample_entries()["10020"]
    assert entry.skipped == ("manager",)
    assert entry.skip_reason is not None and entry.skip_reason.startswith(
        "We were unable to assign 10010 as the manager"
    )
    (group,) = groups_of([entry])
    assert group.manager == "pending" and group.skip_reason == entry.skip_reason


def entry(worker: str, seconds: int, change: str, status: str = "success") -> LogEntry:
    base = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    return LogEntry(
        id=f"{worker}-{change}-{seconds}",
        at=base + dt.timedelta(seconds=seconds),
        source_id=worker,
        action="update",
        status=status,
        change_id=change,
    )


BASE = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def test_a_second_send_whose_entries_are_not_in_yet_waits() -> None:
    sends = [Send(("r", "a"), BASE), Send(("r", "b"), BASE + dt.timedelta(seconds=3))]
    early = assign(sends, groups_of([entry("w", 1, "x")]), TOLERANCE)
    # The one group could be either send's: neither is matched yet.
    assert early.matched == {} and early.waiting == {("r", "a"), ("r", "b")}
    both = assign(sends, groups_of([entry("w", 1, "x"), entry("w", 4, "y")]), TOLERANCE)
    assert {k: g.change_id for k, g in both.matched.items()} == {("r", "a"): "x", ("r", "b"): "y"}


def test_sends_whose_entries_share_a_second_with_different_outcomes_are_ambiguous() -> None:
    sends = [Send(("r", "a"), BASE), Send(("r", "b"), BASE + dt.timedelta(milliseconds=300))]
    groups = groups_of([entry("w", 1, "x"), entry("w", 1, "y", status="failure")])
    plan = assign(sends, groups, TOLERANCE)
    assert plan.matched == {} and set(plan.ambiguous) == {("r", "a"), ("r", "b")}
    # The same outcome twice: which is which does not matter, and both are matched.
    same = assign(sends, groups_of([entry("w", 1, "x"), entry("w", 1, "y")]), TOLERANCE)
    assert set(same.matched) == {("r", "a"), ("r", "b")} and not same.ambiguous


def test_a_group_older_than_the_send_is_never_its_own() -> None:
    send = Send(("r", "a"), BASE + dt.timedelta(minutes=10))
    plan = assign([send], groups_of([entry("w", 1, "old")]), TOLERANCE)
    assert plan.matched == {} and not plan.waiting


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
    lag=st.integers(min_value=0, max_value=5),
)
def test_sends_in_order_each_take_their_own_group(gaps: list[int], lag: int) -> None:
    """Sends at least a second apart, each answered ``lag`` seconds later, in order: every
    send gets its own group, whatever the gaps."""
    moments, now = [], 0
    for gap in gaps:
        now += gap
        moments.append(now)
    sends = [Send(("r", str(i)), BASE + dt.timedelta(seconds=s)) for i, s in enumerate(moments)]
    entries = [entry("w", s + lag, f"c{i}") for i, s in enumerate(moments)]
    plan = assign(sends, groups_of(entries), TOLERANCE)
    assert {k[1]: g.change_id for k, g in plan.matched.items()} == {
        str(i): f"c{i}" for i in range(len(moments))
    }


@pytest.mark.parametrize("status", ["failure", "skipped"])
def test_a_failure_anywhere_in_the_group_is_the_groups(status: str) -> None:
    (group,) = groups_of([entry("w", 1, "x"), entry("w", 3, "x", status=status)])
    assert group.status == status
