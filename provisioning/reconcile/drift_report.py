"""The drift report: Entra's users compared with the worker state, shard by shard, written for
a person (drift.html) and for tools (drift.json, drift/latest.json); it sends nothing.

Users are read with their manager expanded (pages of at most 100, Graph's limit with
``$expand``); the manager comes back as an object id, matched to an employeeId through the
same listing, which therefore keeps the object id and employeeId of every user that has one."""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Callable, Collection
from typing import Any

from ..clock import iso, utcnow
from ..convert.bulk import Operation
from ..graph.client import GraphClient
from ..graph.users import PAGE_SIZE, entra_users
from ..jml.lifecycle import Known
from ..jml.state import WorkerState, shard_of
from ..runs.claims import Results, new_run_id
from ..runs.reports import bar_chart_svg, html_page
from ..settings import RESULTS_CONTAINER, Settings
from ..storage import BlobStore
from .drift import (
    COMPARED,
    MANAGER,
    OTHER_MANAGER,
    SELECT,
    DriftReport,
    compare,
    fix_operations,
    managed_id,
)
from .manager_links import open_workers

log = logging.getLogger(__name__)


HTML_LIST_LIMIT = 1000


DRIFT_PREFIX = "drift/"


LATEST = f"{DRIFT_PREFIX}latest.json"


def write_drift_report(store: BlobStore, report: DriftReport, moment: dt.datetime) -> str:
    """Write drift.json and drift.html under ``drift/<date>/<report-id>/`` of the results
    container, then ``drift/latest.json`` (the same JSON); returns the report's prefix."""
    report_id = new_run_id(moment, "drift000")
    prefix = f"{DRIFT_PREFIX}{moment:%Y-%m-%d}/{report_id}/"
    payload = {
        "report_id": report_id,
        "generated": iso(moment),
        "results_prefix": prefix,
        **report.to_json(),
    }
    results = Results(store, prefix)
    results.write_json("drift.json", payload)
    results.write_text("drift.html", render_drift_html(payload), "text/html; charset=utf-8")
    # Last, so latest.json only ever names a complete report.
    store.write_json(RESULTS_CONTAINER, LATEST, payload)
    return prefix


def render_drift_html(payload: dict[str, Any], limit: int = HTML_LIST_LIMIT) -> str:
    """The report for a person: counts, then each kind's HR ids (at most ``limit`` each)."""
    esc = html.escape
    counts = payload["counts"]

    def more(total: int) -> str:
        if total <= limit:
            return ""
        return f"<p>and {total - limit} more (all in <code>drift.json</code>)</p>"

    def ids(title: str, values: list[str]) -> str:
        items = "".join(f"<li><code>{esc(v)}</code></li>" for v in values[:limit])
        return f"<h2>{esc(title)} ({len(values)})</h2><ul>{items}</ul>{more(len(values))}"

    labels = [
        ("Workers known to the state", "workers"),
        ("Entra users read", "entra_users"),
        ("Enabled leavers", "enabled_leavers"),
        ("Missing accounts", "missing_accounts"),
        ("Accounts differing from HR", "mismatches"),
        ("Manager pending follow-up (Entra could not resolve it yet)", "manager_pending_followup"),
        ("Skipped: outcome of the last send not known yet", "skipped_pending"),
        ("Entra users not provisioned from HR", "unmanaged_users"),
    ]
    count_rows = "".join(
        f"<tr><th>{esc(label)}</th><td class=n>{counts[key]}</td></tr>" for label, key in labels
    )
    attribute_rows = "".join(
        f"<tr><td>{esc(name)}</td><td class=n>{n}</td></tr>"
        for name, n in payload["mismatches_by_attribute"].items()
    )
    mismatches = payload["mismatches"]
    mismatch_rows = "".join(
        f"<tr><td><code>{esc(m['externalId'])}</code></td>"
        f"<td>{esc(', '.join(m['attributes']))}</td></tr>"
        for m in mismatches[:limit]
    )
    chart = bar_chart_svg(
        {
            "enabled leavers": counts["enabled_leavers"],
            "missing accounts": counts["missing_accounts"],
            "mismatches": counts["mismatches"],
        }
    )
    body = f"""<h1>Drift between HR and Entra</h1>
<table><tr><th>Report</th><td>{esc(payload["report_id"])}</td></tr>
<tr><th>Generated</th><td>{esc(payload["generated"])}</td></tr></table>
<h2>Counts</h2><table>{count_rows}</table>
{chart}
<p>HR ids and attribute names only: the values are in HR and in Entra.</p>
{ids("Manager pending follow-up", payload.get("manager_pending_followup", []))}
{ids("Enabled leavers", payload["enabled_leavers"])}
{ids("Missing accounts", payload["missing_accounts"])}
<h2>Accounts differing from HR ({len(mismatches)})</h2>
<table><tr><th>attribute</th><th>workers</th></tr>{attribute_rows}</table>
<table><tr><th>externalId</th><th>attributes</th></tr>{mismatch_rows}</table>
{more(len(mismatches))}"""
    return html_page(f"Drift report {payload['report_id']}", body)


