"""The results of a sending run, batch by batch: ``batches/NNNNNN.json``, the ledger rows, the
counts and the batch list of the summary. Shared by file runs and releases.

Each batch file lists its records (sent and superseded), so a resumed run rebuilds the ledger
and the batch list of its earlier attempts from them, even after a crash lost the ledger
being written.
"""

from __future__ import annotations

import csv
from typing import Any

from ..graph.outcomes import LEDGER_COLUMNS, TextToBlob, batch_entry, count_batch, outcome_record
from ..graph.sender import Outgoing, SentBatch
from ..settings import RESULTS_CONTAINER
from ..storage import BlobStore, StagedBlob
from .claims import Results
from .reports import csv_safe
from .tracking import track_accepted

COUNTS = ("records_sent", "records_accepted", "records_rejected_by_graph", "records_superseded")


def _row(batch: int, record: list[Any], status: dict[str, Any]) -> list[Any]:
    bulk_id, external_id, line, action, *ordinal = record  # batches of older versions: no ordinal
    return [
        batch,
        ordinal[0] if ordinal else "",
        line,
        csv_safe(external_id),
        bulk_id,
        action,
        status.get("status", ""),
        status.get("http_status", ""),
        status.get("request_id", ""),
    ]


def _records(items: list[Outgoing]) -> list[list[Any]]:
    return [[i.op.bulk_id, i.op.external_id, i.op.line, i.action, i.op.record or ""] for i in items]


class BatchBook:
    """What one run (or release) sent, written as it goes; :meth:`close` commits the ledger."""

    def __init__(self, store: BlobStore, results: Results, *, run_id: str, kind: str) -> None:
        self.store = store
        self.results = results
        self.run_id = run_id
        self.kind = kind
        self.counts = dict.fromkeys(COUNTS, 0)
        self.batches: list[dict[str, Any]] = []
        self._ledger_blob: StagedBlob = store.staged(RESULTS_CONTAINER, results.path("ledger.csv"))
        self._ledger = csv.writer(TextToBlob(self._ledger_blob))
        self._ledger.writerow(LEDGER_COLUMNS)

    def replay(self, before: int) -> None:
        """Take in batches 1 .. ``before`` - 1, sent by earlier attempts of the run."""
        for index in range(1, before):
            record = self.results.read_json(self.results.batch_name(index))
            if record is None:
                continue
            entry = {"status": "superseded"}
            if record.get("status") != "superseded":
                entry = batch_entry(None, record, resent=False, earlier=True)
                self.batches.append(entry)
                count_batch(self.counts, record.get("operations", 0), entry)
            self._rows(index, record, entry)

    def record(self, batch: SentBatch, *, resent: bool, accepted_at: Any) -> dict[str, Any]:
        """Write what became of ``batch`` and track what Graph accepted; returns its entry."""
        if batch.outcome is None:
            record: dict[str, Any] = {"batch": batch.index, "status": "superseded"}
            entry: dict[str, Any] = {"status": "superseded"}
        else:
            record = outcome_record(batch.request, batch.outcome, resent)
            record["maybe_applied_twice"] = batch.maybe_applied and bool(batch.accepted)
            entry = batch_entry(batch.request, record, resent=resent, earlier=False)
            self.batches.append(entry)
            count_batch(self.counts, len(batch.sent), entry)
        record["records"] = _records(batch.sent)
        record["superseded"] = _records(batch.superseded)
        self.counts["records_superseded"] += len(batch.superseded)
        self.results.write_json(self.results.batch_name(batch.index), record)
        self._rows(batch.index, record, entry)
        track_accepted(
            self.store,
            batch,
            run_id=self.run_id,
            results_prefix=self.results.prefix,
            kind=self.kind,
            accepted_at=accepted_at,
        )
        return entry

    def _rows(self, index: int, record: dict[str, Any], entry: dict[str, Any]) -> None:
        for item in record.get("records", []):
            self._ledger.writerow(_row(index, item, entry))
        for item in record.get("superseded", []):
            self._ledger.writerow(_row(index, item, {"status": "superseded"}))

    def summary(self) -> dict[str, Any]:
        return {**self.counts, "requests": len(self.batches), "batches": self.batches}

    def close(self) -> None:
        self._ledger_blob.commit("text/csv; charset=utf-8")
