"""The plan of one file against the worker state, and the operations that carry it out
(provisioning/jml/planning.py), directly at the planning layer: real conversions of CSV files
(Microsoft's sample mapping plus a termination date), the real WorkerState on Azurite seeded
through the real send gate, settings read from the environment.

The pure decision rules of one worker are tested in tests/test_lifecycle.py and whole runs in
tests/test_jml.py; here: what make_plan makes of a file and a state (reports, mover attribute
names, leaver records for approvals, held changes read from the state, rejected rows), policy_for
from the settings, SendPlan, send_operations (waves, active overrides, absent leavers), feed_of,
and properties over random files and states.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.convert.bulk import Operation
from provisioning.convert.mapping import parse_mapping
from provisioning.convert.pipeline import Conversion, Source
from provisioning.jml import planning
from provisioning.jml.lifecycle import Held, Known, Policy, fingerprint
from provisioning.jml.ordering import OrderView, SendGate, new_order
from provisioning.jml.planning import (
    SEND_PARTS,
    PlanResult,
    SendPlan,
    changed_attributes,
    feed_of,
    make_plan,
    policy_for,
    send_operations,
)
from provisioning.jml.state import Change, WorkerState, id_hash
from provisioning.settings import STATE_CONTAINER, Settings
from provisioning.storage import BlobStore
from tests.columns import csv_bytes, worker

if TYPE_CHECKING:
    from devtools.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MAPPING = ROOT / "provisioning" / "convert" / "mappings" / "microsoft-sample.yaml"
# Microsoft's sample mapping plus a termination date (Custom02 stands in for it).
MAPPING = parse_mapping(
    SAMPLE_MAPPING.read_text("utf-8") + "  termination_date: Custom02\n",
    name="jml",
    source="test:jml",
)
NOW = dt.datetime(2024, 6, 10, 9, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
OLD = new_order(NOW - dt.timedelta(days=1), "day-before")  # what Entra got before this file
ORDER = new_order(NOW, "this-file")
FULL, DELTA = "workers", "changes"
MODES = f"{FULL}=full,{DELTA}=delta"
HASH = "c0ffee" * 10 + "beef"


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def conversion(rows: list[dict[str, str]], name: str = "workers.csv") -> Conversion:
    data = csv_bytes(rows)
    return Conversion(Source(name, lambda: io.BytesIO(data)), MAPPING)


def app_settings(**values: Any) -> Settings:
    return Settings(**{"feed_modes": MODES, "hr_timezone": "UTC", **values})


def policy(feed: str = FULL, order: str = ORDER, **values: Any) -> Policy:
    return policy_for(app_settings(**values), feed, NOW, order=order)


def actions(result: PlanResult) -> dict[str, str]:
    return {ext: d.action for ext, d in result.plan.decisions.items()}


def sent(
    rows: list[dict[str, str]], result: PlanResult, absent: dict[str, dict[str, Any]] | None = None
) -> list[tuple[Operation, str, str]]:
    """What the send pass yields for ``rows`` and the plan."""
    return list(
        send_operations(
            lambda first: conversion(rows), SendPlan.of(result.plan), absent or {}, HASH
        )
    )


# --- the state on Azurite -------------------------------------------------------------------


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[BlobStore]:
    with BlobStore(BlobServiceClient.from_connection_string(clean_storage.connection_string)) as s:
        s.ensure_containers(STATE_CONTAINER)
        yield s


@pytest.fixture
def state(store: BlobStore) -> WorkerState:
    return WorkerState(store)


def accept(state: WorkerState, rows: list[dict[str, str]], feed: str = FULL) -> None:
    """Entra accepted these rows' records (as a run records it: one turn of the real send
    gate publishing them), folded into the state's shards."""
    changes: list[Change] = [
        (
            op.external_id,
            fingerprint(op.data),
            op.data.get("active", True) is not False,
            feed,
            OLD,
            op.data,
        )
        for op in conversion(rows).operations()
    ]

    async def turn() -> None:
        gate = SendGate(state.store, OrderView(state, 0), lease_seconds=15, max_wait_seconds=30)
        async with gate.holding():
            (await gate.turn()).publish("accepted", changes)

    asyncio.run(turn())
    state.fold()


