"""Microsoft Graph access for API-driven inbound provisioning, through msgraph-sdk's own pipeline.

``GraphClient.post_bulk`` sends one bulkUpload request and hands back the raw outcome
(``HttpResult``) without retrying: pacing and retries belong to ``provisioning.graph.submit``,
so every attempt is paced by the rate limiter and recorded. The SDK has no POST builder for
bulkUpload (msgraph-metadata#437), so the request is a ``RequestInformation`` on the SDK's own
URL template, sent through the SDK's request adapter: authentication, redirects, user agent and
telemetry stay the SDK's, and only its RetryHandler is switched off for this request.

Failures without an answer from Graph are transient and come back as this module's own
exceptions, never as raw httpx or azure-core ones:

- ``post_bulk`` raises ``TransportError`` for a timeout, a refused or dropped connection, and a
  token that could not be had (the managed-identity endpoint down, refusing or answering 5xx);
  ``TransportError.sent`` says whether the request may have reached Graph.
- ``job_status`` raises ``GraphUnavailable`` for the same failures and for a 408, 429 or 5xx
  that outlasted the SDK's own retries of GETs.

Tokens, request bodies and response bodies are never logged.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_abstractions.request_adapter import RequestAdapter
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http._exceptions import ResponseError as KiotaNoResponse
from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import APIVersion, GraphClientFactory
from msgraph_core.middleware.options import GraphTelemetryHandlerOption

from ..convert.bulk import CONTENT_TYPE
from ..errors import ConfigurationError, GraphServiceError
from ..settings import Settings
from .pacing import RETRYABLE_STATUSES

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ERROR_TEXT_LIMIT = 500


# httpx failures raised before any byte of the request left: the connection was never made
# (refused, unreachable, connect timeout) or never handed out by the pool. Nothing can have
# reached Graph. Every other transport failure (read or write timeout, connection dropped
# mid-request or mid-response) may have happened after Graph got the whole request.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


class TransportError(GraphServiceError):
    """A bulkUpload call that got no HTTP response: timeout, refused or dropped connection, or
    no token (the credential failed, so nothing was sent).

    ``reason`` is short and safe to log; the underlying exception is the ``__cause__``.
    ``sent`` is False only when the request certainly did not reach Graph (no connection, no
    token); True means Graph may have received, and applied, it without our seeing the answer.
    """

    def __init__(
        self, reason: str, cause: BaseException | None = None, *, sent: bool = True
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.sent = sent


class GraphUnavailable(GraphServiceError):
    """A Graph read (``GraphClient.job_status``) that could not be answered now: no token (the
    managed-identity endpoint down or failing), no connection, a timeout or dropped connection,
    or Graph answered 408, 429 or 5xx after the SDK's own retries. Transient: try again later.

    ``reason`` is short and safe to log (no token, no secret); ``status`` is Graph's HTTP status
    when it answered, else None; the underlying exception is the ``__cause__``."""

    def __init__(
        self, reason: str, cause: BaseException | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What one bulkUpload call answered (any status: nothing is raised for 4xx/5xx)."""

    status: int
    request_id: str | None = None
    client_request_id: str | None = None
    retry_after: float | None = None  # seconds
    location: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# What the product does in each documented state of the job (synchronizationStatus.code,
# https://learn.microsoft.com/en-us/graph/api/resources/synchronization-synchronizationstatus;
# README, "Job states"): it sends while the job is Active, or NotRun ("configured, and may have
# been started, but hasn't completed its first run yet": a fresh deployment's first drops must
# not stop; what is sent waits in Entra for the first cycle, and health.json says so). It stops,
# resumable, while the job is NotConfigured, Paused or in Quarantine, or in a state this
# version does not know.
SENDING_STATES = frozenset({"Active", "NotRun"})


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Health of the provisioning job: ``code`` Active / NotRun / Paused / Quarantine /
    NotConfigured."""

    code: str
    quarantine_reason: str | None = None

    @property
    def sends(self) -> bool:
        """Whether the product sends to the job in this state (``SENDING_STATES``)."""
        return self.code in SENDING_STATES


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_error(content: bytes) -> tuple[str | None, str | None]:
    """(code, message) of Graph's ``{"error": {"code", "message"}}``, else (None, raw text)."""
    if not content:
        return None, None
    try:
        payload = json.loads(content)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) else None,
            message[:ERROR_TEXT_LIMIT] if isinstance(message, str) else None,
        )
    text = content.decode("utf-8", errors="replace").strip()
    return None, (text[:ERROR_TEXT_LIMIT] or None)


