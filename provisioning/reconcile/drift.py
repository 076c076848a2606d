"""The drift report: what Entra holds now against what HR last got accepted, per worker.

Entra accounts change outside HR (an admin re-enables a leaver, deletes an account, edits a
title), and a provisioning failure can leave an account behind its record. The report compares
the state (the last record Entra accepted for each worker) with the users Graph lists and finds:

- enabled leavers: the state says inactive, the account with that employeeId is enabled;
- missing accounts: the state says active, no account has that employeeId;
- mismatches: an attribute the HR record sets differs in Entra (names only, never values).

Workers whose records were sent but whose outcome is not known yet are skipped. The report
carries HR ids and attribute names only, goes to ``results/drift/<date>/<report-id>/`` (and
``results/drift/latest.json``), and the log gets counts only.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from ..clock import iso, utcnow
from ..convert.bulk import Operation
from ..convert.validation import ENTERPRISE, MULTI_VALUED
from ..graph.client import GraphClient, json_pages
from ..jml.lifecycle import Known
from ..jml.state import WorkerState, id_hash, shard_of
from ..runs.claims import Results, new_run_id
from ..runs.reports import bar_chart_svg, html_page
from ..settings import RESULTS_CONTAINER, Settings
from ..storage import BlobStore

log = logging.getLogger(__name__)

PAGE_SIZE = 999  # the most Graph returns in one page of /users
HTML_LIST_LIMIT = 1000
DRIFT_PREFIX = "drift/"
LATEST = f"{DRIFT_PREFIX}latest.json"
ACCOUNT_ENABLED = "accountEnabled"


def _same(hr: Any, entra: Any) -> bool:
    # Entra keeps no empty strings: an empty HR value and an unset property agree.
    return (hr if hr != "" else None) == (entra if entra != "" else None)


def _same_ignoring_case(hr: Any, entra: Any) -> bool:
    if isinstance(hr, str) and isinstance(entra, str):
        return hr.casefold() == entra.casefold()
    return _same(hr, entra)


def _same_phone(hr: Any, entra: Any) -> bool:
    return ([hr] if hr else []) == list(entra or [])


@dataclass(frozen=True, slots=True)
class _Attribute:
    scim: tuple[str, ...]  # path in the SCIM record
    graph: str  # Graph user property, "employeeOrgData/<part>" for a part of that object
    same: Callable[[Any, Any], bool] = _same


# Entra's default attribute mapping of API-driven inbound provisioning (SCIM -> Graph user).
# ``active`` -> accountEnabled is judged from the state's active flag, in ``compare``.
_ATTRIBUTES = (
    _Attribute(("userName",), "userPrincipalName", _same_ignoring_case),
    _Attribute(("displayName",), "displayName"),
    _Attribute(("title",), "jobTitle"),
    _Attribute(("userType",), "employeeType"),
    _Attribute(("preferredLanguage",), "preferredLanguage"),
    _Attribute(("name", "givenName"), "givenName"),
    _Attribute(("name", "familyName"), "surname"),
    _Attribute(("emails", "value"), "mail", _same_ignoring_case),
    _Attribute(("phoneNumbers", "value"), "businessPhones", _same_phone),
    _Attribute(("addresses", "streetAddress"), "streetAddress"),
    _Attribute(("addresses", "locality"), "city"),
    _Attribute(("addresses", "region"), "state"),
    _Attribute(("addresses", "postalCode"), "postalCode"),
    _Attribute(("addresses", "country"), "country"),
    _Attribute((ENTERPRISE, "department"), "department"),
    _Attribute((ENTERPRISE, "organization"), "companyName"),
    _Attribute((ENTERPRISE, "division"), "employeeOrgData/division"),
    _Attribute((ENTERPRISE, "costCenter"), "employeeOrgData/costCenter"),
)
# What drift needs of each user, in the order of the compact projection kept per user.
COMPARED = tuple(
    dict.fromkeys(["employeeId", ACCOUNT_ENABLED, *(a.graph.split("/")[0] for a in _ATTRIBUTES)])
)
SELECT = ("id", *COMPARED)


@dataclass
class DriftReport:
    """Findings by HR id; ``mismatches`` maps an id to the Graph properties that differ."""

    enabled_leavers: list[str] = field(default_factory=list)
    missing_accounts: list[str] = field(default_factory=list)
    mismatches: dict[str, list[str]] = field(default_factory=dict)
    workers: int = 0  # workers known to the state
    entra_users: int = 0  # users Graph listed
    skipped_pending: int = 0
    unmanaged_users: int = 0  # no employeeId, or one the state does not know

    @classmethod
    def combine(cls, parts: Iterable[DriftReport]) -> DriftReport:
        """One report of parts over disjoint workers (the shards of the state)."""
        out = cls()
        for part in parts:
            out.enabled_leavers += part.enabled_leavers
            out.missing_accounts += part.missing_accounts
            out.mismatches.update(part.mismatches)
            out.workers += part.workers
            out.entra_users += part.entra_users
            out.skipped_pending += part.skipped_pending
            out.unmanaged_users += part.unmanaged_users
        out.enabled_leavers.sort()
        out.missing_accounts.sort()
        out.mismatches = dict(sorted(out.mismatches.items()))
        return out

    def counts(self) -> dict[str, int]:
        return {
            "workers": self.workers,
            "entra_users": self.entra_users,
            "enabled_leavers": len(self.enabled_leavers),
            "missing_accounts": len(self.missing_accounts),
            "mismatches": len(self.mismatches),
            "skipped_pending": self.skipped_pending,
            "unmanaged_users": self.unmanaged_users,
        }

    def by_attribute(self) -> dict[str, int]:
        """How many workers differ in each attribute, most first."""
        tally: dict[str, int] = {}
        for names in self.mismatches.values():
            for name in names:
                tally[name] = tally.get(name, 0) + 1
        return dict(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "mismatches_by_attribute": self.by_attribute(),
            "enabled_leavers": self.enabled_leavers,
            "missing_accounts": self.missing_accounts,
            "mismatches": [
                {"externalId": external_id, "attributes": names}
                for external_id, names in self.mismatches.items()
            ],
        }


# --- reading Entra ------------------------------------------------------------------------


async def entra_users(
    graph_sdk: GraphServiceClient, select: Sequence[str], *, page_size: int = PAGE_SIZE
) -> AsyncIterator[dict[str, Any]]:
    """Every user of the tenant as a plain dict of the ``select``ed properties (Graph names),
    following ``@odata.nextLink``; one page is alive at a time."""
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        select=list(select), top=page_size
    )
    config = RequestConfiguration(query_parameters=query)
    async for page in json_pages(graph_sdk.request_adapter, graph_sdk.users, config):
        for user in page:
            yield {name: user.get(name) for name in select}


# --- comparing ----------------------------------------------------------------------------


def _managed_id(
    user: dict[str, Any], known: Collection[str], pending: Collection[str]
) -> str | None:
    """The employeeId of a user this service provisions, None for anyone else's account."""
    employee_id = user.get("employeeId")
    if isinstance(employee_id, str) and (employee_id in known or employee_id in pending):
        return employee_id
    return None