# --- feed_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "feed"),
    [
        ("hr-inbound/contractors/day1.csv", "contractors"),
        ("hr-inbound/day1.csv", "default"),
        ("day1.csv", "default"),
        ("contractors/day1.csv", "contractors"),
        ("hr-inbound/employees/2024/06/day1.csv", "employees"),
        ("/hr-inbound//employees//day1.csv", "employees"),
        ("", "default"),
    ],
)
def test_feed_of_a_blob(blob: str, feed: str) -> None:
    assert feed_of(blob) == feed


segment = st.text(
    alphabet=st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1
).filter(lambda s: s != "hr-inbound")


@given(feed=segment, name=segment, deeper=st.lists(segment, max_size=3))
def test_feed_is_the_first_folder_under_hr_inbound(feed: str, name: str, deeper: list[str]) -> None:
    path = "/".join([feed, *deeper, name])
    assert feed_of(f"hr-inbound/{path}") == feed_of(path) == feed
    assert feed_of(f"hr-inbound/{name}") == feed_of(name) == "default"


# --- policy_for -----------------------------------------------------------------------------


def test_policy_follows_the_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PROVISIONING_FEED_MODES": "employees=full,contractors=delta",
        "PROVISIONING_DEFAULT_FEED_MODE": "full",
        "PROVISIONING_HR_TIMEZONE": "Pacific/Auckland",
        "PROVISIONING_HIRE_LOOKAHEAD_DAYS": "3",
        "PROVISIONING_FULL_SEND": "true",
        "PROVISIONING_CREATE_INACTIVE_JOINERS": "true",
        "PROVISIONING_LEAVER_THRESHOLD_PERCENT": "12.5",
        "PROVISIONING_LEAVER_THRESHOLD_COUNT": "7",
    }.items():
        monkeypatch.setenv(name, value)
    loaded = Settings()
    moment = dt.datetime(2024, 6, 10, 12, 30, tzinfo=dt.UTC)  # already the 11th in Auckland
    marks = {"employees": "o5"}
    made = policy_for(loaded, "contractors", moment, order="o9", watermarks=marks)
    assert made == Policy(
        feed="contractors",
        mode="delta",
        today=dt.date(2024, 6, 11),
        lookahead_days=3,
        full_send=True,
        create_inactive_joiners=True,
        threshold_percent=12.5,
        threshold_count=7,
        order="o9",
        watermarks=marks,
    )
    assert policy_for(loaded, "employees", moment).mode == "full"
    assert policy_for(loaded, "unlisted", moment).mode == "full"  # the default mode


def test_policy_defaults() -> None:
    made = policy_for(app_settings(feed_modes="", default_feed_mode="delta"), "x", NOW)
    assert (made.mode, made.today, made.order, dict(made.watermarks)) == ("delta", TODAY, "", {})
    assert (made.lookahead_days, made.full_send, made.create_inactive_joiners) == (14, False, False)
    assert (made.threshold_percent, made.threshold_count) == (5.0, 50)
    other = policy_for(Settings(), "y", NOW)
    assert other.watermarks is not made.watermarks  # never a shared default


# --- make_plan against the state ------------------------------------------------------------


def day1() -> list[dict[str, str]]:
    return [
        worker(1),
        worker(2, ManagerID="1"),
        worker(3, ManagerID="1"),
        worker(4, WorkerStatus="Inactive"),  # left earlier
        worker(5),
        worker(6),
        worker(7),
        worker(8),
        worker(9),
    ]


