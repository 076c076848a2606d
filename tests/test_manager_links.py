"""Manager links that Entra can only make once the manager exists: a mover and a rehire moved
under a manager who joins in the same file, listed after them, end under that manager in the
emulator's directory (it skips a manager reference it cannot resolve yet, as Entra does).

Real parts: the blob function, Azurite, the Graph emulator's directory."""

from __future__ import annotations

import pytest

from graph_emulator import GraphEmulator
from tests.columns import csv_bytes, worker
from tests.e2e import drop, runs

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
    unresolved = [e for e in emulator.logs() if "ManagerReference" in str(e)]
    assert unresolved == []  # no link was ever skipped
