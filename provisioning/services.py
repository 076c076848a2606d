"""Build the I/O edges (storage, Graph) from settings, for the triggers and the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .graph import GraphClient
from .quota import CallCounter
from .runs import utcnow
from .settings import Settings
from .storage import BlobStore


class ConfigurationError(Exception):
    """A required setting is missing; the message names it."""


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[tuple[BlobStore, GraphClient]]:
    if not settings.graph_configured:
        raise ConfigurationError(
            "set PROVISIONING_SERVICE_PRINCIPAL_ID and PROVISIONING_JOB_ID to the provisioning "
            "app's service principal object id and job id"
        )
    store = BlobStore.from_settings(settings)
    graph = GraphClient.from_settings(settings)
    counter = CallCounter(store)
    graph.on_call = lambda: counter.add(1, utcnow())
    try:
        yield store, graph
    finally:
        await graph.close()
