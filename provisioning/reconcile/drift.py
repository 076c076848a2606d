"""Drift, the comparison (pure): what Entra holds now against what HR last got accepted.

Entra accounts change outside HR (an admin re-enables a leaver, deletes an account, edits a
title), and a provisioning failure can leave an account behind its record. The report compares
the state (the last record Entra accepted for each worker) with the users Graph lists and finds:

- enabled leavers: the state says inactive, the account with that employeeId is enabled;
- missing accounts: the state says active, no account has that employeeId;
- mismatches: an attribute the HR record sets differs in Entra (names only, never values);
- ``manager``: the manager the HR record names (its enterprise ``manager.value``, an
  externalId) is not the Entra user's manager (matched by that manager's employeeId, without
  case), both ways: HR names one and Entra has none or another, or HR names none (the record
  has ``manager`` with no value) and Entra has one. A record without a ``manager`` attribute
  says nothing about the manager: Entra keeps whatever it has, and it is not compared;
- manager pending follow-up: a worker whose manager differs while its manager link is open
  (Entra could not resolve the manager; ``manager_links`` follows it up) is listed apart,
  not as a mismatch, so a drift fix does not race the follow-up.

Workers whose records were sent but whose outcome is not known yet are skipped. The report
carries HR ids and attribute names only; ``drift_report`` reads Entra and writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..convert.bulk import Operation
from ..convert.validation import ENTERPRISE, MULTI_VALUED
from ..jml.lifecycle import Known
from ..jml.state import id_hash

ACCOUNT_ENABLED = "accountEnabled"
MANAGER = "manager"
# A compared user's ``manager`` when Entra's manager has no employeeId (or was not listed):
# no HR value names it.
OTHER_MANAGER = "\x00other"


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
    # Workers whose manager differs while their manager link is open (followed up instead).
    manager_pending: list[str] = field(default_factory=list)
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
            out.manager_pending += part.manager_pending
            out.workers += part.workers
            out.entra_users += part.entra_users
            out.skipped_pending += part.skipped_pending
            out.unmanaged_users += part.unmanaged_users
        out.enabled_leavers.sort()
        out.missing_accounts.sort()
        out.manager_pending.sort()
        out.mismatches = dict(sorted(out.mismatches.items()))
        return out

    def counts(self) -> dict[str, int]:
        return {
            "workers": self.workers,
            "entra_users": self.entra_users,
            "enabled_leavers": len(self.enabled_leavers),
            "missing_accounts": len(self.missing_accounts),
            "mismatches": len(self.mismatches),
            "manager_pending_followup": len(self.manager_pending),
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
            "manager_pending_followup": self.manager_pending,
        }


# --- reading Entra ------------------------------------------------------------------------


# --- comparing ----------------------------------------------------------------------------


def managed_id(
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
    if MANAGER in user and _manager_differs(record, user[MANAGER]):
        out.append(MANAGER)
    return out


def _manager_differs(record: dict[str, Any], entra: str | None) -> bool:
    """Whether the manager the record names (None: it names none) is not Entra's ``entra``
    (the manager's employeeId, None without a manager); False when the record has no
    ``manager`` attribute at all."""
    extension = record.get(ENTERPRISE)
    if not isinstance(extension, dict) or MANAGER not in extension:
        return False
    manager = extension[MANAGER]
    value = manager.get("value") if isinstance(manager, dict) else None
    expected = value if isinstance(value, str) and value else None
    if expected is None or entra is None:
        return expected != entra
    return entra == OTHER_MANAGER or expected.casefold() != entra.casefold()


def compare(
    known: dict[str, Known],
    records: dict[str, dict[str, Any]],
    users: Iterable[dict[str, Any]],
    *,
    pending: Collection[str] = frozenset(),
    manager_links: Collection[str] = frozenset(),
) -> DriftReport:
    """Drift between the state (``known`` and the last accepted ``records``) and Entra's
    ``users`` (dicts with Graph property names; ``manager``, when given, is the employeeId of
    the user's manager, None without one, ``OTHER_MANAGER`` for one without an employeeId).
    Pure: no I/O, no logging.

    Attributes are compared only where the worker's record is given and sets them; workers in
    ``pending`` are skipped (their latest record may not be applied yet); a manager difference
    of a worker in ``manager_links`` goes to ``manager_pending``, not to the mismatches."""
    leavers: set[str] = set()
    mismatches: dict[str, set[str]] = {}
    manager_pending: set[str] = set()
    seen: set[str] = set()
    report = DriftReport(workers=len(known))
    for user in users:
        report.entra_users += 1
        employee_id = managed_id(user, known, pending)
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
        if MANAGER in differ and employee_id in manager_links:
            differ.discard(MANAGER)
            manager_pending.add(employee_id)
        if differ:
            mismatches.setdefault(employee_id, set()).update(differ)
    report.skipped_pending = sum(1 for employee_id in known if employee_id in pending)
    report.enabled_leavers = sorted(leavers)
    report.manager_pending = sorted(manager_pending)
    report.missing_accounts = sorted(
        employee_id
        for employee_id, state in known.items()
        if state.active and employee_id not in seen and employee_id not in pending
    )
    order = {a.graph: i for i, a in enumerate(_ATTRIBUTES)} | {MANAGER: len(_ATTRIBUTES)}
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


# --- the whole report ---------------------------------------------------------------------
