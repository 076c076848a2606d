"""The joiner / mover / leaver planner (pure: no storage, no Graph)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from provisioning.jml.lifecycle import (
    FeedMode,
    Held,
    Known,
    Plan,
    Planner,
    Policy,
    fingerprint,
    today_in,
)

TODAY = dt.date(2024, 6, 10)
FEED = "hr-main"
OTHER_FEED = "contractors"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

Row = tuple[dict[str, Any], dict[str, str]]


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def user(
    external_id: str, *, active: bool = True, manager: str | None = None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.example",
        "displayName": f"Worker {external_id}",
        "active": active,
    }
    if manager is not None:
        data[ENTERPRISE] = {"manager": {"value": manager}}
    data.update(extra)
    return data


def row(data: dict[str, Any], *, hire: str | None = None, leave: str | None = None) -> Row:
    dates = {}
    if hire is not None:
        dates["hire_date"] = hire
    if leave is not None:
        dates["termination_date"] = leave
    return data, dates


def known(data: dict[str, Any], *, feed: str = FEED, active: bool | None = None) -> Known:
    """What the state remembers after Entra accepted ``data``."""
    return Known(fingerprint(data), data.get("active", True) if active is None else active, feed)


def plan_of(
    rows: Iterable[Row | dict[str, Any]],
    state: Mapping[str, Known] | None = None,
    held: Iterable[Held] = (),
    *,
    mode: FeedMode = "delta",
    **policy: Any,
) -> Plan:
    planner = Planner(
        state or {},
        held,
        Policy(feed=FEED, mode=mode, today=TODAY, **policy),
    )
    for line, item in enumerate(rows, start=2):
        data, dates = item if isinstance(item, tuple) else (item, {})
        planner.add(data["externalId"], line, data, dates)
    return planner.finish()


# --- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_ignores_key_order() -> None:
    one = {"a": 1, "b": {"x": 1, "y": [1, 2]}, "active": True}
    other = {"active": True, "b": {"y": [1, 2], "x": 1}, "a": 1}
    assert fingerprint(one) == fingerprint(other)
    assert fingerprint(user("E1")) == fingerprint(dict(reversed(list(user("E1").items()))))


@pytest.mark.parametrize(
    "changed",
    [
        {"displayName": "Worker E1 (renamed)"},
        {"active": False},
        {"active": "True"},  # a type change is a change
        {"userName": "e1@contoso.example "},
        {ENTERPRISE: {"manager": {"value": "M2"}}},
        {"title": None},  # an added key, even null
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]},
    ],
)
def test_fingerprint_changes_with_any_value(changed: dict[str, Any]) -> None:
    base = user("E1", manager="M1")
    assert fingerprint({**base, **changed}) != fingerprint(base)


def test_fingerprint_list_order_matters_and_is_deterministic() -> None:
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})
    assert fingerprint(user("E1")) == fingerprint(user("E1"))
    assert len(fingerprint(user("E1"))) == 32  # 16-byte digest, hex


# --- joiner / unchanged / mover / rehire / leaver ------------------------------------------


def test_unknown_worker_is_a_joiner_sent_as_mapped() -> None:
    plan = plan_of([user("E1")])
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active, decision.line, decision.wave) == (
        "joiner",
        None,
        2,
        0,
    )
    assert plan.sends("E1") is decision
    assert plan.sends("nobody") is None
    assert plan.counts["joiner"] == 1


def test_same_fingerprint_is_unchanged_and_not_sent() -> None:
    data = user("E1")
    plan = plan_of([dict(reversed(list(data.items())))], {"E1": known(data)})
    assert plan.decisions["E1"].action == "unchanged"
    assert plan.sends("E1") is None
    assert plan.counts["unchanged"] == 1
    assert plan.hold == [] and plan.absent_leavers == [] and plan.held_for_approval == []


def test_changed_record_is_a_mover() -> None:
    plan = plan_of([user("E1", title="Lead")], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("mover", None)
    assert plan.sends("E1") is decision


def test_changed_inactive_worker_is_a_mover() -> None:
    gone = user("E1", active=False)
    plan = plan_of([user("E1", active=False, title="x")], {"E1": known(gone)})
    assert plan.decisions["E1"].action == "mover"


def test_full_send_sends_unchanged_workers_as_movers() -> None:
    same, changed = user("E1"), user("E2")
    state = {"E1": known(same), "E2": known(user("E2", title="old"))}
    plan = plan_of([same, changed, user("E3")], state, full_send=True)
    assert {k: d.action for k, d in plan.decisions.items()} == {
        "E1": "mover",
        "E2": "mover",
        "E3": "joiner",
    }
    assert all(plan.sends(k) is not None for k in ("E1", "E2", "E3"))
    assert plan.counts["unchanged"] == 0


def test_known_inactive_worker_active_again_is_a_rehire() -> None:
    plan = plan_of([user("E1")], {"E1": known(user("E1", active=False))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("rehire", None)
    assert plan.sends("E1") is decision
    assert plan.counts["rehire"] == 1


def test_known_active_worker_now_inactive_is_a_leaver() -> None:
    plan = plan_of([user("E1", active=False)], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("leaver", None)
    assert plan.sends("E1") is decision
    assert plan.counts["leaver"] == 1
    assert plan.held_for_approval == []


def test_missing_active_attribute_means_active() -> None:
    data = user("E1")
    del data["active"]
    plan = plan_of([data], {"E1": known(user("E1", active=False), active=False)})
    assert plan.decisions["E1"].action == "rehire"


# --- termination date ----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0, -1, -400])
def test_termination_date_today_or_past_forces_a_leaver(offset: int) -> None:
    data = user("E1")  # HR still says active
    plan = plan_of([row(data, leave=day(offset))], {"E1": known(data)})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("leaver", False)
    assert plan.sends("E1") is decision
    assert plan.hold == []


def test_termination_date_reached_is_stable_once_sent() -> None:
    """After the forced disable was accepted, the same row is unchanged, not a leaver again."""
    data = user("E1")
    state = {"E1": known({**data, "active": False})}
    plan = plan_of([row(data, leave=day(-1))], state)
    assert plan.decisions["E1"].action == "unchanged"


def test_termination_date_past_and_hr_inactive_is_a_plain_leaver() -> None:
    plan = plan_of([row(user("E1", active=False), leave=day(-3))], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("leaver", None)


def test_future_termination_date_holds_the_leaver_until_that_date() -> None:
    data = user("E1", title="Lead")
    plan = plan_of([row(data, leave=day(20))], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("mover", None)  # still active until then
    assert plan.sends("E1") is decision
    assert plan.hold == [Held("E1", "leaver", day(20), FEED)]
    assert plan.hold[0].record == {**data, "active": False}
    assert plan.counts["held"] == 1
    assert plan.counts["leaver"] == 0


def test_future_termination_of_unchanged_worker_holds_without_sending() -> None:
    data = user("E1")
    plan = plan_of([row(data, leave=day(1))], {"E1": known(data)})
    assert plan.decisions["E1"].action == "unchanged"
    assert [(h.kind, h.due) for h in plan.hold] == [("leaver", day(1))]


def test_hr_inactive_worker_with_future_termination_stays_active_until_then() -> None:
    data = user("E1", active=False)
    # A joiner: sent now as active, the disable held for the date.
    plan = plan_of([row(data, leave=day(5))])
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("joiner", True)
    assert plan.sends("E1") is decision
    assert plan.hold == [Held("E1", "leaver", day(5), FEED)]
    assert plan.hold[0].record == {**data, "active": False}

    # A known active worker: not a leaver yet; the fingerprint is that of the active record.
    plan = plan_of([row(data, leave=day(5))], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("unchanged", True)
    assert plan.sends("E1") is None
    assert [h.kind for h in plan.hold] == ["leaver"]

    changed = user("E1", active=False, title="Leaving")
    plan = plan_of([row(changed, leave=day(5))], {"E1": known(user("E1"))})
    decision = plan.decisions["E1"]
    assert (decision.action, decision.active) == ("mover", True)
    assert plan.sends("E1") is decision


# --- hire date and look-ahead --------------------------------------------------------------


def test_hire_date_beyond_lookahead_holds_the_joiner() -> None:
    data = user("E1")
    plan = plan_of([row(data, hire=day(30))])
    decision = plan.decisions["E1"]
    assert decision.action == "held"
    assert day(16) in decision.reason
    assert plan.sends("E1") is None
    assert plan.hold == [Held("E1", "joiner", day(16), FEED)]  # hire - 14 days
    assert plan.hold[0].record == data
    assert plan.counts == {
        "joiner": 0,
        "mover": 0,
        "rehire": 0,
        "leaver": 0,
        "unchanged": 0,
        "skipped": 0,
        "conflict": 0,
        "held": 1,
        "held_for_approval": 0,
        "superseded": 0,
        "ownership_changes": 0,
    }


@pytest.mark.parametrize("offset", [-30, 0, 1, 14])
def test_hire_date_within_lookahead_is_sent_now(offset: int) -> None:
    plan = plan_of([row(user("E1"), hire=day(offset))])
    assert plan.decisions["E1"].action == "joiner"
    assert plan.sends("E1") is not None
    assert plan.hold == []


def test_hire_date_one_day_beyond_lookahead_is_due_tomorrow() -> None:
    plan = plan_of([row(user("E1"), hire=day(15))])
    assert plan.hold == [Held("E1", "joiner", day(1), FEED)]


def test_lookahead_is_configurable() -> None:
    plan = plan_of([row(user("E1"), hire=day(30))], lookahead_days=30)
    assert plan.decisions["E1"].action == "joiner"
    plan = plan_of([row(user("E1"), hire=day(30))], lookahead_days=0)
    assert plan.hold == [Held("E1", "joiner", day(30), FEED)]


def test_rehire_with_future_hire_date_is_held() -> None:
    plan = plan_of([row(user("E1"), hire=day(40))], {"E1": known(user("E1", active=False))})
    decision = plan.decisions["E1"]
    assert decision.action == "held"
    assert decision.reason.startswith("rehire")
    assert plan.hold == [Held("E1", "joiner", day(26), FEED)]
    assert plan.sends("E1") is None


def test_future_hire_date_of_a_known_active_worker_does_not_hold() -> None:
    plan = plan_of([row(user("E1", title="x"), hire=day(40))], {"E1": known(user("E1"))})
    assert plan.decisions["E1"].action == "mover"
    assert plan.hold == []


def test_far_future_joiner_that_also_leaves_later_holds_both() -> None:
    data = user("E1", active=False)
    plan = plan_of([row(data, hire=day(30), leave=day(60))])
    assert plan.decisions["E1"].action == "held"
    joiner = next(h for h in plan.hold if h.kind == "joiner")
    leaver = next(h for h in plan.hold if h.kind == "leaver")
    assert (joiner.due, joiner.record) == (day(16), {**data, "active": True})
    assert (leaver.due, leaver.record) == (day(60), {**data, "active": False})


# --- full feeds: absent workers ------------------------------------------------------------


def test_full_feed_absent_active_worker_of_this_feed_is_a_leaver() -> None:
    state = {
        "E1": known(user("E1")),
        "GONE2": known(user("GONE2")),
        "GONE1": known(user("GONE1")),
        "OTHER": known(user("OTHER"), feed=OTHER_FEED),
        "LEFT": known(user("LEFT", active=False)),
    }
    plan = plan_of([user("E1")], state, mode="full")
    assert plan.absent_leavers == ["GONE1", "GONE2"]
    assert plan.counts["leaver"] == 2
    assert plan.sends("GONE1") is None  # not in the file: the caller sends the stored record


def test_delta_feed_never_makes_absent_leavers() -> None:
    state = {"E1": known(user("E1")), "GONE": known(user("GONE"))}
    plan = plan_of([user("E1")], state, mode="delta")
    assert plan.absent_leavers == []
    assert plan.counts["leaver"] == 0


def test_file_without_valid_rows_never_makes_leavers() -> None:
    state = {f"E{i}": known(user(f"E{i}")) for i in range(100)}
    held = [Held("E1", "leaver", day(3), FEED)]
    plan = plan_of([], state, held, mode="full")
    assert plan.valid_rows == 0
    assert plan.absent_leavers == []
    assert plan.held_for_approval == []
    assert plan.cancel == []
    assert plan.counts["leaver"] == 0


def test_restated_worker_is_not_absent() -> None:
    data = user("E1", active=False)
    plan = plan_of([data], {"E1": known(user("E1"))}, mode="full")
    assert plan.absent_leavers == []
    assert plan.decisions["E1"].action == "leaver"
    assert plan.counts["leaver"] == 1


# --- the safety threshold ------------------------------------------------------------------


def _population(size: int, feed: str = FEED, prefix: str = "P") -> dict[str, Known]:
    return {f"{prefix}{i:05d}": known(user(f"{prefix}{i:05d}"), feed=feed) for i in range(size)}


def _leaver_plan(population: int, leavers: int, **policy: Any) -> Plan:
    state = _population(population)
    ids = sorted(state)
    rows: list[Row | dict[str, Any]] = [user(ext, active=False) for ext in ids[:leavers]]
    rows.append(user("NEW"))
    rows.append(user(ids[-1], title="moved"))
    return plan_of(rows, state, **policy)


def test_too_many_leavers_are_held_for_approval() -> None:
    plan = _leaver_plan(1000, 60)
    leavers = sorted(ext for ext, d in plan.decisions.items() if d.action == "leaver")
    assert len(leavers) == 60
    assert plan.threshold == 50
    assert sorted(plan.held_for_approval) == leavers
    assert all(plan.sends(ext) is None for ext in leavers)
    assert plan.sends("NEW") is not None  # joiners and movers still go
    assert plan.decisions["P00999"].action == "mover"
    assert plan.sends("P00999") is not None
    assert plan.counts["held_for_approval"] == 60
    assert plan.counts["leaver"] == 60


@pytest.mark.parametrize("leavers", [40, 50])
def test_leavers_up_to_the_threshold_are_sent(leavers: int) -> None:
    plan = _leaver_plan(1000, leavers)
    assert plan.threshold == 50
    assert plan.held_for_approval == []
    sent = [ext for ext, d in plan.decisions.items() if d.action == "leaver"]
    assert len(sent) == leavers
    assert all(plan.sends(ext) is not None for ext in sent)


def test_threshold_is_five_percent_of_a_large_population() -> None:
    assert _leaver_plan(2000, 100).held_for_approval == []
    plan = _leaver_plan(2000, 101)
    assert plan.threshold == 100
    assert len(plan.held_for_approval) == 101


def test_threshold_counts_only_active_workers_of_this_feed() -> None:
    state = {
        **_population(2000),
        **_population(3000, feed=OTHER_FEED, prefix="O"),
        **{f"X{i}": known(user(f"X{i}", active=False)) for i in range(1000)},
    }
    plan = plan_of([user("NEW")], state)
    assert plan.threshold == 100
    assert plan_of([user("NEW")], _population(10)).threshold == 50  # the floor


def test_threshold_is_configurable() -> None:
    plan = _leaver_plan(1000, 11, threshold_count=10, threshold_percent=1.0)
    assert plan.threshold == 10
    assert len(plan.held_for_approval) == 11


def test_threshold_counts_absent_and_restated_leavers_together() -> None:
    state = _population(1000)
    ids = sorted(state)
    # Full file: 30 say inactive, 30 are missing, the rest unchanged.
    rows: list[Row | dict[str, Any]] = [user(ext, active=False) for ext in ids[:30]]
    rows += [user(ext) for ext in ids[60:]]
    plan = plan_of(rows, state, mode="full")
    assert len(plan.absent_leavers) == 30
    assert sorted(plan.held_for_approval) == ids[:60]
    assert all(plan.sends(ext) is None for ext in ids[:30])
    assert plan.counts["leaver"] == 60


def test_forced_leavers_by_termination_date_count_for_the_threshold() -> None:
    state = _population(1000)
    ids = sorted(state)
    plan = plan_of([row(user(ext), leave=day(0)) for ext in ids[:51]], state)
    assert len(plan.held_for_approval) == 51
    assert plan.sends(ids[0]) is None


# --- held changes restated or gone ---------------------------------------------------------


def test_restated_worker_cancels_its_held_change() -> None:
    old = Held("E1", "joiner", day(5), FEED, user("E1"))
    plan = plan_of([row(user("E1"), hire=day(3))], held=[old])
    assert plan.cancel == [old]
    assert plan.hold == []
    assert plan.decisions["E1"].action == "joiner"


def test_restated_held_joiner_is_replaced_with_the_new_date() -> None:
    old = Held("E1", "joiner", day(5), FEED, user("E1"))
    new_data = user("E1", title="New title")
    plan = plan_of([row(new_data, hire=day(50))], held=[old])
    assert plan.cancel == [old]
    assert plan.hold == [Held("E1", "joiner", day(36), FEED)]
    assert plan.hold[0].record == new_data


def test_withdrawn_termination_cancels_the_held_leaver() -> None:
    data = user("E1")
    old = Held("E1", "leaver", day(5), FEED, {**data, "active": False})
    plan = plan_of([data], {"E1": known(data)}, [old])
    assert plan.cancel == [old]
    assert plan.hold == []
    assert plan.decisions["E1"].action == "unchanged"


def test_restated_worker_cancels_held_changes_of_both_kinds() -> None:
    held = [Held("E1", "joiner", day(2), FEED), Held("E1", "leaver", day(9), FEED)]
    plan = plan_of([user("E1")], held=held)
    assert sorted(plan.cancel, key=lambda h: h.kind) == held


def test_full_feed_cancels_held_changes_of_absent_workers_of_this_feed() -> None:
    gone = Held("GONE", "joiner", day(5), FEED)
    gone_leaver = Held("GONE2", "leaver", day(5), FEED)
    other = Held("OTHER", "joiner", day(5), OTHER_FEED)
    plan = plan_of([user("E1")], held=[gone, gone_leaver, other], mode="full")
    assert sorted(plan.cancel, key=lambda h: h.external_id) == [gone, gone_leaver]


def test_delta_feed_keeps_held_changes_of_absent_workers() -> None:
    held = [Held("GONE", "joiner", day(5), FEED)]
    plan = plan_of([user("E1")], held=held, mode="delta")
    assert plan.cancel == []


# --- manager waves and warnings ------------------------------------------------------------


def test_new_joiner_goes_after_its_new_manager() -> None:
    state = {"BOSS": known(user("BOSS"))}
    rows = [
        user("D", manager="C"),
        user("C", manager="B"),
        user("B", manager="A"),
        user("A", manager="BOSS"),
        user("SOLO"),
        user("PEER", manager="A"),
    ]
    plan = plan_of(rows, state)
    waves = {ext: d.wave for ext, d in plan.decisions.items()}
    assert waves == {"A": 0, "B": 1, "C": 2, "D": 3, "SOLO": 0, "PEER": 1}
    assert plan.waves == 4
    assert plan.decisions["D"].manager == "C"


def test_joiners_and_rehires_are_ordered_after_new_managers() -> None:
    """A rehire moved under a manager who joins in the same file, listed after them, goes one
    wave after that manager. A mover needs no wave: movers go after every joiner anyway
    (planning.SEND_PARTS)."""
    state = {
        "M": known(user("M")),
        "E2": known(user("E2", manager="M")),
        "BACK": known(user("BACK", active=False)),
    }
    rows = [
        user("E2", manager="NEWBOSS"),
        user("BACK", manager="NEWBOSS"),
        user("NEWBOSS"),
        user("E3", manager="M"),
    ]
    plan = plan_of(rows, state)
    assert plan.decisions["BACK"].action == "rehire"
    assert {ext: d.wave for ext, d in plan.decisions.items()} == {
        "E2": 0,  # a mover
        "BACK": 1,  # after NEWBOSS
        "NEWBOSS": 0,
        "E3": 0,  # known manager
    }
    assert plan.waves == 2


def test_empty_plan_has_one_wave() -> None:
    assert plan_of([]).waves == 1


@pytest.mark.parametrize(
    "rows",
    [
        [user("A", manager="B"), user("B", manager="A")],
        [user("A", manager="B"), user("B", manager="C"), user("C", manager="A")],
        [user("A", manager="A")],
    ],
    ids=["pair", "triangle", "self"],
)
def test_manager_cycle_terminates(rows: list[dict[str, Any]]) -> None:
    plan = plan_of(rows)
    assert all(0 <= d.wave < len(rows) for d in plan.decisions.values())
    assert plan.manager_warnings == []


def test_manager_cycle_hanging_off_a_chain_terminates() -> None:
    rows = [user("X", manager="A"), user("A", manager="B"), user("B", manager="A")]
    plan = plan_of(rows)
    assert plan.decisions["X"].wave >= 1


def test_manager_warnings_list_workers_with_unknown_managers() -> None:
    state = {"KNOWNBOSS": known(user("KNOWNBOSS")), "E4": known(user("E4"))}
    rows = [
        user("E1", manager="GHOST"),
        user("E2", manager="E3"),  # in the file
        user("E3", manager="KNOWNBOSS"),  # known
        user("E4", manager="PHANTOM", title="moved"),  # a mover is checked too
        user("E5"),  # no manager
        user("E6", manager="GHOST"),
    ]
    plan = plan_of(rows, state)
    assert plan.manager_warnings == ["E1", "E4", "E6"]


def test_manager_extension_without_manager_is_no_manager() -> None:
    data = user("E1")
    data[ENTERPRISE] = {"employeeNumber": "1"}
    plan = plan_of([data])
    assert plan.decisions["E1"].manager is None
    assert plan.manager_warnings == []


def test_long_manager_chain_is_planned_quickly() -> None:
    """Deep but realistic org charts: 200 levels of new joiners."""
    rows = [user("L0")] + [user(f"L{i}", manager=f"L{i - 1}") for i in range(1, 200)]
    started = time.perf_counter()
    plan = plan_of(rows)
    assert time.perf_counter() - started < 5
    assert plan.decisions["L199"].wave == 199


def test_very_long_manager_chain_does_not_crash() -> None:
    rows = [user("L0")] + [user(f"L{i}", manager=f"L{i - 1}") for i in range(1, 1500)]
    plan = plan_of(rows)
    assert plan.decisions["L1499"].wave == 1499


# --- counts --------------------------------------------------------------------------------


def test_counts_cover_every_outcome() -> None:
    state = {
        "MOVER": known(user("MOVER")),
        "SAME": known(user("SAME")),
        "BACK": known(user("BACK", active=False)),
        "LEAVER": known(user("LEAVER")),
        "GONE": known(user("GONE")),
        "LATER": known(user("LATER")),
    }
    rows: list[Row | dict[str, Any]] = [
        user("NEW"),
        user("GONE-BEFORE", active=False),
        user("same"),
        user("MOVER", title="x"),
        user("SAME"),
        user("BACK"),
        user("LEAVER", active=False),
        row(user("FUTURE"), hire=day(100)),
        row(user("LATER"), leave=day(3)),
    ]
    plan = plan_of(rows, state, mode="full")
    assert plan.counts == {
        "joiner": 1,
        "mover": 1,
        "rehire": 1,
        "leaver": 2,  # LEAVER and the absent GONE
        "unchanged": 2,  # SAME and LATER (its leave is held)
        "skipped": 1,  # GONE-BEFORE: inactive in its first file
        "conflict": 1,  # same: SAME in other case
        "held": 2,  # FUTURE's joiner and LATER's leaver
        "held_for_approval": 0,
        "superseded": 0,
        "ownership_changes": 0,
    }
    assert plan.valid_rows == 9
    assert plan.absent_leavers == ["GONE"]
    assert (plan.feed, plan.mode, plan.today) == (FEED, "full", TODAY.isoformat())


# --- today in the HR time zone -------------------------------------------------------------


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (dt.datetime(2024, 6, 10, 11, 59, tzinfo=dt.UTC), dt.date(2024, 6, 10)),  # NZST +12
        (dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC), dt.date(2024, 6, 11)),
        (dt.datetime(2024, 1, 10, 10, 59, tzinfo=dt.UTC), dt.date(2024, 1, 10)),  # NZDT +13
        (dt.datetime(2024, 1, 10, 11, 0, tzinfo=dt.UTC), dt.date(2024, 1, 11)),
        (dt.datetime(2024, 12, 31, 23, 0, tzinfo=dt.UTC), dt.date(2025, 1, 1)),
    ],
)
def test_today_in_gives_the_local_date(utc: dt.datetime, expected: dt.date) -> None:
    assert today_in("Pacific/Auckland", utc) == expected


def test_today_in_utc_and_default_now() -> None:
    moment = dt.datetime(2024, 6, 10, 23, 30, tzinfo=dt.UTC)
    assert today_in("UTC", moment) == dt.date(2024, 6, 10)
    assert today_in("America/Los_Angeles", moment) == dt.date(2024, 6, 10)
    now = today_in("UTC")
    assert abs((now - dt.datetime.now(dt.UTC).date()).days) <= 1


# --- newest HR data wins, feed ownership ---------------------------------------------------


def ordered(data: dict[str, Any], order: str, *, feed: str = FEED) -> Known:
    base = known(data, feed=feed)
    return Known(base.fingerprint, base.active, base.feed, order)


def test_data_older_than_what_entra_got_is_superseded() -> None:
    state = {
        "E1": ordered(user("E1"), "o5"),  # an HTTP change after this file
        "E2": ordered(user("E2"), "o1"),
        "GONE": ordered(user("GONE"), "o5"),
    }
    rows = [user("E1", active=False), user("E2", title="New")]
    plan = plan_of(rows, state, mode="full", order="o3", threshold_count=10)
    assert plan.decisions["E1"].action == "superseded"  # never disables after newer data
    assert plan.sends("E1") is None
    assert plan.decisions["E2"].action == "mover"
    assert plan.absent_leavers == []  # GONE got newer data than this file: not a leaver
    assert sorted(plan.superseded) == ["E1", "GONE"]
    assert plan.counts["superseded"] == 2


def test_a_newer_run_of_the_owning_full_feed_supersedes_older_data() -> None:
    state = {"E1": ordered(user("E1"), "o1"), "E2": ordered(user("E2"), "o1", feed=OTHER_FEED)}
    rows = [user("E1", title="Old"), user("E2", title="Old")]
    plan = plan_of(rows, state, order="o3", watermarks={FEED: "o5"})
    assert plan.decisions["E1"].action == "superseded"
    assert plan.decisions["E2"].action == "mover"  # another feed's watermark says nothing


def test_a_full_feed_takes_over_the_workers_it_lists() -> None:
    state = {
        "API": ordered(user("API"), "o1", feed="api"),
        "MINE": ordered(user("MINE"), "o1"),
        "MOVED": ordered(user("MOVED", title="x"), "o1", feed="api"),
    }
    rows = [user("API"), user("MINE"), user("MOVED", title="y")]
    full = plan_of(rows, state, mode="full", order="o2")
    assert sorted(full.takeovers) == ["API", "MOVED"]
    assert {ext: d.feed for ext, d in full.decisions.items()} == dict.fromkeys(rows_ids(rows), FEED)
    assert full.restated == ["API"]  # unchanged but taken over; MINE is restated by watermark
    assert full.counts["ownership_changes"] == 2
    delta = plan_of(rows, state, mode="delta", order="o2")
    assert delta.takeovers == []
    assert delta.decisions["API"].feed == "api" and delta.decisions["MOVED"].feed == "api"
    assert sorted(delta.restated) == ["API", "MINE"]  # a delta restates each unchanged one


def rows_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["externalId"] for r in rows]


def test_held_changes_newer_than_the_file_are_kept() -> None:
    newer = Held("E1", "leaver", day(5), FEED, {"externalId": "E1"}, "o9")
    older = Held("E2", "leaver", day(5), FEED, {"externalId": "E2"}, "o1")
    plan = plan_of([user("E1"), user("E2")], {}, [newer, older], mode="full", order="o5")
    assert plan.cancel == [older]
    absent = plan_of([user("E3")], {}, [newer, older], mode="full", order="o5")
    assert absent.cancel == [older]


def test_a_worker_inactive_in_their_first_file_is_skipped_and_counted() -> None:
    held = Held("E3", "joiner", day(3), FEED, user("E3"))  # a pre-hire, now marked inactive
    plan = plan_of(
        [user("E1"), user("E2", active=False), row(user("E3", active=False), leave=day(-1))],
        held=[held],
    )
    assert {ext: d.action for ext, d in plan.decisions.items()} == {
        "E1": "joiner",
        "E2": "skipped",
        "E3": "skipped",
    }
    assert plan.sends("E2") is None and plan.sends("E3") is None
    assert (plan.counts["skipped"], plan.counts["joiner"]) == (2, 1)
    assert plan.cancel == [held]  # HR says inactive now: the held joiner is not created


def test_create_inactive_joiners_creates_them_disabled() -> None:
    plan = plan_of([user("E2", active=False)], create_inactive_joiners=True)
    decision = plan.decisions["E2"]
    assert decision.action == "joiner" and plan.sends("E2") is decision
    assert plan.counts["skipped"] == 0


def test_a_known_worker_going_inactive_is_a_leaver_whatever_the_setting() -> None:
    plan = plan_of([user("E1", active=False)], {"E1": known(user("E1"))})
    assert plan.decisions["E1"].action == "leaver"


def test_an_id_differing_only_in_case_from_a_known_one_is_a_conflict() -> None:
    state = {"E2": known(user("E2")), "E3": known(user("E3"))}
    plan = plan_of([user("e2"), user("E3")], state, mode="full")
    assert plan.decisions["e2"].action == "conflict" and plan.sends("e2") is None
    assert "only in case" in plan.decisions["e2"].reason
    # E2 is listed under another spelling: not a leaver of the full feed either.
    assert plan.absent_leavers == [] and plan.counts["conflict"] == 1