def _reason(exc: httpx.TransportError) -> str:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({kind})"
    detail = str(exc).strip()
    return f"{kind}: {detail[:200]}" if detail else kind


def _credential_reason(exc: AzureError) -> str:
    """Why no token came back, without the endpoint's answer text: an HTTP status when the
    identity endpoint answered, else the first line of the connection error (host and port)."""
    kind = type(exc).__name__
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"token request failed: {kind}, HTTP {status}"
    if response is not None:  # answered, but no token in a readable reply: keep its text out
        return f"token request failed: {kind}"
    lines = str(exc).strip().splitlines()
    detail = lines[0][:160] if lines else ""
    return f"token request failed: {kind}: {detail}" if detail else f"token request failed: {kind}"


class GraphError(GraphServiceError):
    """Graph answered a read with an error status (after the SDK's own retries of GETs)."""

    def __init__(self, status: int, code: str | None, message: str | None) -> None:
        super().__init__(f"Graph answered HTTP {status}: {code or ''} {message or ''}".strip())
        self.status = status
        self.code = code


async def _native_response(adapter: RequestAdapter, info: RequestInformation) -> httpx.Response:
    """Send through the SDK's pipeline and hand back the httpx response itself, unparsed."""
    info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
    # With NativeResponseHandler the adapter returns the httpx.Response, although the method is
    # annotated as returning None.
    response: Any = await adapter.send_no_response_content_async(info, None)  # type: ignore[func-returns-value]
    if not isinstance(response, httpx.Response):
        raise TypeError("the request adapter did not hand back the native response")
    return response


async def _content(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    finally:
        await response.aclose()


@contextlib.contextmanager
def unreachable_is_unavailable() -> Iterator[None]:
    """Graph not reached (no token, no connection, a timeout or a dropped connection) as
    :class:`GraphUnavailable`, never as raw httpx, kiota or azure-core exceptions."""
    try:
        yield
    except httpx.TransportError as exc:
        raise GraphUnavailable(_reason(exc), exc) from exc
    except KiotaNoResponse as exc:  # kiota's "Unable to get response" (a private name)
        raise GraphUnavailable(type(exc).__name__, exc) from exc
    except AzureError as exc:
        raise GraphUnavailable(_credential_reason(exc), exc) from exc


class ReadPace(Protocol):
    """What paced reads need of a pace (:class:`~provisioning.graph.tenant_pace.TenantPace`)."""

    async def acquire(self, max_wait: float = math.inf) -> Any: ...

    def release(self, permit: Any) -> None: ...

    def penalise(self, seconds: float) -> None: ...

    async def aclose(self) -> None: ...


# A paced read answered 429, 503 or 504 is tried again this often before it fails; each wait is
# Graph's Retry-After (on the pace, so every reader waits) or, without one, this backoff doubled.
_READ_ATTEMPTS = 6
_READ_BACKOFF = 2.0


async def json_pages(
    adapter: RequestAdapter,
    builder: Any,
    config: RequestConfiguration[Any],
    *,
    pace: ReadPace | None = None,
    max_wait: Callable[[], float] | None = None,
    authenticate: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The ``value`` of each page of the collection of an SDK request ``builder`` (such as
    ``sdk.users``), queried with ``config``, following ``@odata.nextLink``.

    The requests are the SDK's (its request builders, authentication, retries of GETs,
    telemetry) but the pages are parsed as plain JSON: the SDK's model deserialisation costs
    about 6 ms per provisioning-log entry (measured, benchmarks/reconcile.py), ten minutes for a
    day-1 load of 100,000.

    Graph not reached raises :class:`GraphUnavailable`. With a ``pace``, each request first
    takes a slot of it (waiting at most ``max_wait()`` seconds, else ``WaitTooLong`` from the
    pace), the SDK's retries are off, and a 429 (or 503/504, or Graph not reached) puts its
    Retry-After (or a backoff) on the pace, so every reader of every process waits it out,
    before the same page is asked again; ``authenticate`` (:meth:`GraphClient.authenticate`)
    then has the token before the slot is taken."""
    info: RequestInformation | None = builder.to_get_request_information(config)
    while info is not None:
        info.headers.try_add("Accept", "application/json")
        if pace is not None:
            info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
        for attempt in range(1, _READ_ATTEMPTS + 1):
            backoff = _READ_BACKOFF * 2 ** (attempt - 1)
            try:
                with unreachable_is_unavailable():
                    if pace is not None:
                        if authenticate is not None:
                            await authenticate()
                        permit = await pace.acquire(max_wait() if max_wait else math.inf)
                        pace.release(permit)
                    response = await _native_response(adapter, info)
                    content = await _content(response)
            except GraphUnavailable:
                if pace is None or attempt == _READ_ATTEMPTS:
                    raise
                pace.penalise(backoff)
                await pace.aclose()
                continue
            status = response.status_code
            if pace is None or status not in (429, 503, 504) or attempt == _READ_ATTEMPTS:
                break
            wait = parse_retry_after(response.headers.get("Retry-After"))
            pace.penalise(wait if wait is not None else backoff)
            await pace.aclose()  # the penalty is written before the next slot is asked for
        if not 200 <= status < 300:
            raise GraphError(status, *parse_error(content))
        page = orjson.loads(content)
        yield page.get("value") or []
        link = page.get("@odata.nextLink")
        info = builder.with_url(link).to_get_request_information() if link else None


def make_credential(settings: Settings) -> AsyncTokenCredential:
    """Managed identity when configured, or in "auto" mode when the Functions / App Service host
    provides one (``IDENTITY_ENDPOINT``); otherwise DefaultAzureCredential (developer sign-in)."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    use_managed = settings.credential == "managedidentity" or (
        settings.credential == "auto" and bool(os.environ.get("IDENTITY_ENDPOINT"))
    )
    if use_managed:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id or None)
    return DefaultAzureCredential()


