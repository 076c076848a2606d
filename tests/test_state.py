"""WorkerState against a real Azurite: deltas folded into shards, held changes, approvals."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient

from provisioning.documents import MalformedDocument, NewerDocument
from provisioning.jml import state as state_module
from provisioning.jml.lifecycle import Held, Known
from provisioning.jml.ordering import OrderView, SendGate
from provisioning.jml.state import Change, DeltaStatus, WorkerState, id_hash, shard_of
from provisioning.settings import STATE_CONTAINER
from provisioning.storage import BlobStore

if TYPE_CHECKING:
    from tests.conftest import Azurite

FEED = "hr-main"
WAIT = 20.0  # seconds; a hook that waits longer means the interleaving went wrong


def _store(azurite: Azurite) -> BlobStore:
    return BlobStore(BlobServiceClient.from_connection_string(azurite.connection_string))


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[BlobStore]:
    with _store(clean_storage) as blob_store:
        blob_store.ensure_containers(STATE_CONTAINER)
        yield blob_store


@pytest.fixture
def state(store: BlobStore) -> WorkerState:
    return WorkerState(store)


def accepted(
    external_id: str, version: int = 1, *, active: bool = True, feed: str = FEED, order: str = ""
) -> Change:
    record = {
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.example",
        "active": active,
        "version": version,
    }
    return (external_id, f"fp-{external_id}-{version}", active, feed, order, record)


def names(store: BlobStore, prefix: str = "") -> list[str]:
    return [blob.name for blob in store.list(STATE_CONTAINER, prefix)]


def publish(store: BlobStore, status: DeltaStatus, changes: list[Change]) -> int:
    """One turn of the real send gate publishing ``changes``; returns its generation."""

    async def turn() -> int:
        gate = SendGate(
            store, OrderView(WorkerState(store), 0), lease_seconds=15, max_wait_seconds=30
        )
        async with gate.holding():
            return (await gate.turn()).publish(status, changes)

    return asyncio.run(turn())


# --- accepted records and the fold --------------------------------------------------------


def test_accepted_records_are_folded_into_index_and_records(
    state: WorkerState, store: BlobStore
) -> None:
    first = [accepted(f"E{i:03d}") for i in range(150)]
    second = [accepted("X1", active=False), accepted("X2", feed="contractors")]
    assert publish(store, "accepted", first) == 1
    assert publish(store, "accepted", second) == 2
    assert names(store, "workers/deltas/") == [
        "workers/deltas/g000000000001.json",
        "workers/deltas/g000000000002.json",
    ]
    assert state.index() == {}  # nothing folded yet

    assert state.fold() == 2
    assert state.folded() == 2
    assert state.fold() == 0

    index = state.index()
    assert len(index) == 152
    assert index["E007"] == Known("fp-E007-1", True, FEED)
    assert index["X1"] == Known("fp-X1-1", False, FEED)
    assert index["X2"] == Known("fp-X2-1", True, "contractors")

    records = state.records(["E007", "X1", "E149", "UNKNOWN"])
    assert records == {"E007": first[7][5], "X1": second[0][5], "E149": first[149][5]}
    assert state.records([]) == {}

    shards = {shard_of(ext) for ext in index}
    assert len(shards) > 50  # 152 ids spread over many of the 256 shards
    assert names(store, "workers/index-") == sorted(f"workers/index-{s}.json" for s in shards)
    assert names(store, "workers/records-") == sorted(f"workers/records-{s}.json" for s in shards)


def test_index_and_records_of_an_empty_state(state: WorkerState) -> None:
    assert state.fold() == 0
    assert state.index() == {}
    assert state.records(["E1"]) == {}
    assert state.held() == []
    assert state.approval_requests() == []


def test_later_generation_wins_and_orders_only_grow(state: WorkerState, store: BlobStore) -> None:
    publish(store, "accepted", [accepted("E1", 1, order="o2"), accepted("E2", 1, order="o1")])
    publish(store, "accepted", [accepted("E1", 2, active=False, order="o1")])
    state.fold()
    publish(store, "accepted", [accepted("E2", 3, order="o3")])
    assert state.fold() == 1
    index = state.index()
    # What Entra got last is what it has; the newest HR order known is kept apart.
    assert index["E1"] == Known("fp-E1-2", False, FEED, "o2")
    assert index["E2"] == Known("fp-E2-3", True, FEED, "o3")
    assert {k: r["version"] for k, r in state.records(["E1", "E2"]).items()} == {"E1": 2, "E2": 3}


def test_refolding_the_same_deltas_changes_nothing(state: WorkerState, store: BlobStore) -> None:
    publish(store, "accepted", [accepted("E1"), accepted("E2")])
    state.fold()
    before = {b.name: b.etag for b in store.list(STATE_CONTAINER, "workers/") if "index" in b.name}
    # As if the fold died before it recorded how far it got.
    store.write_json(STATE_CONTAINER, "workers/folded.json", {"gen": 0})
    assert state.fold() == 1
    after = {b.name: b.etag for b in store.list(STATE_CONTAINER, "workers/") if "index" in b.name}
    assert after == before  # no shard rewritten
    assert set(state.index()) == {"E1", "E2"}


def test_a_request_whose_answer_is_pending_is_folded_as_not_known(
    state: WorkerState, store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(store, "accepted", [accepted("E1", 1, order="o1")])
    state.fold()
    sending: list[Change] = [
        ("E1", None, False, FEED, "o2", None),
        ("E9", None, True, FEED, "o2", None),
    ]
    gen = publish(store, "sending", sending)
    # Only the gate blob holds it until Graph answers.
    assert names(store, "workers/deltas/") == ["workers/deltas/g000000000001.json"]
    state.fold()
    assert state.index()["E1"] == Known(None, False, FEED, "o2")
    assert state.index()["E9"] == Known(None, True, FEED, "o2")
    assert state.records(["E1"])["E1"]["version"] == 1  # the last record known to be there
    assert state.folded() == 1  # waits for the answer
    # The answer: accepted. Its delta beats the pending version of itself.
    state.write_delta(gen, "accepted", [accepted("E1", 2, active=False, order="o2")])
    state.fold()
    assert state.index()["E1"] == Known("fp-E1-2", False, FEED, "o2")
    assert state.folded() == gen
    # A sender that died with its request pending stops holding the fold back in the end.
    gen = publish(store, "sending", [("E2", None, True, FEED, "o3", None)])
    state.fold()
    assert state.folded() == gen - 1
    monkeypatch.setattr(state_module, "STALE_SENDING", dt.timedelta(0))
    state.fold()
    assert state.folded() == gen
    assert state.index()["E2"] == Known(None, True, FEED, "o3")


def test_restated_workers_take_the_order_and_a_full_feed_takes_them_over(
    state: WorkerState, store: BlobStore
) -> None:
    publish(store, "accepted", [accepted("E1", order="o1"), accepted("E2", order="o1")])
    state.fold()
    publish(
        store,
        "restated",
        [
            ("E1", "fp-E1-1", True, "employees", "o5", None),  # same record: taken over
            ("E2", "fp-E2-other", True, "employees", "o5", None),  # changed meanwhile
            ("E3", "fp-E3-1", True, "employees", "o5", None),  # never sent: nothing to restate
        ],
    )
    state.fold()
    index = state.index()
    assert index["E1"] == Known("fp-E1-1", True, "employees", "o5")
    assert index["E2"] == Known("fp-E2-1", True, FEED, "o5")
    assert "E3" not in index


def test_folded_deltas_are_pruned_after_the_retention(
    state: WorkerState, store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(store, "accepted", [accepted("E1")])
    publish(store, "void", [])
    state.fold()
    assert len(names(store, "workers/deltas/")) == 2  # kept for senders catching up
    monkeypatch.setattr(state_module, "DELTA_RETENTION", dt.timedelta(0))
    state.fold()
    assert names(store, "workers/deltas/") == []
    assert state.index()["E1"] == Known("fp-E1-1", True, FEED)


def test_concurrent_folds_lose_no_update(
    azurite: Azurite, state: WorkerState, store: BlobStore
) -> None:
    workers = [f"W{i:03d}" for i in range(120)]
    expected: dict[str, int] = {}
    for number in range(1, 41):
        # Every delta touches 30 workers; every worker is changed by about 10 deltas.
        entries = [accepted(workers[(number * 7 + k) % 120], number) for k in range(30)]
        for ext, *_ in entries:
            expected[ext] = number
        publish(store, "accepted", entries)

    folders = 4
    barrier = threading.Barrier(folders)
    results: list[int] = []
    errors: list[BaseException] = []

    def fold() -> None:
        with _store(azurite) as own:
            try:
                barrier.wait(WAIT)
                results.append(WorkerState(own).fold())
            except BaseException as error:
                errors.append(error)

    threads = [threading.Thread(target=fold) for _ in range(folders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(results) == folders
    assert state.fold() == 0  # every delta folded
    assert state.folded() == 40

    index = state.index()
    assert {ext: known.fingerprint for ext, known in index.items()} == {
        ext: f"fp-{ext}-{number}" for ext, number in expected.items()
    }
    records = state.records(workers)
    assert {ext: rec["version"] for ext, rec in records.items()} == expected


class HookedStore(BlobStore):
    """A BlobStore that calls ``hook(event, name)`` around its JSON reads and writes."""

    def __init__(self, service: BlobServiceClient, hook: Callable[[str, str], None]) -> None:
        super().__init__(service)
        self.hook = hook

    def read_json(self, container: str, name: str) -> tuple[Any, str] | None:
        self.hook("read", name)
        return super().read_json(container, name)

    def write_json(self, container: str, name: str, data: Any, **conditions: Any) -> str:
        self.hook("write", name)
        try:
            return super().write_json(container, name, data, **conditions)
        finally:
            self.hook("written", name)


def _wait(event: threading.Event) -> None:
    if not event.wait(WAIT):
        raise TimeoutError("the forced interleaving did not happen")


def test_concurrent_folds_keep_records_in_step_with_the_index(
    azurite: Azurite, state: WorkerState
) -> None:
    """Fold B reads only the older delta; fold A, started later, reads both.

    A writes records-XX, B reads the index (still without the worker) and records-XX (with
    A's newer record), overwrites it with the older record and stops before its index write;
    A writes its index; B's index write fails, B re-reads, sees the newer seq and stops.
    """
    paused_b = threading.Event()  # B is about to read the shards
    records_by_a = threading.Event()
    b_at_index = threading.Event()
    index_by_a = threading.Event()
    index = "workers/index-"

    def hook_b(event: str, name: str) -> None:
        if event == "read" and name.startswith(index) and not paused_b.is_set():
            paused_b.set()
            _wait(records_by_a)
        if event == "write" and name.startswith(index) and not b_at_index.is_set():
            b_at_index.set()
            _wait(index_by_a)

    def hook_a(event: str, name: str) -> None:
        if event == "write" and name.startswith(index) and not records_by_a.is_set():
            records_by_a.set()
            _wait(b_at_index)
        if event == "written" and name.startswith(index):
            index_by_a.set()

    store = _store(azurite)
    publish(store, "accepted", [accepted("E1", 1)])
    errors: list[BaseException] = []

    def fold_b() -> None:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        with HookedStore(service, hook_b) as own:
            try:
                WorkerState(own).fold()
            except BaseException as error:
                errors.append(error)

    b = threading.Thread(target=fold_b)
    b.start()
    _wait(paused_b)  # B read delta 1 only
    publish(store, "accepted", [accepted("E1", 2, active=False)])
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with HookedStore(service, hook_a) as own:
        folded = WorkerState(own).fold()
    if folded != 2:
        raise RuntimeError(f"fold A folded {folded} deltas, not 2")
    b.join(WAIT * 3)
    if errors or b.is_alive():
        raise RuntimeError(f"fold B did not finish cleanly: {errors}")  # not the bug
    if state.fold() != 0:
        raise RuntimeError("deltas left over")

    assert state.index()["E1"] == Known("fp-E1-2", False, FEED)
    assert state.records(["E1"])["E1"]["version"] == 2


# --- held changes --------------------------------------------------------------------------


def test_held_changes_round_trip(state: WorkerState, store: BlobStore) -> None:
    joiner = Held("E1", "joiner", "2024-07-01", FEED, {"externalId": "E1", "active": True})
    leaver = Held("E1", "leaver", "2024-09-30", FEED, {"externalId": "E1", "active": False})
    other = Held("E2", "leaver", "2024-08-15", "contractors", None)
    for held in (joiner, leaver, other):
        state.hold(held)

    found = sorted(state.held(), key=lambda h: (h.external_id, h.kind))
    assert found == [joiner, leaver, other]
    assert [h.record for h in found] == [joiner.record, leaver.record, None]

    # Holding the same worker and kind again replaces the earlier change.
    later = Held("E1", "joiner", "2024-07-15", FEED, {"externalId": "E1", "v": 2})
    state.hold(later)
    found = sorted(state.held(), key=lambda h: (h.external_id, h.kind))
    assert found == [later, leaver, other]
    assert found[0].record == later.record
    assert len(names(store, "held/")) == 3
    # Looking up a few workers reads just theirs.
    assert sorted(state.held_for(["E1", "E9"]), key=lambda h: h.kind) == [later, leaver]
    assert state.held_for(["E2"]) == [other]

    state.drop_held(leaver)
    state.drop_held(leaver)  # already gone: fine
    assert sorted(state.held(), key=lambda h: h.external_id) == [later, other]
    # Dropping goes by worker and kind, whatever the due date.
    state.drop_held(Held("E2", "leaver", "1999-01-01", "contractors"))
    assert state.held() == [later]


# --- approvals -----------------------------------------------------------------------------


def test_approval_round_trip(state: WorkerState) -> None:
    run_id = "20240610T101500-abcdef12-a1b2c3"
    assert "no approval request" in str(state.approve(run_id, "alice@contoso.example"))
    assert state.is_approved(run_id) is False

    leavers: dict[str, dict[str, Any]] = {
        "E1": {"externalId": "E1", "active": False},
        "E2": {"externalId": "E2"},
    }
    state.request_approval(run_id, FEED, leavers)
    state.request_approval("20240611T000000-00000000-000000", "contractors", {})
    requests = sorted(state.approval_requests(), key=lambda r: r["run_id"])
    assert requests == [
        {"run_id": run_id, "feed": FEED, "order": "", "leavers": leavers},
        {
            "run_id": "20240611T000000-00000000-000000",
            "feed": "contractors",
            "order": "",
            "leavers": {},
        },
    ]
    assert state.is_approved(run_id) is False  # a request is not an approval

    assert state.approve(run_id, "alice@contoso.example") is None
    assert state.is_approved(run_id) is True
    assert state.is_approved("20240611T000000-00000000-000000") is False

    state.close_request(run_id)
    state.close_request(run_id)  # already closed: fine
    assert [r["run_id"] for r in state.approval_requests()] == ["20240611T000000-00000000-000000"]
    assert state.approve(run_id, "bob@contoso.example") is not None  # nothing waiting any more


def test_a_newer_run_of_the_feed_supersedes_open_approval_requests(state: WorkerState) -> None:
    state.request_approval("old", FEED, {"E1": {"externalId": "E1"}}, "o1")
    state.request_approval("other-feed", "contractors", {}, "o1")
    state.request_approval("newer", FEED, {}, "o9")
    assert state.supersede_requests(FEED, "o5", "run5") == ["old"]
    assert state.supersede_requests(FEED, "o5", "run5") == []  # once
    refused = state.approve("old", "alice@contoso.example")
    assert refused is not None and "superseded by the newer run run5" in refused
    assert state.is_approved("old") is False
    assert state.approve("newer", "alice@contoso.example") is None


# --- privacy of blob names -----------------------------------------------------------------


def test_blob_names_never_contain_the_external_id(state: WorkerState, store: BlobStore) -> None:
    secrets = [f"EMP-{n:06d}-Ørsted" for n in range(1, 40)] + ["jane.doe@contoso.example"]
    publish(store, "accepted", [accepted(ext) for ext in secrets])
    state.fold()
    publish(store, "accepted", [accepted(secrets[0], 2)])  # a pending delta too
    for ext in secrets[:5]:
        state.hold(Held(ext, "joiner", "2024-07-01", FEED, {"externalId": ext}))
        state.hold(Held(ext, "leaver", "2024-09-01", FEED, {"externalId": ext}))
    run_id = "20240610T101500-abcdef12-a1b2c3"
    state.request_approval(run_id, FEED, {ext: {"externalId": ext} for ext in secrets})
    state.approve(run_id, "alice@contoso.example")

    blob_names = names(store)
    assert any(name.startswith("workers/index-") for name in blob_names)
    assert any(name.startswith("workers/records-") for name in blob_names)
    assert any(name.startswith("workers/deltas/") for name in blob_names)
    assert len([name for name in blob_names if name.startswith("held/")]) == 10
    assert f"approvals/{run_id}" in blob_names
    for name in blob_names:
        lowered = name.lower()
        for ext in secrets:
            assert ext.lower() not in lowered, name
    held_names = {name for name in blob_names if name.startswith("held/")}
    assert f"held/{id_hash(secrets[0])}-joiner.json" in held_names


# --- versioned documents: held changes, approval requests, approvals ------------------------


def raw(store: BlobStore, name: str) -> Any:
    found = store.read_json(STATE_CONTAINER, name)
    assert found is not None, name
    return found[0]


def held_name(external_id: str, kind: str) -> str:
    return f"held/{id_hash(external_id)}-{kind}.json"


def test_a_held_change_is_written_with_its_version_and_the_keys_it_always_had(
    state: WorkerState, store: BlobStore
) -> None:
    held = Held("E1", "leaver", "2024-09-30", FEED, {"externalId": "E1", "active": False}, "o7")
    state.hold(held)
    assert raw(store, held_name("E1", "leaver")) == {"schema_version": 1, **asdict(held)}
    assert state.held() == [held] and state.held()[0].order == "o7"
    assert state.held_for(["E1"])[0].record == held.record


def test_a_held_change_written_before_versions_reads_as_before(
    state: WorkerState, store: BlobStore
) -> None:
    # As asdict(Held) wrote it, and as the first versions did, without an order.
    old = {"external_id": "E1", "kind": "joiner", "due": "2024-07-01", "feed": FEED,
           "record": {"externalId": "E1", "active": True}}  # fmt: skip
    store.write_json(STATE_CONTAINER, held_name("E1", "joiner"), old)
    expected = Held("E1", "joiner", "2024-07-01", FEED, {"externalId": "E1", "active": True}, "")
    assert state.held() == [expected] == state.held_for(["E1"])
    assert state.held()[0].record == expected.record


@pytest.mark.parametrize(
    ("stored", "error", "message"),
    [
        (
            {"schema_version": 2, "external_id": "E1", "kind": "joiner", "when": "soon"},
            NewerDocument,
            "was written by a newer version of the app (held change schema version 2; "
            "this version reads up to 1)",
        ),
        (
            {"external_id": "E1", "kind": "mover", "due": "2024-07-01", "feed": FEED},
            MalformedDocument,
            "is not a valid held change: kind: must be one of joiner or leaver",
        ),
    ],
    ids=["newer", "malformed"],
)
def test_a_held_change_this_version_cannot_use_stops_the_reader(
    state: WorkerState,
    store: BlobStore,
    stored: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    name = held_name("E1", "joiner")
    store.write_json(STATE_CONTAINER, name, stored)
    state.hold(Held("E2", "leaver", "2024-08-15", FEED, None))
    for read in (state.held, lambda: state.held_for(["E1", "E2"])):
        with pytest.raises(error) as refused:
            read()
        assert str(refused.value).startswith(f"{STATE_CONTAINER}/{name} {message}")
    assert state.held_for(["E2"]) == [Held("E2", "leaver", "2024-08-15", FEED, None)]
    assert raw(store, name) == stored  # left as it is


def request_name(run_id: str) -> str:
    return f"approvals/requests/{run_id}.json"


def test_an_approval_request_is_written_with_its_version(
    state: WorkerState, store: BlobStore
) -> None:
    leavers = {"E1": {"externalId": "E1", "active": False}}
    state.request_approval("run1", FEED, leavers, "o1")
    assert raw(store, request_name("run1")) == {
        "schema_version": 1,
        "run_id": "run1",
        "feed": FEED,
        "order": "o1",
        "leavers": leavers,
    }
    assert state.approval_requests() == [
        {"run_id": "run1", "feed": FEED, "order": "o1", "leavers": leavers}
    ]
    assert state.supersede_requests(FEED, "o5", "run5") == ["run1"]
    assert raw(store, request_name("run1"))["superseded_by"] == "run5"
    assert state.approval_requests()[0]["superseded_by"] == "run5"
    assert state.approve("run1", "alice@contoso.example") is not None  # superseded

    state.request_approval("run2", FEED, {}, "o9")
    assert state.approve("run2", "alice@contoso.example") is None
    assert raw(store, "approvals/run2") == {
        "schema_version": 1,
        "approved_by": "alice@contoso.example",
    }
    assert state.is_approved("run2") is True


def test_approvals_written_before_versions_read_as_before(
    state: WorkerState, store: BlobStore
) -> None:
    # Requests of the first versions had no order; the marker only who approved.
    old = {"run_id": "old", "feed": FEED, "leavers": {"E1": {"externalId": "E1"}}}
    store.write_json(STATE_CONTAINER, request_name("old"), old)
    store.write_json(STATE_CONTAINER, "approvals/old", {"approved_by": "bob@contoso.example"})
    assert state.approval_requests() == [old]
    assert state.is_approved("old") is True
    # Superseding it keeps its keys and adds the version.
    assert state.supersede_requests(FEED, "o1", "new") == ["old"]
    assert raw(store, request_name("old")) == {
        "schema_version": 1,
        "order": "",
        **old,
        "superseded_by": "new",
    }


UNUSABLE = {
    "newer": (
        {"schema_version": 3, "run_id": "bad", "feed": FEED, "leavers": {}, "scope": "tenant"},
        NewerDocument,
        "was written by a newer version of the app (approval request schema version 3;",
    ),
    "malformed": (
        {"run_id": "bad", "feed": FEED, "leavers": ["E1"]},
        MalformedDocument,
        "is not a valid approval request: leavers: must be an object (keys with values)",
    ),
}


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_approval_request_this_version_cannot_use_is_skipped_and_never_approved(
    state: WorkerState, store: BlobStore, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    stored, error, message = UNUSABLE[kind]
    store.write_json(STATE_CONTAINER, request_name("bad"), stored)
    state.request_approval("good", FEED, {}, "o1")
    where = f"{STATE_CONTAINER}/{request_name('bad')}"

    # Listing (the release) skips it with a warning naming it; the others go on.
    assert [r["run_id"] for r in state.approval_requests()] == ["good"]
    assert f"{where} {message}" in caplog.text and "its leavers stay held" in caplog.text
    # A newer run of the feed cannot mark it superseded, and says so.
    caplog.clear()
    assert state.supersede_requests(FEED, "o5", "run5") == ["good"]
    assert f"{where} {message}" in caplog.text
    assert "not marked superseded by run run5" in caplog.text
    # Nobody approves what cannot be read: the error names it, nothing is written.
    with pytest.raises(error) as refused:
        state.approve("bad", "alice@contoso.example")
    assert str(refused.value).startswith(f"{where} {message}")
    assert state.is_approved("bad") is False
    assert raw(store, request_name("bad")) == stored  # left as it is


def test_an_approval_written_by_a_newer_version_counts_as_none(
    state: WorkerState, store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    state.request_approval("run1", FEED, {"E1": {"externalId": "E1"}})
    newer = {"schema_version": 2, "approved_by": "alice", "scope": "half"}
    store.write_json(STATE_CONTAINER, "approvals/run1", newer)
    assert state.is_approved("run1") is False  # its leavers stay held
    assert (
        f"{STATE_CONTAINER}/approvals/run1 was written by a newer version of the app "
        "(approval schema version 2; this version reads up to 1)" in caplog.text
    )
    assert "run run1 counts as not approved" in caplog.text
    # Approving again does not write over it either.
    with pytest.raises(NewerDocument, match=f"^{STATE_CONTAINER}/approvals/run1 "):
        state.approve("run1", "bob@contoso.example")
    assert raw(store, "approvals/run1") == newer


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "it is not JSON"),
        (b"approved by Carol, ticket CHG-1234", "it is not JSON"),
        (b'{"approved_by": null}', "approved_by: must be text"),
        (b'{"by": "carol"}', "approved_by: is required"),
    ],
    ids=["empty", "text", "null", "other-keys"],
)
def test_an_approval_marker_written_by_hand_still_approves(
    state: WorkerState,
    store: BlobStore,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    reason: str,
) -> None:
    """README, "Safety": a person approves by writing the blob, with whatever content; its
    existence is the approval, as it always was. The log says it is not an approval document."""
    state.request_approval("run1", FEED, {"E1": {"externalId": "E1"}})
    store.write_bytes(STATE_CONTAINER, "approvals/run1", body, "text/plain")
    assert state.is_approved("run1") is True
    assert f"{STATE_CONTAINER}/approvals/run1 is not a valid approval: {reason}" in caplog.text
    # Approved again through the command line: the marker becomes an approval document.
    assert state.approve("run1", "bob@contoso.example") is None
    assert raw(store, "approvals/run1") == {
        "schema_version": 1,
        "approved_by": "bob@contoso.example",
    }
