"""Shared fixtures: a real Azurite storage emulator (from node_modules, see scripts/bootstrap).

``azurite`` starts one emulator for the session (blob and queue on free loopback ports);
``storage_env`` points the app's storage connection (HRSTORAGE) at it; ``clean_storage`` empties
it before a test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite, AzuriteMissing, running_azurite


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
    """Azurite without any blob container, as at the start of the session."""
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        for container in service.list_containers():
            service.delete_container(container.name)
    return azurite