class GraphClient:
    """Graph calls of the provisioning run, sharing one adapter, httpx client and credential."""

    def __init__(
        self,
        adapter: GraphRequestAdapter,
        http_client: httpx.AsyncClient,
        credential: AsyncTokenCredential,
        auth: AzureIdentityAuthenticationProvider,
        service_principal_id: str,
        job_id: str,
    ) -> None:
        if not service_principal_id or not job_id:
            raise ConfigurationError(
                "PROVISIONING_SERVICE_PRINCIPAL_ID and PROVISIONING_JOB_ID are required to "
                "reach Graph"
            )
        self.adapter = adapter
        self.sdk = GraphServiceClient(request_adapter=adapter)
        self._http = http_client
        self._credential = credential
        self._auth = auth
        self.service_principal_id = service_principal_id
        self.job_id = job_id

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: AsyncTokenCredential | None = None
    ) -> GraphClient:
        """Build the SDK pipeline for ``settings.graph_url``. A given credential is closed by
        ``close()`` as well (the client owns whatever it is handed)."""
        host = urlsplit(settings.graph_url).hostname
        if not host:
            raise ValueError(f"graph_url has no host: {settings.graph_url!r}")
        credential = credential if credential is not None else make_credential(settings)
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host.lower()]
        )
        version = (
            APIVersion.beta if settings.graph_url.rstrip("/").endswith("/beta") else APIVersion.v1
        )
        from msgraph._version import VERSION as sdk_version

        options: dict[str, Any] = {
            GraphTelemetryHandlerOption.get_key(): GraphTelemetryHandlerOption(
                api_version=version, sdk_version=sdk_version
            )
        }
        http_client = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=settings.request_timeout_seconds),
            options=options,
        )
        adapter = GraphRequestAdapter(auth, client=http_client)
        adapter.base_url = settings.graph_url.rstrip("/")
        return cls(
            adapter, http_client, credential, auth, settings.service_principal_id, settings.job_id
        )

    def _job_builder(self) -> Any:
        return self.sdk.service_principals.by_service_principal_id(
            self.service_principal_id
        ).synchronization.jobs.by_synchronization_job_id(self.job_id)

    def bulk_upload_request(self, body: bytes, client_request_id: str) -> RequestInformation:
        """The POST bulkUpload request, on the URL template of the SDK's (GET-only) builder."""
        builder = self._job_builder().bulk_upload
        info = RequestInformation(Method.POST, builder.url_template, dict(builder.path_parameters))
        info.set_stream_content(body, CONTENT_TYPE)
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("client-request-id", client_request_id)
        # The default RetryHandler retries POST on 429/503/504 by itself; the Submitter retries
        # instead, so that each attempt is paced and recorded.
        info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
        return info

    async def authenticate(self) -> None:
        """Have a Graph token before a pace slot is taken. A token request between the slot and
        the request (a process's first, or a refresh near expiry: a cold managed-identity
        endpoint can take a second) makes the request late on its slot, and one later than the
        pace's margin shares Graph's window with the requests counted from its slot: a 429
        for every sender. The token is asked for through the SDK's own authentication
        provider, so the credential's cache answers the request's own ask at once. Raises the
        credential's ``AzureError``."""
        # A fresh request each time: the provider skips one that has its header already.
        info = RequestInformation(Method.GET, "{+baseurl}")
        self.adapter.set_base_url_for_request_information(info)
        await self._auth.authenticate_request(info)

    async def ready(self) -> None:
        """:meth:`authenticate` before a bulkUpload's slot: a credential failure raises
        ``TransportError`` (nothing sent), as in ``post_bulk``."""
        try:
            await self.authenticate()
        except AzureError as exc:
            raise TransportError(_credential_reason(exc), exc, sent=False) from exc

    async def post_bulk(self, body: bytes, client_request_id: str) -> HttpResult:
        """Send one bulkUpload request once. 4xx/5xx come back as ``HttpResult``; no HTTP
        response at all raises ``TransportError``, and so does a credential failure (any
        ``azure.core.exceptions.AzureError`` from the token request, such as
        ``ClientAuthenticationError``), with ``sent=False``: like a refused connection it is
        retried by the Submitter and ends ``failed`` (the run ``interrupted``) if it lasts."""
        info = self.bulk_upload_request(body, client_request_id)
        try:
            response = await _native_response(self.adapter, info)
        except httpx.TransportError as exc:
            raise TransportError(_reason(exc), exc, sent=not isinstance(exc, _NOT_SENT)) from exc
        except AzureError as exc:
            # Only the credential speaks azure-core here (Graph is reached through httpx): the
            # token request failed before the bulkUpload request was built, so nothing was sent.
            raise TransportError(_credential_reason(exc), exc, sent=False) from exc
        try:
            content = await _content(response)
        except httpx.TransportError as exc:
            raise TransportError(_reason(exc), exc) from exc
        status = response.status_code
        code, message = (None, None) if 200 <= status < 300 else parse_error(content)
        headers = response.headers
        return HttpResult(
            status=status,
            request_id=headers.get("request-id"),
            client_request_id=headers.get("client-request-id") or client_request_id,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            location=headers.get("Location"),
            error_code=code,
            error_message=message,
        )

    async def job_status(self) -> JobStatus:
        """``status.code`` and ``status.quarantine.reason`` of the provisioning job.

        Raises ``GraphUnavailable`` when it cannot be read now (no token, no connection, timeout,
        dropped connection, or 408/429/5xx after the SDK's retries); a permanent error answer
        (401, 403, 404) still raises the SDK's ``APIError``."""
        try:
            with unreachable_is_unavailable():
                job = await self._job_builder().get()
        except APIError as exc:
            status = exc.response_status_code
            if status is None or status not in RETRYABLE_STATUSES:
                raise
            raise GraphUnavailable(f"Graph answered HTTP {status}", exc, status) from exc
        status = getattr(job, "status", None)
        code = getattr(status, "code", None)
        quarantine = getattr(status, "quarantine", None)
        reason = getattr(quarantine, "reason", None)
        return JobStatus(code=_enum_text(code) or "Unknown", quarantine_reason=_enum_text(reason))

    async def close(self) -> None:
        try:
            await self._http.aclose()
        finally:
            await self._credential.close()

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _enum_text(value: object) -> str | None:
    if value is None:
        return None
    text = getattr(value, "value", value)
    return str(text)


class GraphApi(Protocol):
    async def ready(self) -> None: ...

    async def post_bulk(self, body: bytes, client_request_id: str) -> Any: ...

    async def job_status(self) -> JobStatus: ...
