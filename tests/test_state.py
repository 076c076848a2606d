"""WorkerState against a real Azurite: deltas folded into shards, held changes, approvals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient

from provisioning.lifecycle import Held, Known
from provisioning.settings import STATE_CONTAINER
from provisioning.state import Accepted, WorkerState, id_hash, shard_of
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
    external_id: str, version: int = 1, *, active: bool = True, feed: str = FEED
) -> Accepted:
    record = {
        "externalId": external_id,
        "userName": f"{external_id.lower()}@contoso.example",
        "active": active,
        "version": version,
    }
    return (external_id, f"fp-{external_id}-{version}", active, feed, record)


def names(store: BlobStore, prefix: str = "") -> list[str]:
    return [blob.name for blob in store.list(STATE_CONTAINER, prefix)]


def seq(number: int) -> str:
    return f"{number:012d}"


# --- accepted records and the fold --------------------------------------------------------


def test_accepted_records_are_folded_into_index_and_records(
    state: WorkerState, store: BlobStore
) -> None:
    first = [accepted(f"E{i:03d}") for i in range(150)]
    second = [accepted("X1", active=False), accepted("X2", feed="contractors")]
    state.record_accepted(seq(1), first)
    state.record_accepted(seq(2), second)
    assert names(store, "workers/deltas/") == [
        f"workers/deltas/{seq(1)}.json",
        f"workers/deltas/{seq(2)}.json",
    ]
    assert state.index() == {}  # nothing folded yet

    assert state.fold() == 2
    assert names(store, "workers/deltas/") == []
    assert state.fold() == 0

    index = state.index()
    assert len(index) == 152
    assert index["E007"] == Known("fp-E007-1", True, FEED)
    assert index["X1"] == Known("fp-X1-1", False, FEED)
    assert index["X2"] == Known("fp-X2-1", True, "contractors")

    records = state.records(["E007", "X1", "E149", "UNKNOWN"])
    assert records == {
        "E007": first[7][4],
        "X1": second[0][4],
        "E149": first[149][4],
    }
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


def test_later_seq_wins_within_one_fold_whatever_the_write_order(
    state: WorkerState,
) -> None:
    state.record_accepted(seq(20), [accepted("E1", 2, active=False), accepted("E2", 2)])
    state.record_accepted(seq(10), [accepted("E1", 1), accepted("E3", 1)])
    state.record_accepted(seq(30), [accepted("E2", 3)])
    assert state.fold() == 3
    index = state.index()
    assert index["E1"] == Known("fp-E1-2", False, FEED)
    assert index["E2"] == Known("fp-E2-3", True, FEED)
    assert index["E3"] == Known("fp-E3-1", True, FEED)
    records = state.records(["E1", "E2", "E3"])
    assert {ext: rec["version"] for ext, rec in records.items()} == {"E1": 2, "E2": 3, "E3": 1}


def test_an_older_delta_folded_late_does_not_overwrite_newer(
    state: WorkerState, store: BlobStore
) -> None:
    state.record_accepted(seq(5), [accepted("E1", 5, active=False)])
    state.fold()
    # A delta with an older seq shows up after the newer one was folded (a slow writer, or a
    # fold that stopped before deleting its deltas).
    state.record_accepted(seq(4), [accepted("E1", 4), accepted("E2", 4)])
    assert state.fold() == 1
    assert state.index()["E1"] == Known("fp-E1-5", False, FEED)
    assert state.records(["E1"])["E1"]["version"] == 5
    assert state.index()["E2"] == Known("fp-E2-4", True, FEED)  # the rest still applies
    assert names(store, "workers/deltas/") == []


def test_refolding_the_same_delta_changes_nothing(state: WorkerState, store: BlobStore) -> None:
    entries = [accepted("E1"), accepted("E2")]
    state.record_accepted(seq(1), entries)
    state.fold()
    before = {blob.name: blob.etag for blob in store.list(STATE_CONTAINER, "workers/")}
    state.record_accepted(seq(1), entries)  # as if the fold was interrupted before deleting
    assert state.fold() == 1
    after = {blob.name: blob.etag for blob in store.list(STATE_CONTAINER, "workers/")}
    assert after == before  # no shard rewritten
    assert set(state.index()) == {"E1", "E2"}


def test_concurrent_folds_lose_no_update(azurite: Azurite, state: WorkerState) -> None:
    workers = [f"W{i:03d}" for i in range(120)]
    expected: dict[str, int] = {}
    for number in range(1, 41):
        # Every delta touches 30 workers; every worker is changed by about 10 deltas.
        entries = [accepted(workers[(number * 7 + k) % 120], number) for k in range(30)]
        for ext, *_ in entries:
            expected[ext] = number
        state.record_accepted(seq(number), entries)

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
    assert state.fold() == 0  # every delta folded and deleted

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
    """Fold B lists only the older delta; fold A, started later, lists both.

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

    state.record_accepted(seq(1), [accepted("E1", 1)])
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
    _wait(paused_b)  # B listed and read delta 1 only
    state.record_accepted(seq(2), [accepted("E1", 2, active=False)])
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
    assert state.approve(run_id, "alice@contoso.example") is False
    assert state.is_approved(run_id) is False

    leavers: dict[str, dict[str, Any]] = {
        "E1": {"externalId": "E1", "active": False},
        "E2": {"externalId": "E2"},
    }
    state.request_approval(run_id, FEED, leavers)
    state.request_approval("20240611T000000-00000000-000000", "contractors", {})
    requests = sorted(state.approval_requests(), key=lambda r: r["run_id"])
    assert requests == [
        {"run_id": run_id, "feed": FEED, "leavers": leavers},
        {"run_id": "20240611T000000-00000000-000000", "feed": "contractors", "leavers": {}},
    ]
    assert state.is_approved(run_id) is False  # a request is not an approval

    assert state.approve(run_id, "alice@contoso.example") is True
    assert state.is_approved(run_id) is True
    assert state.is_approved("20240611T000000-00000000-000000") is False

    state.close_request(run_id)
    state.close_request(run_id)  # already closed: fine
    assert [r["run_id"] for r in state.approval_requests()] == ["20240611T000000-00000000-000000"]
    assert state.approve(run_id, "bob@contoso.example") is False  # nothing waiting any more


# --- privacy of blob names -----------------------------------------------------------------


def test_blob_names_never_contain_the_external_id(state: WorkerState, store: BlobStore) -> None:
    secrets = [f"EMP-{n:06d}-Ørsted" for n in range(1, 40)] + ["jane.doe@contoso.example"]
    state.record_accepted(seq(1), [accepted(ext) for ext in secrets])
    state.fold()
    state.record_accepted(seq(2), [accepted(secrets[0], 2)])  # a pending delta too
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
