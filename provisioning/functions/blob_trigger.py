"""Blob drop trigger: an HR file landing in ``hr-inbound`` is provisioned into Entra ID."""

from __future__ import annotations

import logging

import azure.functions as func

# The SDK-type binding: imported at module level (not only for type checking) because the
# Python worker resolves the parameter's annotation (typing.get_type_hints) to decide that the
# host sends a reference to the blob instead of its content.
import azurefunctions.extensions.bindings.blob as sdk_blob

from ..errors import ConfigurationError
from ..runs.drop import DropProcessor
from ..runs.sweep import is_failed
from ..settings import INBOUND_CONTAINER, STORAGE_CONNECTION
from .services import open_services, sender_settings

log = logging.getLogger(__name__)

bp = func.Blueprint()


class RunInterrupted(Exception):
    """Graph kept failing; raising makes the Functions host retry the blob later."""


@bp.function_name("hr_file_dropped")
@bp.blob_trigger(
    arg_name="blob",
    path=f"{INBOUND_CONTAINER}/{{name}}",
    connection=STORAGE_CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
async def hr_file_dropped(blob: sdk_blob.BlobClient) -> None:
    # A BlobClient, never the file's bytes. Typed func.InputStream (or str/bytes), the host
    # reads the whole blob and sends it to the worker, which wraps it in a BytesIO: a 200 MB file
    # sat in memory before it was spooled ("the runtime must load the entire blob into memory",
    # Learn: Azure Blob storage trigger for Azure Functions, Memory usage and concurrency).
    # Typed with the SDK type of azurefunctions-extensions-bindings-blob (same page, Usage:
    # Python SDK types, GA, synchronous types only), the worker reports the binding
    # SupportsDeferredBinding, the host sends only the connection, container and blob name, and
    # the worker builds this client. Learn does not state that this works with source=EventGrid
    # on Flex Consumption; Microsoft's sample Azure-Samples/azure-functions-blob-sdk-bindings-python
    # deploys exactly that (README: The file never passes through memory).
    #
    # Not StorageStreamDownloader: the worker caches what it builds per blob, so a host retry
    # would get a downloader already read to its end. For the same reason the client is not
    # closed here; it only names the blob. The file is read through the app's storage connection
    # as the sweep reads it (BlobStore.open_read: ranged reads pinned to the first look's ETag, so
    # a file replaced mid-read fails instead of mixing two versions), spooled to a private
    # temporary file in chunks while hashed, and read from there (check pass, then send pass).
    container, blob_name = blob.container_name, blob.blob_name
    name = f"{container}/{blob_name}"
    if is_failed(name):
        # Set aside by the sweep. The Event Grid subscription filters these out, but not every
        # deployment has that filter (nor does a local run).
        log.info("%s is under failed/: not processed", name)
        return
    try:
        settings = sender_settings()
    except ConfigurationError as exc:
        # Not raised: a retry by the host would meet the same settings. The file stays in
        # hr-inbound, unprocessed, and the reconciliation timer's sweep processes it once the
        # settings are fixed.
        log.error("%s not processed: configuration error: %s", name, exc)
        return
    async with open_services(settings) as (store, graph):
        stream = store.open_read(container, blob_name)
        if stream is None:
            # Deleted (or moved under failed/) between the event and this invocation.
            log.info("%s is gone: nothing to process", name)
            return
        with stream:
            outcome = await DropProcessor(settings, store, graph).process(name, stream)
    log.info("drop processed: status=%s run=%s", outcome.status, outcome.run_id)
    if outcome.retry:
        raise RunInterrupted(f"run {outcome.run_id} interrupted: {outcome.reason}")
