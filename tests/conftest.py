"""Shared fixtures: a real Azurite storage emulator (from node_modules, see scripts/bootstrap).

``azurite`` starts one emulator for the session (blob and queue on free loopback ports);
``storage_env`` points the app's storage connection (HRSTORAGE) at it; ``clean_storage`` empties
it before a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.azurite import Azurite, AzuriteMissing, running_azurite
from devtools.local_env import FAST_RETRIES, MSI_CONFLICTS, local_settings
from graph_emulator import GraphEmulator


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite (blob + queue) for the whole session, with its data in a temporary folder."""
    try:
        with running_azurite(tmp_path_factory.mktemp("azurite")) as instance:
            yield instance
    except AzuriteMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def storage_env(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> Azurite:
    """The app's storage connection (HRSTORAGE) set to Azurite for this test."""
    monkeypatch.setenv("HRSTORAGE", azurite.connection_string)
    monkeypatch.delenv("HRSTORAGE__blobServiceUri", raising=False)
    monkeypatch.delenv("HRSTORAGE__clientId", raising=False)
    return azurite


@pytest.fixture
def clean_storage(azurite: Azurite) -> Azurite:
    """Azurite without any blob container or queue, as at the start of the session."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for container in service.list_containers():
            service.delete_container(container.name)
    with QueueServiceClient.from_connection_string(azurite.connection_string) as queues:
        for queue in queues.list_queues():
            queues.delete_queue(queue.name)
    return azurite


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[Any]:
    """A BlobStore on a clean Azurite, with the state container."""
    from azure.storage.blob import BlobServiceClient

    from provisioning.settings import STATE_CONTAINER
    from provisioning.storage import BlobStore

    service = BlobServiceClient.from_connection_string(clean_storage.connection_string)
    with BlobStore(service) as blob_store:
        blob_store.ensure_containers(STATE_CONTAINER)
        yield blob_store


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(rate_limit=(40, 5.0)) as emu:
        yield emu


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    """A fresh emulator (no rate limit unless a test sets one) and the App Service managed
    identity variables pointing at it, so the real ManagedIdentityCredential asks its
    /msi/token endpoint."""
    with GraphEmulator(rate_limit=None) as emulator:
        for name in MSI_CONFLICTS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
        yield emulator


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, azurite: Any, clean_storage: Any, emulator: GraphEmulator
) -> dict[str, str]:
    values = local_settings(azurite, emulator, **FAST_RETRIES)
    for name in MSI_CONFLICTS:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
