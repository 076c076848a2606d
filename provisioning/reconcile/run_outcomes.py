"""The outcome file of a run (``state/outcomes/<run-id>.json``): one entry per record sent, by
bulkId, ``pending`` until Entra's provisioning log (or its silence) gives it a final state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..status import FINAL_OUTCOMES

OUTCOMES = "outcomes/"


@dataclass
class RunOutcomes:
    """The outcome file of one run."""

    run_id: str
    results_prefix: str
    kind: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    etag: str | None = None
    changed: bool = False

    @property
    def name(self) -> str:
        return f"{OUTCOMES}{self.run_id}.json"

    def open_records(self) -> Iterable[dict[str, Any]]:
        return (r for r in self.records.values() if is_open(r))

    @property
    def all_final(self) -> bool:
        return not any(is_open(r) for r in self.records.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.records.values():
            out[record["state"]] = out.get(record["state"], 0) + 1
        return out


def is_open(record: dict[str, Any]) -> bool:
    """Not final yet: no outcome, or a manager Entra skipped that a later entry of the same
    change may still set."""
    return record["state"] not in FINAL_OUTCOMES or record.get("manager") == "pending"


def ordinal(record: dict[str, Any]) -> int:
    """The record's ordinal in its file; 0 when unknown (HTTP changes, older trackings)."""
    return int(record.get("record") or 0)
