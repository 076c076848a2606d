"""Human- and machine-readable reports of a conversion: rejected rows and the summary.

Rejected-row reports carry HR values so a person can fix the source; they go to files the
operator controls (the results container, a CLI output folder), never to logs.
"""

from __future__ import annotations

import csv
import html
from typing import Any, Protocol

from .validation import RowError

REJECTED_COLUMNS = ("file", "line", "column", "attribute", "reason", "value")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    """Neutralise spreadsheet formula injection (OWASP): a leading ' makes Excel show text.

    Only reports are escaped; the values sent to Entra stay exactly as HR wrote them.
    """
    return "'" + text if text.startswith(_FORMULA_START) else text


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


class RejectedCsv:
    """Write rejected rows to a CSV report as they come, with formula-safe cells."""

    def __init__(self, out: TextSink) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(REJECTED_COLUMNS)
        self.count = 0

    def __call__(self, error: RowError) -> None:
        self._writer.writerow(
            [
                csv_safe(error.file),
                error.line,
                csv_safe(error.column),
                error.attribute,
                csv_safe(error.reason),
                csv_safe(error.value),
            ]
        )
        self.count += 1


def printable(text: str, limit: int = 40) -> str:
    """A value made safe for a terminal: no control characters, bounded length."""
    clean = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


_STATUS_COLOURS = {
    "complete": "#107c10",
    "accepted": "#107c10",
    "duplicate": "#5c2d91",
    "running": "#0078d4",
    "rejected": "#a4262c",
    "failed": "#a4262c",
    "stopped": "#ca5010",
    "interrupted": "#ca5010",
}


def render_run_html(summary: dict[str, Any]) -> str:
    """A small self-contained page for a person: what happened, no HR values."""
    esc = html.escape
    status = str(summary.get("status", ""))

    def badge(value: Any) -> str:
        colour = _STATUS_COLOURS.get(str(value), "#605e5c")
        return f'<span class="b" style="background:{colour}">{esc(str(value))}</span>'

    facts = [
        ("Run", summary.get("run_id")),
        ("Source blob", summary.get("source_blob")),
        ("Content SHA-256", summary.get("content_hash")),
        ("Mapping", summary.get("mapping")),
        ("Started", summary.get("started")),
        ("Finished", summary.get("finished")),
        ("Duration (s)", summary.get("duration_seconds")),
        ("Attempt", summary.get("attempt")),
        ("Reason", summary.get("reason")),
    ]
    counts = [
        ("Rows read", summary.get("rows_read")),
        ("Rows rejected", summary.get("rows_rejected")),
        ("Records sent", summary.get("records_sent")),
        ("Records accepted by Graph", summary.get("records_accepted")),
        ("Records rejected by Graph", summary.get("records_rejected_by_graph")),
        ("Bulk requests", summary.get("requests")),
    ]
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in facts if v is not None
    )
    count_rows = "".join(
        f"<tr><th>{esc(k)}</th><td class=n>{esc(str(v))}</td></tr>"
        for k, v in counts
        if v is not None
    )
    by_attribute = summary.get("rejections_by_attribute") or {}
    rejections = "".join(
        f"<tr><td>{esc(str(k))}</td><td class=n>{esc(str(v))}</td></tr>"
        for k, v in sorted(by_attribute.items(), key=lambda kv: -kv[1])
    )
    batch_rows = "".join(
        "<tr>"
        f"<td class=n>{esc(str(b.get('batch')))}</td><td>{badge(b.get('status'))}</td>"
        f"<td class=n>{esc(str(b.get('http_status') or ''))}</td>"
        f"<td class=n>{esc(str(b.get('operations') or ''))}</td>"
        f"<td class=n>{esc(str(b.get('attempts') or ''))}</td>"
        f"<td><code>{esc(str(b.get('request_id') or ''))}</code></td>"
        f"<td>{esc(str(b.get('error_message') or ''))}"
        f"{' (resent after a crash)' if b.get('resent_after_crash') else ''}</td>"
        "</tr>"
        for b in summary.get("batches") or []
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Provisioning run {esc(str(summary.get("run_id", "")))}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#201f1e}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #edebe9;padding:4px 8px;
text-align:left}}td.n{{text-align:right}}.b{{color:#fff;border-radius:3px;padding:1px 6px}}
</style></head><body>
<h1>Provisioning run {badge(status)}</h1>
<table>{rows}</table>
<h2>Counts</h2><table>{count_rows}</table>
<h2>Rejected rows by attribute</h2>
<table><tr><th>attribute</th><th>rows</th></tr>{rejections}</table>
<p>Each rejected row, with its line and reason, is in <code>rejected.csv</code>; each record
sent, with its batch and status, in <code>ledger.csv</code>.</p>
<h2>Bulk requests</h2>
<table><tr><th>#</th><th>status</th><th>HTTP</th><th>operations</th><th>attempts</th>
<th>request-id</th><th>detail</th></tr>{batch_rows}</table>
</body></html>
"""
