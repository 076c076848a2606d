"""HTTP changes for Logic Apps and other callers, and the queue-triggered flush that sends
them coalesced. See provisioning/changes/accept.py, its models (provisioning/changes/models.py)
and their OpenAPI document, provisioning/changes/openapi.json."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import azure.functions as func

from ..changes.accept import ChangeService
from ..changes.auth import PRINCIPAL_HEADER, client_id, parse_principal, refusal
from ..changes.flush import flush
from ..changes.replies import Reply, problem
from ..errors import ConfigurationError
from ..settings import FLUSH_QUEUE, STATE_CONTAINER, STORAGE_CONNECTION, Settings, load_settings
from ..storage import BlobStore, FlushQueue
from .services import open_services, require_storage, sender_settings

log = logging.getLogger(__name__)

bp = func.Blueprint()


class FlushInterrupted(Exception):
    """Graph kept failing; raising makes the host deliver the flush message again later."""


class FlushNotConfigured(Exception):
    """The settings are unusable; raising keeps the flush message (next section)."""


def _api_settings() -> Settings | func.HttpResponse:
    """The settings of the HTTP API (storage for the changes and the flush queue), or the 500
    problem naming the settings at fault (logged as one line)."""
    try:
        settings = load_settings()
        require_storage(settings, queue=True)
    except ConfigurationError as exc:
        log.error("HTTP change API unavailable: configuration error: %s", exc)
        return _respond(problem(500, "configuration", "Configuration error", str(exc)))
    return settings


@functools.cache
def _ready(settings: Settings) -> bool:
    BlobStore.from_settings(settings).ensure_containers(STATE_CONTAINER)
    return True


@contextmanager
def _service(settings: Settings) -> Iterator[ChangeService]:
    _ready(settings)
    store = BlobStore.from_settings(settings)
    queue = FlushQueue.from_settings(settings)
    try:
        yield ChangeService(settings, store, queue)
    finally:
        queue.close()
        store.close()


def _respond(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(reply.body),
        status_code=reply.status,
        headers=reply.headers,
        mimetype=reply.content_type,
    )


def _allowed(req: func.HttpRequest, settings: Settings) -> Reply | None:
    """None when the caller may go on, else the 401/403 problem (provisioning/auth.py)."""
    return refusal(req.headers.get(PRINCIPAL_HEADER), settings.allowed_client_ids)


def _caller(req: func.HttpRequest, settings: Settings) -> str:
    """The calling application as Easy Auth identified it, to scope idempotency keys. Only
    with the allow-list set: without Easy Auth in front, the header is the caller's to forge."""
    header = req.headers.get(PRINCIPAL_HEADER)
    if not settings.allowed_client_ids or header is None:
        return ""
    principal = parse_principal(header)
    return ((client_id(principal) if principal else None) or "").lower()


@bp.function_name("post_changes")
@bp.route(route="changes", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def post_changes(req: func.HttpRequest) -> func.HttpResponse:
    settings = _api_settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    refused = _allowed(req, settings)
    if refused:
        return _respond(refused)
    with _service(settings) as service:
        reply = service.submit(
            req.get_body(),
            req.headers.get("Content-Type", ""),
            mapping_name=req.params.get("mapping"),
            idempotency_key=req.headers.get("Idempotency-Key"),
            caller=_caller(req, settings),
        )
    return _respond(reply)


@bp.function_name("get_change")
@bp.route(route="changes/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_change(req: func.HttpRequest) -> func.HttpResponse:
    settings = _api_settings()
    if isinstance(settings, func.HttpResponse):
        return settings
    refused = _allowed(req, settings)
    if refused:
        return _respond(refused)
    with _service(settings) as service:
        return _respond(service.status(req.route_params.get("id", "")))


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    document = resources.files("provisioning.changes").joinpath("openapi.json").read_bytes()
    return func.HttpResponse(document, mimetype="application/json")


@bp.function_name("flush_changes")
@bp.queue_trigger(arg_name="message", queue_name=FLUSH_QUEUE, connection=STORAGE_CONNECTION)
async def flush_changes(message: func.QueueMessage) -> None:
    try:
        settings = sender_settings()
    except ConfigurationError as exc:
        # Raised, unlike the blob and timer functions: nothing else flushes the outbox, and
        # while this message is unanswered no call schedules another (locks/flush-scheduled
        # stays). Returning would delete the message and leave the changes waiting for good;
        # raising makes the host deliver it again, and after maxDequeueCount tries it is kept
        # in provisioning-flush-poison, from where it can be put back once the settings are
        # fixed. The changes themselves stay in the outbox either way.
        log.error("flush not run: configuration error: %s", exc)
        raise FlushNotConfigured(str(exc)) from None
    async with open_services(settings) as (store, graph):
        outcome = await flush(settings, store, graph)
    log.info("flush: %s", {k: v for k, v in outcome.items() if k != "reason"})
    if outcome["status"] == "interrupted":
        raise FlushInterrupted(outcome.get("reason"))