def test_a_day_of_changes_against_the_state(state: WorkerState) -> None:
    accept(state, day1())
    rows = [
        worker(1),  # unchanged
        worker(2, ManagerID="1", JobTitle="Director"),  # mover
        worker(3, ManagerID="1", WorkerStatus="Inactive"),  # leaver by status
        worker(4),  # rehire
        worker(6, Custom02=day(-1)),  # leaver: the termination date has passed
        worker(7, Custom02=day(5)),  # unchanged now, its leave held for day 5
        worker(8, WorkerStatus="Maybe"),  # rejected: still listed, so not a leaver
        worker(9, Department="Finance", City="Lyon"),  # mover
        worker(20, ManagerID="21"),  # joiner after its new manager
        worker(21),  # joiner
        worker(22, WorkerStatus="Inactive"),  # never provisioned, inactive: skipped
        worker(23, HireDate=day(30)),  # joiner held until 14 days before its start
    ]  # 5 is absent: a leaver of this full feed
    result = make_plan(conversion(rows), policy(), state)
    plan = result.plan
    assert actions(result) == {
        "1": "unchanged",
        "2": "mover",
        "3": "leaver",
        "4": "rehire",
        "6": "leaver",
        "7": "unchanged",
        "9": "mover",
        "20": "joiner",
        "21": "joiner",
        "22": "skipped",
        "23": "held",
    }
    assert plan.absent_leavers == ["5"]
    assert result.changed == {
        "2": ["title"],
        "9": ["addresses.locality", ENTERPRISE + ".department"],
    }
    assert [(h.external_id, h.kind, h.due) for h in plan.hold] == [
        ("7", "leaver", day(5)),
        ("23", "joiner", day(16)),
    ]
    leave = next(h for h in plan.hold if h.kind == "leaver")
    assert leave.record is not None and leave.record["active"] is False
    assert leave.order == ORDER and leave.feed == FULL
    # Leavers' records are kept for an approval, disabled.
    assert set(result.leaver_records) == {"3", "6"}
    assert all(r["active"] is False for r in result.leaver_records.values())
    assert result.leaver_records["6"]["externalId"] == "6"
    assert plan.decisions["6"].active is False  # sent disabled although HR says Active
    assert plan.decisions["20"].wave == 1 and plan.decisions["21"].wave == 0

    report = result.report()
    assert report["counts"] == {
        "joiner": 2,
        "mover": 2,
        "rehire": 1,
        "leaver": 3,
        "unchanged": 2,
        "skipped": 1,
        "conflict": 0,
        "superseded": 0,
        "ownership_changes": 0,
        "held": 2,
        "held_for_approval": 0,
        "rejected": 1,
    }
    assert (report["feed"], report["mode"], report["today"]) == (FULL, "full", TODAY.isoformat())
    assert sorted(report["leavers"]) == ["3", "5", "6"] and report["absent_leavers"] == ["5"]
    assert report["movers"] == [
        {"externalId": "2", "changed": ["title"]},
        {"externalId": "9", "changed": ["addresses.locality", ENTERPRISE + ".department"]},
    ]
    assert report["held"] == [
        {"externalId": "7", "kind": "leaver", "due": day(5)},
        {"externalId": "23", "kind": "joiner", "due": day(16)},
    ]
    assert report["skipped"] == ["22"] and report["unchanged"] == 2
    assert report["leaver_threshold"] == 50 and report["held_for_approval"] == []
    # The plan a person reads holds ids and attribute names, never HR values.
    text = json.dumps(report)
    for value in ("Given", "Family", "Director", "Finance", "Lyon", "EMP", "Paris", "Sales"):
        assert value not in text, value

    ops = sent(rows, result, state.records(plan.absent_leavers))
    # Joiners (rehires too), then leavers, then movers; each part wave by wave, in file order.
    assert [(op.external_id, action) for op, action, _ in ops] == [
        ("4", "rehire"),
        ("21", "joiner"),
        ("20", "joiner"),  # after its manager, in the second wave
        ("3", "leaver"),
        ("6", "leaver"),
        ("5", "leaver"),  # absent: its last accepted record, disabled
        ("2", "mover"),
        ("9", "mover"),
    ]
    by_id = {op.external_id: op for op, _, _ in ops}
    assert by_id["6"].data["active"] is False and by_id["5"].data["active"] is False
    assert by_id["4"].data["active"] is True
    assert by_id["2"].data["title"] == "Director"
    assert by_id["5"].data == {**state.records(["5"])["5"], "active": False}
    assert {owner for _, _, owner in ops} == {FULL}


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_held_changes_are_read_from_the_state(state: WorkerState) -> None:
    accept(state, day1())
    restated = Held("7", "leaver", day(3), FULL, {"externalId": "7", "active": False}, OLD)
    gone = Held("5", "leaver", day(3), FULL, {"externalId": "5", "active": False}, OLD)
    other_feed = Held("8", "leaver", day(3), DELTA, {"externalId": "8", "active": False}, OLD)
    newer = Held("9", "leaver", day(3), FULL, {"externalId": "9", "active": False}, "z-newer")
    for held in (restated, gone, other_feed, newer):
        state.hold(held)
    rows = [r for r in day1() if r["WorkerID"] not in ("5", "8")]
    full = make_plan(conversion(rows), policy(threshold_count=10), state)
    # 7 restated without its date: the leave is withdrawn; 5 left the full feed: its change
    # goes with it; 8's belongs to another feed, 9's came with newer data than this file.
    assert sorted(h.external_id for h in full.plan.cancel) == ["5", "7"]
    delta = make_plan(conversion(rows), policy(DELTA), state)
    assert [h.external_id for h in delta.plan.cancel] == ["7"]  # a delta says nothing of 5


