"""Build the I/O edges (storage, Graph) from settings, for the triggers and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ..errors import ConfigurationError
from ..graph.client import GraphClient
from ..settings import STORAGE_CONNECTION, Settings, load_settings
from ..storage import BlobStore

__all__ = [
    "ConfigurationError",
    "open_services",
    "open_store",
    "require_graph",
    "require_services",
    "require_storage",
    "sender_settings",
]


def require_storage(settings: Settings, *, queue: bool = False) -> None:
    """ConfigurationError naming the storage settings when none is set (``queue``: the queue
    endpoint is needed too)."""
    if settings.storage_connection_string:
        return
    if not settings.storage_blob_service_uri:
        raise ConfigurationError(
            f"{STORAGE_CONNECTION}__blobServiceUri: not set (the storage account's blob "
            f"endpoint, with {STORAGE_CONNECTION}__queueServiceUri; or {STORAGE_CONNECTION}, a "
            "connection string, for local use)"
        )
    if queue and not settings.storage_queue_service_uri:
        raise ConfigurationError(
            f"{STORAGE_CONNECTION}__queueServiceUri: not set (the storage account's queue endpoint)"
        )


def require_graph(settings: Settings) -> None:
    """ConfigurationError naming the Graph settings a sender needs when they are not set."""
    needed = (
        (
            "PROVISIONING_SERVICE_PRINCIPAL_ID",
            settings.service_principal_id,
            "the object id of the provisioning app's service principal",
        ),
        ("PROVISIONING_JOB_ID", settings.job_id, "the provisioning app's job id"),
    )
    missing = [
        f"{name}: not set (needed to send: {what})" for name, value, what in needed if not value
    ]
    if missing:
        raise ConfigurationError("; ".join(missing))


def require_services(settings: Settings, *, graph: bool = True, queue: bool = False) -> None:
    """require_graph (when ``graph``) and require_storage at once: one ConfigurationError
    naming every setting at fault, not only the first."""
    checks: list[Callable[[], None]] = [lambda: require_storage(settings, queue=queue)]
    if graph:
        checks.insert(0, lambda: require_graph(settings))
    problems = []
    for check in checks:
        try:
            check()
        except ConfigurationError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigurationError("; ".join(problems))


def sender_settings() -> Settings:
    """The settings of a function that sends (file drop, timer, flush): load_settings, with
    storage and Graph configured; else ConfigurationError naming every setting at fault."""
    settings = load_settings()
    require_services(settings)
    return settings


def open_store(settings: Settings) -> BlobStore:
    """The blob storage; ConfigurationError naming the storage settings when none is set."""
    require_storage(settings)
    return BlobStore.from_settings(settings)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[tuple[BlobStore, GraphClient]]:
    """Storage and Graph; ConfigurationError naming every setting at fault (before anything
    is opened) when either is not configured."""
    require_services(settings)
    store = BlobStore.from_settings(settings)
    graph = GraphClient.from_settings(settings)
    try:
        yield store, graph
    finally:
        await graph.close()
