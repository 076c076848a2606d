"""Manager follow-ups: a worker whose manager Entra could not resolve is sent again once that
manager exists in Entra, as a run of its own, a bounded number of times.

Real parts: a file dropped through the blob function builds the state and the emulator's
directory; the follow-up reads Entra through msgraph-sdk over HTTP, sends through the one
sender and the send gate, and writes to Azurite. Nothing here reads a provisioning log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from graph_emulator import GraphEmulator
from provisioning.clock import utcnow
from provisioning.documents import read_document
from provisioning.functions.services import open_services
from provisioning.jml.ordering import SendGate, new_order
from provisioning.jml.state import WorkerState
from provisioning.reconcile.manager_links import (
    LINKS,
    ManagerLinks,
    follow_up,
    note_resolved,
    note_unresolved,
    read_links,
)
from provisioning.runs.tracking import pending_runs, read_batch
from provisioning.settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, sent_external_ids, store

pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)

# Distinctive ids, so a log line naming one would be found.
W, M, OTHER = "70001", "80002", "90003"
REASON = "Entra says: no user has employeeId 80002"


def run_follow_up(**kwargs: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            return await follow_up(
                settings,
                blobs,
                graph,
                sleep=asyncio.sleep,
                keep_alive=lambda: None,
                clock=utcnow,
                **kwargs,
            )

    return asyncio.run(go())


def manager_of(emu: GraphEmulator, employee_id: str) -> str | None:
    users = {u["id"]: u for u in emu.directory()}
    by_employee = {u["employeeId"]: u for u in users.values()}
    manager = (by_employee[employee_id].get("manager") or {}).get("id")
    return users[manager]["employeeId"] if manager else None


def uploads(emu: GraphEmulator) -> int:
    return sum(1 for u in emu.uploads() if u["status"] == 202)


@pytest.fixture
def unresolved(env: dict[str, str], emulator: GraphEmulator) -> GraphEmulator:
    """W accepted under manager M, whom Entra does not have (W keeps no manager); OTHER is
    another worker (a manager W may move to); the link of W noted."""
    drop(csv_bytes([worker(OTHER), worker(W, ManagerID=M)]), "workers/day1.csv")
    assert manager_of(emulator, W) is None
    note_unresolved(store(), W, M, REASON, utcnow())
    return emulator


def test_a_link_is_followed_up_once_its_manager_exists(
    unresolved: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    before = uploads(unresolved)
    counts = run_follow_up()
    assert counts == {
        "links": 1,
        "checked": 1,
        "managers_found": 0,
        "sent": 0,
        "accepted": 0,
        "dropped": 0,
        "exhausted": 0,
        "waiting": 0,
    }
    assert uploads(unresolved) == before  # M is not in Entra: nothing sent
    assert read_links(store())[W].checked is not None

    unresolved.seed_users([{"employeeId": M, "displayName": "The manager"}])
    counts = run_follow_up()
    assert (counts["managers_found"], counts["sent"], counts["accepted"]) == (1, 1, 1)
    assert uploads(unresolved) == before + 1
    assert sent_external_ids(unresolved)[-1] == W
    assert manager_of(unresolved, W) == M  # the resend made the link

    # Its own run, tracked for the outcome pass, with a results folder.
    prefix = counts["results_prefix"]
    run_id = prefix.rstrip("/").rsplit("/", 1)[-1]
    (names,) = [n for r, n in pending_runs(store()).items() if r == run_id]
    batch = read_batch(store(), names[0])
    assert batch is not None
    info, sent = batch
    assert info["kind"] == "manager-followup" and info["results_prefix"] == prefix
    assert [(s.external_id, s.action) for s in sent] == [(W, "manager follow-up")]
    found = store().read_json(RESULTS_CONTAINER, f"{prefix}summary.json")
    assert found is not None and found[0]["kind"] == "manager-followup"
    assert found[0]["records_accepted"] == 1
    link = read_links(store())[W]
    assert (link.followups, link.manager, link.reason) == (1, M, REASON)

    # Its outcome is awaited (no newer log entry noted it): not sent again meanwhile.
    counts = run_follow_up()
    assert (counts["waiting"], counts["sent"]) == (1, 0)
    assert uploads(unresolved) == before + 1

    # The outcome pass clears a resolved link.
    note_resolved(store(), [W])
    assert read_links(store()) == {}
    assert run_follow_up()["links"] == 0

    # No HR id, manager id or Entra reason in any log line (httpx's included).
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged  # httpx's lines were captured, and cut
    for value in (W, M, REASON, "The manager"):
        assert value not in logged


def test_follow_ups_are_bounded(unresolved: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_MANAGER_FOLLOWUPS", "2")
    # Each follow-up's log entry says unresolved again (say Entra's directory lagged behind
    # the lookup): the count, not the lookup, stops the sends.
    unresolved.seed_users([{"employeeId": M, "displayName": "The manager"}])
    before = uploads(unresolved)
    sends = []
    for _ in range(4):
        sends.append(run_follow_up()["sent"])
        # The outcome pass notes the follow-up's entry: still unresolved.
        note_unresolved(store(), W, M, REASON, utcnow() + dt.timedelta(seconds=1))
    assert sends == [1, 1, 0, 0]
    assert uploads(unresolved) == before + 2
    counts = run_follow_up()
    assert (counts["exhausted"], counts["sent"]) == (1, 0)
    link = read_links(store())[W]
    assert link.followups == 2  # kept, and reported by the drift report
    # Noting it again keeps the count (a new manager would start a new link).
    note_unresolved(store(), W, M, None, utcnow())
    assert read_links(store())[W].followups == 2
    note_unresolved(store(), W, OTHER, None, utcnow())
    assert read_links(store())[W].followups == 0


def test_a_link_whose_hr_manager_changed_is_dropped(unresolved: GraphEmulator) -> None:
    drop(csv_bytes([worker(W, ManagerID=OTHER)]), "workers/day2.csv")  # W moves under OTHER
    unresolved.seed_users([{"employeeId": M}])
    before = uploads(unresolved)
    counts = run_follow_up()
    assert (counts["dropped"], counts["checked"], counts["sent"]) == (1, 0, 0)
    assert uploads(unresolved) == before
    assert read_links(store()) == {}


def test_a_link_whose_worker_is_gone_from_state_is_dropped(env: dict[str, str]) -> None:
    store().ensure_containers(STATE_CONTAINER)
    note_unresolved(store(), "never-sent", M, None, utcnow())
    assert run_follow_up()["dropped"] == 1
    assert read_links(store()) == {}


def test_a_worker_with_an_unanswered_send_is_left_alone(unresolved: GraphEmulator) -> None:
    unresolved.seed_users([{"employeeId": M}])

    async def unanswered() -> None:
        # A send of W whose answer never came: the state does not know what Entra has.
        gate = SendGate.from_settings(store(), Settings())
        async with gate.holding():
            turn = await gate.turn([W])
            order = new_order(utcnow(), "lost")
            turn.publish("accepted", [(W, None, True, "workers", order, None)])

    asyncio.run(unanswered())
    state = WorkerState(store())
    state.fold()
    assert state.lookup([W])[W].fingerprint is None
    before = uploads(unresolved)
    counts = run_follow_up()
    assert (counts["waiting"], counts["checked"], counts["sent"]) == (1, 0, 0)
    assert uploads(unresolved) == before
    assert W in read_links(store())


def test_a_worker_awaiting_an_outcome_is_left_alone(unresolved: GraphEmulator) -> None:
    unresolved.seed_users([{"employeeId": M}])
    counts = run_follow_up(pending={W})
    assert (counts["waiting"], counts["sent"]) == (1, 0)


def test_the_document_is_versioned_and_a_newer_one_is_left_alone(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    store().ensure_containers(STATE_CONTAINER)
    note_unresolved(store(), W, M, REASON, utcnow())
    found = read_document(store(), STATE_CONTAINER, LINKS, ManagerLinks)
    assert found is not None
    data = found[0].dump()
    assert data["schema_version"] == 1
    assert set(data["links"][W]) == {"manager", "since", "followups", "noted", "reason"}
    store().write_json(STATE_CONTAINER, LINKS, {**data, "schema_version": 99})
    caplog.set_level("INFO")
    assert read_links(store()) == {}
    assert note_unresolved(store(), OTHER, M, None, utcnow()) is False
    assert run_follow_up()["links"] == 0
    assert "newer version of the app" in caplog.text
    assert W not in caplog.text and M not in caplog.text
    stored = store().read_json(STATE_CONTAINER, LINKS)
    assert stored is not None and json.dumps(stored[0]) == json.dumps(
        {**data, "schema_version": 99}
    )


def test_a_failed_lookup_leaves_the_links_for_the_next_pass(
    unresolved: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    unresolved.seed_users([{"employeeId": M}])
    unresolved.set_faults(read_sequence=[403])
    before = uploads(unresolved)
    counts = run_follow_up()
    assert (counts["error"], counts["sent"]) == ("GraphError", 0)
    assert uploads(unresolved) == before
    assert read_links(store())[W].followups == 0
    assert "HTTP 403" in caplog.text and M not in caplog.text
    assert run_follow_up()["sent"] == 1  # the next pass goes on
