"""Manager links that Entra can only make once the manager exists: a mover and a rehire moved
under a manager who joins in the same file, listed after them, end under that manager in the
emulator's directory (it skips a manager reference it cannot resolve yet, as Entra does); and a
worker whose manager arrives only in a later file is followed up by the timer until Entra
holds that manager.

Real parts: the blob function, the timer function, Azurite, the Graph emulator's directory and
provisioning log."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from graph_emulator import GraphEmulator
from provisioning.reconcile import confirm
from provisioning.reconcile.manager_links import read_links
from tests.columns import csv_bytes, worker
from tests.e2e import drop, result_text, runs, sent_external_ids, store
from tests.test_reconcile import tick

pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)


def test_a_mover_and_a_rehire_under_a_manager_listed_later_get_that_manager(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One record per request: within one request Entra resolves a manager sent later in it.
    monkeypatch.setenv("PROVISIONING_BATCH_SIZE", "1")
    drop(csv_bytes([worker(n) for n in range(1, 6)]))
    drop(csv_bytes([worker(5, WorkerStatus="Inactive")]), "left.csv")  # 5 leaves
    drop(
        csv_bytes(
            [
                worker(2, ManagerID="50", JobTitle="Analyst"),  # a mover
                worker(5, ManagerID="50"),  # a rehire
                worker(50),  # their new manager, a joiner, listed after them
            ]
        ),
        "day1.csv",
    )
    latest = max(runs(), key=lambda s: s["started"])
    assert latest["status"] == "complete"
    assert latest["plan"]["counts"]["joiner"] == 1 and latest["plan"]["counts"]["rehire"] == 1
    users = {u["employeeId"]: u for u in emulator.directory()}
    boss = users["50"]["id"]
    assert users["2"]["manager"] == {"id": boss}
    assert users["5"]["manager"] == {"id": boss} and users["5"]["accountEnabled"] is True
    skips = [
        e
        for e in emulator.logs()
        if any(step["name"] == "EntrySynchronizationSkip" for step in e["provisioningSteps"])
    ]
    assert skips == []  # no manager reference was ever skipped


def managers(emulator: GraphEmulator) -> dict[str, str | None]:
    users = emulator.directory()
    by_id = {u["id"]: u["employeeId"] for u in users}
    return {u["employeeId"]: by_id.get((u.get("manager") or {}).get("id")) for u in users}


def test_a_worker_whose_manager_arrives_in_a_later_file_ends_under_that_manager(
    env: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entra sets a skipped manager seconds later or never: the test does not wait minutes.
    monkeypatch.setattr(confirm, "MANAGER_SETTLE", dt.timedelta(0))
    monkeypatch.setenv("PROVISIONING_LOG_OVERLAP_SECONDS", "0")
    monkeypatch.setenv("PROVISIONING_DRIFT_INTERVAL_HOURS", "0")
    drop(csv_bytes([worker(1), worker(2, ManagerID="50")]), "day1.csv")
    assert managers(emulator) == {"1": None, "2": None}  # 50 is nobody yet: skipped

    tick()  # the outcome: success, the manager skipped and never set: a link to follow up

    (day1,) = runs()
    rows = {
        r["externalId"]: r for r in csv.DictReader(io.StringIO(result_text(day1, "ledger.csv")))
    }
    assert rows["2"]["entra_status"] == "success" and rows["2"]["manager"] == "unresolved"
    assert rows["2"]["manager_reason"].startswith("We were unable to assign 50 as the manager")
    assert rows["1"]["manager"] == ""
    assert day1["outcomes"]["managers_unresolved"] == 1
    assert {w: link.manager for w, link in read_links(store()).items()} == {"2": "50"}

    tick()  # 50 is still nobody: nothing is sent
    assert sent_external_ids(emulator).count("2") == 1

    drop(csv_bytes([worker(1), worker(2, ManagerID="50"), worker(50)]), "day2.csv")
    tick()  # day 2 confirmed; 50 now exists in Entra: 2's record is sent once more

    assert sent_external_ids(emulator).count("2") == 2
    assert managers(emulator)["2"] == "50"
    followups = [s for s in runs() if s.get("kind") == "manager-followup"]
    assert len(followups) == 1

    tick()  # the follow-up's own entry set the manager: the link is closed

    assert read_links(store()) == {}
    assert sent_external_ids(emulator).count("2") == 2