async def drift_report(
    settings: Settings,
    store: BlobStore,
    graph: GraphClient,
    *,
    pending: Collection[str] = frozenset(),
    manager_links: Collection[str] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """Compare the state with Entra's users, write the report, send nothing.

    ``pending``: HR ids sent whose outcome is not known yet (skipped). ``manager_links``:
    workers with an open manager link (listed as pending follow-up rather than as manager
    drift); None reads them from ``state/manager-links.json``. Records are read one state
    shard at a time; of each Entra user only the compared properties are kept.

    Returns ``{"results_prefix": str (drift/<date>/<report-id>/ in the results container),
    "generated": ISO time, "counts": DriftReport.counts(), "report": DriftReport,
    "operations": list[Operation]}``;
    ``operations`` are the fixes (``fix_operations``) when ``settings.drift_auto_fix``, else
    empty."""
    moment = clock()
    state = WorkerState(store)
    state.fold()
    known = state.index()
    links = open_workers(store) if manager_links is None else manager_links
    by_shard: dict[str, list[tuple[Any, ...]]] = {}
    # Object id -> employeeId of every user with one: a manager need not be a worker the
    # state knows (Entra resolves a reference against any user's employeeId).
    employee_ids: dict[str, str] = {}
    outside = DriftReport()
    async for user in entra_users(graph.sdk, SELECT, page_size=page_size, expand_manager=True):
        if isinstance(user["employeeId"], str) and isinstance(user["id"], str):
            employee_ids[user["id"]] = user["employeeId"]
        employee_id = managed_id(user, known, pending)
        if employee_id is None:
            outside.entra_users += 1
            outside.unmanaged_users += 1
            continue
        by_shard.setdefault(shard_of(employee_id), []).append(
            (*(user[p] for p in COMPARED), user[MANAGER])
        )

    def as_user(projection: tuple[Any, ...]) -> dict[str, Any]:
        user = dict(zip(COMPARED, projection, strict=False))
        manager_id = projection[len(COMPARED)]
        user[MANAGER] = None if manager_id is None else employee_ids.get(manager_id, OTHER_MANAGER)
        return user

    known_by_shard: dict[str, dict[str, Known]] = {}
    for external_id, worker in known.items():
        known_by_shard.setdefault(shard_of(external_id), {})[external_id] = worker
    parts = [outside]
    operations: list[Operation] = []
    for shard in sorted(known_by_shard.keys() | by_shard.keys()):
        shard_known = known_by_shard.get(shard, {})
        projections = by_shard.pop(shard, [])
        # Records of those compared (with an account) or possibly missing one (active).
        with_account = {p[0] for p in projections}
        needed = [
            external_id
            for external_id, worker in shard_known.items()
            if external_id not in pending and (worker.active or external_id in with_account)
        ]
        records = state.records(needed)
        users = (as_user(p) for p in projections)
        part = compare(shard_known, records, users, pending=pending, manager_links=links)
        if settings.drift_auto_fix:
            operations += fix_operations(part, records)
        parts.append(part)
    report = DriftReport.combine(parts)
    prefix = write_drift_report(store, report, moment)
    counts = report.counts()
    log.info(
        "drift: %d workers, %d Entra users: %d enabled leavers, %d missing accounts, "
        "%d mismatches, %d manager pending follow-up, %d skipped (pending), %d unmanaged users; "
        "%d fixes prepared",
        counts["workers"],
        counts["entra_users"],
        counts["enabled_leavers"],
        counts["missing_accounts"],
        counts["mismatches"],
        counts["manager_pending_followup"],
        counts["skipped_pending"],
        counts["unmanaged_users"],
        len(operations),
    )
    return {
        "results_prefix": prefix,
        "generated": iso(moment),
        "counts": counts,
        "report": report,
        "operations": operations,
    }