def test_too_many_leavers_wait_for_approval_with_their_records(state: WorkerState) -> None:
    population = [worker(n) for n in range(1, 13)]
    accept(state, population)
    rows = [*population[:4], worker(5, WorkerStatus="Inactive")]  # 8 leave, 1 by status
    result = make_plan(conversion(rows), policy(leaver_threshold_count=5), state)
    plan = result.plan
    assert plan.threshold == 5
    assert sorted(plan.held_for_approval, key=int) == [str(n) for n in range(5, 13)]
    # Every leaver's record is there for the approval, disabled: the file's and the state's.
    assert set(result.leaver_records) == set(plan.held_for_approval)
    records = state.records(plan.absent_leavers)
    assert len(records) == 7
    for ext in plan.absent_leavers:
        assert result.leaver_records[ext] == {**records[ext], "active": False}
    assert result.leaver_records["5"]["active"] is False
    # Nobody is disabled by this run.
    send_plan = SendPlan.of(plan)
    assert send_plan.absent == [] and "5" not in send_plan.sends
    assert sent(rows, result, records) == []
    assert result.report()["counts"]["held_for_approval"] == 8


def test_the_threshold_is_a_share_of_the_feeds_active_workers(state: WorkerState) -> None:
    accept(state, [worker(n) for n in range(1, 21)])
    accept(state, [worker(n) for n in range(21, 31)], feed=DELTA)  # another feed's workers
    rows = [worker(n) for n in range(1, 18)]  # 3 of this feed's 20 leave
    strict = make_plan(
        conversion(rows), policy(leaver_threshold_count=0, leaver_threshold_percent=10), state
    )
    assert strict.plan.threshold == 2 and len(strict.plan.held_for_approval) == 3
    lenient = make_plan(
        conversion(rows), policy(leaver_threshold_count=0, leaver_threshold_percent=15), state
    )
    assert lenient.plan.threshold == 3 and lenient.plan.held_for_approval == []
    assert sorted(SendPlan.of(lenient.plan).absent, key=int) == ["18", "19", "20"]


