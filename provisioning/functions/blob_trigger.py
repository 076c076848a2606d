"""Blob drop trigger: an HR file landing in ``hr-inbound`` is provisioned into Entra ID."""

from __future__ import annotations

import logging

import azure.functions as func

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
async def hr_file_dropped(blob: func.InputStream) -> None:
    # The host hands the blob over as a stream; it is spooled to a temporary file in chunks,
    # never copied whole in memory, and read from there (twice: check pass, then send pass).
    name = blob.name or ""
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
        outcome = await DropProcessor(settings, store, graph).process(name, blob)
    log.info("drop processed: status=%s run=%s", outcome.status, outcome.run_id)
    if outcome.retry:
        raise RunInterrupted(f"run {outcome.run_id} interrupted: {outcome.reason}")
