"""Which provisioning-log entries belong to which send of a worker (pure: no I/O, no clock).

What real logs show (Microsoft's sample page,
``tests/data/microsoft/provisioning-log-sample.json``):

- one send of one record gives a **group** of entries sharing a ``changeId``: usually one, but a
  create whose manager could not be resolved yet (step ``EntrySynchronizationSkip``) is followed
  seconds later by an update with the same ``changeId`` that sets the manager;
- a second send of the same worker seconds later gets a group of its own (a new ``changeId``),
  and the first group's update can come after it.

So entries are grouped by ``changeId`` first, and groups (not entries) are given to sends, in
time order: Entra processes one job's uploads in the order it accepted them (not documented;
the sample bears it out, and our send gate sends one worker's records one after the other). A
group whose first entry is older than a send (less the clock tolerance) cannot be that send's.
Where the log cannot tell which of two sends a group belongs to, nothing is guessed: the sends
are reported ``ambiguous`` (see :func:`assign`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..graph.provisioning_logs import MANAGER, LogEntry


@dataclass(frozen=True, slots=True)
class Send:
    """One send of a worker awaiting its entries: ``key`` names it (run id, bulkId)."""

    key: tuple[str, str]
    sent: dt.datetime


@dataclass(slots=True)
class Group:
    """The entries of one change of one worker, oldest first."""

    change_id: str
    entries: list[LogEntry] = field(default_factory=list)

    @property
    def first(self) -> LogEntry:
        return self.entries[0]

    @property
    def status(self) -> str:
        """The group's final status: a failure anywhere is the group's, else the last word."""
        if any(e.status == "failure" for e in self.entries):
            return "failure"
        return self.entries[-1].status

    @property
    def failure(self) -> LogEntry | None:
        return next((e for e in self.entries if e.status == "failure"), None)

    @property
    def manager(self) -> str | None:
        """``pending`` while a skipped manager was not set by a later entry of the change,
        ``set`` once an entry set it, None when the change says nothing about the manager."""
        state = None
        for entry in self.entries:
            if MANAGER in entry.skipped:
                state = "pending"
            if entry.manager_set:
                state = "set"
        return state

    @property
    def skip_reason(self) -> str | None:
        return next((e.skip_reason for e in self.entries if MANAGER in e.skipped), None)

    @property
    def skipped_manager(self) -> str | None:
        return next((e.skipped_manager for e in self.entries if e.skipped_manager), None)


def _order(entry: LogEntry) -> tuple[dt.datetime, str]:
    return entry.at, entry.id


def groups_of(entries: Iterable[LogEntry]) -> list[Group]:
    """Entries grouped by ``changeId`` (an entry without one is a group alone), oldest first."""
    groups: dict[str, Group] = {}
    for entry in sorted(entries, key=_order):
        key = entry.change_id or f"entry:{entry.id}"
        groups.setdefault(key, Group(key)).entries.append(entry)
    return sorted(groups.values(), key=lambda g: _order(g.first))


@dataclass(slots=True)
class Assignment:
    """What :func:`assign` decided for one worker."""

    matched: dict[tuple[str, str], Group] = field(default_factory=dict)
    # Sends that wait: a group may be theirs or a later send's, and more entries may settle it
    # (reported ambiguous if their outcome times out first).
    waiting: set[tuple[str, str]] = field(default_factory=set)
    # Sends whose groups share one second with different outcomes: nothing will ever tell
    # them apart. The groups are theirs together, none in particular.
    ambiguous: dict[tuple[str, str], list[Group]] = field(default_factory=dict)


def assign(sends: Sequence[Send], groups: Sequence[Group], tolerance: dt.timedelta) -> Assignment:
    """Give each send of one worker (oldest first) the oldest group that can be its own.

    A group can be a send's when it starts no earlier than the send (less ``tolerance``, for
    the clocks). The oldest such group is the send's unless it could as well be the next send's
    while that send has no group of its own yet (its entries may come later, or the earlier
    send's never: the log cannot say which), or unless it shares its second (the log's
    precision) with another candidate of a different outcome, which makes the order unknown.
    The first case waits for more entries; the second never resolves: those sends are
    ``ambiguous``, with the tied groups."""
    result = Assignment()
    ordered = sorted(sends, key=lambda s: s.sent)
    left = sorted(groups, key=lambda g: _order(g.first))
    index = 0
    while index < len(ordered):
        send = ordered[index]
        candidates = [g for g in left if g.first.at >= send.sent - tolerance]
        if not candidates:
            index += 1
            continue
        group, later = candidates[0], ordered[index + 1 :]
        if later:
            could_be_next = group.first.at >= later[0].sent - tolerance
            if could_be_next and len(candidates) < 1 + len(later):
                result.waiting.update(s.key for s in ordered[index:])
                break
            tied = [g for g in candidates if g.first.at == group.first.at]
            if len({g.status for g in tied}) > 1:
                for other in ordered[index : index + len(tied)]:
                    result.ambiguous[other.key] = tied
                for g in tied:
                    left.remove(g)
                index += len(tied)
                continue
        result.matched[send.key] = group
        left.remove(group)
        index += 1
    return result
