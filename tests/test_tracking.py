"""Records Graph accepted and whose outcome is not known yet (provisioning/runs/tracking.py),
against a real Azurite: one blob per accepted bulk request, named by run and batch only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_emulator import GraphEmulator
from provisioning.clock import parse_iso
from provisioning.convert.bulk import Operation
from provisioning.runs.tracking import PENDING, Sent, batch_name, pending_runs, read_batch, track
from provisioning.settings import STATE_CONTAINER
from provisioning.storage import BlobStore
from tests.columns import csv_bytes, worker
from tests.e2e import drop, runs
from tests.e2e import store as app_store

if TYPE_CHECKING:
    from devtools.azurite import Azurite

RUN = "20250131T120000-abcdef01-123456"
AT = dt.datetime(2025, 1, 31, 12, 0, 5, 123456, tzinfo=dt.UTC)


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[BlobStore]:
    with BlobStore(BlobServiceClient.from_connection_string(clean_storage.connection_string)) as s:
        s.ensure_containers(STATE_CONTAINER)
        yield s


def ops(*ids: str, first_record: int = 1) -> list[Operation]:
    return [
        Operation(f"bulk-{i}", ext, 10 + i, {"externalId": ext}, record=first_record + i)
        for i, ext in enumerate(ids)
    ]


def names(store: BlobStore) -> list[str]:
    return [b.name for b in store.list(STATE_CONTAINER, PENDING)]


def test_an_accepted_batch_reads_back_as_written(store: BlobStore) -> None:
    sent = ops("HR-ALICE", "HR-BOB")
    track(
        store,
        run_id=RUN,
        results_prefix=f"runs/2025-01-31/{RUN}/",
        kind="file",
        batch=3,
        operations=sent,
        accepted_at=AT,
        actions={"bulk-0": "joiner", "bulk-1": "leaver"},
    )
    assert names(store) == [f"pending/{RUN}/000003.json"] == [batch_name(RUN, "000003")]
    found = read_batch(store, names(store)[0])
    assert found is not None
    info, records = found
    assert records == [
        Sent("bulk-0", "HR-ALICE", 10, "joiner", 1),
        Sent("bulk-1", "HR-BOB", 11, "leaver", 2),
    ]
    assert info["run_id"] == RUN and info["kind"] == "file" and info["batch"] == "000003"
    assert info["results_prefix"] == f"runs/2025-01-31/{RUN}/"
    assert info["attempt"] == 1
    assert info["accepted_at"] == "2025-01-31T12:00:05.123Z"
    assert parse_iso(info["accepted_at"]) == AT.replace(microsecond=123000)
    # The blob: the keys it always had, and the version of its schema.
    stored = store.read_json(STATE_CONTAINER, batch_name(RUN, "000003"))
    assert stored is not None
    assert stored[0] == {
        "schema_version": 1,
        "run_id": RUN,
        "results_prefix": f"runs/2025-01-31/{RUN}/",
        "kind": "file",
        "batch": "000003",
        "accepted_at": "2025-01-31T12:00:05.123Z",
        "attempt": 1,
        "records": [["bulk-0", "HR-ALICE", 10, "joiner", 1], ["bulk-1", "HR-BOB", 11, "leaver", 2]],
    }
    assert info == {k: v for k, v in stored[0].items() if k != "schema_version"}


def test_missing_action_and_ordinal_are_empty_not_made_up(store: BlobStore) -> None:
    sent = [Operation("b-0", "HR-1", 2, {}), Operation("b-1", "HR-2", 3, {}, record=7)]
    track(store, run_id=RUN, results_prefix="p/", kind="changes", batch=1, operations=sent,
          accepted_at=AT)  # fmt: skip
    found = read_batch(store, batch_name(RUN, "000001"))
    assert found is not None
    assert found[1] == [Sent("b-0", "HR-1", 2, "", ""), Sent("b-1", "HR-2", 3, "", 7)]


def test_a_batch_tracked_before_ordinals_were_kept_still_reads(store: BlobStore) -> None:
    store.write_json(
        STATE_CONTAINER,
        batch_name(RUN, "000001"),
        {
            "run_id": RUN,
            "results_prefix": "p/",
            "kind": "file",
            "batch": "000001",
            "accepted_at": "2024-01-01T00:00:00.000Z",
            "records": [["b-0", "HR-1", 2, "mover"]],
        },
    )
    found = read_batch(store, batch_name(RUN, "000001"))
    assert found is not None
    assert found[1] == [Sent("b-0", "HR-1", 2, "mover", "")]
    assert "attempt" not in found[0]  # the reader takes a missing attempt as the first
    # Written before versions: version 1, its keys as they were.
    assert found[0] == {
        "run_id": RUN,
        "results_prefix": "p/",
        "kind": "file",
        "batch": "000001",
        "accepted_at": "2024-01-01T00:00:00.000Z",
        "records": [["b-0", "HR-1", 2, "mover", ""]],
    }


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            {"schema_version": 2, "run_id": RUN, "records": {"b-0": {"id": "HR-1"}}},
            "was written by a newer version of the app (pending batch schema version 2; "
            "this version reads up to 1)",
        ),
        (
            {"run_id": RUN, "results_prefix": "p/", "kind": "file", "batch": "000001",
             "accepted_at": "2024-01-01T00:00:00.000Z", "records": [["b-0", "HR-1", "two", ""]]},
            "is not a valid pending batch: records.0.2: must be a whole number",
        ),
        (
            {"run_id": RUN, "kind": "file", "batch": "000001", "records": []},
            "is not a valid pending batch: results_prefix: is required; accepted_at: is required",
        ),
    ],
    ids=["newer", "malformed", "incomplete"],
)  # fmt: skip
def test_a_batch_this_version_cannot_use_is_skipped_and_left_alone(
    store: BlobStore, caplog: pytest.LogCaptureFixture, stored: dict[str, Any], message: str
) -> None:
    name = batch_name(RUN, "000001")
    store.write_json(STATE_CONTAINER, name, stored)
    track(store, run_id=RUN, results_prefix="p/", kind="file", batch=2, operations=ops("HR-2"),
          accepted_at=AT)  # fmt: skip
    # None, as for a batch that is gone: the outcome pass merges the others and deletes only
    # what it merged; this one stays, and says why at every pass.
    assert read_batch(store, name) is None
    assert f"{STATE_CONTAINER}/{name} {message}" in caplog.text
    assert "skipped: the outcomes of its records wait" in caplog.text
    assert read_batch(store, batch_name(RUN, "000002")) is not None
    assert sorted(pending_runs(store)[RUN]) == [name, batch_name(RUN, "000002")]
    found = store.read_json(STATE_CONTAINER, name)
    assert found is not None and found[0] == stored


def test_reading_a_batch_that_is_gone_gives_none(store: BlobStore) -> None:
    assert read_batch(store, batch_name(RUN, "000001")) is None
    assert pending_runs(store) == {}


def test_a_resend_replaces_the_batch_and_the_later_acceptance_wins(store: BlobStore) -> None:
    for attempt, at in ((1, AT), (2, AT + dt.timedelta(minutes=3))):
        track(
            store,
            run_id=RUN,
            results_prefix="p/",
            kind="file",
            batch=2,
            operations=ops("HR-1", "HR-2"),
            accepted_at=at,
            attempt=attempt,
        )
    assert names(store) == [f"pending/{RUN}/000002.json"]  # one blob, not two
    found = read_batch(store, names(store)[0])
    assert found is not None
    assert found[0]["attempt"] == 2
    assert parse_iso(found[0]["accepted_at"]) == (AT + dt.timedelta(minutes=3)).replace(
        microsecond=123000
    )


def test_retries_are_tracked_under_their_own_label(store: BlobStore) -> None:
    track(store, run_id=RUN, results_prefix="p/", kind="file", batch=1, operations=ops("HR-1"),
          accepted_at=AT)  # fmt: skip
    track(store, run_id=RUN, results_prefix="p/", kind="file", batch="retry-pass1-0001",
          operations=ops("HR-1"), accepted_at=AT, attempt=2)  # fmt: skip
    assert sorted(names(store)) == [
        f"pending/{RUN}/000001.json",
        f"pending/{RUN}/retry-pass1-0001.json",
    ]
    found = read_batch(store, f"pending/{RUN}/retry-pass1-0001.json")
    assert found is not None and found[0]["batch"] == "retry-pass1-0001"
    assert found[0]["attempt"] == 2


def test_pending_runs_groups_the_batches_by_run(store: BlobStore) -> None:
    other = "20250131T130000-99999999-abcdef"
    for run_id, batch in ((RUN, 1), (RUN, 2), (other, 1), (RUN, 10)):
        track(store, run_id=run_id, results_prefix="p/", kind="file", batch=batch,
              operations=ops("HR-1"), accepted_at=AT)  # fmt: skip
    found = pending_runs(store)
    assert set(found) == {RUN, other}
    assert sorted(found[RUN]) == [f"pending/{RUN}/{n:06d}.json" for n in (1, 2, 10)]
    assert found[other] == [f"pending/{other}/000001.json"]
    # Batch numbers are zero-padded: listed in name order they are in send order.
    assert sorted(found[RUN]) == [batch_name(RUN, f"{n:06d}") for n in (1, 2, 10)]


# Any id that is not by chance part of the name a batch gets anyway ("000", "pending", ...).
hr_ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=3, max_size=20
).filter(lambda ext: ext not in f"pending/{RUN}/000004.json")


@given(ids=st.lists(hr_ids, min_size=1, max_size=5, unique=True))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_blob_names_never_carry_hr_ids(store: BlobStore, ids: list[str]) -> None:
    for blob in store.list(STATE_CONTAINER, PENDING):
        store.delete(STATE_CONTAINER, blob.name)
    track(store, run_id=RUN, results_prefix="p/", kind="changes", batch=4,
          operations=ops(*ids), accepted_at=AT)  # fmt: skip
    listed = names(store)
    assert listed == [f"pending/{RUN}/000004.json"]
    assert not any(ext in name for ext in ids for name in listed)
    found = read_batch(store, listed[0])
    assert found is not None
    assert [s.external_id for s in found[1]] == ids  # the ids are in the content only


def test_a_real_run_tracks_each_accepted_batch_without_hr_ids_in_names(
    env: dict[str, str], emulator: GraphEmulator
) -> None:
    ids = [f"HRX{n:04d}" for n in range(1, 61)]
    drop(csv_bytes([worker(ext) for ext in ids]), "workers.csv")
    (summary,) = runs()
    assert summary["status"] == "complete"
    found = pending_runs(app_store())
    assert list(found) == [summary["run_id"]]
    batches = sorted(found[summary["run_id"]])
    assert batches == [batch_name(summary["run_id"], f"{n:06d}") for n in (1, 2)]
    assert not any(ext in name for ext in ids for name in batches)
    tracked = []
    for name in batches:
        read = read_batch(app_store(), name)
        assert read is not None
        info, sent = read
        assert info["kind"] == "file" and info["attempt"] == 1
        assert summary["_name"].startswith(f"{info['results_prefix']}")
        tracked += sent
    assert sorted(s.external_id for s in tracked) == ids
    assert {s.action for s in tracked} == {"joiner"}
    assert sorted(s.record for s in tracked) == list(range(1, 61))  # ordinals in the file
    assert sorted(s.line for s in tracked) == list(range(2, 62))  # after the header


def test_the_outcome_pass_leaves_a_batch_it_cannot_read_and_takes_it_once_readable(
    env: dict[str, str], emulator: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_confirm import confirm

    drop(csv_bytes([worker(f"HRY{n:04d}") for n in range(1, 61)]), "workers.csv")
    (summary,) = runs()
    first, second = sorted(pending_runs(app_store())[summary["run_id"]])
    found = app_store().read_json(STATE_CONTAINER, first)
    assert found is not None
    written = found[0]
    newer = {**written, "schema_version": 2}
    app_store().write_json(STATE_CONTAINER, first, newer)

    confirm()
    # The readable batch was merged and is gone; the other waits as it is, said in the log.
    assert [b.name for b in app_store().list(STATE_CONTAINER, PENDING)] == [first]
    stored = app_store().read_json(STATE_CONTAINER, first)
    assert stored is not None and stored[0] == newer
    assert f"{STATE_CONTAINER}/{first} was written by a newer version of the app" in caplog.text
    assert second not in caplog.text

    # Once it reads (the version that wrote it ran, or a person fixed it), nothing was lost.
    app_store().write_json(STATE_CONTAINER, first, written)
    confirm()
    assert list(app_store().list(STATE_CONTAINER, PENDING)) == []