def test_inactive_joiners_follow_the_setting(
    state: WorkerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept(state, [worker(1)])
    rows = [worker(1), worker(2, WorkerStatus="Inactive"), worker(3, Custom02=day(-2))]
    monkeypatch.setenv("PROVISIONING_FEED_MODES", MODES)
    skipped = make_plan(conversion(rows), policy_for(Settings(), FULL, NOW, order=ORDER), state)
    assert actions(skipped) == {"1": "unchanged", "2": "skipped", "3": "skipped"}
    assert sent(rows, skipped) == []
    assert skipped.report()["skipped"] == ["2", "3"]

    monkeypatch.setenv("PROVISIONING_CREATE_INACTIVE_JOINERS", "true")
    created = make_plan(conversion(rows), policy_for(Settings(), FULL, NOW, order=ORDER), state)
    assert actions(created) == {"1": "unchanged", "2": "joiner", "3": "joiner"}
    ops = {op.external_id: (op, action) for op, action, _ in sent(rows, created)}
    assert ops["2"][1] == ops["3"][1] == "joiner"
    assert ops["2"][0].data["active"] is False and ops["3"][0].data["active"] is False


def test_an_id_differing_only_in_case_is_a_conflict_and_keeps_the_known_worker(
    state: WorkerState,
) -> None:
    accept(state, [worker("ab1"), worker("cd2"), worker("ef3")])
    rows = [worker("AB1", JobTitle="Other"), worker("cd2")]
    result = make_plan(conversion(rows), policy(threshold_count=10), state)
    assert actions(result) == {"AB1": "conflict", "cd2": "unchanged"}
    assert result.plan.absent_leavers == ["ef3"]  # ab1 is listed under another spelling
    assert result.report()["conflicts"] == ["AB1"]
    assert [op.external_id for op, _, _ in sent(rows, result, state.records(["ef3"]))] == ["ef3"]


def test_a_rejected_row_in_other_case_keeps_the_known_worker(state: WorkerState) -> None:
    accept(state, [worker("ab1"), worker("cd2")])
    rows = [worker("AB1", WorkerStatus="Maybe"), worker("cd2")]  # AB1's row is rejected
    result = make_plan(conversion(rows), policy(threshold_count=10), state)
    assert result.conversion.rows_rejected == 1
    assert result.plan.absent_leavers == []  # a rejected row is no reason to disable


def test_a_delta_feed_never_disables_the_workers_it_does_not_list(state: WorkerState) -> None:
    accept(state, day1(), feed=DELTA)
    result = make_plan(conversion([worker(1, JobTitle="Lead")]), policy(DELTA), state)
    assert actions(result) == {"1": "mover"} and result.plan.absent_leavers == []
    assert result.plan.decisions["1"].feed == DELTA


def test_a_full_feed_takes_over_what_it_lists_and_leaves_other_feeds_alone(
    state: WorkerState,
) -> None:
    accept(state, [worker(1), worker(2)], feed=DELTA)
    accept(state, [worker(3)])
    result = make_plan(conversion([worker(1), worker(3)]), policy(), state)
    assert result.plan.absent_leavers == []  # 2 belongs to the delta feed
    assert result.plan.takeovers == ["1"]
    assert SendPlan.of(result.plan).sends == {}  # unchanged: nothing to send ...
    assert sorted(result.plan.restated) == ["1"]  # ... but 1 is now this feed's


def test_newer_data_in_the_state_supersedes_the_file(state: WorkerState) -> None:
    accept(state, [worker(1), worker(2)])
    older = new_order(NOW - dt.timedelta(days=2), "an-older-file")
    result = make_plan(conversion([worker(1, JobTitle="Old")]), policy(order=older), state)
    assert actions(result) == {"1": "superseded"}
    assert sorted(result.plan.superseded) == ["1", "2"]  # 2 is not a leaver either
    assert result.plan.absent_leavers == [] and SendPlan.of(result.plan).sends == {}


def test_planning_without_a_state_makes_joiners(state: WorkerState) -> None:
    accept(state, day1())
    rows = [worker(1), worker(2, WorkerStatus="Inactive")]
    alone = make_plan(conversion(rows), policy(), None)
    assert actions(alone) == {"1": "joiner", "2": "skipped"}
    assert alone.changed == {} and alone.leaver_records == {}
    # A given index is the one planned against (the state is read only for held changes).
    given_index = make_plan(conversion(rows), policy(), state, known={})
    assert actions(given_index) == {"1": "joiner", "2": "skipped"}
    indexed = make_plan(conversion(rows), policy(), state, known=state.index())
    assert actions(indexed) == {"1": "unchanged", "2": "leaver"}


def test_attribute_names_are_listed_for_a_limited_number_of_movers(
    state: WorkerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept(state, [worker(n) for n in range(1, 6)])
    monkeypatch.setattr(planning, "MOVER_DETAIL_LIMIT", 2)
    rows = [worker(n, JobTitle="Changed") for n in range(1, 6)]
    report = make_plan(conversion(rows), policy(), state).report()
    assert report["counts"]["mover"] == 5
    assert [m["changed"] for m in report["movers"]] == [["title"], ["title"], None, None, None]


# Two work phone numbers (Entra takes only work entries; a mapping may list several).
MULTI_PHONE_MAPPING = parse_mapping(
    SAMPLE_MAPPING.read_text("utf-8").replace(
        "  phoneNumbers:\n    - value: OfficePhone\n",
        "  phoneNumbers:\n    - value: OfficePhone\n    - value: Custom01\n",
    ),
    name="two-phones",
    source="test:two-phones",
)


def test_a_change_in_the_first_of_two_phone_numbers_is_listed(state: WorkerState) -> None:
    def convert(rows: list[dict[str, str]]) -> Conversion:
        data = csv_bytes(rows)
        return Conversion(Source("w.csv", lambda: io.BytesIO(data)), MULTI_PHONE_MAPPING)

    before = [worker(1, OfficePhone="555-0100", Custom01="555-0199")]
    changes: list[Change] = [
        (op.external_id, fingerprint(op.data), True, FULL, OLD, op.data)
        for op in convert(before).operations()
    ]
    assert len(next(iter(changes))[5]["phoneNumbers"]) == 2  # type: ignore[index]

    async def turn() -> None:
        gate = SendGate(state.store, OrderView(state, 0), lease_seconds=15, max_wait_seconds=30)
        async with gate.holding():
            (await gate.turn()).publish("accepted", changes)

    asyncio.run(turn())
    state.fold()
    after = [worker(1, OfficePhone="555-0111", Custom01="555-0199")]
    result = make_plan(convert(after), policy(), state)
    assert actions(result) == {"1": "mover"}
    assert result.changed["1"] == ["phoneNumbers.value"]


def test_a_mover_sent_disabled_does_not_list_active_as_changed(state: WorkerState) -> None:
    accept(state, [worker(1, WorkerStatus="Inactive")])
    rows = [worker(1, JobTitle="Lead", Custom02=day(-3))]  # HR: Active, but left 3 days ago
    result = make_plan(conversion(rows), policy(), state)
    assert actions(result) == {"1": "mover"} and result.plan.decisions["1"].active is False
    assert result.changed == {"1": ["title"]}


def test_changed_attributes_names_paths_not_values() -> None:
    old = {"schemas": ["a"], "title": "x", ENTERPRISE: {"manager": {"value": "1"}}}
    new = {"schemas": ["b"], "title": "y", ENTERPRISE: {"manager": {"value": "2"}}, "nick": "n"}
    assert changed_attributes(old, new) == ["nick", "title", ENTERPRISE + ".manager.value"]
    assert changed_attributes(new, new) == []
    assert changed_attributes({}, {"title": None}) == []  # absent and null read the same


# --- SendPlan and send_operations -----------------------------------------------------------


def test_send_operations_go_wave_by_wave_and_report_rejections_once() -> None:
    rows = [
        worker(62, ManagerID="61"),
        worker(61, ManagerID="60"),
        worker(60, ManagerID="1"),
        worker(1),
        worker(2, WorkerStatus="Maybe"),  # rejected
    ]
    result = make_plan(conversion(rows), policy(DELTA), None)
    send_plan = SendPlan.of(result.plan)
    assert send_plan.waves == 4
    assert send_plan.sends == {
        "1": ("joiner", None, 0, DELTA),
        "60": ("joiner", None, 1, DELTA),
        "61": ("joiner", None, 2, DELTA),
        "62": ("joiner", None, 3, DELTA),
    }
    firsts: list[bool] = []
    rejected: list[str] = []

    def fresh(first: bool) -> Conversion:
        firsts.append(first)
        data = csv_bytes(rows)
        report = (lambda error: rejected.append(error.column)) if first else None
        return Conversion(Source("w.csv", lambda: io.BytesIO(data)), MAPPING, on_reject=report)

    ops = list(send_operations(fresh, send_plan, {}, HASH))
    assert [op.external_id for op, _, _ in ops] == ["1", "60", "61", "62"]
    assert firsts == [True, False, False, False]  # one conversion per wave, the first reports
    assert rejected == ["WorkerStatus"]  # the rejected row, once
    assert len({op.bulk_id for op, _, _ in ops}) == 4


def test_absent_leavers_go_with_the_leavers_under_a_bulk_id_without_their_hr_id() -> None:
    known = {ext: Known("fp", True, FULL) for ext in ("1", "GONE-1", "GONE-2")}
    result = make_plan(conversion([worker(1)]), policy(threshold_count=10), None, known)
    records = {"GONE-1": {"externalId": "GONE-1", "displayName": "x", "active": True}}
    ops = list(send_operations(lambda first: conversion([worker(1)]), SendPlan.of(result.plan),
                               records, HASH))  # fmt: skip
    assert [(op.external_id, action, owner) for op, action, owner in ops] == [
        ("GONE-1", "leaver", FULL),  # GONE-2 has no record to send: left to the caller
        ("1", "mover", FULL),  # movers after leavers
    ]
    gone = ops[0][0]
    assert gone.data == {"externalId": "GONE-1", "displayName": "x", "active": False}
    assert records["GONE-1"]["active"] is True  # the state's record is not changed
    assert gone.bulk_id == f"{HASH[:16]}-gone-{id_hash('GONE-1')[:12]}"
    assert "GONE" not in gone.bulk_id


def test_send_plan_keeps_only_what_is_sent() -> None:
    known = {"1": Known(fingerprint({}), True, FULL), "2": Known("fp", False, "api")}
    rows = [worker(1, WorkerStatus="Inactive"), worker(2), worker(3, HireDate=day(40))]
    result = make_plan(conversion(rows), policy(), None, known)
    send_plan = SendPlan.of(result.plan)
    assert send_plan.feed == FULL
    assert send_plan.sends == {"1": ("leaver", None, 0, FULL), "2": ("rehire", None, 0, FULL)}
    assert "3" not in send_plan.sends  # held for its date
    assert result.plan.hold[0].external_id == "3"


# --- properties over random files and states ------------------------------------------------

POOL = ["1", "2", "3", "4", "5", "a6", "A6", "7"]
DATES = ["", day(-10), day(0), day(1), day(5), day(30)]

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(POOL),
        st.sampled_from(["Active"] * 4 + ["Inactive"] * 2 + ["Maybe"]),  # Maybe: rejected
        st.sampled_from(["Engineer", "Lead"]),
        st.sampled_from(["", *POOL, "99"]),
        st.sampled_from(DATES),  # hire date ("" means the column default)
        st.sampled_from(DATES),  # termination date
    ),
    max_size=8,
    # Ids unique but for case (a case-insensitive duplicate rejects both rows; rare is enough).
    unique_by=lambda row: row[0],
).filter(lambda rows: len({r[0].lower() for r in rows}) >= len(rows) - 1)
known_strategy = st.dictionaries(
    st.sampled_from(POOL),
    st.tuples(st.booleans(), st.booleans(), st.sampled_from([FULL, DELTA, "api"])),
    max_size=8,
)


