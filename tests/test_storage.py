"""BlobStore against a real Azurite (real azure-storage-blob client, no mocks)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from provisioning.errors import ConfigurationError
from provisioning.settings import Settings
from provisioning.storage import (
    BLOCK_SIZE,
    BlobInfo,
    BlobStore,
    FlushQueue,
    PreconditionFailed,
)

if TYPE_CHECKING:
    from tests.conftest import Azurite

C = "test-storage"
MiB = 1024 * 1024


@pytest.fixture
def store(storage_env: Azurite, clean_storage: Azurite) -> Iterator[BlobStore]:
    with BlobStore.from_settings(Settings()) as blob_store:
        blob_store.ensure_containers(C)
        yield blob_store


def _pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every position, so swapped or dropped pieces are noticed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def test_json_round_trip(store: BlobStore) -> None:
    data = {"b": 1, "a": ["ä", None, True, 1.5], "nested": {"z": "Zoë"}}
    etag = store.write_json(C, "runs/one.json", data)
    found = store.read_json(C, "runs/one.json")
    assert found == (data, etag)
    raw = store.read_bytes(C, "runs/one.json")
    assert raw is not None
    text = raw.decode("utf-8")
    assert '"Zoë"' in text  # UTF-8, not \u escapes
    assert text.index('"b"') < text.index('"a"')  # key order kept
    assert '\n  "b": 1' in text  # indent 2
    assert store.read_json(C, "runs/missing.json") is None
    assert store.read_json("no-such-container", "x.json") is None
    assert store.read_bytes(C, "runs/missing.json") is None


def test_json_content_type(store: BlobStore, azurite: Azurite) -> None:
    from azure.storage.blob import BlobServiceClient

    store.write_json(C, "typed.json", [1])
    store.write_bytes(C, "report.csv", b"a,b\r\n", "text/csv; charset=utf-8")
    with BlobServiceClient.from_connection_string(os.environ["HRSTORAGE"]) as service:
        container = service.get_container_client(C)
        props = container.get_blob_client("typed.json").get_blob_properties()
        assert props.content_settings.content_type == "application/json"
        props = container.get_blob_client("report.csv").get_blob_properties()
        assert props.content_settings.content_type == "text/csv; charset=utf-8"
        assert container.get_container_properties().public_access is None


def test_ensure_containers_is_idempotent(store: BlobStore) -> None:
    store.ensure_containers(C, "second", "second")
    store.ensure_containers("second")
    store.write_bytes("second", "x", b"1", "text/plain")
    assert store.read_bytes("second", "x") == b"1"


def test_create_only_conflict(store: BlobStore) -> None:
    first = store.write_json(C, "claim.json", {"owner": "a"}, create_only=True)
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "claim.json", {"owner": "b"}, create_only=True)
    assert store.read_json(C, "claim.json") == ({"owner": "a"}, first)


def test_stale_etag(store: BlobStore) -> None:
    first = store.write_json(C, "state.json", {"n": 1})
    second = store.write_json(C, "state.json", {"n": 2}, etag=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "state.json", {"n": 3}, etag=first)
    assert store.read_json(C, "state.json") == ({"n": 2}, second)
    store.delete(C, "state.json")
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "state.json", {"n": 4}, etag=second)
    with pytest.raises(ValueError, match="exclude"):
        store.write_json(C, "state.json", {}, etag=second, create_only=True)


def test_lease_is_exclusive(store: BlobStore) -> None:
    etag = store.write_json(C, "claim.json", {"n": 0})
    lease = store.acquire_lease(C, "claim.json", seconds=15)
    assert lease is not None and lease.id
    assert store.acquire_lease(C, "claim.json") is None

    # Holding the lease: writes with it work, writes without it fail, ETag still applies.
    etag = store.write_json(C, "claim.json", {"n": 1}, lease=lease, etag=etag)
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "claim.json", {"n": 2})
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "claim.json", {"n": 2}, etag=etag)
    with pytest.raises(PreconditionFailed):
        store.write_bytes(C, "claim.json", b"{}", "application/json")
    with pytest.raises(PreconditionFailed):
        store.delete(C, "claim.json")
    lease.renew()
    assert store.read_json(C, "claim.json") == ({"n": 1}, etag)  # reading needs no lease

    lease.release()
    lease.release()  # a second release is harmless
    with pytest.raises(PreconditionFailed):
        store.write_json(C, "claim.json", {"n": 3}, lease=lease)  # a released lease is no lease
    again = store.acquire_lease(C, "claim.json")
    assert again is not None and again.id != lease.id
    with pytest.raises(PreconditionFailed):
        lease.renew()  # someone else's now
    store.write_json(C, "claim.json", {"n": 4}, lease=again)
    again.release()
    store.write_json(C, "claim.json", {"n": 5})


def test_lease_needs_existing_blob(store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.acquire_lease(C, "nothing.json")


def test_staged_blob_commits_writes_in_order(store: BlobStore) -> None:
    pieces = [_pattern(size, seed) for seed, size in enumerate([3 * MiB, 2 * MiB + 7, 1, 4 * MiB])]
    staged = store.staged(C, "out/big.bin")
    for piece in pieces:
        staged.write(piece)
        # Blocks are staged, not committed: nothing to see yet.
        assert not store.exists(C, "out/big.bin")
        assert [b.name for b in store.list(C, "out/")] == []
    assert staged.size == sum(map(len, pieces)) > 2 * BLOCK_SIZE
    staged.commit("application/octet-stream")
    assert store.read_bytes(C, "out/big.bin") == b"".join(pieces)
    with pytest.raises(ValueError, match="committed"):
        staged.write(b"more")

    # A second StagedBlob replaces the blob; an abandoned one leaves the committed blob alone.
    replacement = store.staged(C, "out/big.bin")
    replacement.write(b"small")
    abandoned = store.staged(C, "out/big.bin")
    abandoned.write(_pattern(BLOCK_SIZE + 1, 9))
    replacement.commit("text/plain")
    assert store.read_bytes(C, "out/big.bin") == b"small"


def test_staged_blob_empty_and_abandoned(store: BlobStore) -> None:
    empty = store.staged(C, "empty.csv")
    empty.commit("text/csv")
    assert store.read_bytes(C, "empty.csv") == b""
    abandoned = store.staged(C, "never.bin")
    abandoned.write(_pattern(BLOCK_SIZE + 10))
    assert not store.exists(C, "never.bin")
    assert store.read_bytes(C, "never.bin") is None
    assert store.open_read(C, "never.bin") is None


def test_open_read_streams_in_chunks(store: BlobStore) -> None:
    size = 10 * MiB + 123
    data = _pattern(size, 3)
    staged = store.staged(C, "hr/big.csv")
    for start in range(0, size, MiB):
        staged.write(data[start : start + MiB])
    staged.commit("text/csv")
    expected = hashlib.sha256(data).hexdigest()
    del data, staged

    stream = store.open_read(C, "hr/big.csv")
    assert stream is not None
    digest = hashlib.sha256()
    total = 0
    tracemalloc.start()
    try:
        with stream:
            while chunk := stream.read(256 * 1024):
                digest.update(chunk)
                total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert digest.hexdigest() == expected
    # About one READ_CHUNK_SIZE range (and the SDK's per-range overhead) at a time.
    assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB while streaming {size / MiB:.1f} MiB"
    assert store.acquire_lease(C, "hr/big.csv") is not None  # reading held no lease


def test_open_read_small_empty_and_missing(store: BlobStore) -> None:
    store.write_bytes(C, "small.json", b'{"a": 1}', "application/json")
    store.write_bytes(C, "empty.csv", b"", "text/csv")
    stream = store.open_read(C, "small.json")
    assert stream is not None
    assert stream.read() == b'{"a": 1}'
    stream = store.open_read(C, "empty.csv")
    assert stream is not None and stream.read() == b""
    assert store.open_read(C, "missing.csv") is None
    assert store.open_read("no-such-container", "missing.csv") is None


def test_open_read_fails_when_blob_replaced(store: BlobStore) -> None:
    store.write_bytes(C, "hr/changing.csv", _pattern(3 * MiB, 1), "text/csv")
    stream = store.open_read(C, "hr/changing.csv")
    assert stream is not None
    assert len(stream.read(MiB)) == MiB
    store.write_bytes(C, "hr/changing.csv", _pattern(3 * MiB, 2), "text/csv")
    with pytest.raises(PreconditionFailed):
        stream.read()


def test_list_with_prefix(store: BlobStore) -> None:
    for name in ["runs/a/result.json", "runs/b/result.json", "runs/b/ledger.csv", "other.json"]:
        store.write_bytes(C, name, name.encode(), "text/plain")
    listed = list(store.list(C, "runs/b/"))
    assert [b.name for b in listed] == ["runs/b/ledger.csv", "runs/b/result.json"]
    info = listed[1]
    assert isinstance(info, BlobInfo)
    assert info.size == len(b"runs/b/result.json")
    assert isinstance(info.last_modified, datetime) and info.last_modified.tzinfo is not None
    assert info.etag
    assert len(list(store.list(C))) == 4
    assert list(store.list(C, "nope/")) == []
    assert list(store.list("no-such-container")) == []


def test_exists_delete_url(store: BlobStore, azurite: Azurite) -> None:
    store.write_bytes(C, "dir/a b.txt", b"x", "text/plain")
    assert store.exists(C, "dir/a b.txt")
    assert not store.exists(C, "dir/missing")
    assert not store.exists("no-such-container", "x")
    url = store.url(C, "dir/a b.txt")
    assert url.startswith(f"{azurite.blob_url}/{C}/dir/a")
    store.delete(C, "dir/a b.txt")
    store.delete(C, "dir/a b.txt")  # missing is fine
    store.delete("no-such-container", "x")
    assert not store.exists(C, "dir/a b.txt")


def test_from_settings_connection_string(storage_env: Azurite, clean_storage: Azurite) -> None:
    settings = Settings()
    assert settings.storage_connection_string == os.environ["HRSTORAGE"]
    with BlobStore.from_settings(settings) as store:
        store.ensure_containers("state")
        etag = store.write_json("state", "x.json", {"ok": True})
        assert store.read_json("state", "x.json") == ({"ok": True}, etag)


def test_from_settings_identity_based(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HRSTORAGE", raising=False)
    monkeypatch.setenv("HRSTORAGE__blobServiceUri", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("HRSTORAGE__clientId", "11111111-1111-1111-1111-111111111111")
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "secret")
    with BlobStore.from_settings(Settings()) as store:
        assert store.url("hr-inbound", "a.csv") == (
            "https://acct.blob.core.windows.net/hr-inbound/a.csv"
        )
        credential = store._service.credential
        assert type(credential).__name__ == "ManagedIdentityCredential"
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    with BlobStore.from_settings(Settings()) as store:
        assert type(store._service.credential).__name__ == "DefaultAzureCredential"
    monkeypatch.setenv("PROVISIONING_CREDENTIAL", "managedidentity")
    with BlobStore.from_settings(Settings()) as store:
        assert type(store._service.credential).__name__ == "ManagedIdentityCredential"


def test_from_settings_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HRSTORAGE", "HRSTORAGE__blobServiceUri", "HRSTORAGE__clientId"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as raised:
        BlobStore.from_settings(Settings())
    message = str(raised.value)
    with pytest.raises(ConfigurationError, match="queue storage is not configured"):
        FlushQueue.from_settings(Settings())
    assert "HRSTORAGE__blobServiceUri" in message and "HRSTORAGE" in message
    assert "storage_blob_service_uri" in message and "storage_connection_string" in message
