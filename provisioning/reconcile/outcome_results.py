"""The results of the outcome pass: each run's ledger, failures, summary and report rewritten with
Entra's outcome of every record, and HTTP changes' records updated."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from ..changes.records import record_entra_outcomes
from ..clock import iso
from ..graph.outcomes import LEDGER_COLUMNS, TextToBlob
from ..runs.claims import Results
from ..runs.reports import csv_safe, render_run_html
from ..settings import RESULTS_CONTAINER
from ..status import FINAL_OUTCOMES
from ..storage import BlobStore
from .run_outcomes import RunOutcomes, ordinal

LEDGER_OUTCOME_COLUMNS = (
    "entra_status",
    "entra_action",
    "error_code",
    "error_reason",
    "recommended_action",
    "target_id",
    "log_time",
    "sends",
    "manager",
    "manager_reason",
    "match",
)
FAILURE_COLUMNS = (
    "externalId",
    "record",
    "line",
    "batch",
    "error_code",
    "error_category",
    "reason",
    "recommended_action",
    "sends",
)


def write_results(store: BlobStore, run: RunOutcomes, done: bool, now: dt.datetime) -> None:
    """The run's results with each record's outcome: ledger, failures, summary, report (and,
    for HTTP changes, each change record); ``done``: every outcome is final."""
    results = Results(store, run.results_prefix)
    if run.kind == "changes":
        write_change_outcomes(store, run)
    write_ledger(store, run, results)
    failures = [(bulk, r) for bulk, r in run.records.items() if r["state"] in ("failure",)]
    failures_blob = store.staged(RESULTS_CONTAINER, results.path("failures.csv"))
    writer = csv.writer(TextToBlob(failures_blob))
    writer.writerow(FAILURE_COLUMNS)
    failures.sort(key=lambda item: (str(item[1]["batch"]), ordinal(item[1]), item[1]["line"]))
    for _bulk, r in failures:
        writer.writerow(
            [
                csv_safe(r["id"]),
                r.get("record", ""),
                r["line"],
                r["batch"],
                r.get("error_code") or "",
                r.get("error_category") or "",
                csv_safe(r.get("reason") or ""),
                csv_safe(r.get("recommended_action") or ""),
                r["sends"],
            ]
        )
    failures_blob.commit("text/csv; charset=utf-8")
    summary = results.read_json("summary.json") or {
        "run_id": run.run_id,
        "kind": run.kind,
        "status": "complete",
    }
    summary["outcomes"] = {
        "status": "complete" if done else "pending",
        "updated": iso(now),
        "records": len(run.records),
        "counts": run.counts(),
        "retried_records": sum(1 for r in run.records.values() if r["sends"] > 1),
        # Managers Entra could not resolve (followed up from state/manager-links.json) and
        # sends the log could not tell apart from another send of the same worker.
        "managers_unresolved": sum(
            1 for r in run.records.values() if r.get("manager") == "unresolved"
        ),
        "ambiguous": sum(1 for r in run.records.values() if r.get("match") == "ambiguous"),
        "permanent_failures": len(failures),
        # For a person: the first failures with Entra's advice; all are in failures.csv.
        "failures": [
            {
                "externalId": r["id"],
                "record": r.get("record", ""),
                "line": r["line"],
                "error_code": r.get("error_code"),
                "reason": r.get("reason"),
                "recommended_action": r.get("recommended_action"),
            }
            for _bulk, r in failures[:50]
        ],
    }
    results.write_json("summary.json", summary)
    results.write_text("report.html", render_run_html(summary), "text/html; charset=utf-8")


def write_change_outcomes(store: BlobStore, run: RunOutcomes) -> None:
    """HTTP changes: each change's records get their outcome (the flush tracked them with
    the action ``change <id>`` and the record's index as its line)."""
    by_change: dict[str, dict[int, dict[str, Any]]] = {}
    for record in run.records.values():
        change_id = record["action"].removeprefix("change ")
        by_change.setdefault(change_id, {})[record["line"]] = {
            "status": record["state"],
            "action": record.get("entra_action"),
            "error_code": record.get("error_code"),
            "reason": record.get("reason"),
            "recommended_action": record.get("recommended_action"),
            "target_id": record.get("target_id"),
            "log_time": record.get("log_time"),
            "sends": record["sends"],
        }
    for change_id, outcomes in by_change.items():
        record_entra_outcomes(store, change_id, outcomes, FINAL_OUTCOMES)


def write_ledger(store: BlobStore, run: RunOutcomes, results: Results) -> None:
    """Rewrite the run's ledger with each record's outcome, streaming the old one."""
    name = results.path("ledger.csv")
    out = store.staged(RESULTS_CONTAINER, name)
    writer = csv.writer(TextToBlob(out))
    writer.writerow((*LEDGER_COLUMNS, *LEDGER_OUTCOME_COLUMNS))
    written: set[str] = set()
    bulk_column = LEDGER_COLUMNS.index("bulkId")
    old = store.open_read(RESULTS_CONTAINER, name)
    if old is not None:
        with io.TextIOWrapper(old, encoding="utf-8", newline="") as text:
            rows = csv.reader(text)
            next(rows, None)
            for row in rows:
                base = row[: len(LEDGER_COLUMNS)]
                record = run.records.get(base[bulk_column])
                writer.writerow((*base, *_outcome_cells(record)))
                written.add(base[bulk_column])
    for bulk, record in run.records.items():
        if bulk not in written:
            writer.writerow(
                (
                    record["batch"],
                    record.get("record", ""),
                    record["line"],
                    csv_safe(record["id"]),
                    bulk,
                    record["action"],
                    "accepted",
                    202,
                    "",
                    *_outcome_cells(record),
                )
            )
    out.commit("text/csv; charset=utf-8")


def _outcome_cells(record: dict[str, Any] | None) -> tuple[Any, ...]:
    if record is None:
        return ("",) * len(LEDGER_OUTCOME_COLUMNS)
    return (
        record["state"],
        record.get("entra_action") or "",
        record.get("error_code") or "",
        csv_safe(record.get("reason") or ""),
        csv_safe(record.get("recommended_action") or ""),
        record.get("target_id") or "",
        record.get("log_time") or "",
        record["sends"],
        record.get("manager") or "",
        csv_safe(record.get("manager_reason") or ""),
        record.get("match") or "",
    )