def build_rows(spec: list[tuple[str, str, str, str, str, str]]) -> list[dict[str, str]]:
    rows = []
    for ext, status, title, manager, hire, leave in spec:
        values = {"WorkerStatus": status, "JobTitle": title, "ManagerID": manager}
        values["Custom02"] = leave
        if hire:
            values["HireDate"] = hire
        rows.append(worker(ext, **values))
    return rows


def build_known(
    rows: list[dict[str, str]], spec: dict[str, tuple[bool, bool, str]]
) -> dict[str, Known]:
    """``spec``: id -> (same record as the file's, active, feed)."""
    data = {op.external_id: op.data for op in conversion(rows).operations()}
    return {
        ext: Known(fingerprint(data[ext]) if same and ext in data else f"old-{ext}", active, feed)
        for ext, (same, active, feed) in spec.items()
    }


@given(
    spec=rows_strategy,
    known_spec=known_strategy,
    mode=st.sampled_from([FULL, DELTA]),
    create_inactive=st.booleans(),
    full_send=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_plan_and_send_pass_agree_and_a_second_pass_sends_nothing(
    spec: list[tuple[str, str, str, str, str, str]],
    known_spec: dict[str, tuple[bool, bool, str]],
    mode: str,
    create_inactive: bool,
    full_send: bool,
) -> None:
    rows = build_rows(spec)
    known = build_known(rows, known_spec)
    made = policy(
        mode,
        create_inactive_joiners=create_inactive,
        full_send=full_send,
        leaver_threshold_count=100,
    )
    first = conversion(rows)
    result = make_plan(first, made, None, known)
    plan = result.plan
    valid = [op.external_id for op in conversion(rows).operations()]
    listed = set(valid) | first.rejected_ids

    # One decision per valid row, no more.
    assert sorted(plan.decisions) == sorted(valid)
    for ext, decision in plan.decisions.items():
        if decision.action in ("joiner", "skipped"):
            assert ext not in known
        if decision.action == "skipped":
            assert not create_inactive
        if decision.action in ("mover", "leaver", "rehire", "unchanged"):
            assert ext in known
    # Absent leavers: active workers of this full feed the file does not list at all.
    if mode == DELTA:
        assert plan.absent_leavers == []
    for ext in plan.absent_leavers:
        assert known[ext].active and known[ext].feed == FULL and ext not in listed
    assert not set(plan.absent_leavers) & set(plan.decisions)

    # The send pass yields exactly what the plan sends, each once: joiners, leavers, movers,
    # each part wave by wave, the absent leavers after the other leavers.
    absent_records = {ext: {"externalId": ext, "active": True} for ext in plan.absent_leavers}
    ops = sent(rows, result, absent_records)
    ids = [op.external_id for op, _, _ in ops]
    send_plan = SendPlan.of(plan)
    assert sorted(ids) == sorted([*send_plan.sends, *send_plan.absent])
    assert len(ids) == len(set(ids))
    part = {action: i for i, (_, actions) in enumerate(SEND_PARTS) for action in actions}
    order = [
        (part[send_plan.sends[ext][0]], send_plan.sends[ext][2])
        if ext in send_plan.sends
        else (part["leaver"], math.inf)
        for ext in ids
    ]
    assert order == sorted(order)
    for op, action, owner in ops:
        planned = plan.decisions.get(op.external_id)
        if planned is None:  # an absent leaver, after the other leavers
            assert action == "leaver" and op.data["active"] is False
            continue
        assert action == planned.action and owner == (planned.feed or FULL)
        if planned.active is not None:
            assert op.data["active"] is planned.active
        if action == "leaver":
            assert op.data["active"] is False
        if action == "rehire":
            assert op.data["active"] is True
    # A new joiner never goes before its new manager (unless they manage each other in a ring).
    position = {ext: i for i, ext in enumerate(ids)}
    joiners = {ext for ext, d in plan.decisions.items() if d.action == "joiner"}
    for ext in joiners & set(position):
        manager = plan.decisions[ext].manager
        if manager not in joiners:
            continue
        ring: set[str] = set()
        cursor: str | None = manager
        while cursor is not None and cursor in joiners and cursor not in ring:
            ring.add(cursor)
            cursor = plan.decisions[cursor].manager
        assert position[manager] < position[ext] or ext in ring

    # Once Entra accepted all of it, the same file plans nothing more to send.
    after = dict(known)
    for op, _, owner in ops:
        after[op.external_id] = Known(
            fingerprint(op.data), op.data.get("active", True) is not False, owner
        )
    steady = policy(mode, create_inactive_joiners=create_inactive, leaver_threshold_count=100)
    again = make_plan(conversion(rows), steady, None, after)
    assert SendPlan.of(again.plan).sends == {}
    assert again.plan.absent_leavers == []


@given(
    population=st.integers(0, 120),
    listed=st.integers(0, 120),
    count=st.integers(0, 60),
    percent=st.sampled_from([0.0, 5.0, 10.0, 50.0]),
)
@settings(max_examples=60, deadline=None)
def test_leavers_over_the_threshold_are_all_held_and_none_sent(
    population: int, listed: int, count: int, percent: float
) -> None:
    known = {str(n): Known("fp", True, FULL) for n in range(1, population + 1)}
    rows = [worker(n) for n in range(1, min(listed, population) + 1)] or [worker("new")]
    result = make_plan(
        conversion(rows),
        policy(leaver_threshold_count=count, leaver_threshold_percent=percent),
        None,
        known,
    )
    plan = result.plan
    leavers = plan.absent_leavers
    assert plan.threshold == max(count, int(population * percent / 100))
    held = len(leavers) > plan.threshold
    assert plan.held_for_approval == (leavers if held else [])
    send_plan = SendPlan.of(plan)
    assert send_plan.absent == ([] if held else leavers)
    assert result.report()["counts"]["leaver"] == len(leavers)
