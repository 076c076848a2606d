"""The HTTP change endpoint, through app.get_functions() with real func.HttpRequest objects,
Azurite (state and the flush queue) and the Graph emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any

import azure.functions as func
import pytest

from graph_emulator import GraphEmulator
from provisioning.settings import STATE_CONTAINER, Settings
from provisioning.storage import FlushQueue
from tests.columns import worker
from tests.e2e import functions, store


def post(
    body: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/changes",
        headers={"Content-Type": "application/json", **(headers or {})},
        params={},
        body=raw if raw is not None else json.dumps(body).encode(),
    )
    return functions()["post_changes"].get_user_function()(request)


def get(change_id: str) -> func.HttpResponse:
    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost/api/changes/{change_id}",
        headers={},
        params={},
        route_params={"id": change_id},
        body=b"",
    )
    return functions()["get_change"].get_user_function()(request)


def flush() -> None:
    message = func.QueueMessage(body=b"flush")
    asyncio.run(functions()["flush_changes"].get_user_function()(message))


def body(response: func.HttpResponse) -> dict[str, Any]:
    return json.loads(response.get_body())


def outbox() -> list[str]:
    return [b.name for b in store().list(STATE_CONTAINER, "outbox/")]


def bulk_uploads(emu: GraphEmulator) -> list[dict[str, Any]]:
    return [u for u in emu.uploads() if u["status"] == 202]


@pytest.fixture
def api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PROVISIONING_COALESCE_SECONDS", "2")
    return env


def test_binding_metadata() -> None:
    bindings = {
        name: [json.loads(b) for b in fn.get_raw_bindings()] for name, fn in functions().items()
    }
    post_in = bindings["post_changes"][0]
    assert post_in["type"] == "httpTrigger" and post_in["methods"] == ["POST"]
    assert post_in["route"] == "changes" and post_in["authLevel"] == "FUNCTION"
    get_in = bindings["get_change"][0]
    assert get_in["route"] == "changes/{id}" and get_in["authLevel"] == "FUNCTION"
    assert bindings["openapi"][0]["authLevel"] == "ANONYMOUS"
    (queue,) = bindings["flush_changes"]
    assert queue == {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "message",
        "queueName": "provisioning-flush",
        "connection": "HRSTORAGE",
    }


def test_single_change_is_accepted_persisted_then_sent(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    response = post(worker(1))
    assert response.status_code == 202
    reply = body(response)
    assert reply["status"] == "queued" and reply["duplicate"] is False
    assert reply["records"] == [{"index": 0, "externalId": "1", "action": "joiner"}]
    assert response.headers["Location"] == f"/api/changes/{reply['id']}"
    # Persisted before the 202: the outbox holds it and a flush is scheduled on the queue.
    assert len(outbox()) == 1
    assert FlushQueue.from_settings(Settings()).pending() == 1
    assert emulator.uploads() == []
    assert body(get(reply["id"]))["status"] == "queued"
    flush()
    status = body(get(reply["id"]))
    assert status["status"] == "sent"
    assert status["records"][0]["status"] == "sent" and status["records"][0]["request_id"]
    assert outbox() == []
    assert emulator.directory()[0]["employeeId"] == "1"


def test_array_and_envelope(api: dict[str, str], emulator: GraphEmulator) -> None:
    reply = body(post([worker(1), worker(2), worker(3)]))
    assert [r["externalId"] for r in reply["records"]] == ["1", "2", "3"]
    flush()
    # The same records again are unchanged: nothing to send.
    again = body(post({"records": [worker(1), worker(2)], "changeId": "hr-42"}))
    assert [r["action"] for r in again["records"]] == ["unchanged", "unchanged"]
    # Sent all the same: the newest HR data of a worker is what Entra must have last, even
    # while an older file run is still sending that worker.
    assert again["status"] == "queued"
    flush()
    assert body(get(again["id"]))["status"] == "sent"


def test_invalid_json_wrong_type_and_oversized(api: dict[str, str]) -> None:
    bad = post(None, raw=b"{not json")
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert body(bad)["title"] == "Invalid JSON" and body(bad)["status"] == 400
    wrong = post(None, raw=b"<x/>", headers={"Content-Type": "application/xml"})
    assert wrong.status_code == 415
    huge = post(None, raw=b"[" + b" " * (1 << 20) + b"]")
    assert huge.status_code == 413
    assert body(post([worker(n) for n in range(51)]))["status"] == 400
    assert outbox() == []


def test_deeply_nested_body_is_a_client_error(api: dict[str, str]) -> None:
    # json.loads raises RecursionError (not ValueError) past Python's nesting limit.
    for raw in (b"[" * 100_000, b'{"a":' * 100_000):
        response = post(None, raw=raw)
        assert 400 <= response.status_code < 500, response.get_body()
        assert response.mimetype == "application/problem+json"
    assert outbox() == []


def test_missing_fields_reject_the_whole_call_with_every_error(api: dict[str, str]) -> None:
    records = [worker(1), worker("", FirstName="Ada"), worker(3, WorkerStatus="Maybe"), worker(1)]
    response = post(records)
    assert response.status_code == 400
    problem = body(response)
    assert "3 of 4 records are invalid" in problem["detail"]
    assert {(e["index"], e["attribute"]) for e in problem["errors"]} == {
        (1, "externalId"),
        (2, "active"),
        (3, "externalId"),
    }
    assert all("Ada" not in e["reason"] for e in problem["errors"])
    assert outbox() == []  # nothing applied, not even the valid record 0


def test_idempotency_key_returns_the_first_result_and_sends_once(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    first = body(post(worker(7), headers={"Idempotency-Key": "run-123"}))
    second = post(worker(7), headers={"Idempotency-Key": "run-123"})
    assert second.status_code == 202
    assert body(second)["id"] == first["id"] and body(second)["duplicate"] is True
    # The same key with another body is not a duplicate: its new body would be lost.
    changed = post(worker(7, JobTitle="Changed meanwhile"), headers={"Idempotency-Key": "run-123"})
    assert changed.status_code == 409
    assert len(outbox()) == 1
    flush()
    records = [ext for u in bulk_uploads(emulator) for _, ext in u["records"]]
    assert records == ["7"]
    assert emulator.directory()[0]["jobTitle"] == "Engineer"


def test_burst_is_coalesced_into_full_bulk_requests(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    calls = 120
    for n in range(calls):
        assert post(worker(n + 1)).status_code == 202
    # One scheduled flush for the whole burst, however many calls.
    assert FlushQueue.from_settings(Settings()).pending() == 1
    flush()
    uploads = bulk_uploads(emulator)
    assert len(uploads) == math.ceil(calls / 50)
    assert sorted(len(u["records"]) for u in uploads) == [20, 50, 50]
    assert len(emulator.directory()) == calls
    assert outbox() == []


def test_outage_keeps_changes_queued_until_a_later_flush(
    api: dict[str, str], emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioning.functions.http_trigger import FlushInterrupted

    monkeypatch.setenv("PROVISIONING_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PROVISIONING_RETRY_BASE_SECONDS", "0.01")
    change = body(post(worker(1)))["id"]
    emulator.set_faults(status_sequence=[503, 503])
    with pytest.raises(FlushInterrupted):
        flush()
    assert body(get(change))["status"] == "retrying"
    assert len(outbox()) == 1
    flush()  # the host delivers the message again
    assert body(get(change))["status"] == "sent"


LOGIC_APP = "11111111-1111-1111-1111-111111111111"
OTHER_APP = "22222222-2222-2222-2222-222222222222"


def _principal(app_id: str) -> str:
    claims = {"auth_typ": "aad", "claims": [{"typ": "appid", "val": app_id}]}
    return base64.b64encode(json.dumps(claims).encode()).decode()


def test_easy_auth_caller_must_be_on_the_allow_list(
    api: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PROVISIONING_ALLOWED_CLIENT_IDS", f"{LOGIC_APP}, 33333333-0000-0000-0000-0000"
    )
    refused = post(worker(1), headers={"X-MS-CLIENT-PRINCIPAL": _principal(OTHER_APP)})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert outbox() == []
    # Client ids are compared case-insensitively (GUIDs).
    allowed = post(worker(1), headers={"X-MS-CLIENT-PRINCIPAL": _principal(LOGIC_APP.upper())})
    assert allowed.status_code == 202
    # Unreadable, or absent while the allow-list is set: not identified, fail closed.
    garbled = post(worker(2), headers={"X-MS-CLIENT-PRINCIPAL": "%%%"})
    assert garbled.status_code == 401
    anonymous = post(worker(2))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert len(outbox()) == 1


def test_without_allow_list_the_function_key_alone_protects(api: dict[str, str]) -> None:
    assert post(worker(1)).status_code == 202
    # Without Easy Auth the header could come from the caller: it is not read.
    assert post(worker(2), headers={"X-MS-CLIENT-PRINCIPAL": "%%%"}).status_code == 202


def test_the_timer_puts_entra_outcomes_on_the_change(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    import jsonschema

    from provisioning.functions.services import open_services
    from provisioning.reconcile.reconciler import Reconciler
    from tests.test_openapi import json_schema

    emulator.set_faults(fail_records={"2": {"errorCode": "Conflict", "recommendedAction": "Fix"}})
    reply = body(post([worker(1), worker(2)]))
    flush()

    async def tick() -> None:
        settings = Settings()
        async with open_services(settings) as (blobs, graph):
            await Reconciler(settings, blobs, graph).run(sweep=False, drift=False)

    asyncio.run(tick())

    change = body(get(reply["id"]))
    jsonschema.validate(change, json_schema({"$ref": "#/components/schemas/Change"}))
    assert change["outcomes"] == "complete"
    first, second = change["records"]
    assert first["entra"]["status"] == "success" and first["entra"]["action"] == "create"
    by_id = {u["employeeId"]: u["id"] for u in emulator.directory()}
    assert first["entra"]["target_id"] == by_id["1"]
    assert second["entra"]["status"] == "failure"
    assert (second["entra"]["error_code"], second["entra"]["recommended_action"]) == (
        "Conflict",
        "Fix",
    )


def test_the_timer_flushes_changes_whose_queue_message_never_came(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    import datetime as dt

    from provisioning.changes.flush import STALE_OUTBOX
    from provisioning.functions.services import open_services
    from provisioning.reconcile.reconciler import Reconciler

    accepted = body(post(worker(1)))  # its queue message is lost: no flush() here
    assert outbox() and bulk_uploads(emulator) == []

    def tick(now: dt.datetime) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            settings = Settings()
            async with open_services(settings) as (blobs, graph):
                return await Reconciler(settings, blobs, graph, clock=lambda: now).run(
                    sweep=False, drift=False
                )

        return asyncio.run(run())

    now = dt.datetime.now(dt.UTC)
    assert "flush" not in tick(now)  # a fresh entry is left to its own queue message
    report = tick(now + STALE_OUTBOX + dt.timedelta(seconds=5))
    assert report["flush"]["records_accepted"] == 1
    assert outbox() == [] and [u["employeeId"] for u in emulator.directory()] == ["1"]
    assert body(get(accepted["id"]))["status"] == "sent"
    # The flush cleared the schedule marker, so the next call schedules its own flush again.
    assert not store().exists(STATE_CONTAINER, "locks/flush-scheduled")


def test_a_record_with_a_repeated_key_is_rejected_naming_it(api: dict[str, str]) -> None:
    good = json.dumps(worker(1))
    repeated = good[:-1] + ', "Department": "Legal"}'
    reply = post(None, raw=f"[{good}, {repeated}]".encode())
    assert reply.status_code == 400
    text = reply.get_body().decode()
    assert "appears twice" in text and "Department" in text
    assert outbox() == []  # the call is refused whole, as for any invalid record


def test_one_call_may_not_name_a_worker_twice_in_any_case(api: dict[str, str]) -> None:
    reply = post([worker("e2"), worker("E2")])
    assert reply.status_code == 400
    assert "the same externalId (ignoring case) as record 0" in reply.get_body().decode()
    assert outbox() == []


def test_envelope_keys_read_as_before(api: dict[str, str]) -> None:
    """The envelope as the request model reads it: other keys ignored, a numeric changeId is
    the key as text, an empty changeId or mapping means none (the header, the default)."""
    first = post({"records": [worker(1)], "changeId": 42, "note": "from ServiceNow"})
    assert first.status_code == 202, first.get_body()
    again = body(post({"records": [worker(1)], "changeId": "42"}))
    assert again["duplicate"] is True and again["id"] == body(first)["id"]
    key = {"Idempotency-Key": "k"}
    keyed = body(post({"records": [worker(2)], "changeId": ""}, headers=key))
    retried = body(post({"records": [worker(2)], "mapping": None}, headers=key))
    assert retried["duplicate"] is True and retried["id"] == keyed["id"]


@pytest.mark.parametrize(
    ("sent", "kind", "detail"),
    [
        (5, "invalid-shape", "send one HR record (a JSON object), an array of records"),
        ("worker", "invalid-shape", "send one HR record (a JSON object), an array of records"),
        ({"records": []}, "too-many-records", "send between 1 and 50 records per call, not 0"),
        ([], "too-many-records", "send between 1 and 50 records per call, not 0"),
        (
            {"records": [worker(1)], "mapping": "workday"},
            "unknown-mapping",
            "mapping 'workday' is not one of microsoft-sample, hr-suite",
        ),
        (
            {"records": [worker(n) for n in range(51)], "mapping": "workday"},
            "too-many-records",
            "send between 1 and 50 records per call, not 51",
        ),
    ],
    ids=["number", "string", "empty-envelope", "empty-array", "unknown-mapping", "count-first"],
)
def test_calls_the_request_model_refuses(
    api: dict[str, str], sent: Any, kind: str, detail: str
) -> None:
    response = post(sent)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    problem = body(response)
    assert problem["type"].endswith(f"/{kind}") and problem["detail"].startswith(detail)
    assert "errors" not in problem
    assert outbox() == []


def test_a_stored_change_the_model_cannot_show_is_a_500_problem(
    api: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    accepted = body(post(worker(1)))
    name = f"changes/{accepted['id']}.json"
    change, _ = store().read_json(STATE_CONTAINER, name) or ({}, None)
    change["records"][0]["status"] = "mislaid"  # a status the document does not know
    store().write_json(STATE_CONTAINER, name, change)
    response = get(accepted["id"])
    assert response.status_code == 500 and response.mimetype == "application/problem+json"
    assert body(response)["type"].endswith("/unreadable-change")
    assert "records.0.status: must be one of" in caplog.text


# --- the change record, its outbox entry and the flush marker as versioned documents ------


def stored(name: str) -> Any:
    found = store().read_json(STATE_CONTAINER, name)
    assert found is not None, name
    return found[0]


def test_a_change_is_stored_with_the_version_and_the_keys_it_always_had(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    reply = body(post(worker(1), headers={"Idempotency-Key": "v1"}))
    name = f"changes/{reply['id']}.json"
    change = stored(name)
    assert change["schema_version"] == 1
    assert set(change) == {
        "schema_version", "id", "status", "received", "order", "body_hash", "mapping",
        "records", "errors", "ops", "hold", "cancel",
    }  # fmt: skip
    assert change["status"] == "queued" and change["errors"] == [] and change["hold"] == []
    assert change["records"] == [
        {"index": 0, "externalId": "1", "action": "joiner", "status": "queued", "request_id": None}
    ]
    (op,) = change["ops"]
    assert set(op) == {"index", "externalId", "bulkId", "feed", "data"}
    assert stored(f"outbox/{reply['id']}.json") == {
        "schema_version": 1,
        "change": reply["id"],
        "order": change["order"],
    }
    marker = stored("locks/flush-scheduled")
    assert marker["schema_version"] == 1 and set(marker) == {"schema_version", "at"}

    flush()
    sent = stored(name)
    assert sent["schema_version"] == 1 and sent["status"] == "sent"
    assert sent["records"][0]["status"] == "sent" and sent["records"][0]["request_id"]
    assert body(get(reply["id"]))["records"][0]["status"] == "sent"
    # The same call again reads the record back: a duplicate, nothing sent twice.
    again = body(post(worker(1), headers={"Idempotency-Key": "v1"}))
    assert again["duplicate"] is True and again["status"] == "sent"
    assert len(bulk_uploads(emulator)) == 1


def test_a_change_stored_before_versions_reads_and_flushes_as_before(
    api: dict[str, str], emulator: GraphEmulator
) -> None:
    reply = body(post(worker(1)))
    name = f"changes/{reply['id']}.json"
    # As the first versions of the app stored it: no version, order, body hash or held
    # changes, and an ``outbox`` key of their own; its outbox entry only names the change.
    old = {k: v for k, v in stored(name).items()
           if k not in ("schema_version", "order", "body_hash", "hold", "cancel")}  # fmt: skip
    old["outbox"] = f"outbox/20240101T000000000000-{reply['id']}.json"
    store().write_json(STATE_CONTAINER, name, old)
    store().write_json(STATE_CONTAINER, f"outbox/{reply['id']}.json", {"change": reply["id"]})

    assert body(get(reply["id"])) == {
        "id": reply["id"],
        "status": "queued",
        "received": old["received"],
        "mapping": old["mapping"],
        "records": [{**old["records"][0]}],
        "errors": [],
    }
    flush()
    assert [u["employeeId"] for u in emulator.directory()] == ["1"]
    assert outbox() == []
    after = stored(name)
    assert after["status"] == "sent" and after["schema_version"] == 1
    assert after["outbox"] == old["outbox"]  # a key this version does not know is kept
    assert {k: after[k] for k in ("id", "received", "mapping", "ops")} == {
        k: old[k] for k in ("id", "received", "mapping", "ops")
    }


UNUSABLE_CHANGES = {
    "newer": (
        lambda change: {**change, "schema_version": 2, "records": {"0": "sent"}},
        "was written by a newer version of the app (change record schema version 2; "
        "this version reads up to 1)",
    ),
    "malformed": (
        lambda change: {k: v for k, v in change.items() if k != "records"},
        "is not a valid change record: records: is required",
    ),
}


@pytest.mark.parametrize("kind", UNUSABLE_CHANGES)
def test_a_change_record_this_version_cannot_use_is_never_written_over(
    api: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    from provisioning.changes.records import record_entra_outcomes

    alter, message = UNUSABLE_CHANGES[kind]
    bad = body(post(worker(1), headers={"Idempotency-Key": "bad"}))
    name = f"changes/{bad['id']}.json"
    unusable = alter(stored(name))
    store().write_json(STATE_CONTAINER, name, unusable)
    said = f"{STATE_CONTAINER}/{name} {message}"

    # GET: a 500 problem; the log names the blob and what is wrong.
    response = get(bad["id"])
    assert response.status_code == 500 and body(response)["type"].endswith("/unreadable-change")
    assert said in caplog.text
    # The same call again cannot tell a repeat from a conflict: a 500, nothing written.
    caplog.clear()
    again = post(worker(1), headers={"Idempotency-Key": "bad"})
    assert again.status_code == 500 and body(again)["type"].endswith("/unreadable-change")
    assert "could not be accepted" in body(again)["detail"] and said in caplog.text
    # The flush sends every other change and leaves this one, and its outbox entry, alone.
    good = body(post(worker(2)))
    caplog.clear()
    flush()
    assert [u["employeeId"] for u in emulator.directory()] == ["2"]
    assert body(get(good["id"]))["status"] == "sent"
    assert outbox() == [f"outbox/{bad['id']}.json"]
    assert said in caplog.text and "skipped: its change waits in the outbox" in caplog.text
    # The timer's outcomes are not put on it either.
    caplog.clear()
    record_entra_outcomes(store(), bad["id"], {0: {"status": "success"}}, {"success"})
    assert said in caplog.text and "Entra's outcomes are not put on it" in caplog.text
    assert stored(name) == unusable


def test_an_outbox_entry_this_version_cannot_use_is_skipped_and_kept(
    api: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    first = body(post(worker(1)))
    second = body(post(worker(2)))
    entry = f"outbox/{first['id']}.json"
    newer = {"schema_version": 2, "changes": [first["id"]]}
    store().write_json(STATE_CONTAINER, entry, newer)
    flush()
    assert [u["employeeId"] for u in emulator.directory()] == ["2"]
    assert body(get(second["id"]))["status"] == "sent"
    assert body(get(first["id"]))["status"] == "queued"  # waits, not lost
    assert outbox() == [entry] and stored(entry) == newer
    assert (
        f"{STATE_CONTAINER}/{entry} was written by a newer version of the app (outbox entry "
        "schema version 2;" in caplog.text
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # beyond 64 bits, in a column no mapping reads: the record is fine
        (b'[{"WorkerID": "1", "k": 401597742495823839625216}]', 202),
        # a lone surrogate where a directory attribute comes from: refused, as in a file
        (b'[{"WorkerID": "1", "FirstName": "\\ud83a"}]', 400),
    ],
    ids=["huge-integer", "lone-surrogate"],
)
def test_values_json_allows_but_orjson_cannot_write_get_an_answer_not_a_500(
    api: dict[str, str], raw: bytes, status: int
) -> None:
    """Found by schemathesis: the request's body hash (for Idempotency-Key) and the record's
    fingerprint crashed on them."""
    response = post(None, raw=raw, headers={"Idempotency-Key": "odd-values"})
    assert response.status_code == status, response.get_body()
    if status == 400:
        assert response.mimetype == "application/problem+json"
        (error,) = [e for e in body(response)["errors"] if "surrogate" in e["reason"]]
        assert error["column"] == "FirstName" and "U+D83A" in error["reason"]
    again = post(None, raw=raw, headers={"Idempotency-Key": "odd-values"})
    assert again.status_code == response.status_code  # the same body, the same answer
