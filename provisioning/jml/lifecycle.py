"""Joiner / mover / leaver planning: what a file means against what Entra already got.

Pure: it takes the converted users of one file, the remembered state of every worker (a
fingerprint of the last record Entra accepted, whether it was active, which feed sent it), the
held future-dated changes, and "today" in the HR time zone, and decides per worker. No I/O.

Decisions, per worker in the file:
- joiner: never sent before (held if the hire date is beyond the look-ahead);
- rehire: sent before as inactive, active again (held likewise);
- leaver: was active, now inactive (or the termination date is today or past);
- mover: anything else changed (the complete record is sent, Microsoft's recommendation);
- unchanged: same fingerprint: not sent, counted;
- skipped: never sent before and already inactive in HR: not created (counted), unless
  ``create_inactive_joiners``;
- conflict: never sent under this externalId, but a known worker's differs from it only in
  case, which Entra may match to the same account: nothing is sent for either until HR fixes
  the id (counted and listed);
- superseded: Entra already got newer HR data for the worker (an HTTP change accepted after
  this file, or a newer run of a full feed that owns the worker): nothing sent, counted.
A termination date in the future holds the disable until that date. In a ``full`` feed, a worker
this feed owns and now absent is a leaver too; a full feed listing a worker another feed owned
takes it over. Leavers beyond the safety threshold are held for approval instead of being sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..convert.validation import id_key

Action = Literal[
    "joiner", "mover", "rehire", "leaver", "unchanged", "held", "superseded", "skipped", "conflict"
]
SENT_ACTIONS = ("joiner", "rehire", "mover", "leaver")
FeedMode = Literal["full", "delta"]


def fingerprint(data: dict[str, Any]) -> str:
    """Stable digest of a SCIM user: key order does not matter, any value change does."""
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Known:
    """What the state remembers of a worker: the fingerprint of the record Entra last accepted
    (None when a send's answer was lost: what Entra has is not known), whether it was active,
    the feed that owns the worker, and the order of the newest HR data Entra got for it."""

    fingerprint: str | None
    active: bool
    feed: str
    order: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """A change waiting for its date."""

    external_id: str
    kind: Literal["joiner", "leaver"]
    due: str  # ISO day in the HR time zone
    feed: str
    # The complete record to send on the day (None for a change known only from the state).
    record: dict[str, Any] | None = field(default=None, compare=False)
    # Order of the HR data that decided the change (provisioning.jml.ordering).
    order: str = field(default="", compare=False)


@dataclass(slots=True)
class Decision:
    external_id: str
    line: int
    action: Action
    # None: send the record as mapped; True/False: send it with this ``active`` value.
    active: bool | None = None
    wave: int = 0  # 0 first; a joiner or rehire goes after its manager when that one is new
    manager: str | None = None
    reason: str = ""
    # The feed that owns the worker once this is accepted (see Planner.owner).
    feed: str = ""


@dataclass
class Policy:
    feed: str
    mode: FeedMode
    today: dt.date
    lookahead_days: int = 14
    full_send: bool = False
    create_inactive_joiners: bool = False
    threshold_percent: float = 5.0
    threshold_count: int = 50
    # Order of this HR data (provisioning.jml.ordering): the run's claim, or an HTTP change.
    order: str = ""
    # Newest order of a run of each full feed: it restated every worker the feed owns.
    watermarks: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    feed: str
    mode: FeedMode
    today: str
    decisions: dict[str, Decision] = field(default_factory=dict)
    # Workers this feed sent before and the file no longer lists (full feeds only).
    absent_leavers: list[str] = field(default_factory=list)
    # New held changes (replace any held change of the same worker and kind).
    hold: list[Held] = field(default_factory=list)
    # Held changes the file makes obsolete (cancelled or superseded).
    cancel: list[Held] = field(default_factory=list)
    # Leavers not sent because there are too many of them: held for approval.
    held_for_approval: list[str] = field(default_factory=list)
    threshold: int = 0
    manager_warnings: list[str] = field(default_factory=list)
    valid_rows: int = 0
    # Workers Entra got newer data for: nothing sent (absent ones included).
    superseded: list[str] = field(default_factory=list)
    # Listed workers another feed owned, now owned by this full feed.
    takeovers: list[str] = field(default_factory=list)
    # Workers listed but not sent whose order (and owner) the state takes from this data.
    restated: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(
            ("joiner", "mover", "rehire", "leaver", "unchanged", "skipped", "conflict"), 0
        )
        for decision in self.decisions.values():
            if decision.action not in ("held", "superseded"):
                out[decision.action] += 1
        out["leaver"] += len(self.absent_leavers)
        out["superseded"] = len(self.superseded)
        out["ownership_changes"] = len(self.takeovers)
        out["held"] = len(self.hold)
        out["held_for_approval"] = len(self.held_for_approval)
        return out

    def sends(self, external_id: str) -> Decision | None:
        """The decision if this worker's record goes to Entra in this run, else None."""
        decision = self.decisions.get(external_id)
        if decision is None or decision.action not in SENT_ACTIONS:
            return None
        if decision.action == "leaver" and self.held_for_approval:
            return None  # over the threshold: every leaver waits for approval
        return decision

    @property
    def waves(self) -> int:
        return 1 + max((d.wave for d in self.decisions.values()), default=0)


class Planner:
    """Feed it each valid user of the file (in file order), then call :meth:`finish`."""

    def __init__(self, known: Mapping[str, Known], held: Iterable[Held], policy: Policy) -> None:
        self.known = known
        self.policy = policy
        self.plan = Plan(policy.feed, policy.mode, policy.today.isoformat())
        self._held = {(h.external_id, h.kind): h for h in held}
        self._present: set[str] = set()
        self._lookahead = policy.today + dt.timedelta(days=policy.lookahead_days)
        self._spellings: dict[str, str] | None = None  # id_key -> known id, built on demand

    def add(
        self, external_id: str, line: int, data: dict[str, Any], dates: dict[str, str]
    ) -> Decision:
        policy = self.policy
        plan = self.plan
        plan.valid_rows += 1
        today = policy.today
        known = self.known.get(external_id)
        if known is None and (other := self._other_spelling(external_id)) is not None:
            # Sending it would create a second account, or (if Entra matches without case)
            # restate the known worker under another id; its absence would make a leaver.
            self._present.add(other)
            decision = Decision(
                external_id,
                line,
                "conflict",
                reason="a known worker's externalId differs from this one only in case; "
                "nothing is sent for either until the HR system uses one spelling",
            )
            plan.decisions[external_id] = decision
            return decision
        if known is not None and self.newer(known):
            # Entra got newer data for this worker: this older data must never follow it.
            decision = Decision(
                external_id, line, "superseded", reason="Entra has newer HR data for the worker"
            )
            plan.decisions[external_id] = decision
            plan.superseded.append(external_id)
            return decision
        active = data.get("active", True) is not False
        override: bool | None = None
        leave = _day(dates.get("termination_date"))
        hire = _day(dates.get("hire_date"))
        if self._held:
            self._forget_held(external_id)
        if leave is not None and leave <= today and active:
            active, override = False, False  # the leave date has come: disable now
        elif leave is not None and leave > today:
            self._hold(external_id, "leaver", leave, {**data, "active": False})
            if not active:
                # HR already marks the worker inactive, but the access ends on the date.
                active, override = True, True
        if known is None and not active and not policy.create_inactive_joiners:
            decision = Decision(
                external_id,
                line,
                "skipped",
                reason="inactive in HR and never provisioned: no account is created",
            )
            plan.decisions[external_id] = decision
            return decision
        manager = _manager(data)
        fp = fingerprint(data if override is None else {**data, "active": override})
        if known is None:
            action: Action = "joiner"
        elif known.fingerprint == fp and not policy.full_send:
            action = "unchanged"
        elif not known.active and active:
            action = "rehire"
        elif known.active and not active:
            action = "leaver"
        else:
            action = "mover"  # changed, or a forced full send
        decision = Decision(
            external_id, line, action, override, manager=manager, feed=self.owner(known)
        )
        if action in ("joiner", "rehire") and hire is not None and hire > self._lookahead:
            due = hire - dt.timedelta(days=policy.lookahead_days)
            self._hold(
                external_id,
                "joiner",
                due,
                data if override is None else {**data, "active": override},
            )
            decision.action, decision.reason = "held", f"{action} held until {due.isoformat()}"
        plan.decisions[external_id] = decision
        return decision

    def _other_spelling(self, external_id: str) -> str | None:
        """The known worker whose externalId is this one in other case, if any."""
        if not self.known:
            return None
        if self._spellings is None:
            self._spellings = {id_key(ext): ext for ext in self.known}
        other = self._spellings.get(id_key(external_id))
        return other if other != external_id else None

    def present(self, external_id: str) -> None:
        """The worker is in the file but its row was rejected: not a leaver, nothing sent. A
        rejected row in other case also keeps the known worker it may be (as a valid row in
        other case does): a row that could not be read must never disable anyone."""
        self._present.add(external_id)
        if external_id not in self.known and (other := self._other_spelling(external_id)):
            self._present.add(other)

    def newer(self, known: Known) -> bool:
        """Whether Entra got HR data for this worker newer than this plan's: the worker's own
        order, or a newer run of the full feed that owns it (it restated every worker)."""
        order = self.policy.order
        return known.order > order or self.policy.watermarks.get(known.feed, "") > order

    def owner(self, known: Known | None) -> str:
        """The feed owning the worker after this data: a full feed takes over every worker it
        lists; a delta feed (and the HTTP API) keeps the owner a worker has, and owns only the
        workers it brings."""
        if known is None or self.policy.mode == "full":
            return self.policy.feed
        return known.feed

    def finish(self) -> Plan:
        plan = self.plan
        policy = self.policy
        listed = plan.decisions.keys() | self._present
        if policy.mode == "full" and plan.valid_rows:
            # A file with no valid row says nothing about who left: it never makes leavers.
            gone = sorted(
                ext
                for ext, known in self.known.items()
                if known.feed == policy.feed and known.active and ext not in listed
            )
            plan.absent_leavers = [ext for ext in gone if not self.newer(self.known[ext])]
            plan.superseded += [ext for ext in gone if self.newer(self.known[ext])]
            for (external_id, _kind), held in self._held.items():
                if (
                    held.feed == policy.feed
                    and external_id not in listed
                    and held.order <= policy.order
                ):
                    plan.cancel.append(held)  # the worker is gone from the feed
        for ext, decision in plan.decisions.items():
            known = self.known.get(ext)
            if known is None or decision.action == "superseded":
                continue
            if decision.feed != known.feed:
                plan.takeovers.append(ext)
            if decision.action in ("unchanged", "held") and (
                policy.mode == "delta" or decision.feed != known.feed
            ):
                # A full feed's watermark restates its workers; a delta restates each one.
                plan.restated.append(ext)
        self._waves()
        self._managers()
        self._threshold()
        return plan

    # --- helpers -------------------------------------------------------------------------

    def _hold(
        self,
        external_id: str,
        kind: Literal["joiner", "leaver"],
        due: dt.date,
        record: dict[str, Any],
    ) -> None:
        self.plan.hold.append(
            Held(external_id, kind, due.isoformat(), self.policy.feed, record, self.policy.order)
        )

    def _forget_held(self, external_id: str) -> None:
        # The file restates the worker: earlier held changes give way to what it says now.
        for kind in ("joiner", "leaver"):
            held = self._held.get((external_id, kind))
            if held is not None and held.order <= self.policy.order:
                del self._held[(external_id, kind)]
                self.plan.cancel.append(held)

    def _waves(self) -> None:
        """A joiner or a rehire goes one wave after its manager when the manager is a joiner of
        the same run: Entra cannot link a manager that does not exist yet (it skips the link
        and never comes back to it). Movers and leavers need no wave: they go after every
        joiner (``planning.SEND_PARTS``); a rehired manager's account exists already.

        Iterative with memory, so a long chain (or a cycle from a shifted manager column)
        costs linear time; a cycle is cut where it closes."""
        decisions = self.plan.decisions
        joiners = {ext for ext, d in decisions.items() if d.action == "joiner"}
        rehires = {ext for ext, d in decisions.items() if d.action == "rehire"}
        depth: dict[str, int] = {}
        for start in joiners | rehires:
            chain: list[str] = []
            on_chain: set[str] = set()
            ext: str | None = start
            while ext is not None and ext not in depth and ext not in on_chain:
                chain.append(ext)
                on_chain.add(ext)
                manager = decisions[ext].manager
                ext = manager if manager in joiners else None
            base = depth.get(ext, -1) if ext is not None and ext in depth else -1
            for member in reversed(chain):
                base += 1
                depth[member] = base
        for ext, value in depth.items():
            decisions[ext].wave = value

    def _managers(self) -> None:
        plan = self.plan
        for ext, decision in plan.decisions.items():
            manager = decision.manager
            if manager and manager not in plan.decisions and manager not in self.known:
                plan.manager_warnings.append(ext)

    def _threshold(self) -> None:
        plan = self.plan
        policy = self.policy
        population = sum(1 for k in self.known.values() if k.feed == policy.feed and k.active)
        plan.threshold = max(
            policy.threshold_count, int(population * policy.threshold_percent / 100)
        )
        leavers = [ext for ext, d in plan.decisions.items() if d.action == "leaver"]
        leavers += plan.absent_leavers
        if len(leavers) > plan.threshold:
            plan.held_for_approval = leavers


def _day(value: str | None) -> dt.date | None:
    return None if not value else dt.date.fromisoformat(value[:10])


def _manager(data: dict[str, Any]) -> str | None:
    extension = data.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    if not extension:
        return None
    manager = extension.get("manager")
    return manager.get("value") if manager else None


def today_in(zone: str, now: dt.datetime | None = None) -> dt.date:
    from zoneinfo import ZoneInfo

    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(ZoneInfo(zone)).date()
