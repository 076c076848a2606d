"""The drift report: the state against the users Graph lists.

End to end with real parts: a file dropped through the blob function builds the state and the
emulator's directory, the directory is then changed behind HR's back, and the report is read
through msgraph-sdk over HTTP and written to Azurite. ``compare`` and ``fix_operations`` are
also checked on hand-built inputs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.convert.bulk import serialize
from provisioning.convert.validation import ENTERPRISE
from provisioning.functions.services import open_services
from provisioning.graph.users import entra_users
from provisioning.jml.lifecycle import Known
from provisioning.jml.state import WorkerState, id_hash
from provisioning.reconcile.drift import (
    OTHER_MANAGER,
    SELECT,
    DriftReport,
    compare,
    fix_operations,
)
from provisioning.reconcile.drift_report import LATEST, drift_report, render_drift_html
from provisioning.settings import RESULTS_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, store

WORKERS = 13  # 1-12 active, 13 inactive: three pages of five


def run_drift(**kwargs: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blob_store, graph):
            return await drift_report(settings, blob_store, graph, **kwargs)

    return asyncio.run(go())


def result_json(name: str) -> Any:
    found = store().read_json(RESULTS_CONTAINER, name)
    assert found is not None, name
    return found[0]


def result_text(name: str) -> str:
    data = store().read_bytes(RESULTS_CONTAINER, name)
    assert data is not None, name
    return data.decode("utf-8")


@pytest.fixture
def provisioned(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> GraphEmulator:
    """Workers 1-13 sent through a real drop: Entra and the state agree."""
    # The last worker is inactive from the start and must exist, disabled, in Entra.
    monkeypatch.setenv("PROVISIONING_CREATE_INACTIVE_JOINERS", "true")
    rows = [worker(n) for n in range(1, WORKERS)] + [worker(WORKERS, WorkerStatus="Inactive")]
    drop(csv_bytes(rows), "workers/day1.csv")
    assert len(emulator.directory()) == WORKERS
    return emulator


def edit_user(emu: GraphEmulator, employee_id: str, **fields: Any) -> None:
    with emu.state.lock:
        emu.state.users[emu.state.by_employee_id[employee_id]].update(fields)


def delete_user(emu: GraphEmulator, employee_id: str) -> None:
    with emu.state.lock:
        del emu.state.users[emu.state.by_employee_id.pop(employee_id)]


def make_drift(emu: GraphEmulator) -> None:
    edit_user(emu, "13", accountEnabled=True)  # a leaver re-enabled by hand
    delete_user(emu, "4")  # an active worker's account deleted
    edit_user(
        emu,
        "5",
        jobTitle="Chief Drift Officer",
        city="Drifttown",
        employeeOrgData={"division": "Elsewhere", "costCenter": "CC1"},
    )
    edit_user(emu, "6", userPrincipalName="emp6")  # same UPN to Entra: not drift
    edit_user(emu, "7", accountEnabled=False)  # an active worker disabled by hand
    edit_user(emu, "8", jobTitle="Changing right now")  # its send is still pending
    emu.seed_users(
        [{"displayName": "Meeting room"}, {"employeeId": "X-1", "displayName": "Contractor"}]
    )


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_a_clean_directory_has_no_drift(provisioned: GraphEmulator) -> None:
    summary = run_drift(page_size=5)
    assert summary["counts"] == {
        "workers": WORKERS,
        "entra_users": WORKERS,  # all three pages
        "enabled_leavers": 0,
        "missing_accounts": 0,
        "mismatches": 0,
        "manager_pending_followup": 0,
        "skipped_pending": 0,
        "unmanaged_users": 0,
    }
    assert summary["operations"] == []
    prefix = summary["results_prefix"]
    assert prefix.startswith(f"drift/{summary['generated'][:10]}/")
    written = result_json(f"{prefix}drift.json")
    assert written["counts"] == summary["counts"]
    assert written["enabled_leavers"] == written["missing_accounts"] == written["mismatches"] == []
    assert result_json(LATEST) == written
    assert "Drift between HR and Entra" in result_text(f"{prefix}drift.html")


def test_entra_users_pages_through_the_sdk_into_plain_dicts(provisioned: GraphEmulator) -> None:
    async def go() -> list[dict[str, Any]]:
        async with open_services(Settings()) as (_, graph):
            return [u async for u in entra_users(graph.sdk, SELECT, page_size=2)]

    users = asyncio.run(go())
    assert len(users) == WORKERS
    assert all(set(u) == set(SELECT) for u in users)
    first = next(u for u in users if u["employeeId"] == "1")
    assert first["employeeOrgData"] == {"costCenter": "CC1", "division": "Food"}
    assert first["businessPhones"] == ["555-0100"]
    assert first["accountEnabled"] is True
    assert json.loads(json.dumps(users)) == users  # plain data, no SDK objects


def test_each_kind_of_drift_is_reported_by_id_and_attribute_name(
    provisioned: GraphEmulator,
) -> None:
    make_drift(provisioned)
    summary = run_drift(pending={"8"}, page_size=4)
    report: DriftReport = summary["report"]
    assert report.enabled_leavers == ["13"]
    assert report.missing_accounts == ["4"]
    assert report.mismatches == {
        "5": ["jobTitle", "city", "employeeOrgData/division"],
        "7": ["accountEnabled"],
    }
    assert summary["counts"] == {
        "workers": WORKERS,
        "entra_users": WORKERS - 1 + 2,
        "enabled_leavers": 1,
        "missing_accounts": 1,
        "mismatches": 2,
        "manager_pending_followup": 0,
        "skipped_pending": 1,
        "unmanaged_users": 2,
    }
    assert summary["operations"] == []  # auto-fix is off

    prefix = summary["results_prefix"]
    written = result_json(f"{prefix}drift.json")
    assert written["mismatches"] == [
        {"externalId": "5", "attributes": ["jobTitle", "city", "employeeOrgData/division"]},
        {"externalId": "7", "attributes": ["accountEnabled"]},
    ]
    assert written["mismatches_by_attribute"] == {
        "accountEnabled": 1,
        "city": 1,
        "employeeOrgData/division": 1,
        "jobTitle": 1,
    }
    assert result_json(LATEST) == written
    page = result_text(f"{prefix}drift.html")
    assert "<code>13</code>" in page and "<code>4</code>" in page
    assert "jobTitle, city, employeeOrgData/division" in page

    # No HR or Entra value of any worker involved, old or new, is in the report.
    state = WorkerState(store())
    records = state.records(["4", "5", "7", "8", "13"])
    values = {
        v
        for record in records.values()
        for v in strings(record)
        if v != record["externalId"] and v != "work" and not v.startswith("urn:")
    }
    values |= {"Chief Drift Officer", "Drifttown", "Elsewhere", "Changing right now"}
    values |= {"Meeting room", "Contractor", "X-1"}
    assert {"Given5", "EMP5", "Paris", "Woodgrove", "555-0100"} <= values
    for text in (json.dumps(written), page):
        assert [v for v in values if v in text] == []


def test_auto_fix_operations_resend_the_records_and_undo_the_drift(
    provisioned: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_DRIFT_AUTO_FIX", "true")
    make_drift(provisioned)
    summary = run_drift(pending={"8"})
    operations = summary["operations"]
    by_id = {op.external_id: op for op in operations}
    assert sorted(by_id) == ["13", "4", "5", "7"]
    assert by_id["13"].data["active"] is False
    assert by_id["7"].data["active"] is True
    assert by_id["5"].bulk_id == f"drift-{id_hash('5')[:12]}"

    async def send() -> int:
        async with open_services(Settings()) as (_, graph):
            return (await graph.post_bulk(serialize(operations), "drift-fix-test")).status

    assert asyncio.run(send()) == 202
    counts = run_drift(pending={"8"})["counts"]
    assert (counts["enabled_leavers"], counts["missing_accounts"], counts["mismatches"]) == (
        0,
        0,
        0,
    )


# --- compare and fix_operations on hand-built inputs --------------------------------------


def record(external_id: str, active: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": external_id,
        "userName": f"u{external_id}@contoso.com",
        "active": active,
        **extra,
    }


def user(employee_id: str | None, enabled: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "employeeId": employee_id,
        "accountEnabled": enabled,
        "userPrincipalName": f"u{employee_id}@contoso.com",
        **extra,
    }


def known(*ids: str, inactive: tuple[str, ...] = ()) -> dict[str, Known]:
    return {i: Known("fp", i not in inactive, "workers") for i in ids}


def test_compare_finds_enabled_leavers_and_missing_accounts() -> None:
    state = known("1", "2", "3", "4", inactive=("2", "4"))
    records = {i: record(i, i not in ("2", "4")) for i in state}
    users = [user("1"), user("2"), user("4", enabled=False)]  # 3 has no account
    report = compare(state, records, users)
    assert report.enabled_leavers == ["2"]
    assert report.missing_accounts == ["3"]  # 4 left and has a disabled account: fine
    assert report.mismatches == {}
    assert report.counts()["workers"] == 4


def test_compare_reports_attribute_names_where_the_record_sets_them() -> None:
    full = record(
        "1",
        displayName="A B",
        title="Engineer",
        userType="Employee",
        preferredLanguage="fr-FR",
        name={"givenName": "A", "familyName": "B"},
        emails=[{"type": "work", "value": "A.B@contoso.com"}],
        phoneNumbers=[{"type": "work", "value": "555"}],
        addresses=[{"type": "work", "locality": "Paris", "country": "FR"}],
        **{ENTERPRISE: {"department": "Sales", "organization": "W", "division": "D"}},
    )
    matching = user(
        "1",
        displayName="A B",
        jobTitle="Engineer",
        employeeType="Employee",
        preferredLanguage="fr-FR",
        givenName="A",
        surname="B",
        mail="a.b@CONTOSO.com",  # mail and UPN compare without case
        businessPhones=["555"],
        streetAddress=None,  # the work address has no street: Entra has none either
        city="Paris",
        state="",
        postalCode=None,
        country="FR",
        department="Sales",
        companyName="W",
        employeeOrgData={"division": "D", "costCenter": "kept by Entra"},
        userPrincipalName="U1@Contoso.com",
    )
    assert compare(known("1"), {"1": full}, [matching]).mismatches == {}

    drifted = {
        **matching,
        "surname": "C",
        "businessPhones": [],
        "streetAddress": "1 Main St",
        "employeeOrgData": {"division": "E"},
        "userPrincipalName": "other@contoso.com",
    }
    report = compare(known("1"), {"1": full}, [drifted])
    assert report.mismatches == {
        "1": [
            "userPrincipalName",
            "surname",
            "businessPhones",
            "streetAddress",
            "employeeOrgData/division",
        ]
    }
    # Attributes the record does not set are not compared, whatever Entra holds.
    assert compare(known("1"), {"1": record("1")}, [drifted]).mismatches == {
        "1": ["userPrincipalName"]
    }


def test_compare_reports_a_disabled_active_worker_and_skips_pending_ones() -> None:
    state = known("1", "2", "3", "4", inactive=("3",))
    records = {i: record(i, i != "3") for i in state}
    users = [user("1", enabled=False), user("2", enabled=False), user("3")]
    report = compare(state, records, users, pending={"2", "3", "4"})
    assert report.mismatches == {"1": ["accountEnabled"]}
    assert report.enabled_leavers == report.missing_accounts == []
    assert report.skipped_pending == 3
    assert report.unmanaged_users == 0


def test_compare_counts_users_not_provisioned_from_hr() -> None:
    users = [user(None), user("9"), user("1"), {"displayName": "room"}]
    report = compare(known("1"), {}, users)
    assert report.unmanaged_users == 3
    assert report.entra_users == 4
    assert report.counts()["mismatches"] == 0  # no record: nothing to compare attributes with


def test_fix_operations_disable_leavers_enable_disabled_workers_and_resend_the_rest() -> None:
    report = DriftReport(
        enabled_leavers=["2"],
        missing_accounts=["3"],
        mismatches={"1": ["accountEnabled"], "2": ["jobTitle"], "4": ["city"], "5": ["city"]},
    )
    # Every record says active: an enabled leaver is sent disabled whatever its record says.
    records = {i: record(i) for i in ("1", "2", "3", "4")}
    operations = fix_operations(report, records)
    assert [op.external_id for op in operations] == ["1", "2", "3", "4"]  # 5: no record
    data = {op.external_id: op.data for op in operations}
    assert data["2"]["active"] is False
    assert data["1"]["active"] is True
    assert data["3"] == records["3"] and data["4"] == records["4"]
    assert all(op.bulk_id == f"drift-{id_hash(op.external_id)[:12]}" for op in operations)
    assert len({op.bulk_id for op in operations}) == 4


def test_html_lists_are_capped_and_the_json_is_complete() -> None:
    report = DriftReport(
        enabled_leavers=[str(n) for n in range(5)],
        mismatches={str(n): ["city"] for n in range(4)},
    )
    payload = {"report_id": "r", "generated": "t", **report.to_json()}
    page = render_drift_html(payload, limit=2)
    assert "and 3 more" in page and "and 2 more" in page
    assert "<code>1</code>" in page and "<code>4</code>" not in page
    assert len(payload["enabled_leavers"]) == 5


# --- managers ---------------------------------------------------------------------------------


def manager_of(emu: GraphEmulator, employee_id: str) -> str | None:
    with emu.state.lock:
        user = emu.state.users[emu.state.by_employee_id[employee_id]]
        manager = (user.get("manager") or {}).get("id")
        return next((e for e, i in emu.state.by_employee_id.items() if i == manager), None)


def set_manager(emu: GraphEmulator, employee_id: str, manager: str | None) -> None:
    with emu.state.lock:
        target = emu.state.by_employee_id[manager] if manager else None
    edit_user(emu, employee_id, manager={"id": target} if target else None)


@pytest.fixture
def managed(env: dict[str, str], emulator: GraphEmulator) -> GraphEmulator:
    """Workers 1-6: 2, 3, 4 and 5 report to 1, 6 names no manager; Entra agrees."""
    rows = [worker(1), *(worker(n, ManagerID="1") for n in (2, 3, 4, 5)), worker(6)]
    drop(csv_bytes(rows), "workers/day1.csv")
    assert [manager_of(emulator, str(n)) for n in range(1, 7)] == [None, "1", "1", "1", "1", None]
    return emulator


def test_manager_drift_is_reported_both_ways_by_name_only(managed: GraphEmulator) -> None:
    state = WorkerState(store())
    state.fold()
    records = state.records(["2", "6"])
    assert records["2"][ENTERPRISE]["manager"] == {"value": "1"}
    # An empty ManagerID leaves the attribute out: the record says nothing of a manager.
    assert "manager" not in records["6"].get(ENTERPRISE, {})
    set_manager(managed, "2", None)  # HR names 1, Entra has none
    set_manager(managed, "3", "4")  # HR names 1, Entra has 4
    set_manager(managed, "5", "6")  # HR names 1, Entra has 6 ...
    edit_user(managed, "5", jobTitle="Other")  # ... and another title
    set_manager(managed, "6", "1")  # HR says nothing of a manager: not compared
    managed.seed_users([{"id": "no-employee-id", "displayName": "Boss without employeeId"}])
    edit_user(managed, "4", manager={"id": "no-employee-id"})  # HR names 1, Entra has that

    summary = run_drift(page_size=2, manager_links=())
    report: DriftReport = summary["report"]
    assert report.mismatches == {
        "2": ["manager"],
        "3": ["manager"],
        "4": ["manager"],
        "5": ["jobTitle", "manager"],
    }
    assert report.manager_pending == []
    written = result_json(f"{summary['results_prefix']}drift.json")
    assert written["mismatches_by_attribute"] == {"manager": 4, "jobTitle": 1}
    text = json.dumps(written) + result_text(f"{summary['results_prefix']}drift.html")
    assert "Boss without employeeId" not in text and "no-employee-id" not in text
    with managed.state.lock:
        object_ids = list(managed.state.by_employee_id.values())
    assert [i for i in object_ids if i in text] == []  # Entra's object ids are no HR ids


def test_open_manager_links_are_listed_apart_from_drift(managed: GraphEmulator) -> None:
    from provisioning.reconcile.manager_links import Unresolved, note_unresolved_many

    set_manager(managed, "2", None)
    set_manager(managed, "3", None)
    edit_user(managed, "3", jobTitle="Other")
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    note_unresolved_many(
        store(), [Unresolved("2", "1", moment, "no user"), Unresolved("3", "1", moment)]
    )
    summary = run_drift()  # the links are read from state
    report: DriftReport = summary["report"]
    assert report.manager_pending == ["2", "3"]
    assert report.mismatches == {"3": ["jobTitle"]}  # its other drift is still drift
    assert summary["counts"]["manager_pending_followup"] == 2
    written = result_json(LATEST)
    assert written["manager_pending_followup"] == ["2", "3"]
    assert "no user" not in json.dumps(written)  # Entra's reason stays in state
    page = result_text(f"{summary['results_prefix']}drift.html")
    assert "Manager pending follow-up (2)" in page


def test_auto_fix_restores_a_manager(
    managed: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_DRIFT_AUTO_FIX", "true")
    set_manager(managed, "2", None)
    set_manager(managed, "3", "4")
    operations = run_drift(manager_links=())["operations"]
    assert sorted(op.external_id for op in operations) == ["2", "3"]

    async def send() -> int:
        async with open_services(Settings()) as (_, graph):
            return (await graph.post_bulk(serialize(operations), "drift-fix-test")).status

    assert asyncio.run(send()) == 202
    assert manager_of(managed, "2") == manager_of(managed, "3") == "1"
    assert run_drift(manager_links=())["counts"]["mismatches"] == 0


def test_compare_manager_both_ways_and_only_where_the_record_has_one() -> None:
    def boss(value: Any) -> dict[str, Any]:
        return {ENTERPRISE: {"manager": value}}

    cases = [
        # (record's enterprise extension, Entra's manager employeeId, differs)
        (boss({"value": "9"}), "9", False),
        (boss({"value": "ab"}), "AB", False),  # employeeIds match without case
        (boss({"value": "9"}), None, True),  # HR names one, Entra has none
        (boss({"value": "9"}), "8", True),
        (boss({"value": "9"}), OTHER_MANAGER, True),
        (boss({"value": ""}), "8", True),  # HR names none, Entra has one
        (boss(None), "8", True),
        (boss({}), None, False),
        ({ENTERPRISE: {"employeeNumber": "7"}}, "8", False),  # no manager attribute
        ({}, "8", False),
    ]
    for extra, entra, differs in cases:
        report = compare(known("1"), {"1": record("1", **extra)}, [user("1", manager=entra)])
        assert report.mismatches == ({"1": ["manager"]} if differs else {}), (extra, entra)
    # A user given without ``manager`` (not read) is not compared either.
    assert (
        compare(known("1"), {"1": record("1", **boss({"value": "9"}))}, [user("1")]).mismatches
        == {}
    )
    # An open link moves the difference to its own list, and only the manager's.
    report = compare(
        known("1", "2"),
        {i: record(i, title="T", **boss({"value": "9"})) for i in ("1", "2")},
        [user("1", manager=None, jobTitle="X"), user("2", manager="9", jobTitle="T")],
        manager_links={"1", "2"},
    )
    assert report.manager_pending == ["1"]  # 2's manager is right: nothing pending to list
    assert report.mismatches == {"1": ["jobTitle"]}
