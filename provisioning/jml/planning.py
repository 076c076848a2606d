"""Make the plan of one file against the worker state, and the operations that carry it out.

The plan pass converts the file once and feeds every valid user to the pure Planner. The send
pass converts it again (per part and manager wave) and lets through only what the plan sends,
with the ``active`` value the plan decided: joiners first, then leavers (with the absent ones
from the state), then movers, the order a send spread over days by the daily quota goes in
(``SEND_PARTS``). Both passes are deterministic for a file and a plan, which is what makes a
run resumable.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..convert.bulk import Operation
from ..convert.pipeline import Conversion, Summary
from ..settings import Settings
from .lifecycle import Known, Plan, Planner, Policy, today_in
from .state import WorkerState, id_hash

# Changed-attribute names are listed for this many movers (the rest are counted only), so a
# mass change (a new mapping, a reorganisation) cannot make the plan hold every old record.
MOVER_DETAIL_LIMIT = 2000
# The parts of a send, in the order they go: new people first (they have nothing until then),
# then leavers (access that must end), then movers (people who can already work).
SEND_PARTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("joiners", frozenset({"joiner", "rehire"})),
    ("leavers", frozenset({"leaver"})),
    ("movers", frozenset({"mover"})),
)
PART_OF = {action: name for name, actions in SEND_PARTS for action in actions}


def feed_of(blob: str) -> str:
    """``hr-inbound/<feed>/file.csv`` -> feed; a file at the container root is feed "default"."""
    parts = [p for p in blob.split("/") if p]
    if parts and parts[0] == "hr-inbound":
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else "default"


@dataclass
class SendPlan:
    """The part of a plan the send pass needs. Never replayed: a resumed run plans again
    against the state as it is then, so a newer run accepted meanwhile wins."""

    feed: str
    # externalId -> (action, active, wave, owning feed once accepted)
    sends: dict[str, tuple[str, bool | None, int, str]]
    absent: list[str]  # absent leavers sent in this run (empty when held for approval)
    waves: int

    @classmethod
    def of(cls, plan: Plan) -> SendPlan:
        sends: dict[str, tuple[str, bool | None, int, str]] = {}
        for external_id, decision in plan.decisions.items():
            if plan.sends(external_id) is not None:
                sends[external_id] = (
                    decision.action,
                    decision.active,
                    decision.wave,
                    decision.feed or plan.feed,
                )
        absent = [] if plan.held_for_approval else list(plan.absent_leavers)
        return cls(plan.feed, sends, absent, plan.waves)


@dataclass
class PlanResult:
    plan: Plan
    conversion: Summary
    # Leavers' records to keep for an approval (file leavers; absent ones come from state).
    leaver_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)  # mover -> attribute names

    def report(self) -> dict[str, Any]:
        """The plan for a person: counts and lists of ids and attribute names, no HR values."""
        plan = self.plan
        by_action: dict[str, list[str]] = {}
        for ext, decision in plan.decisions.items():
            by_action.setdefault(decision.action, []).append(ext)
        return {
            "feed": plan.feed,
            "mode": plan.mode,
            "today": plan.today,
            "counts": {**plan.counts, "rejected": self.conversion.rows_rejected},
            "joiners": by_action.get("joiner", []),
            "rehires": by_action.get("rehire", []),
            "movers": [
                {"externalId": ext, "changed": self.changed.get(ext)}
                for ext in by_action.get("mover", [])
            ],
            "leavers": by_action.get("leaver", []) + plan.absent_leavers,
            "absent_leavers": plan.absent_leavers,
            "held": [
                {"externalId": h.external_id, "kind": h.kind, "due": h.due} for h in plan.hold
            ],
            "held_cancelled": [
                {"externalId": h.external_id, "kind": h.kind, "due": h.due} for h in plan.cancel
            ],
            "held_for_approval": plan.held_for_approval,
            "superseded": plan.superseded,
            "skipped": by_action.get("skipped", []),
            "conflicts": by_action.get("conflict", []),
            "ownership_changes": plan.takeovers,
            "leaver_threshold": plan.threshold,
            "unchanged": len(by_action.get("unchanged", [])),
            "manager_not_found": plan.manager_warnings,
        }


def policy_for(
    settings: Settings,
    feed: str,
    now: dt.datetime | None = None,
    *,
    order: str = "",
    watermarks: dict[str, str] | None = None,
) -> Policy:
    return Policy(
        order=order,
        watermarks=watermarks or {},
        feed=feed,
        mode=settings.feed_mode(feed),
        today=today_in(settings.hr_timezone, now),
        lookahead_days=settings.hire_lookahead_days,
        full_send=settings.full_send,
        create_inactive_joiners=settings.create_inactive_joiners,
        threshold_percent=settings.leaver_threshold_percent,
        threshold_count=settings.leaver_threshold_count,
    )


def make_plan(
    conversion: Conversion,
    policy: Policy,
    state: WorkerState | None,
    known: dict[str, Known] | None = None,
) -> PlanResult:
    """Plan one file against the state (``known``: its index, when the caller loaded it)."""
    if known is None:
        known = state.index() if state is not None else {}
    held = state.held() if state is not None else []
    planner = Planner(known, held, policy)
    leaver_records: dict[str, dict[str, Any]] = {}
    new_records: dict[str, dict[str, Any]] = {}
    for op in conversion.operations():
        decision = planner.add(op.external_id, op.line, op.data, op.dates)
        if decision.action == "leaver":
            leaver_records[op.external_id] = {**op.data, "active": False}
        elif decision.action == "mover" and len(new_records) < MOVER_DETAIL_LIMIT:
            # Compared as it will be sent (a mover past their termination date goes disabled).
            sent = op.data if decision.active is None else {**op.data, "active": decision.active}
            new_records[op.external_id] = sent
    for external_id in conversion.rejected_ids:
        planner.present(external_id)
    plan = planner.finish()
    changed: dict[str, list[str]] = {}
    if state is not None and new_records:
        old = state.records(new_records)
        changed = {
            ext: changed_attributes(old.get(ext, {}), new) for ext, new in new_records.items()
        }
    if plan.held_for_approval and state is not None:
        leaver_records.update(
            {
                ext: {**rec, "active": False}
                for ext, rec in state.records(plan.absent_leavers).items()
            }
        )
    return PlanResult(plan, conversion.summary, leaver_records, changed)


_ENTRY = re.compile(r"\[\d+\]")


def changed_attributes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names (SCIM paths) of the attributes whose values differ; no values."""
    before, after = _flatten(old), _flatten(new)
    # Entries of a list are compared one by one, and named by the attribute they belong to.
    return sorted(
        {_ENTRY.sub("", k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key != "schemas":
                out.update(_flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix[:-1]}[{index}]."))
        return out
    return {prefix[:-1]: value}


def send_operations(
    new_conversion: Callable[[bool], Conversion],
    send_plan: SendPlan,
    absent_records: dict[str, dict[str, Any]],
    content_hash: str,
) -> Iterator[tuple[Operation, str, str]]:
    """(operation, action, owning feed) in send order: part by part (``SEND_PARTS``), each wave
    by wave (managers first), the absent leavers with the leavers.

    ``new_conversion(first)`` makes a fresh conversion of the file; only the first pass reports
    its rejected rows, so each rejection is reported once (and a file with nothing to send is
    still read once, for them).
    """
    sends = send_plan.sends
    passes: list[tuple[frozenset[str], int] | None] = []  # None: the absent leavers
    for name, actions in SEND_PARTS:
        waves = {wave for action, _, wave, _ in sends.values() if action in actions}
        passes += [(actions, wave) for wave in sorted(waves)]
        if name == "leavers":
            passes.append(None)
    if not any(passes):
        passes.insert(0, (frozenset(), 0))
    first = True
    for step in passes:
        if step is None:
            yield from _absent(send_plan, absent_records, content_hash)
            continue
        actions, wave = step
        for op in new_conversion(first).operations():
            planned = sends.get(op.external_id)
            if planned is None or planned[2] != wave or planned[0] not in actions:
                continue
            action, active, _, owner = planned
            if active is not None:
                op.data = {**op.data, "active": active}
            yield op, action, owner
        first = False


def _absent(
    send_plan: SendPlan, absent_records: dict[str, dict[str, Any]], content_hash: str
) -> Iterator[tuple[Operation, str, str]]:
    """The leavers absent from a full file, from their last record in the state."""
    for external_id in send_plan.absent:
        record = absent_records.get(external_id)
        if record is None:
            continue  # no record to send: reported by the caller from the plan
        data = {**record, "active": False}
        bulk = f"{content_hash[:16]}-gone-{id_hash(external_id)[:12]}"
        yield Operation(bulk, external_id, 0, data), "leaver", send_plan.feed
