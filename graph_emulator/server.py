"""The HTTP side: a loopback ``ThreadingHTTPServer`` speaking the App Service managed identity
protocol, the Graph endpoints the provisioning app uses, and an unauthenticated admin API."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from . import odata
from ._util import graph_error, is_loopback, new_guid, new_job_id
from .scim import SCIM_MEDIA_TYPE, InvalidBulkRequest, media_type, summarize, validate_bulk_request
from .state import (
    DEFAULT_USER_PROPERTIES,
    LOG_FILTERS,
    LOG_FUNCTIONS,
    LOG_OPERATORS,
    LOG_RATE_LIMIT,
    USER_FILTERS,
    USER_PROPERTIES,
    EmulatorState,
    FaultError,
    parse_rate_limit,
)

log = logging.getLogger("graph_emulator")

MAX_BODY = 10 * 1024 * 1024
JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
# Microsoft's "Troubleshoot inbound provisioning API issues" page, section "Bucket full 500
# response code"
# (https://learn.microsoft.com/en-us/entra/identity/app-provisioning/inbound-provisioning-api-issues):
# "The SCIM client gets HTTP 500 (Internal Server Error) with the message: [this text]", and
# "If you get HTTP 500 with the bucket-full message, pause the client (for example, 5 to 10
# minutes) before retrying." The message below is the page's, verbatim. The page gives no
# error code and no Retry-After: the code is the emulator's assumption (Graph's generic one for
# a 500) and the emulator sends no Retry-After with it.
BUCKET_FULL_MESSAGE = (
    "The bucket that stores the ingested data is full, please wait for the synchronization "
    "service to process the ingested data and retry this request."
)
BUCKET_FULL_CODE = "InternalServerError"
FAULT_BODIES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Invalid Data Format"),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("ResourceNotFound", "The synchronization job was not found."),
    408: ("RequestTimeout", "The request timed out."),
    409: ("Conflict", "The request conflicts with the current state of the job."),
    429: ("TooManyRequests", "Too many requests. Retry after the indicated delay."),
    500: (BUCKET_FULL_CODE, BUCKET_FULL_MESSAGE),
    502: ("BadGateway", "The service received an invalid response from an upstream server."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Retry later."),
    504: ("GatewayTimeout", "The upstream service did not respond in time."),
}

_VERSION = r"/(?P<version>v1\.0|beta)"
_JOB = r"/servicePrincipals/(?P<sp>[^/]+)/synchronization/jobs/(?P<job>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("bulk_upload", re.compile(rf"^{_VERSION}{_JOB}/bulkUpload/?$", re.IGNORECASE)),
    ("job", re.compile(rf"^{_VERSION}{_JOB}/?$", re.IGNORECASE)),
    (
        "jobs",
        re.compile(
            rf"^{_VERSION}/servicePrincipals/(?P<sp>[^/]+)/synchronization/jobs/?$", re.IGNORECASE
        ),
    ),
    ("logs", re.compile(rf"^{_VERSION}/auditLogs/provisioning/?$", re.IGNORECASE)),
    ("log", re.compile(rf"^{_VERSION}/auditLogs/provisioning/(?P<id>[^/]+)/?$", re.IGNORECASE)),
    ("users", re.compile(rf"^{_VERSION}/users/?$", re.IGNORECASE)),
    ("user", re.compile(rf"^{_VERSION}/users/(?P<id>[^/]+)/?$", re.IGNORECASE)),
    ("user_manager", re.compile(rf"^{_VERSION}/users/(?P<id>[^/]+)/manager/?$", re.IGNORECASE)),
]
MSI_PATH = re.compile(r"^/msi/token/?$", re.IGNORECASE)
_USER_KEY = re.compile(r"(/users/)[^/]+", re.IGNORECASE)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: GraphEmulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    _on_settle: Callable[[int], None] | None
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_version = "graph-emulator"
    sys_version = ""

    # ------------------------------------------------------------ plumbing
    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's access log: request lines can carry ids in query strings."""

    def _log_path(self) -> str:
        """The path without query and with user keys (which may be UPNs) masked."""
        return _USER_KEY.sub(r"\1{id}", self._path)

    def _state(self) -> EmulatorState:
        return self.server.emulator.state

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._settle(status)
        self.send_response(status)
        self.send_header("request-id", self._request_id)
        self.send_header("client-request-id", self._client_request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body and content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        log.debug("%s %s -> %d", self.command, self._log_path(), status)

    def _json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, ctype: str = ""
    ) -> None:
        self._send(status, json.dumps(payload).encode(), ctype or JSON_TYPE, headers)

    def _error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        now = self._state().wall()
        body = graph_error(code, message, self._request_id, self._client_request_id, now)
        self._json(status, body, headers)

    def _settle(self, status: int) -> None:
        """Run the pending bookkeeping hook before the client can see the outcome."""
        self._status = status
        hook, self._on_settle = self._on_settle, None
        if hook is not None:
            hook(status)

    def _drop(self) -> None:
        """Close the connection without writing any response."""
        self._settle(0)
        self.close_connection = True
        log.debug("%s %s -> dropped", self.command, self._log_path())

    # ------------------------------------------------------------ dispatch
    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        self._path = split.path
        self._query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self._request_id = str(uuid.uuid4())
        self._client_request_id = self.headers.get("client-request-id") or str(uuid.uuid4())
        self._status = 0
        self._on_settle = None
        body = self._read_body()
        try:
            if body is None:
                self.close_connection = True
                self._error(413, "RequestEntityTooLarge", "The request body is too large.")
            elif self._path.lower().startswith("/_emulator/"):
                self._admin(body)
            elif MSI_PATH.match(self._path):
                self._msi()
            else:
                self._graph(body)
        except Exception:  # pragma: no cover - defensive: never leave a client hanging
            log.exception("handler failed for %s %s", self.command, self._log_path())
            if self._status == 0 and not self.close_connection:
                self._error(500, "InternalServerError", "The emulator failed unexpectedly.")

    # ------------------------------------------------------------ managed identity

    # Every method goes through one dispatcher, which answers 405 where a route has none.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _msi(self) -> None:
        state = self._state()
        emulator = self.server.emulator
        # A slow endpoint is slow whatever it answers; an endpoint that is down fails whatever
        # the request, so the faults come first.
        time.sleep(state.token_latency())
        failure = state.take_token_failure()
        if failure == 0:
            self._drop()
            return
        if failure is not None:
            message = "The managed identity endpoint failed (emulated fault)."
            self._json(failure, {"statusCode": failure, "message": message})
            return
        if self.command != "GET":
            self._json(405, {"statusCode": 405, "message": "Use GET."})
            return
        secret = self.headers.get("X-IDENTITY-HEADER")
        if not secret:
            self._json(400, {"statusCode": 400, "message": "The X-IDENTITY-HEADER is missing."})
            return
        if secret != emulator.identity_header:
            self._json(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER is invalid."})
            return
        if self._query.get("api-version") != "2019-08-01":
            self._json(400, {"statusCode": 400, "message": "api-version must be 2019-08-01."})
            return
        resource = self._query.get("resource")
        if not resource:
            self._json(400, {"statusCode": 400, "message": "The resource parameter is missing."})
            return
        ids = [
            k for k in ("client_id", "principal_id", "object_id", "mi_res_id") if k in self._query
        ]
        if len(ids) > 1:
            self._json(
                400, {"statusCode": 400, "message": "Only one identity parameter is allowed."}
            )
            return
        if ids and ids[0] != "client_id":
            self._json(
                400,
                {"statusCode": 400, "message": "The emulator supports client_id identities only."},
            )
            return
        client_id = self._query.get("client_id")
        if client_id is not None and not state.known_client_id(client_id):
            self._json(
                400,
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated Managed Identity found for "
                    "specified ClientId/ResourceId/PrincipalId.",
                },
            )
            return
        self._json(
            200,
            _token_reply(state, resource, client_id),
            ctype="application/json; charset=utf-8",
        )

    # ------------------------------------------------------------ Graph
    def _graph(self, body: bytes) -> None:
        route, match = None, None
        for name, pattern in ROUTES:
            match = pattern.match(self._path)
            if match:
                route = name
                break
        if route == "bulk_upload" and match is not None:
            self._bulk_upload(match, body)
            return
        fault = self._state().next_read_fault()
        if fault == 0:
            self._drop()
            return
        if fault is not None:
            code, message = FAULT_BODIES[fault]
            self._error(fault, code, message, {"Retry-After": "1"} if fault == 429 else None)
            return
        problem = self._state().check_token(self.headers.get("Authorization"))
        if problem:
            self._error(401, "InvalidAuthenticationToken", problem)
            return
        if route is None or match is None:
            self._error(
                404, "ResourceNotFound", "Resource not found for the segment in the request."
            )
            return
        if self.command not in ("GET", "HEAD"):
            self._error(
                405,
                "Request_BadRequest",
                f"The HTTP method '{self.command}' is not allowed for the request uri.",
                {"Allow": "GET"},
            )
            return
        if route in ("logs", "log") and not self._admit_log_read():
            return
        try:
            getattr(self, f"_get_{route}")(match)
        except odata.ODataError as exc:
            self._error(400, "BadRequest", f"Invalid query: {exc}")

    def _admit_log_read(self) -> bool:
        """Count a provisioning-log read against its app's window (see LOG_RATE_LIMIT in
        state.py); answer 429 and return False when the window is full."""
        state = self._state()
        app = state.token_client(self.headers.get("Authorization")) or ""
        wait = state.admit_log_read(app)
        if wait is None:
            return True
        # Graph's throttling page (https://learn.microsoft.com/graph/throttling): 429, a
        # Retry-After header, code TooManyRequests, its sample message.
        self._error(429, "TooManyRequests", "Please retry again later.", {"Retry-After": str(wait)})
        return False

    def _base(self, version: str) -> str:
        return f"{self.server.emulator.url}/{version}"

    def _bulk_upload(self, match: re.Match[str], body: bytes) -> None:
        state = self._state()
        version, sp_id, job_id = match.group("version"), match.group("sp"), match.group("job")
        count: int = 0
        pairs: list[tuple[str | None, str | None]] = []
        with contextlib.suppress(ValueError):
            count, pairs = summarize(json.loads(body)) if body else (0, [])
        record: dict[str, Any] = {
            "time": state.wall(),
            "method": self.command,
            "version": version,
            "sp_id": sp_id,
            "job_id": job_id,
            "operations": count,
            "records": pairs,
            "client_request_id": self.headers.get("client-request-id"),
            "held": False,
            "error": None,
        }

        def settle(status: int) -> None:
            record["status"] = status
            state.record_upload(record)

        self._on_settle = settle
        self._bulk_upload_inner(state, version, sp_id, job_id, body, record)

    def _bulk_upload_inner(
        self,
        state: EmulatorState,
        version: str,
        sp_id: str,
        job_id: str,
        body: bytes,
        record: dict[str, Any],
    ) -> None:
        def reject(
            status: int, code: str, message: str, headers: dict[str, str] | None = None
        ) -> None:
            record["error"] = message
            self._error(status, code, message, headers)

        if self.command != "POST":
            problem = state.check_token(self.headers.get("Authorization"))
            if problem:
                reject(401, "InvalidAuthenticationToken", problem)
            else:
                reject(
                    405,
                    "Request_BadRequest",
                    f"The HTTP method '{self.command}' is not allowed for bulkUpload; "
                    "bulkUpload supports POST only.",
                    {"Allow": "POST"},
                )
            return
        latency = state.latency()
        if latency:
            time.sleep(latency)
        if state.take_drop():
            record["error"] = "connection dropped (fault)"
            self._drop()
            return
        problem = state.check_token(self.headers.get("Authorization"))
        if problem:
            reject(401, "InvalidAuthenticationToken", problem)
            return
        job = state.find_job(sp_id, job_id)
        if job is None:
            reject(
                404,
                "ResourceNotFound",
                "The service principal or synchronization job in the request URI does not exist.",
            )
            return
        admission = state.admit()
        send_retry_after = admission.send_retry_after
        if not admission.admitted:
            headers = {"Retry-After": str(admission.retry_after)} if send_retry_after else {}
            message = (
                "Too many requests: the tenant's daily bulkUpload call quota was exceeded."
                if admission.limit == "quota"
                else "Too many requests: the tenant's bulkUpload rate limit was exceeded."
            )
            reject(429, "TooManyRequests", message, headers)
            return
        if admission.bucket_full:
            # Not applied, not counted against the daily quota; no Retry-After (none documented).
            reject(500, BUCKET_FULL_CODE, BUCKET_FULL_MESSAGE)
            return
        fault = state.next_fault_status()
        if fault is not None:
            if fault == 0:
                record["error"] = "connection dropped (fault)"
                self._drop()
                return
            code, message = FAULT_BODIES[fault]
            headers = {}
            if fault == 429 and send_retry_after:
                headers["Retry-After"] = str(state.faults.retry_after_seconds)
            reject(fault, code, message, headers)
            return
        if media_type(self.headers.get("Content-Type")) != SCIM_MEDIA_TYPE:
            reject(
                400,
                "BadRequest",
                f"Invalid Data Format: the Content-Type request header must be {SCIM_MEDIA_TYPE}.",
            )
            return
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            reject(400, "BadRequest", "Invalid Data Format: the request body is not valid JSON.")
            return
        try:
            operations = validate_bulk_request(payload)
        except InvalidBulkRequest as exc:
            reject(400, "BadRequest", f"Invalid Data Format: {exc}")
            return
        refused = [
            index
            for index, op in enumerate(operations)
            if op["data"].get("externalId") in state.faults.reject_records
        ]
        if refused:
            reject(
                400,
                "BadRequest",
                f"Invalid Data Format: Operations[{refused[0]}].data cannot be provisioned.",
            )
            return
        record["held"] = state.accept(job, operations)
        location = (
            f"{self._base(version)}/auditLogs/provisioning/"
            f"?$filter=jobid%20eq%20'{quote(job.job_id, safe='.-_')}'"
        )
        self._send(202, headers={"Location": location})

    def _get_job(self, match: re.Match[str]) -> None:
        state = self._state()
        job = state.find_job(match.group("sp"), match.group("job"))
        if job is None:
            self._error(
                404, "ResourceNotFound", "The synchronization job in the request URI was not found."
            )
            return
        payload = {
            "@odata.context": f"{self._base(match.group('version'))}/$metadata#servicePrincipals"
            f"('{job.sp_id}')/synchronization/jobs/$entity",
            **state.job_json(job),
        }
        self._json(200, payload)

    def _get_jobs(self, match: re.Match[str]) -> None:
        state = self._state()
        sp_id = match.group("sp").lower()
        with state.lock:
            jobs = [j for (sp, _), j in state.jobs.items() if sp == sp_id]
            if not jobs:
                self._error(404, "ResourceNotFound", "The service principal was not found.")
                return
            value = [state.job_json(j) for j in jobs]
        self._json(
            200,
            {
                "@odata.context": f"{self._base(match.group('version'))}/$metadata#"
                f"servicePrincipals('{jobs[0].sp_id}')/synchronization/jobs",
                "value": value,
            },
        )

    def _next_link(self, version: str, resource: str, token: str) -> str:
        query = {k: v for k, v in self._query.items() if k != "$skiptoken"}
        query["$skiptoken"] = token
        return f"{self._base(version)}/{resource}?{urlencode(query, quote_via=quote, safe='$')}"

    def _get_logs(self, match: re.Match[str]) -> None:
        version = match.group("version")
        props = {name.lower(): name for name in LOG_FILTERS}
        clauses = odata.parse_filter(
            self._query.get("$filter"), props, LOG_FILTERS, LOG_OPERATORS, LOG_FUNCTIONS
        )
        top = odata.parse_top(self._query.get("$top"), 50, 1000)
        orderby = (self._query.get("$orderby") or "activityDateTime desc").strip().split()
        if not orderby or orderby[0].lower() != "activitydatetime" or len(orderby) > 2:
            raise odata.ODataError("$orderby supports activityDateTime [asc|desc] only")
        direction = orderby[1].lower() if len(orderby) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise odata.ODataError("$orderby direction must be asc or desc")
        after = None
        if "$skiptoken" in self._query:
            after = odata.decode_token(self._query["$skiptoken"]).get("after")
            if (
                not isinstance(after, list)
                or len(after) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in after)
            ):
                raise odata.ODataError("$skiptoken is not valid")
        items, next_key = self._state().query_logs(clauses, direction == "desc", top, after)
        payload: dict[str, Any] = {
            "@odata.context": f"{self._base(version)}/$metadata#auditLogs/provisioning",
            "value": items,
        }
        if next_key is not None:
            token = odata.encode_token({"after": next_key})
            payload["@odata.nextLink"] = self._next_link(version, "auditLogs/provisioning", token)
        self._json(200, payload)

    def _get_log(self, match: re.Match[str]) -> None:
        state = self._state()
        with state.lock:
            now = state.wall()
            found = [
                r.entry
                for r in state.log_records
                if r.entry["id"] == match.group("id") and r.visible_at <= now
            ]
            entry = json.loads(json.dumps(found[0])) if found else None
        if entry is None:
            self._error(404, "ResourceNotFound", "The provisioning event was not found.")
            return
        entry["@odata.context"] = (
            f"{self._base(match.group('version'))}/$metadata#auditLogs/provisioning/$entity"
        )
        self._json(200, entry)

    def _select(self) -> list[str] | None:
        text = self._query.get("$select")
        if not text:
            return None
        canonical = {p.lower(): p for p in USER_PROPERTIES}
        chosen = []
        for name in (part.strip() for part in text.split(",")):
            if not name:
                continue
            prop = canonical.get(name.lower())
            if prop is None:
                raise odata.ODataError(
                    f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
                )
            chosen.append(prop)
        return chosen

    def _expand_manager(self) -> bool:
        text = self._query.get("$expand")
        if not text:
            return False
        if text.strip().lower() != "manager":
            raise odata.ODataError("$expand supports manager only")
        return True

    def _shape_user(
        self, user: dict[str, Any], select: list[str] | None, expand: bool
    ) -> dict[str, Any]:
        out = {key: user.get(key) for key in (select or DEFAULT_USER_PROPERTIES)}
        if expand:
            manager_id = (user.get("manager") or {}).get("id")
            manager = self._state().get_user(manager_id) if manager_id else None
            if manager:
                out["manager"] = {
                    "@odata.type": "#microsoft.graph.user",
                    **self._shape_user(manager, ["id", "displayName", "employeeId"], False),
                }
        return out

    def _get_users(self, match: re.Match[str]) -> None:
        version = match.group("version")
        props = {name.lower(): name for name in USER_FILTERS}
        clauses = odata.parse_filter(self._query.get("$filter"), props, USER_FILTERS)
        top = odata.parse_top(self._query.get("$top"), 100, 999)
        select, expand = self._select(), self._expand_manager()
        after = None
        if "$skiptoken" in self._query:
            after = odata.decode_token(self._query["$skiptoken"]).get("after")
            if not isinstance(after, int):
                raise odata.ODataError("$skiptoken is not valid")
        users, next_key = self._state().query_users(clauses, top, after)
        context = f"{self._base(version)}/$metadata#users"
        if select:
            context += f"({','.join(select)})"
        payload: dict[str, Any] = {
            "@odata.context": context,
            "value": [self._shape_user(u, select, expand) for u in users],
        }
        if next_key is not None:
            token = odata.encode_token({"after": next_key})
            payload["@odata.nextLink"] = self._next_link(version, "users", token)
        self._json(200, payload)

    def _get_user(self, match: re.Match[str]) -> None:
        user = self._state().get_user(match.group("id"))
        if user is None:
            self._error(
                404,
                "Request_ResourceNotFound",
                "Resource does not exist or one of its queried reference-property objects "
                "are not present.",
            )
            return
        select, expand = self._select(), self._expand_manager()
        payload = {
            "@odata.context": f"{self._base(match.group('version'))}/$metadata#users/$entity",
            **self._shape_user(user, select, expand),
        }
        self._json(200, payload)

    def _get_user_manager(self, match: re.Match[str]) -> None:
        state = self._state()
        user = state.get_user(match.group("id"))
        manager_id = ((user or {}).get("manager") or {}).get("id")
        manager = state.get_user(manager_id) if manager_id else None
        if user is None or manager is None:
            self._error(
                404,
                "Request_ResourceNotFound",
                "Resource 'manager' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
            return
        payload = {
            "@odata.context": f"{self._base(match.group('version'))}/$metadata#directoryObjects/"
            "$entity",
            "@odata.type": "#microsoft.graph.user",
            **self._shape_user(manager, self._select(), False),
        }
        self._json(200, payload)

    # ------------------------------------------------------------ admin API
    def _admin(self, body: bytes) -> None:
        emulator = self.server.emulator
        state = self._state()
        name = self._path.lower().rstrip("/")[len("/_emulator/") :]
        simple = "application/json"
        try:
            payload: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            self._json(400, {"error": "the body is not JSON"}, ctype=simple)
            return
        try:
            if self.command == "GET" and name == "info":
                self._json(200, emulator.info(), ctype=simple)
            elif self.command == "GET" and name == "directory":
                self._json(200, state.directory(), ctype=simple)
            elif self.command == "GET" and name == "uploads":
                self._json(200, state.uploads(), ctype=simple)
            elif self.command == "GET" and name == "logs":
                visible = self._query.get("visible", "").lower() in ("1", "true", "yes")
                self._json(200, state.logs(visible_only=visible), ctype=simple)
            elif self.command == "GET" and name == "clock":
                self._json(200, state.clock_json(), ctype=simple)
            elif self.command == "POST" and name == "clock":
                if not isinstance(payload, dict) or set(payload) != {"advance"}:
                    raise FaultError('the body must be {"advance": seconds}')
                state.advance(payload["advance"])
                self._json(200, state.clock_json(), ctype=simple)
            elif self.command == "GET" and name == "pacing":
                window = self._query.get("window")
                self._json(200, state.pacing(float(window) if window else None), ctype=simple)
            elif self.command == "GET" and name == "log_reads":
                window = self._query.get("window")
                self._json(200, state.log_reads(float(window) if window else None), ctype=simple)
            elif self.command == "GET" and name == "faults":
                self._json(200, state.faults_json(), ctype=simple)
            elif self.command == "POST" and name == "faults":
                if not isinstance(payload, dict):
                    raise FaultError("the body must be a JSON object")
                self._json(200, state.set_faults(payload), ctype=simple)
            elif self.command == "POST" and name == "reset":
                state.reset()
                self._json(200, {"ok": True}, ctype=simple)
            elif self.command == "POST" and name == "users":
                if not isinstance(payload, list) or not all(isinstance(u, dict) for u in payload):
                    raise FaultError("the body must be a JSON array of user objects")
                self._json(200, state.seed_users(payload), ctype=simple)
            elif self.command == "POST" and name == "tokens":
                if not isinstance(payload, dict):
                    raise FaultError("the body must be a JSON object")
                resource = str(payload.get("resource") or "https://graph.microsoft.com")
                client_id = payload.get("client_id")
                self._json(200, _token_reply(state, resource, client_id), ctype=simple)
            else:
                self._json(404, {"error": "unknown admin endpoint"}, ctype=simple)
        except (FaultError, ValueError, TypeError) as exc:
            self._json(400, {"error": str(exc)}, ctype=simple)


class GraphEmulator:
    """A loopback HTTP server emulating the Graph endpoints used by API-driven provisioning.

    ``with GraphEmulator() as emu:`` starts it in a daemon thread; point the app's Graph base URL
    at ``emu.graph_url`` and its managed identity at ``emu.identity_endpoint`` /
    ``emu.identity_header`` (the ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER`` variables).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sp_id: str | None = None,
        job_id: str | None = None,
        jobs: dict[str, list[str]] | None = None,
        rate_limit: tuple[int, float] | str | None = (40, 5.0),
        log_rate_limit: tuple[int, float] | str | None = LOG_RATE_LIMIT,
        retry_after: bool = True,
        log_delay: float = 0.0,
        daily_quota: int | None = None,
        token_lifetime: float = 86400.0,
        identity_header: str | None = None,
        msi_client_ids: Iterable[str] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError("the Graph emulator only listens on a loopback address")
        spec: dict[str, list[str]] = {sp: list(ids) for sp, ids in (jobs or {}).items()}
        if spec and sp_id is None:
            sp_id = next(iter(spec))
        self.sp_id: str = sp_id or new_guid()
        tenant_id = tenant_id or new_guid()
        if job_id is None:
            job_id = spec[self.sp_id][0] if spec.get(self.sp_id) else new_job_id(tenant_id)
        self.job_id: str = job_id
        if job_id not in spec.setdefault(self.sp_id, []):
            spec[self.sp_id].append(job_id)
        self.jobs = spec
        self.identity_header: str = identity_header or uuid.uuid4().hex.upper()
        self.state = EmulatorState(
            spec,
            rate_limit=parse_rate_limit(rate_limit),
            log_rate_limit=parse_rate_limit(log_rate_limit, "log_rate_limit"),
            retry_after=retry_after,
            log_delay=log_delay,
            daily_quota=daily_quota,
            token_lifetime=token_lifetime,
            tenant_id=tenant_id,
            system_client_id=new_guid(),
            msi_client_ids=msi_client_ids,
        )
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._thread: threading.Thread | None = None
        address = self._server.server_address
        bound_host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        bound_port = int(address[1])
        display_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{display_host}:{bound_port}"
        self.graph_url = f"{self.url}/v1.0"
        self.beta_url = f"{self.url}/beta"
        self.identity_endpoint = f"{self.url}/msi/token"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> GraphEmulator:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},  # bounds how long stop() waits
                name="graph-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread (the command line uses this)."""
        self._server.serve_forever(poll_interval=0.2)

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ helpers for tests
    def bulk_upload_url(
        self, job_id: str | None = None, sp_id: str | None = None, version: str = "v1.0"
    ) -> str:
        return (
            f"{self.url}/{version}/servicePrincipals/{sp_id or self.sp_id}"
            f"/synchronization/jobs/{job_id or self.job_id}/bulkUpload"
        )

    def issue_token(
        self, resource: str = "https://graph.microsoft.com", client_id: str | None = None
    ) -> str:
        """A bearer token without going through the managed identity endpoint."""
        return self.state.issue_token(resource, client_id)[0]

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "graph_url": self.graph_url,
            "beta_url": self.beta_url,
            "identity_endpoint": self.identity_endpoint,
            "identity_header": self.identity_header,
            "sp_id": self.sp_id,
            "job_id": self.job_id,
            "jobs": {sp: list(ids) for sp, ids in self.jobs.items()},
            "tenant_id": self.state.tenant_id,
        }

    def directory(self) -> list[dict[str, Any]]:
        """Users in creation order (Graph fields, ``manager`` {id} or None, raw ``scim``)."""
        return self.state.directory()

    def uploads(self) -> list[dict[str, Any]]:
        """Every request received on a bulkUpload path, in order."""
        return self.state.uploads()

    def logs(self, visible_only: bool = False) -> list[dict[str, Any]]:
        """Provisioning log entries in write order (including not-yet-visible ones by default)."""
        return self.state.logs(visible_only=visible_only)

    def faults(self) -> dict[str, Any]:
        return self.state.faults_json()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault settings; keys left out keep their value. Keys: ``status_sequence``,
        ``latency_ms``, ``drop_connections``, ``job_status`` (+ ``quarantine_reason``,
        ``job_id``), ``rate_limit``, ``log_rate_limit`` (provisioning-log reads per app, as
        ``rate_limit``; ``None`` turns it off), ``retry_after`` (bulkUpload 429s only),
        ``daily_quota``, ``fail_records``, ``log_delay``, ``token_failures`` (+
        ``token_status``), ``token_latency_ms``, ``read_sequence``, ``retry_after_seconds``,
        ``reject_records``, ``bucket_full_for`` (seconds). Returns the resulting settings."""
        return self.state.set_faults(changes)

    def reset(self) -> None:
        self.state.reset()

    # ------------------------------------------------------------ clock, pacing, bucket full
    def advance(self, seconds: float) -> float:
        """Move the emulator's clock forward by ``seconds`` without waiting: the tenant's rate
        and daily windows, a bucket-full stretch, log and job time stamps and log visibility
        follow it (access tokens keep real time). Returns the total offset. ``reset()`` sets
        the clock back to real time."""
        return self.state.advance(seconds)

    def clock_offset(self) -> float:
        """Seconds the emulator's clock is ahead of real time (0 unless ``advance``d)."""
        return float(self.state.clock_json()["offset_seconds"])

    def bucket_full_for(self, seconds: float) -> float:
        """For the next ``seconds`` of the emulator clock, answer every bulkUpload that passes
        the token, job and rate/quota checks with 500 and Microsoft's bucket-full error
        (``BUCKET_FULL_MESSAGE``, no Retry-After); the request is not applied and does not
        count against the daily quota (it does count in the rate window). ``0`` ends the
        stretch; so does ``advance()`` past its end. Returns the seconds left."""
        return self.state.bucket_full_for(seconds)

    def max_in_window(self, seconds: float) -> int:
        """The most bulkUpload requests admitted (not refused 429) in any sliding window of
        ``seconds`` of the emulator clock since the start or the last ``reset()``. Requests
        refused before the rate check (bad token, unknown job, dropped by a fault) are not
        counted; admitted ones are, whatever they were then answered."""
        return self.state.max_in_window(seconds)

    def count_429(self) -> int:
        """How many bulkUpload requests were answered 429, for any reason: the rate limit, the
        daily quota or a 429 of ``status_sequence`` (``pacing()`` gives them apart)."""
        return int(self.state.pacing()["answered_429"])

    def pacing(self, window: float | None = None) -> dict[str, Any]:
        """``admitted``, ``throttled`` (``rate``, ``quota``, ``injected`` 429s),
        ``answered_429``, ``max_in_window`` over ``window`` seconds (default: the rate limit's),
        ``calls_last_24h``, ``rate_limit``, ``daily_quota``, ``bucket_full_remaining``,
        ``clock_offset_seconds`` and ``log_reads`` (see ``log_reads()``)."""
        return self.state.pacing(window)

    def log_reads(self, window: float | None = None) -> dict[str, Any]:
        """Provisioning-log reads (list and by-id): ``admitted``, ``throttled`` (answered 429
        by ``log_rate_limit``), ``max_in_window`` (the most reads one app had admitted in any
        sliding window of ``window`` seconds, default the limit's), ``window_seconds``,
        ``log_rate_limit`` and ``by_app`` (the same per client id)."""
        return self.state.log_reads(window)

    def seed_users(self, users: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.state.seed_users(users)

    def job(self, job_id: str | None = None, sp_id: str | None = None) -> dict[str, Any]:
        job = self.state.find_job(sp_id or self.sp_id, job_id or self.job_id)
        if job is None:
            raise KeyError("no such job")
        return self.state.job_json(job)


def _token_reply(state: EmulatorState, resource: str, client_id: Any) -> dict[str, Any]:
    """A new token in the App Service managed-identity reply shape."""
    token, record = state.issue_token(resource, client_id)
    return {
        "access_token": token,
        "expires_on": str(int(record.expires_on)),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": record.client_id,
    }