def _work_entry(items: Any) -> dict[str, Any]:
    """The work entry of a multi-valued attribute (the primary one first): the only one Entra
    maps; {} when there is none."""
    if not isinstance(items, list):
        return {}
    work = [i for i in items if isinstance(i, dict) and str(i.get("type", "")).lower() == "work"]
    primary = [i for i in work if i.get("primary") is True]
    return (primary or work or [{}])[0]


def _hr_value(record: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    """(present, value) of an attribute in a SCIM record."""
    node: Any = record
    for depth, step in enumerate(path):
        if not isinstance(node, dict) or step not in node:
            return False, None
        node = node[step]
        if depth == 0 and step in MULTI_VALUED:
            # Entra replaces the whole work entry: a part the entry lacks is cleared.
            return True, _work_entry(node).get(path[1])
    return True, node


def _graph_value(user: dict[str, Any], graph: str) -> Any:
    name, _, part = graph.partition("/")
    value = user.get(name)
    return (value or {}).get(part) if part else value


def _differences(record: dict[str, Any], user: dict[str, Any]) -> list[str]:
    out = []
    for attribute in _ATTRIBUTES:
        present, expected = _hr_value(record, attribute.scim)
        if present and not attribute.same(expected, _graph_value(user, attribute.graph)):
            out.append(attribute.graph)
    return out


def compare(
    known: dict[str, Known],
    records: dict[str, dict[str, Any]],
    users: Iterable[dict[str, Any]],
    *,
    pending: Collection[str] = frozenset(),
) -> DriftReport:
    """Drift between the state (``known`` and the last accepted ``records``) and Entra's
    ``users`` (dicts with Graph property names). Pure: no I/O, no logging.

    Attributes are compared only where the worker's record is given and sets them; workers in
    ``pending`` are skipped (their latest record may not be applied yet)."""
    leavers: set[str] = set()
    mismatches: dict[str, set[str]] = {}
    seen: set[str] = set()
    report = DriftReport(workers=len(known))
    for user in users:
        report.entra_users += 1
        employee_id = _managed_id(user, known, pending)
        if employee_id is None:
            report.unmanaged_users += 1
            continue
        if employee_id in pending:
            continue
        seen.add(employee_id)
        enabled = user.get(ACCOUNT_ENABLED)
        differ: set[str] = set()
        if known[employee_id].active:
            if enabled is False:
                differ.add(ACCOUNT_ENABLED)
        elif enabled is True:
            leavers.add(employee_id)
        record = records.get(employee_id)
        if record is not None:
            differ.update(_differences(record, user))
        if differ:
            mismatches.setdefault(employee_id, set()).update(differ)
    report.skipped_pending = sum(1 for employee_id in known if employee_id in pending)
    report.enabled_leavers = sorted(leavers)
    report.missing_accounts = sorted(
        employee_id
        for employee_id, state in known.items()
        if state.active and employee_id not in seen and employee_id not in pending
    )
    order = {a.graph: i for i, a in enumerate(_ATTRIBUTES)}
    report.mismatches = {
        employee_id: sorted(names, key=lambda n: order.get(n, -1))
        for employee_id, names in sorted(mismatches.items())
    }
    return report


def fix_operations(report: DriftReport, records: dict[str, dict[str, Any]]) -> list[Operation]:
    """Bulk operations re-sending the last accepted record of every drifted worker: disabled
    again for an enabled leaver, enabled again for an active worker's disabled account.
    Workers without a record in ``records`` are left out."""
    active: dict[str, bool | None] = dict.fromkeys(report.missing_accounts)
    for external_id, names in report.mismatches.items():
        active[external_id] = True if ACCOUNT_ENABLED in names else None
    active.update(dict.fromkeys(report.enabled_leavers, False))
    operations = []
    for external_id, enable in sorted(active.items()):
        record = records.get(external_id)
        if record is None:
            continue
        data = dict(record) if enable is None else {**record, "active": enable}
        operations.append(Operation(f"drift-{id_hash(external_id)[:12]}", external_id, 0, data))
    return operations


# --- writing ------------------------------------------------------------------------------


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
{ids("Enabled leavers", payload["enabled_leavers"])}
{ids("Missing accounts", payload["missing_accounts"])}
<h2>Accounts differing from HR ({len(mismatches)})</h2>
<table><tr><th>attribute</th><th>workers</th></tr>{attribute_rows}</table>
<table><tr><th>externalId</th><th>attributes</th></tr>{mismatch_rows}</table>
{more(len(mismatches))}"""
    return html_page(f"Drift report {payload['report_id']}", body)


# --- the whole report ---------------------------------------------------------------------


async def drift_report(
    settings: Settings,
    store: BlobStore,
    graph: GraphClient,
    *,
    pending: Collection[str] = frozenset(),
    clock: Callable[[], dt.datetime] = utcnow,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """Compare the state with Entra's users, write the report, send nothing.

    ``pending``: HR ids sent whose outcome is not known yet (skipped). Records are read one
    state shard at a time; of each Entra user only the compared properties are kept.

    Returns ``{"results_prefix": str (drift/<date>/<report-id>/ in the results container),
    "generated": ISO time, "counts": DriftReport.counts(), "report": DriftReport,
    "operations": list[Operation]}``;
    ``operations`` are the fixes (``fix_operations``) when ``settings.drift_auto_fix``, else
    empty."""
    moment = clock()
    state = WorkerState(store)
    state.fold()
    known = state.index()
    by_shard: dict[str, list[tuple[Any, ...]]] = {}
    outside = DriftReport()
    async for user in entra_users(graph.sdk, SELECT, page_size=page_size):
        employee_id = _managed_id(user, known, pending)
        if employee_id is None:
            outside.entra_users += 1
            outside.unmanaged_users += 1
            continue
        by_shard.setdefault(shard_of(employee_id), []).append(tuple(user[p] for p in COMPARED))
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
        users = (dict(zip(COMPARED, p, strict=True)) for p in projections)
        part = compare(shard_known, records, users, pending=pending)
        if settings.drift_auto_fix:
            operations += fix_operations(part, records)
        parts.append(part)
    report = DriftReport.combine(parts)
    prefix = write_drift_report(store, report, moment)
    counts = report.counts()
    log.info(
        "drift: %d workers, %d Entra users: %d enabled leavers, %d missing accounts, "
        "%d mismatches, %d skipped (pending), %d unmanaged users; %d fixes prepared",
        counts["workers"],
        counts["entra_users"],
        counts["enabled_leavers"],
        counts["missing_accounts"],
        counts["mismatches"],
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
