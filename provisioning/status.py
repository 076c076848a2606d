"""How a run can end, and what each ending means: the one table behind the claims, the sweep,
the outcome pass, the log lines the alerts match and the report's colours (README, "Statuses
and exit codes").

``RunStatus`` is a ``StrEnum``: its members are the very strings written in summaries, claims
and seen markers, so documents written before it read the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .errors import EXIT_UNFINISHED, EXIT_UNUSABLE


class RunStatus(StrEnum):
    """The status of a run (a dropped file, a release, a flush)."""

    RUNNING = "running"  # claimed; batches may be in progress (or the process died: resumable)
    COMPLETE = "complete"  # every valid record was accepted (or needed no send), none rejected
    PARTLY_REJECTED = "partly-rejected"  # some records rejected by validation or by Graph
    REJECTED = "rejected"  # nothing got in: the file was unusable, or every record was refused
    HELD_FOR_APPROVAL = "held-for-approval"  # the leavers exceed the threshold; wait approval
    STOPPED = "stopped"  # the provisioning job is paused/quarantined/not started; resumable
    INTERRUPTED = "interrupted"  # Graph kept failing (outage, throttling); resumable
    # Every sender waits: Graph's bucket is full, or the daily quota is used up; resumes itself
    PAUSED = "paused"
    FAILED = "failed"  # Graph refused the app (401/403): fix permissions, then resumable
    SUPERSEDED = "superseded"  # a newer run of the same full feed was accepted
    DUPLICATE = "duplicate"  # the same content was already run: nothing to do
    NOTHING_DUE = "nothing-due"  # a release found no held change due and no approval
    BUSY = "busy"  # another process holds the lock; this one did nothing
    ERROR = "error"  # the run crashed before it could say (seen markers only)


@dataclass(frozen=True, slots=True)
class _Traits:
    final: bool  # the claim is done: never run again
    settled: bool  # the sweep leaves the file where it is
    failing: bool  # counts as a failed attempt of the file (towards max_file_attempts)
    exit_code: int
    log_level: int  # of the run's closing line; the alerts match it
    colour: str  # of the status badge in reports


# Exit codes of the command line and of scripts/run-local for a run's status; 2 and 3 are
# also those of errors (provisioning.errors).
EXIT_OK = 0  # complete, superseded, duplicate, nothing-due
EXIT_REJECTED = 1  # rows or records were rejected: partly-rejected, rejected (not the file)

_GREEN, _BLUE, _PURPLE, _RED, _ORANGE = "#107c10", "#0078d4", "#5c2d91", "#a4262c", "#ca5010"
# Amber, dark enough for white text: part of the file did not get in, or it waits for a person.
_AMBER = "#8a6100"
_GREY = "#605e5c"
_INFO, _WARNING, _ERROR = logging.INFO, logging.WARNING, logging.ERROR

_S = RunStatus
_TRAITS: dict[RunStatus, _Traits] = {
    # final, settled, failing, exit code, level of the closing log line, badge colour
    _S.RUNNING: _Traits(False, False, False, EXIT_UNFINISHED, _INFO, _BLUE),
    _S.COMPLETE: _Traits(True, True, False, EXIT_OK, _INFO, _GREEN),
    _S.PARTLY_REJECTED: _Traits(True, True, False, EXIT_REJECTED, _WARNING, _AMBER),
    # Rejected is final, but not settled: the sweep sets the file aside in failed/.
    _S.REJECTED: _Traits(True, False, False, EXIT_REJECTED, _ERROR, _RED),
    _S.HELD_FOR_APPROVAL: _Traits(False, True, False, EXIT_UNFINISHED, _INFO, _AMBER),
    _S.STOPPED: _Traits(False, False, False, EXIT_UNFINISHED, _ERROR, _ORANGE),
    _S.INTERRUPTED: _Traits(False, False, False, EXIT_UNFINISHED, _ERROR, _ORANGE),
    _S.PAUSED: _Traits(False, False, False, EXIT_UNFINISHED, _WARNING, _AMBER),
    _S.FAILED: _Traits(False, False, True, EXIT_UNFINISHED, _ERROR, _RED),
    _S.SUPERSEDED: _Traits(True, True, False, EXIT_OK, _INFO, _GREY),
    _S.DUPLICATE: _Traits(True, True, False, EXIT_OK, _INFO, _PURPLE),
    _S.NOTHING_DUE: _Traits(True, False, False, EXIT_OK, _INFO, _GREY),
    _S.BUSY: _Traits(False, False, False, EXIT_UNFINISHED, _INFO, _GREY),
    _S.ERROR: _Traits(False, False, True, EXIT_UNFINISHED, _ERROR, _RED),
}

# A run in one of these is done: a claim in one of them is never sent again.
FINAL = frozenset(s for s, t in _TRAITS.items() if t.final)
# Seen-marker statuses after which the sweep leaves a file where it is, never run again.
SETTLED = frozenset(s for s, t in _TRAITS.items() if t.settled)
# Outcomes that count towards max_file_attempts. Not the file's fault, so not counted: a
# stopped job, a busy claim, and an interrupted run (Graph, the token endpoint or the network
# failing for a while).
FAILING = frozenset(s for s, t in _TRAITS.items() if t.failing)
# A file run in one of these may still send batches: its outcomes are not complete yet.
RESUMABLE = frozenset({_S.RUNNING, _S.STOPPED, _S.INTERRUPTED, _S.PAUSED, _S.FAILED})

# What Entra's provisioning log (or its silence) made of one record sent.
OutcomeState = Literal[
    "pending", "success", "warning", "skipped", "failure", "unconfirmed", "superseded"
]
FINAL_OUTCOMES: frozenset[OutcomeState] = frozenset(
    {"success", "warning", "skipped", "failure", "unconfirmed", "superseded"}
)


def _traits(status: str) -> _Traits | None:
    try:
        return _TRAITS[RunStatus(status)]
    except ValueError:
        return None


def exit_code(status: str, *, unusable: bool = False) -> int:
    """The documented exit code of a run that ended ``status``; ``unusable``: the run was
    rejected because its file (or mapping) could not be used at all."""
    if status == RunStatus.REJECTED and unusable:
        return EXIT_UNUSABLE
    traits = _traits(status)
    return traits.exit_code if traits else EXIT_UNFINISHED


def log_level(status: str) -> int:
    """The level of the closing log line of a run that ended ``status``."""
    traits = _traits(status)
    return traits.log_level if traits else logging.INFO


def colour(status: str) -> str | None:
    """The badge colour of ``status`` in reports; None for a status that is not a run's."""
    traits = _traits(status)
    return traits.colour if traits else None
