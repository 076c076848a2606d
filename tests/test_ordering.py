"""Newest HR data wins, whatever the path: the findings of the fault campaign of issue 11,
each reproduced against Azurite, the Graph emulator over HTTP and the real managed-identity
credential, through the functions as the host calls them."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from graph_emulator import GraphEmulator
from provisioning.changes.accept import ChangeService
from provisioning.functions.blob_trigger import RunInterrupted
from provisioning.graph.tenant_pace import PACE_BLOB, read_book
from provisioning.jml.state import WorkerState
from provisioning.runs.seen import seen_name
from provisioning.settings import STATE_CONTAINER, Settings
from tests.columns import csv_bytes, worker
from tests.e2e import drop, functions, runs, sent_external_ids, store
from tests.test_jml import directory, latest_run, release

MAPPING = (
    Path(__file__).resolve().parent.parent
    / "provisioning"
    / "convert"
    / "mappings"
    / "microsoft-sample.yaml"
)


@pytest.fixture
def feeds(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PROVISIONING_FEED_MODES", "workers=full,changes=delta")
    monkeypatch.setenv("PROVISIONING_COALESCE_SECONDS", "0")
    return env


def people(count: int, **overrides: str) -> list[dict[str, str]]:
    return [worker(n, **overrides) for n in range(1, count + 1)]


def enabled(emu: GraphEmulator) -> set[str]:
    return {ext for ext, user in directory(emu).items() if user["accountEnabled"]}


def titles(emu: GraphEmulator) -> dict[str, str]:
    return {ext: user.get("jobTitle", "") for ext, user in directory(emu).items()}


def post(body: Any, **headers: str) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/changes",
        headers={"Content-Type": "application/json", **headers},
        params={},
        body=json.dumps(body).encode(),
    )
    return functions()["post_changes"].get_user_function()(request)


def flush() -> None:
    asyncio.run(functions()["flush_changes"].get_user_function()(func.QueueMessage(body=b"x")))


def outbox() -> list[str]:
    return [b.name for b in store().list(STATE_CONTAINER, "outbox/")]


# --- 1. a stale approval -------------------------------------------------------------------


@pytest.mark.parametrize("approved_before_the_newer_file", [True, False])
def test_a_stale_approval_disables_nobody_the_newer_file_lists(
    feeds: dict[str, str], emulator: GraphEmulator, approved_before_the_newer_file: bool
) -> None:
    everyone = people(300)
    drop(csv_bytes(everyone), "workers/day1.csv")
    assert len(enabled(emulator)) == 300
    # A full file truncated to 10%: 270 leavers, over the threshold; held for approval.
    drop(csv_bytes(everyone[:30]), "workers/truncated.csv")
    truncated = latest_run()
    assert truncated["status"] == "held-for-approval"
    if approved_before_the_newer_file:
        assert WorkerState(store()).approve(truncated["run_id"], "tester") is None
    # The corrected full file: two people really left.
    corrected = everyone[:298]
    drop(csv_bytes(corrected), "workers/corrected.csv")
    assert latest_run()["status"] == "complete"
    refused = WorkerState(store()).approve(truncated["run_id"], "tester")
    assert refused is not None and "superseded" in refused
    summary = release()
    assert summary.get("records_sent", 0) == 0
    assert enabled(emulator) == {r["WorkerID"] for r in corrected}
    assert WorkerState(store()).approval_requests() == []


# --- 2. a stale resume ---------------------------------------------------------------------


def test_day_one_resumed_after_day_two_changes_nothing(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PROVISIONING_LEAVER_THRESHOLD_COUNT", "1000")
    drop(csv_bytes(people(200, JobTitle="Day 0")), "workers/day0.csv")
    # Day 1: new titles and ten leavers; Graph fails after its first batch.
    day1 = people(200, JobTitle="Day 1")
    for row in day1[:10]:
        row["WorkerStatus"] = "Inactive"
    emulator.set_faults(status_sequence=[202, 503, 503])
    with pytest.raises(RunInterrupted):
        drop(csv_bytes(day1), "workers/day1.csv")
    # Day 2 completes: other titles, and the ten day-1 leavers active again, five others gone.
    day2 = people(200, JobTitle="Day 2")
    for row in day2[100:105]:
        row["WorkerStatus"] = "Inactive"
    drop(csv_bytes(day2), "workers/day2.csv")
    assert latest_run()["status"] == "complete"
    mark = len(emulator.uploads())

    drop(csv_bytes(day1), "workers/day1.csv")  # the host retries day 1
    resumed = next(r for r in runs() if r["source_blob"].endswith("day1.csv"))
    assert resumed["status"] == "superseded"
    assert emulator.uploads()[mark:] == []
    assert set(titles(emulator).values()) == {"Day 2"}
    assert enabled(emulator) == {r["WorkerID"] for r in day2 if r["WorkerStatus"] == "Active"}
    state = WorkerState(store())
    state.fold()
    assert {ext: k.active for ext, k in state.index().items()} == {
        r["WorkerID"]: r["WorkerStatus"] == "Active" for r in day2
    }
    # The sweep leaves the superseded file alone from now on.
    found = store().read_json(STATE_CONTAINER, seen_name("hr-inbound/workers/day1.csv"))
    assert found is not None and found[0]["status"] == "superseded"


def test_a_resumed_delta_file_sends_only_what_no_newer_file_restated(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    drop(csv_bytes(people(150, JobTitle="Day 0")), "changes/day0.csv")
    emulator.set_faults(status_sequence=[503, 503])
    with pytest.raises(RunInterrupted):
        drop(csv_bytes(people(150, JobTitle="Day 1")), "changes/day1.csv")
    # Day 2 restates workers 1-50, one of them unchanged since day 0.
    day2 = [worker(1, JobTitle="Day 0")] + [worker(n, JobTitle="Day 2") for n in range(2, 51)]
    drop(csv_bytes(day2), "changes/day2.csv")
    drop(csv_bytes(people(150, JobTitle="Day 1")), "changes/day1.csv")
    resumed = next(r for r in runs() if r["source_blob"].endswith("day1.csv"))
    assert resumed["status"] == "complete"
    assert resumed["plan"]["counts"]["superseded"] == 50
    expected = {"1": "Day 0", **{str(n): "Day 2" for n in range(2, 51)}}
    expected |= {str(n): "Day 1" for n in range(51, 151)}
    assert titles(emulator) == expected


# --- 3. feed ownership ---------------------------------------------------------------------


def test_workers_first_created_over_http_leave_when_a_full_feed_drops_them(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_LEAVER_THRESHOLD_COUNT", "1000")
    api_made = [worker(n) for n in range(1001, 1051)]
    assert post(api_made).status_code == 202
    flush()
    everyone = people(100) + api_made
    drop(csv_bytes(everyone), "workers/full.csv")
    plan = latest_run()["plan"]
    assert sorted(plan["ownership_changes"]) == sorted(r["WorkerID"] for r in api_made)
    assert plan["counts"]["unchanged"] == 50  # nothing to send for them, only the owner
    drop(csv_bytes(people(100)), "workers/without-them.csv")
    assert sorted(latest_run()["plan"]["absent_leavers"]) == sorted(r["WorkerID"] for r in api_made)
    assert enabled(emulator) == {str(n) for n in range(1, 101)}


# --- 4. idempotency of HTTP changes --------------------------------------------------------


def test_concurrent_calls_with_one_key_make_exactly_one_change(
    feeds: dict[str, str], emulator: GraphEmulator
) -> None:
    replies: list[func.HttpResponse] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait(20)
        replies.append(post(worker(7), **{"Idempotency-Key": "logic-app-run-1"}))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    bodies = [json.loads(r.get_body()) for r in replies]
    assert [r.status_code for r in replies] == [202] * 8
    assert len({b["id"] for b in bodies}) == 1
    assert sum(1 for b in bodies if not b["duplicate"]) == 1
    assert len(outbox()) == 1
    flush()
    assert sent_external_ids(emulator) == ["7"]
    assert directory(emulator)["7"]["accountEnabled"] is True


def test_a_call_retried_after_a_crash_sends_once(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ChangeService._schedule_flush

    def crash(self: ChangeService) -> None:
        raise SystemExit("the instance died after writing the outbox entry")

    monkeypatch.setattr(ChangeService, "_schedule_flush", crash)
    with pytest.raises(SystemExit):
        post(worker(7), **{"Idempotency-Key": "k-1"})
    monkeypatch.setattr(ChangeService, "_schedule_flush", original)
    retry = post(worker(7), **{"Idempotency-Key": "k-1"})
    assert retry.status_code == 202 and json.loads(retry.get_body())["duplicate"] is True
    assert len(outbox()) == 1
    flush()
    assert sent_external_ids(emulator) == ["7"]
    again = post(worker(7), **{"Idempotency-Key": "k-1"})
    assert json.loads(again.get_body())["status"] == "sent"
    flush()
    assert sent_external_ids(emulator) == ["7"]  # nothing twice


def test_a_key_reused_with_another_body_is_a_conflict(feeds: dict[str, str]) -> None:
    assert post(worker(7), **{"Idempotency-Key": "k-2"}).status_code == 202
    conflict = post(worker(7, JobTitle="Other"), **{"Idempotency-Key": "k-2"})
    assert conflict.status_code == 409
    assert conflict.mimetype == "application/problem+json"
    assert "another body" in json.loads(conflict.get_body())["detail"]
    assert len(outbox()) == 1
    # The body's changeId is the key when both are sent.
    assert post({"records": [worker(7)], "changeId": "k-2"}).status_code == 202
    enveloped = post({"records": [worker(8)], "changeId": "k-2"}, **{"Idempotency-Key": "k-3"})
    assert enveloped.status_code == 409


def test_keys_are_scoped_to_the_calling_application(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    monkeypatch.setenv("PROVISIONING_ALLOWED_CLIENT_IDS", f"{one},{two}")

    def principal(app_id: str) -> str:
        claims = {"auth_typ": "aad", "claims": [{"typ": "appid", "val": app_id}]}
        return base64.b64encode(json.dumps(claims).encode()).decode()

    first = post(worker(1), **{"Idempotency-Key": "same", "X-MS-CLIENT-PRINCIPAL": principal(one)})
    other = post(worker(2), **{"Idempotency-Key": "same", "X-MS-CLIENT-PRINCIPAL": principal(two)})
    assert first.status_code == other.status_code == 202
    assert json.loads(first.get_body())["id"] != json.loads(other.get_body())["id"]
    flush()
    assert sorted(sent_external_ids(emulator)) == ["1", "2"]


# --- 5. one bad record in a flush ----------------------------------------------------------


def test_a_bad_record_does_not_sink_the_other_callers_changes(
    feeds: dict[str, str], emulator: GraphEmulator
) -> None:
    for n in range(1, 31):
        assert post(worker(n)).status_code == 202
    # Graph refuses any request carrying worker 17 (Invalid Data Format).
    emulator.set_faults(reject_records=["17"])
    flush()
    applied = set(directory(emulator))
    assert applied == {str(n) for n in range(1, 31)} - {"17"}
    ids = sent_external_ids(emulator)
    assert len(ids) == len(set(ids)) == 29  # each good record applied once
    state = WorkerState(store())
    changes = [
        state.store.read_json(STATE_CONTAINER, b.name)[0]  # type: ignore[index]
        for b in state.store.list(STATE_CONTAINER, "changes/")
    ]
    statuses = {c["records"][0]["externalId"]: c["status"] for c in changes}
    assert statuses["17"] == "partly-rejected"
    assert {s for ext, s in statuses.items() if ext != "17"} == {"sent"}
    assert outbox() == []


# --- 6. a flush waiting longer than its lease ----------------------------------------------


def test_a_flush_keeps_its_lease_through_a_long_retry_after(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_LEASE_SECONDS", "15")
    for n in range(1, 151):
        assert post(worker(n)).status_code == 202
    emulator.set_faults(status_sequence=[202, 429], retry_after_seconds=20)
    first = threading.Thread(target=flush)
    first.start()
    time.sleep(17)  # past the 15 s lease: only renewals keep it
    from provisioning.changes.flush import flush as flush_once
    from provisioning.functions.services import open_services

    async def second() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            return await flush_once(settings, blobs, graph)

    assert asyncio.run(second())["status"] == "busy"
    first.join(120)
    ids = sent_external_ids(emulator)
    assert sorted(ids, key=int) == [str(n) for n in range(1, 151)]  # each once
    assert outbox() == []


# --- 7. token endpoint down ----------------------------------------------------------------


def test_token_endpoint_down_interrupts_without_counting_an_attempt(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_FILE_ATTEMPTS", "1")
    emulator.set_faults(token_failures=1000, token_status=500)
    data = csv_bytes(people(60))
    with pytest.raises(RunInterrupted):
        drop(data, "workers/day1.csv")
    (summary,) = runs()
    assert summary["status"] == "interrupted"
    marker = store().read_json(STATE_CONTAINER, seen_name("hr-inbound/workers/day1.csv"))
    assert marker is not None and marker[0]["failed_attempts"] == 0
    emulator.set_faults(token_failures=0)
    drop(data, "workers/day1.csv")
    assert runs()[0]["status"] == "complete"
    assert len(sent_external_ids(emulator)) == 60


# --- 6 and 8. bounded waits and honest resend markers --------------------------------------


def test_a_day_long_retry_after_pauses_every_sender_at_once_and_frees_the_file(
    feeds: dict[str, str], emulator: GraphEmulator
) -> None:
    """Graph's answer once the tenant's daily quota is used up: 429 with a Retry-After of a
    day. The run ends paused at once (no claim held for a day, no attempt counted), and every
    other sender waits too: a retry of the file sends nothing until the day has passed."""
    emulator.set_faults(status_sequence=[429], retry_after_seconds=86400)
    data = csv_bytes(people(60))
    begun = time.monotonic()
    drop(data, "workers/day1.csv")
    assert time.monotonic() - begun < 30
    (summary,) = runs()
    assert summary["status"] == "paused" and "Retry-After of 86400 s" in summary["reason"]
    book = read_book(store())
    assert book.blocked_until > time.time() + 86000  # for every sender of the tenant
    drop(data, "workers/day1.csv")  # the claim was released: the retry runs at once ...
    assert runs()[0]["status"] == "paused"
    assert len(emulator.uploads()) == 1  # ... and sends nothing while Graph said wait
    # A day later (the Retry-After has passed):
    book.blocked_until = time.time() - 1
    store().write_json(STATE_CONTAINER, PACE_BLOB, book.dump())
    drop(data, "workers/day1.csv")
    assert runs()[0]["status"] == "complete"
    assert len(sent_external_ids(emulator)) == 60


def test_only_a_lost_answer_marks_a_batch_resent(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    data = csv_bytes(people(150))
    # Graph answers 503 twice: it did not take batch 2, so its resend is no resend.
    emulator.set_faults(status_sequence=[202, 503, 503])
    with pytest.raises(RunInterrupted):
        drop(data, "workers/day1.csv")
    drop(data, "workers/day1.csv")
    (summary,) = runs()
    assert summary["status"] == "complete"
    assert [b["resent_after_crash"] for b in summary["batches"]] == [False] * 3
    assert [b["maybe_applied_twice"] for b in summary["batches"]] == [False] * 3
    # A dropped answer within a run: the retry may apply the batch twice, and says so.
    emulator.set_faults(status_sequence=[0])
    drop(csv_bytes(people(20, JobTitle="Promoted")), "changes/day2.csv")
    latest = latest_run()
    assert latest["status"] == "complete"
    assert [b["maybe_applied_twice"] for b in latest["batches"]] == [True]


def test_a_reconciliation_pass_without_graph_ends_interrupted(
    feeds: dict[str, str], emulator: GraphEmulator
) -> None:
    from provisioning.functions.services import open_services
    from provisioning.reconcile.reconciler import Reconciler

    async def one_pass() -> dict[str, Any]:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            return await Reconciler(settings, blobs, graph).run(sweep=False, drift=False)

    emulator.set_faults(token_failures=1000)
    report = asyncio.run(one_pass())
    assert report["status"] == "interrupted" and "token" in report["reason"]
    emulator.set_faults(token_failures=0)
    assert asyncio.run(one_pass())["status"] == "complete"


# --- the check at the moment of sending ----------------------------------------------------


def test_an_older_file_resumed_after_a_newer_http_change_leaves_it_alone(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    drop(csv_bytes(people(150, JobTitle="Day 0")), "changes/day0.csv")
    emulator.set_faults(status_sequence=[202, 503, 503])
    day1 = csv_bytes(people(150, JobTitle="Day 1"))
    with pytest.raises(RunInterrupted):
        drop(day1, "changes/day1.csv")
    # Worker 120 leaves, over HTTP, after the file was accepted.
    assert post(worker(120, JobTitle="Day 1", WorkerStatus="Inactive")).status_code == 202
    flush()
    drop(day1, "changes/day1.csv")
    resumed = next(r for r in runs() if r["source_blob"].endswith("day1.csv"))
    assert resumed["status"] == "complete"
    assert "120" in resumed["plan"]["superseded"]
    assert "120" not in enabled(emulator)
    assert len(enabled(emulator)) == 149


def test_a_change_accepted_while_a_file_is_sending_is_never_overwritten(
    feeds: dict[str, str], emulator: GraphEmulator
) -> None:
    """The file was planned before the change arrived: only the check in the send gate can
    stop its older record of worker 480, whichever of the two reaches the gate first."""
    drop(csv_bytes(people(500, JobTitle="Day 0")), "changes/day0.csv")
    mark = len(emulator.uploads())
    emulator.set_faults(latency_ms=500)
    errors: list[BaseException] = []

    def run_file() -> None:
        try:
            drop(csv_bytes(people(500, JobTitle="File")), "changes/day1.csv")
        except BaseException as error:
            errors.append(error)

    file_run = threading.Thread(target=run_file)
    file_run.start()
    deadline = time.monotonic() + 60
    while len(emulator.uploads()) == mark and time.monotonic() < deadline:
        time.sleep(0.05)  # the file is sending its first batch
    assert post(worker(480, JobTitle="HTTP", WorkerStatus="Inactive")).status_code == 202
    flush()
    file_run.join(120)
    assert errors == []
    assert titles(emulator)["480"] == "HTTP"
    assert "480" not in enabled(emulator)
    last = [u for u in emulator.uploads() if any(e == "480" for _, e in u["records"])][-1]
    assert last["status"] == 202 and len(last["records"]) == 1  # the HTTP change came last
    file_summary = latest_run()
    assert file_summary["status"] == "complete"
    assert file_summary["records_superseded"] + file_summary["plan"]["counts"]["superseded"] == 1


def test_a_gate_lost_while_planning_interrupts_the_run(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning.jml.ordering import SendGate
    from provisioning.storage import PreconditionFailed

    original = SendGate.write
    lost: list[bool] = []

    def write(self: SendGate, data: dict[str, Any]) -> None:
        if not lost:
            lost.append(True)
            raise PreconditionFailed("state/locks/send: LeaseIdMismatchWithBlobOperation")
        original(self, data)

    monkeypatch.setattr(SendGate, "write", write)
    data = csv_bytes(people(20))
    with pytest.raises(RunInterrupted):
        drop(data, "changes/day1.csv")
    marker = store().read_json(STATE_CONTAINER, seen_name("hr-inbound/changes/day1.csv"))
    assert marker is not None and marker[0]["status"] == "interrupted"
    assert marker[0]["failed_attempts"] == 0
    drop(data, "changes/day1.csv")
    assert runs()[0]["status"] == "complete" and len(sent_external_ids(emulator)) == 20


def test_older_data_accepted_while_planning_makes_the_plan_again(
    feeds: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning.jml.ordering import SendGate
    from provisioning.runs import drop as drop_module

    drop(csv_bytes(people(10, JobTitle="Day 0")), "changes/day0.csv")
    original = drop_module.make_plan
    plans: list[Any] = []

    async def older_sender() -> None:
        # An older change of worker 3 (say a release) is accepted while the file is planned.
        gate = SendGate.from_settings(store(), Settings())
        async with gate.holding():
            turn = await gate.turn(["3"])
            old = {"externalId": "3", "title": "Older"}
            turn.publish("accepted", [("3", "fp-older", True, "changes", "0-older", old)])

    def make_plan(*args: Any, **kwargs: Any) -> Any:
        made = original(*args, **kwargs)
        plans.append(made.plan)
        if len(plans) == 1:
            thread = threading.Thread(target=lambda: asyncio.run(older_sender()))
            thread.start()
            thread.join(30)
        return made

    monkeypatch.setattr(drop_module, "make_plan", make_plan)
    mark = len(emulator.uploads())
    drop(csv_bytes(people(11, JobTitle="Day 0")), "changes/day1.csv")  # and a joiner
    assert len(plans) == 2
    assert plans[0].decisions["3"].action == "unchanged"
    assert plans[1].decisions["3"].action == "mover"  # the file's newer data goes again
    sent = [e for u in emulator.uploads()[mark:] if u["status"] == 202 for _, e in u["records"]]
    assert sent == ["11", "3"]  # the joiner first, then the mover (SEND_PARTS)
