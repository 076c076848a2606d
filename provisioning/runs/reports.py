"""Human- and machine-readable reports of a conversion: rejected rows and the summary.

Rejected-row reports carry HR values so a person can fix the source; they go to files the
operator controls (the results container, a CLI output folder), never to logs.
"""

from __future__ import annotations

import csv
import html
from typing import Any, Protocol

from ..convert.validation import RowError
from ..status import colour as status_colour

REJECTED_COLUMNS = ("file", "record", "line", "column", "attribute", "reason", "value")
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
                error.record,
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


# Batch statuses that are not a run's: a batch accepted looks like a run complete.
_BATCH_STATUS = {"accepted": "complete"}


# The look of every report page (runs, drift).
REPORT_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#201f1e}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #edebe9;padding:4px 8px;
text-align:left}td.n{text-align:right}.b{color:#fff;border-radius:3px;padding:1px 6px}"""


def render_run_html(summary: dict[str, Any]) -> str:
    """A small self-contained page for a person: what happened, no HR values."""
    esc = html.escape
    status = str(summary.get("status", ""))

    def badge(value: Any) -> str:
        colour = status_colour(_BATCH_STATUS.get(str(value), str(value))) or "#605e5c"
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
    plan_section = _plan_html(summary.get("plan"))
    outcomes_section = _outcomes_html(summary.get("outcomes"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Provisioning run {esc(str(summary.get("run_id", "")))}</title>
<style>
{REPORT_CSS}
</style></head><body>
<h1>Provisioning run {badge(status)}</h1>
<table>{rows}</table>
<h2>Counts</h2><table>{count_rows}</table>
{outcomes_section}
{plan_section}
<h2>Rejected rows by attribute</h2>
<table><tr><th>attribute</th><th>rows</th></tr>{rejections}</table>
<p>Each rejected row, with its record number, line and reason, is in
<code>rejected.csv</code>; each record
sent, with its batch and status, in <code>ledger.csv</code>.</p>
<h2>Bulk requests</h2>
<table><tr><th>#</th><th>status</th><th>HTTP</th><th>operations</th><th>attempts</th>
<th>request-id</th><th>detail</th></tr>{batch_rows}</table>
</body></html>
"""


_PLAN_COLOURS = {
    "joiner": "#107c10",
    "mover": "#0078d4",
    "rehire": "#5c2d91",
    "leaver": "#a4262c",
    "unchanged": "#8a8886",
    "skipped": "#8a8886",
    "conflict": "#a4262c",
    "held": "#ca5010",
    "held_for_approval": "#d13438",
    "rejected": "#605e5c",
}


def bar_chart_svg(counts: dict[str, int], width: int = 520) -> str:
    """A horizontal bar chart of the counts as inline SVG (no script, no external files)."""
    esc = html.escape
    top = max([1, *counts.values()])
    row, label_width, bar_room = 26, 140, width - 140 - 60
    parts = []
    for i, (name, value) in enumerate(counts.items()):
        y = i * row
        length = round(bar_room * value / top)
        colour = _PLAN_COLOURS.get(name, "#605e5c")
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 17}" text-anchor="end">{esc(name)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{length}" height="18" fill="{colour}">'
            f"<title>{esc(name)}: {value}</title></rect>"
            f'<text x="{label_width + length + 6}" y="{y + 17}">{value}</text>'
        )
    height = row * len(counts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="plan counts" '
        f'width="{width}" height="{height}" font-size="13" font-family="system-ui,sans-serif">'
        + "".join(parts)
        + "</svg>"
    )


def _outcomes_html(outcomes: dict[str, Any] | None) -> str:
    """What Entra did with the records (filled in by the reconciliation timer)."""
    if not outcomes:
        return ""
    esc = html.escape
    count_rows = "".join(
        f"<tr><td>{esc(state)}</td><td class=n>{count}</td></tr>"
        for state, count in sorted(outcomes.get("counts", {}).items())
    )
    failure_rows = "".join(
        "<tr>"
        f"<td class=n>{esc(str(f.get('record') or ''))}</td>"
        f"<td class=n>{esc(str(f.get('line')))}</td>"
        f"<td>{esc(str(f.get('error_code') or ''))}</td>"
        f"<td>{esc(str(f.get('reason') or ''))}</td>"
        f"<td>{esc(str(f.get('recommended_action') or ''))}</td>"
        "</tr>"
        for f in outcomes.get("failures", [])
    )
    failures = (
        "<h3>Failures for a person to fix</h3><table><tr><th>record</th><th>line</th><th>error</th>"
        f"<th>reason</th><th>recommended action</th></tr>{failure_rows}</table>"
        "<p>All failures are in <code>failures.csv</code>.</p>"
        if failure_rows
        else ""
    )
    return f"""<h2>Entra outcomes: {esc(str(outcomes.get("status")))}</h2>
<p>From the provisioning logs, updated {esc(str(outcomes.get("updated")))}; each record's
outcome is in <code>ledger.csv</code>.</p>
<table><tr><th>outcome</th><th>records</th></tr>{count_rows}</table>
{failures}"""


def _plan_html(plan: dict[str, Any] | None) -> str:
    if not plan:
        return ""
    esc = html.escape
    changed: dict[str, int] = {}
    for mover in plan.get("movers", []):
        for attribute in mover.get("changed") or []:
            changed[attribute] = changed.get(attribute, 0) + 1
    changed_rows = "".join(
        f"<tr><td>{esc(name)}</td><td class=n>{count}</td></tr>"
        for name, count in sorted(changed.items(), key=lambda kv: -kv[1])
    )
    held = plan.get("held", [])
    held_rows = "".join(
        f"<tr><td>{esc(h['kind'])}</td><td>{esc(h['due'])}</td></tr>" for h in held[:200]
    )
    approval = ""
    if plan.get("held_for_approval"):
        approval = (
            f"<p><strong>{len(plan['held_for_approval'])} leavers exceed the safety threshold "
            f"of {esc(str(plan.get('leaver_threshold')))}</strong>: nobody was disabled. "
            "Approve the run (state/approvals/&lt;run-id&gt; or "
            "<code>python -m provisioning approve RUN_ID</code>) to send them.</p>"
        )
    return f"""<h2>Plan (feed {esc(str(plan.get("feed")))}, {esc(str(plan.get("mode")))})</h2>
{bar_chart_svg(plan.get("counts", {}))}
{approval}
{_budget_html(plan.get("budget"))}
<h3>Attributes changed by movers</h3>
<table><tr><th>attribute</th><th>movers</th></tr>{changed_rows}</table>
<h3>Held until a date</h3>
<table><tr><th>change</th><th>due</th></tr>{held_rows}</table>
<p>{len(plan.get("manager_not_found", []))} workers have a manager who is neither in the file
nor known (warning: the manager link will not resolve).</p>
"""


def _budget_html(budget: dict[str, Any] | None) -> str:
    """The run's calls against the daily quota; when it does not fit, when each part goes."""
    if not budget:
        return ""
    esc = html.escape
    line = (
        f"<p>{budget['requests_needed']} bulk requests needed; {budget['calls_left_now']} of "
        f"the daily quota of {budget['daily_quota']} left when the run was planned.</p>"
    )
    if budget.get("fits_now"):
        return line
    rows = "".join(
        f"<tr><td>{esc(p['part'])}</td><td class=n>{p['records']}</td>"
        f"<td class=n>{p['requests']}</td><td>{esc(str(p['first_request'] or ''))}</td>"
        f"<td>{esc(str(p['last_request'] or ''))}</td></tr>"
        for p in budget.get("parts", [])
    )
    return f"""<h3>Spread over days by the daily quota</h3>
{line}
<p><strong>{esc(budget.get("reason", ""))}</strong></p>
<table><tr><th>part</th><th>records</th><th>requests</th><th>first request</th>
<th>last request</th></tr>{rows}</table>"""


def html_page(title: str, body: str) -> str:
    """A self-contained page styled like the run report; ``body`` is HTML already escaped."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
{REPORT_CSS}
</style></head><body>
{body}
</body></html>
"""
