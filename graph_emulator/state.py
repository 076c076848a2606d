"""In-memory state of the emulated tenant: tokens, jobs, users, provisioning logs, uploads and
injected faults. Every public method takes the state's lock, so HTTP handler threads and the
test thread can call them concurrently."""

from __future__ import annotations

import bisect
import copy
import itertools
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import entries, odata
from ._util import iso, new_guid
from .scim import MAPPED_PROPERTIES, graph_fields, manager_reference

GRAPH_RESOURCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "00000003-0000-0000-c000-000000000000",
    }
)
JOB_STATUSES = ("Active", "Paused", "Quarantine", "NotRun", "NotConfigured")
QUARANTINE_REASONS = (
    "EncounteredBaseEscrowThreshold",
    "EncounteredTotalEscrowThreshold",
    "EncounteredEscrowProportionThreshold",
    "EncounteredQuarantineException",
    "Unknown",
    "QuarantinedOnDemand",
    "TooManyDeletes",
    "IngestionInterrupted",
)
# 202 in a status sequence means "no fault for this request": it is handled normally.
FAULT_STATUSES = (0, 202, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504)
# The same for Graph reads (read_sequence), where 200 lets the request through.
READ_FAULT_STATUSES = (0, 200, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504)
# What a failing managed-identity endpoint answers (token_status); 0 drops the connection.
TOKEN_FAULT_STATUSES = (0, 400, 401, 403, 404, 408, 429, 500, 502, 503, 504)
DAY = 86400.0

# Throttling of bulkUpload, from Microsoft's "API-driven inbound provisioning concepts" page
# (https://learn.microsoft.com/en-us/entra/identity/app-provisioning/inbound-provisioning-api-concepts,
# ms.date 2025-07-24): "There is a limit of 40 API calls within any 5-second window" (HTTP 429
# beyond) and "a tenant-level limit of 2,000 API calls per 24-hour period under the Entra ID
# P1/P2 license, and 6,000 API calls under the Entra ID Governance license" (HTTP 429 beyond).
# The daily quota is therefore counted for the whole tenant: every job of the emulator draws
# from one 24 h window. The page does not say whether the 40 per 5 s applies per job, per app
# or per tenant; one emulator is one tenant and it takes the stricter reading, one window for
# the whole tenant, so a client that stays under it here stays under it whichever is true.
# Both are sliding windows: a call is refused while the window of the last N seconds already
# holds the limit, and Retry-After is the number of seconds until the window has room.

# Throttling of provisioning-log reads: Microsoft Graph's service-specific limits page
# (https://learn.microsoft.com/graph/throttling-limits, "Identity and access reports service
# limits") limits the identity and access reports, auditLogRoot among them, to five requests
# per 10 seconds per app per tenant. The emulator keeps one sliding window per app (the client
# id its access token was issued to) in its one tenant; the list and the by-id route both
# count. Graph's throttling page (https://learn.microsoft.com/graph/throttling) answers a
# throttled request 429 with a Retry-After header and the error code TooManyRequests, message
# "Please retry again later." (its sample response). Which reads count is not documented: the
# emulator counts every authenticated GET of the two routes, a 400 for a bad query included,
# and, as for bulkUpload, not the reads it refuses 429.
LOG_RATE_LIMIT = (5, 10.0)
# Seconds between a record's entry and the follow-up entry that sets a manager created in the
# same cycle: what the sample shows for 10018 and 10019 (22:40:48 then 22:40:50 and 22:40:49);
# Entra's real delay varies (6 s for 10015 in the sample's earlier cycle): 2 is assumed.
FOLLOW_UP_SECONDS = 2

# Properties Graph v1.0 returns for a user when the request has no $select.
DEFAULT_USER_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_PROPERTIES = (
    "id",
    *MAPPED_PROPERTIES,
    "mobilePhone",
    "officeLocation",
    "createdDateTime",
)
# Microsoft's "List provisioningObjectSummary" page
# (https://learn.microsoft.com/graph/api/provisioningobjectsummary-list) documents $filter with
# eq, contains, gt and lt, $orderby, $top and $skiptoken, and "The filters are all case
# sensitive" (values; property names are case-insensitive in Graph, as the Postman collection's
# `jobid eq` shows). Microsoft's Postman collection also sends `activityDateTime ge ...`, so ge
# and le work on the date too. Which properties Graph lets a client filter on is not listed:
# the emulator accepts the ones below (those Microsoft's samples and our app use, the
# identifiers and the statuses) and answers 400 for any other, an assumption.
LOG_FILTERS = {
    "id": "string",
    "jobId": "string",
    "cycleId": "string",
    "changeId": "string",
    "activityDateTime": "datetime",
    "action": "string",
    "provisioningAction": "string",
    "provisioningStatusInfo/status": "string",
    "statusInfo/status": "string",
    "sourceIdentity/id": "string",
    "sourceIdentity/displayName": "string",
    "targetIdentity/id": "string",
    "targetIdentity/displayName": "string",
    "servicePrincipal/id": "string",
    "servicePrincipal/displayName": "string",
}
LOG_OPERATORS: dict[str, frozenset[str]] = {
    "string": frozenset({"eq"}),
    "datetime": frozenset({"eq", "gt", "ge", "lt", "le"}),
}
LOG_FUNCTIONS = frozenset({"contains"})
USER_FILTERS = {
    "id": "string",
    "employeeId": "string",
    "userPrincipalName": "string",
    "displayName": "string",
    "mail": "string",
    "employeeType": "string",
    "department": "string",
    "accountEnabled": "bool",
}


class FaultError(ValueError):
    """An invalid ``set_faults`` argument."""


@dataclass(slots=True)
class Token:
    expires_on: float
    resource: str
    client_id: str


@dataclass(slots=True)
class Job:
    sp_id: str
    job_id: str
    status: str = "Active"
    quarantine: dict[str, Any] | None = None
    held: list[list[dict[str, Any]]] = field(default_factory=list)
    last_execution: dict[str, Any] | None = None
    last_success: dict[str, Any] | None = None


@dataclass(slots=True)
class LogRecord:
    seq: int
    timestamp: int  # whole seconds since the epoch: activityDateTime as printed
    visible_at: float
    entry: dict[str, Any]


def _log_key(record: LogRecord) -> tuple[int, int]:
    return record.timestamp, record.seq


@dataclass(slots=True)
class Faults:
    status_sequence: list[int] = field(default_factory=list)
    latency_ms: int = 0
    drop_connections: int = 0
    fail_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_limit: tuple[int, float] | None = (40, 5.0)
    # Provisioning-log reads per app in a sliding window (see LOG_RATE_LIMIT); None: no limit.
    log_rate_limit: tuple[int, float] | None = LOG_RATE_LIMIT
    retry_after: bool = True
    daily_quota: int | None = None
    log_delay: float = 0.0
    token_failures: int = 0  # the next N token requests fail ...
    token_status: int = 500  # ... answering this (0: the connection is dropped)
    token_latency_ms: int = 0  # each token request is answered this late (a cold endpoint)
    read_sequence: list[int] = field(default_factory=list)  # next Graph reads (GET) answer these
    # Retry-After (seconds) of the 429s of status_sequence.
    retry_after_seconds: int = 1
    # externalIds whose operation makes Graph refuse the whole request (400 Invalid Data
    # Format), as a record Entra cannot take does: the request's other records are not applied.
    reject_records: list[str] = field(default_factory=list)
    # Until this instant of the emulator clock (EmulatorState.clock) every bulkUpload that
    # passes the token, job and rate checks is answered 500 bucket-full; None: no stretch.
    bucket_full_until: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "status_sequence": list(self.status_sequence),
            "read_sequence": list(self.read_sequence),
            "retry_after_seconds": self.retry_after_seconds,
            "reject_records": list(self.reject_records),
            "token_failures": self.token_failures,
            "token_status": self.token_status,
            "token_latency_ms": self.token_latency_ms,
            "latency_ms": self.latency_ms,
            "drop_connections": self.drop_connections,
            "fail_records": copy.deepcopy(self.fail_records),
            "rate_limit": list(self.rate_limit) if self.rate_limit else None,
            "log_rate_limit": list(self.log_rate_limit) if self.log_rate_limit else None,
            "retry_after": self.retry_after,
            "daily_quota": self.daily_quota,
            "log_delay": self.log_delay,
        }


@dataclass(slots=True)
class Admission:
    """What ``EmulatorState.admit`` decided for one bulkUpload request."""

    admitted: bool
    retry_after: int | None = None  # seconds until the refusing window has room (429)
    send_retry_after: bool = True
    limit: str | None = None  # "rate" or "quota": the window that refused the request
    bucket_full: bool = False  # admitted, but the job's bucket is full: answer 500


def parse_rate_limit(value: Any, name: str = "rate_limit") -> tuple[int, float] | None:
    """``None``/"none", ``(n, seconds)``, ``[n, seconds]`` or ``"n/seconds"``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    usage = f"{name} must be None, (requests, seconds) or 'requests/seconds'"
    if isinstance(value, str):
        head, _, tail = value.partition("/")
        value = (head, tail or "1")
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise FaultError(usage)
    try:
        count, seconds = int(value[0]), float(value[1])
    except (TypeError, ValueError) as exc:
        raise FaultError(usage) from exc
    if count < 1 or seconds <= 0:
        raise FaultError(f"{name} needs requests >= 1 and seconds > 0")
    return count, seconds


def _new_user(now: float) -> dict[str, Any]:
    user: dict[str, Any] = {key: None for key in USER_PROPERTIES}
    user.update(
        id=new_guid(),
        businessPhones=[],
        employeeOrgData={"division": None, "costCenter": None},
        accountEnabled=True,
        createdDateTime=iso(now),
        manager=None,
    )
    return user


def _max_in_window(times: list[float], seconds: float) -> int:
    """The most instants of the sorted ``times`` in any window (t - seconds, t]."""
    best = 0
    for end, moment in enumerate(times):
        start = bisect.bisect_right(times, moment - seconds, 0, end + 1)
        best = max(best, end - start + 1)
    return best


class EmulatorState:
    def __init__(
        self,
        jobs: dict[str, list[str]],
        *,
        rate_limit: tuple[int, float] | None,
        retry_after: bool,
        log_rate_limit: tuple[int, float] | None = LOG_RATE_LIMIT,
        log_delay: float,
        daily_quota: int | None,
        token_lifetime: float,
        tenant_id: str,
        system_client_id: str,
        msi_client_ids: Iterable[str] | None,
    ) -> None:
        self.lock = threading.RLock()
        self.tenant_id = tenant_id
        self.system_client_id = system_client_id
        self.msi_client_ids = (
            {c.lower() for c in msi_client_ids} if msi_client_ids is not None else None
        )
        self.token_lifetime = token_lifetime
        self.app_name = "API-driven provisioning to Microsoft Entra ID (emulated)"
        self._job_spec = {sp: list(ids) for sp, ids in jobs.items()}
        self._defaults = Faults(
            rate_limit=rate_limit,
            log_rate_limit=log_rate_limit,
            retry_after=retry_after,
            log_delay=log_delay,
            daily_quota=daily_quota,
        )
        self.tokens: dict[str, Token] = {}
        self.application_ids: dict[str, str] = {sp.lower(): new_guid() for sp in jobs}
        self._reset_locked()

    # ---------------------------------------------------------------- lifecycle
    def _reset_locked(self) -> None:
        self.faults = copy.deepcopy(self._defaults)
        self.jobs: dict[tuple[str, str], Job] = {
            (sp.lower(), job_id.lower()): Job(sp, job_id)
            for sp, ids in self._job_spec.items()
            for job_id in ids
        }
        self.users: dict[str, dict[str, Any]] = {}  # id -> user (insertion order = creation)
        self.user_seq: dict[str, int] = {}
        self.by_employee_id: dict[str, str] = {}
        self.log_records: list[LogRecord] = []
        # log_records sorted by (timestamp, seq), rebuilt when entries were added.
        self._log_index: list[LogRecord] = []
        self._index_size = 0
        self._index_last: LogRecord | None = None
        self.upload_records: list[dict[str, Any]] = []
        self._seq = 0
        # The emulator clock is the real clock plus this offset (advance()).
        self._clock_offset = 0.0
        # The tenant's sliding windows (emulator clock), shared by every job: see the comment
        # at DAY. A request counts in the rate window when it is admitted, and in the daily
        # window when it is admitted and not answered bucket-full.
        self.rate_window: deque[float] = deque()
        self.day_window: deque[float] = deque()
        # Emulator-clock instants of every admitted request, in order (max_in_window), and
        # how many bulkUpload requests were answered 429, by cause.
        self.admitted_times: list[float] = []
        self.throttled = {"rate": 0, "quota": 0, "injected": 0}
        # Provisioning-log reads, per app (lower-cased client id): the sliding window, every
        # admitted instant (max_in_window) and how many were answered 429.
        self.log_windows: dict[str, deque[float]] = {}
        self.log_read_times: dict[str, list[float]] = {}
        self.log_reads_throttled: dict[str, int] = {}

    def reset(self) -> None:
        """Forget users, logs, uploads, held operations, faults, the tenant's rate and quota
        windows, the log-read windows, and any advance of the clock. Issued tokens stay
        valid."""
        with self.lock:
            self._reset_locked()

    # ---------------------------------------------------------------- clock
    # Tests of a 24 h quota or of a minutes-long bucket-full stretch cannot wait for real
    # time, so the emulator keeps its own clock: the real one plus an offset that only
    # advance() moves (forward). It drives the rate and daily windows, the bucket-full
    # stretch, log and job time stamps and log visibility (log_delay). Access tokens keep real
    # time: a client caches a token by its real expiry, and an advanced emulator must not
    # refuse a token the client rightly holds as valid.
    def clock(self) -> float:
        """Monotonic seconds for windows and stretches: ``time.monotonic()`` + the offset."""
        with self.lock:
            return time.monotonic() + self._clock_offset

    def wall(self) -> float:
        """Epoch seconds for time stamps: ``time.time()`` + the offset."""
        with self.lock:
            return time.time() + self._clock_offset

    def advance(self, seconds: float) -> float:
        """Move the emulator clock forward; returns the total offset in seconds."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise FaultError("advance needs a number of seconds")
        if not math.isfinite(seconds) or seconds < 0:
            raise FaultError("the emulator clock only moves forward: seconds must be >= 0")
        with self.lock:
            self._clock_offset += float(seconds)
            return self._clock_offset

    def clock_json(self) -> dict[str, Any]:
        with self.lock:
            return {"offset_seconds": self._clock_offset, "now": iso(self.wall())}

    # ---------------------------------------------------------------- pacing inspection
    def max_in_window(self, seconds: float) -> int:
        """The most requests admitted in any sliding window of ``seconds`` (emulator clock),
        counted as the rate limit counts: a window (t - seconds, t]."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise FaultError("the window must be a positive number of seconds")
        if not math.isfinite(seconds) or seconds <= 0:
            raise FaultError("the window must be a positive number of seconds")
        with self.lock:
            times = list(self.admitted_times)
        return _max_in_window(times, seconds)

    def pacing(self, window: float | None = None) -> dict[str, Any]:
        with self.lock:
            rate = self.faults.rate_limit
            size = window if window is not None else (rate[1] if rate else None)
            out: dict[str, Any] = {
                "admitted": len(self.admitted_times),
                "throttled": dict(self.throttled),
                "answered_429": sum(self.throttled.values()),
                "window_seconds": size,
                "max_in_window": self.max_in_window(size) if size else None,
                "rate_limit": list(rate) if rate else None,
                "daily_quota": self.faults.daily_quota,
                "calls_last_24h": self._prune(self.day_window, DAY, self.clock()),
                "bucket_full_remaining": self.bucket_full_remaining(),
                "clock_offset_seconds": self._clock_offset,
                "log_reads": self.log_reads(),
            }
            return out

    def log_reads(self, window: float | None = None) -> dict[str, Any]:
        """Provisioning-log reads: ``admitted``, ``throttled`` (answered 429 by the log-read
        limit), ``max_in_window`` (the most one app was admitted in any sliding window of
        ``window`` seconds, default the limit's), ``window_seconds``, ``log_rate_limit`` and
        the same counts ``by_app`` (lower-cased client id)."""
        if window is not None and (
            isinstance(window, bool)
            or not isinstance(window, int | float)
            or not math.isfinite(window)
            or window <= 0
        ):
            raise FaultError("the window must be a positive number of seconds")
        with self.lock:
            limit = self.faults.log_rate_limit
            size = window if window is not None else (limit[1] if limit else LOG_RATE_LIMIT[1])
            apps = sorted(set(self.log_read_times) | set(self.log_reads_throttled))
            by_app = {
                app: {
                    "admitted": len(self.log_read_times.get(app, [])),
                    "throttled": self.log_reads_throttled.get(app, 0),
                    "max_in_window": _max_in_window(self.log_read_times.get(app, []), size),
                }
                for app in apps
            }
            return {
                "admitted": sum(a["admitted"] for a in by_app.values()),
                "throttled": sum(a["throttled"] for a in by_app.values()),
                "max_in_window": max((a["max_in_window"] for a in by_app.values()), default=0),
                "window_seconds": size,
                "log_rate_limit": list(limit) if limit else None,
                "by_app": by_app,
            }

    def admit_log_read(self, app: str) -> int | None:
        """Count one provisioning-log read of ``app`` against its sliding window (see
        LOG_RATE_LIMIT): None when admitted, else the Retry-After in whole seconds (at least
        1) until the window has room. A refused read is not counted in the window."""
        with self.lock:
            key = app.lower()
            now = self.clock()
            limit = self.faults.log_rate_limit
            window = self.log_windows.setdefault(key, deque())
            self._prune(window, limit[1] if limit else DAY, now)
            if limit and len(window) >= limit[0]:
                self.log_reads_throttled[key] = self.log_reads_throttled.get(key, 0) + 1
                wait = window[len(window) - limit[0]] + limit[1] - now
                return max(1, math.ceil(wait))
            window.append(now)
            self.log_read_times.setdefault(key, []).append(now)
            return None

    def bucket_full_remaining(self) -> float:
        """Seconds (emulator clock) left of the bucket-full stretch; 0 when there is none."""
        with self.lock:
            until = self.faults.bucket_full_until
            return max(0.0, until - self.clock()) if until is not None else 0.0

    def bucket_full_for(self, seconds: float) -> float:
        """Answer bulkUpload 500 bucket-full for the next ``seconds`` of the emulator clock
        (0 ends a stretch). Returns the seconds left."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise FaultError("bucket_full_for needs a number of seconds")
        if not math.isfinite(seconds) or seconds < 0:
            raise FaultError("bucket_full_for must be >= 0 seconds")
        with self.lock:
            self.faults.bucket_full_until = self.clock() + seconds if seconds > 0 else None
            return self.bucket_full_remaining()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ---------------------------------------------------------------- tokens
    def issue_token(self, resource: str, client_id: str | None) -> tuple[str, Token]:
        with self.lock:
            token = "emu." + secrets.token_urlsafe(32)
            record = Token(
                expires_on=time.time() + self.token_lifetime,
                resource=resource,
                client_id=client_id or self.system_client_id,
            )
            self.tokens[token] = record
            return token, record

    def known_client_id(self, client_id: str) -> bool:
        return self.msi_client_ids is None or client_id.lower() in self.msi_client_ids

    def token_client(self, authorization: str | None) -> str | None:
        """The client (app) id a bearer token was issued to; None for an unknown token."""
        _, _, token = (authorization or "").strip().partition(" ")
        with self.lock:
            record = self.tokens.get(token.strip())
            return record.client_id if record else None

    def check_token(self, authorization: str | None) -> str | None:
        """None when the bearer token is valid, else Graph's 401 message."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "Access token is empty."
        with self.lock:
            record = self.tokens.get(token)
        if record is None:
            return "Access token validation failure. Invalid signature."
        if record.expires_on <= time.time():
            return "Access token has expired or is not yet valid."
        if record.resource.lower() not in GRAPH_RESOURCES:
            return "Access token validation failure. Invalid audience."
        return None

    # ---------------------------------------------------------------- faults
    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply the given fault settings (keys left out keep their current value)."""
        allowed = {
            "status_sequence",
            "latency_ms",
            "drop_connections",
            "fail_records",
            "rate_limit",
            "log_rate_limit",
            "retry_after",
            "daily_quota",
            "log_delay",
            "job_status",
            "quarantine_reason",
            "job_id",
            "token_failures",
            "token_status",
            "token_latency_ms",
            "read_sequence",
            "retry_after_seconds",
            "reject_records",
            "bucket_full_for",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise FaultError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        with self.lock:
            faults = self.faults
            if "status_sequence" in changes:
                sequence = list(changes["status_sequence"] or [])
                for status in sequence:
                    if isinstance(status, bool) or not isinstance(status, int):
                        raise FaultError("status_sequence must be a list of HTTP status codes")
                    if status not in FAULT_STATUSES:
                        raise FaultError(f"status_sequence supports {FAULT_STATUSES}")
                faults.status_sequence = sequence
            if "read_sequence" in changes:
                reads = list(changes["read_sequence"] or [])
                for status in reads:
                    if isinstance(status, bool) or not isinstance(status, int):
                        raise FaultError("read_sequence must be a list of HTTP status codes")
                    if status not in READ_FAULT_STATUSES:
                        raise FaultError(f"read_sequence supports {READ_FAULT_STATUSES}")
                faults.read_sequence = reads
            if "token_status" in changes:
                token_status = changes["token_status"]
                if token_status not in TOKEN_FAULT_STATUSES or isinstance(token_status, bool):
                    raise FaultError(f"token_status must be one of {TOKEN_FAULT_STATUSES}")
                faults.token_status = token_status
            for key in ("latency_ms", "drop_connections", "token_failures", "token_latency_ms"):
                if key in changes:
                    value = changes[key]
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise FaultError(f"{key} must be a non-negative integer")
                    setattr(faults, key, value)
            if "fail_records" in changes:
                records = changes["fail_records"] or {}
                if not isinstance(records, dict) or not all(
                    isinstance(k, str) and isinstance(v, dict) for k, v in records.items()
                ):
                    raise FaultError("fail_records must map externalId -> errorInformation dict")
                faults.fail_records = copy.deepcopy(records)
            if "reject_records" in changes:
                rejected = list(changes["reject_records"] or [])
                if not all(isinstance(ext, str) for ext in rejected):
                    raise FaultError("reject_records must be a list of externalIds")
                faults.reject_records = rejected
            if "retry_after_seconds" in changes:
                seconds = changes["retry_after_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                    raise FaultError("retry_after_seconds must be a non-negative integer")
                faults.retry_after_seconds = seconds
            if "rate_limit" in changes:
                faults.rate_limit = parse_rate_limit(changes["rate_limit"])
            if "log_rate_limit" in changes:
                faults.log_rate_limit = parse_rate_limit(
                    changes["log_rate_limit"], "log_rate_limit"
                )
            if "retry_after" in changes:
                faults.retry_after = bool(changes["retry_after"])
            if "daily_quota" in changes:
                quota = changes["daily_quota"]
                if quota is not None and (
                    isinstance(quota, bool) or not isinstance(quota, int) or quota < 1
                ):
                    raise FaultError("daily_quota must be None or a positive integer")
                faults.daily_quota = quota
            if "log_delay" in changes:
                delay = float(changes["log_delay"])
                if delay < 0:
                    raise FaultError("log_delay must be >= 0")
                faults.log_delay = delay
            if "bucket_full_for" in changes:
                self.bucket_full_for(changes["bucket_full_for"])
            if "job_status" in changes or "quarantine_reason" in changes:
                self._set_job_status(
                    changes.get("job_status"),
                    changes.get("quarantine_reason"),
                    changes.get("job_id"),
                )
            return self.faults_json()

    def faults_json(self) -> dict[str, Any]:
        with self.lock:
            out = self.faults.as_json()
            out["bucket_full_remaining"] = self.bucket_full_remaining()
            out["jobs"] = {
                job.job_id: {
                    "status": job.status,
                    "quarantine": copy.deepcopy(job.quarantine),
                    "held_operations": sum(len(batch) for batch in job.held),
                }
                for job in self.jobs.values()
            }
            return out

    def _set_job_status(self, status: Any, reason: Any, job_id: Any) -> None:
        targets = list(self.jobs.values())
        if job_id is not None:
            targets = [j for j in targets if j.job_id.lower() == str(job_id).lower()]
            if not targets:
                raise FaultError("job_id does not name a job of this emulator")
        if status is None:
            status = "Quarantine"  # only a reason was given
        canonical = {s.lower(): s for s in JOB_STATUSES}.get(str(status).lower())
        if canonical is None:
            raise FaultError(f"job_status must be one of {JOB_STATUSES}")
        if reason is not None and reason not in QUARANTINE_REASONS:
            raise FaultError(f"quarantine_reason must be one of {QUARANTINE_REASONS}")
        now = self.wall()
        for job in targets:
            job.status = canonical
            if canonical == "Quarantine":
                previous = job.quarantine or {}
                job.quarantine = {
                    "currentBegan": iso(now),
                    "nextAttempt": iso(now + 3600),
                    "reason": reason or previous.get("reason") or "TooManyDeletes",
                    "seriesBegan": previous.get("seriesBegan", iso(now)),
                    "seriesCount": int(previous.get("seriesCount", 0)) + 1,
                    "error": None,
                }
            else:
                job.quarantine = None
            if canonical == "Active":
                held, job.held = job.held, []
                for operations in held:
                    self._apply(job, operations)

    # ---------------------------------------------------------------- bulkUpload
    def find_job(self, sp_id: str, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get((sp_id.lower(), job_id.lower()))

    def latency(self) -> float:
        with self.lock:
            return self.faults.latency_ms / 1000.0

    def token_latency(self) -> float:
        with self.lock:
            return self.faults.token_latency_ms / 1000.0

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.drop_connections > 0:
                self.faults.drop_connections -= 1
                return True
            return False

    @staticmethod
    def _prune(window: deque[float], horizon: float, now: float) -> int:
        """Drop the instants that left the sliding window (now - horizon, now]; the count."""
        while window and window[0] <= now - horizon:
            window.popleft()
        return len(window)

    def admit(self) -> Admission:
        """Count a bulkUpload request against the tenant's sliding windows (every job shares
        them: see the comment at DAY).

        A refused request (429) counts in neither window, so a client that waits
        ``Retry-After`` seconds is admitted again; Retry-After is the longest wait of the
        windows that are full (for the daily quota: until the oldest call of the 24 h leaves
        it). An admitted request during a bucket-full stretch counts in the rate window (it
        is a call) but not against the daily quota, since Entra takes nothing from it."""
        with self.lock:
            now = self.clock()
            rate, quota = self.faults.rate_limit, self.faults.daily_quota
            waits: dict[str, float] = {}
            self._prune(self.rate_window, rate[1] if rate else DAY, now)
            if rate and len(self.rate_window) >= rate[0]:
                waits["rate"] = self.rate_window[len(self.rate_window) - rate[0]] + rate[1] - now
            self._prune(self.day_window, DAY, now)
            if quota and len(self.day_window) >= quota:
                waits["quota"] = self.day_window[len(self.day_window) - quota] + DAY - now
            if waits:
                limit = max(waits, key=lambda name: waits[name])
                self.throttled[limit] += 1
                return Admission(
                    False,
                    max(1, math.ceil(waits[limit])),
                    self.faults.retry_after,
                    limit=limit,
                )
            until = self.faults.bucket_full_until
            bucket_full = until is not None and now < until
            self.rate_window.append(now)
            self.admitted_times.append(now)
            if not bucket_full:
                self.day_window.append(now)
            return Admission(True, None, self.faults.retry_after, bucket_full=bucket_full)

    def take_token_failure(self) -> int | None:
        """The status a token request fails with (0: drop the connection), or None when the
        managed-identity endpoint answers normally. Counts the failure down."""
        with self.lock:
            if self.faults.token_failures > 0:
                self.faults.token_failures -= 1
                return self.faults.token_status
            return None

    def next_read_fault(self) -> int | None:
        """The fault status of the next Graph read (0: drop), or None to serve it normally."""
        with self.lock:
            if self.faults.read_sequence:
                status = self.faults.read_sequence.pop(0)
                return None if status == 200 else status
            return None

    def next_fault_status(self) -> int | None:
        with self.lock:
            if self.faults.status_sequence:
                status = self.faults.status_sequence.pop(0)
                if status == 429:
                    self.throttled["injected"] += 1
                return None if status == 202 else status
            return None

    def record_upload(self, record: dict[str, Any]) -> None:
        with self.lock:
            record["index"] = len(self.upload_records) + 1
            self.upload_records.append(record)

    def accept(self, job: Job, operations: list[dict[str, Any]]) -> bool:
        """Stage accepted operations: applied now when the job is Active, else held.

        Returns True when the operations were held."""
        with self.lock:
            operations = copy.deepcopy(operations)
            if job.status != "Active":
                job.held.append(operations)
                return True
            self._apply(job, operations)
            return False

    def _apply(self, job: Job, operations: list[dict[str, Any]]) -> None:
        """Process one staged bulk request as one provisioning cycle (lock held).

        Manager references resolve as the sample page shows Entra resolving them
        (tests/data/microsoft/provisioning-log-sample.json, workers 10018-10020): at a record's
        own create or update only when the manager was in the directory before the cycle;
        otherwise the record's entry carries an EntrySynchronizationSkip step (status still
        success), and once every record of the cycle is applied a manager that now exists is
        set by a second entry of the same change, two seconds later (_follow_up)."""
        now = self.wall()
        stamp = math.floor(now)  # activityDateTime prints whole seconds
        cycle_id = new_guid()
        known_before = set(self.by_employee_id)
        outcomes: list[dict[str, Any]] = []
        for op in operations:
            data = op["data"]
            external_id = data["externalId"]
            user_id = self.by_employee_id.get(external_id)
            user = self.users.get(user_id) if user_id else None
            fields = graph_fields(data)
            enabling = fields.get("accountEnabled")
            if user is None:
                action = "create"
            elif enabling is False and user.get("accountEnabled") is not False:
                action = "disable"
            else:
                action = "update"
            fault = self.faults.fail_records.get(external_id)
            outcome: dict[str, Any] = {
                "data": data,
                "action": action,
                "user": user,
                "before": copy.deepcopy(user) if user else None,
                "changes": [],
                "fault": fault,
                "change_id": new_guid(),
                "unresolved_manager": None,
            }
            outcomes.append(outcome)
            if fault is not None:
                continue
            created = user is None
            if user is None:
                user = _new_user(now)
                self.users[user["id"]] = user
                self.user_seq[user["id"]] = self._next_seq()
                self.by_employee_id[external_id] = user["id"]
                outcome["user"] = user
            for key, value in fields.items():
                old = user.get(key)
                if key == "employeeOrgData":
                    value = {**(old or {}), **value}
                if created and value not in (None, [], {"division": None, "costCenter": None}):
                    outcome["changes"].append((key, None, value))  # a create sets, not changes
                elif not created and old != value:
                    outcome["changes"].append((key, old, value))
                user[key] = value
            if created:
                # What every create of the sample lists besides the mapped attributes.
                if "accountEnabled" not in fields:
                    outcome["changes"].append(("accountEnabled", None, True))
                outcome["changes"].append(("IsSoftDeleted", None, False))
                outcome["changes"].append(("passwordProfile.password", None, "[Redacted]"))
            user["scim"] = copy.deepcopy(data)
        for outcome in outcomes:
            if outcome["fault"] is not None:
                continue
            present, manager_external_id = manager_reference(outcome["data"])
            if not present:
                continue
            user = outcome["user"]
            old_manager = (user.get("manager") or {}).get("id")
            if manager_external_id is None:
                new_manager = None  # the record clears its manager: nothing to resolve
            elif manager_external_id in known_before:
                new_manager = self.by_employee_id[manager_external_id]
            else:
                outcome["unresolved_manager"] = manager_external_id
                continue
            if new_manager != old_manager:
                user["manager"] = {"id": new_manager} if new_manager else None
                outcome["changes"].append(("manager", old_manager, new_manager))
        for outcome in outcomes:
            self._write_log(job, cycle_id, stamp, now, outcome)
        follow_ups = sum(self._follow_up(job, cycle_id, stamp, now, o) for o in outcomes)
        exported = follow_ups + sum(
            1 for o in outcomes if o["fault"] is None and (o["changes"] or o["unresolved_manager"])
        )
        failed = sum(1 for o in outcomes if o["fault"] is not None)
        execution = {
            "activityIdentifier": cycle_id,
            "countEntitled": len(outcomes),
            "countEscrowed": failed,
            "countExported": exported,
            "countExports": exported,
            "countImported": len(outcomes),
            "error": None,
            "state": "Succeeded" if not failed else "Failed",
            "timeBegan": iso(now),
            "timeEnded": iso(max(now, self.wall())),
        }
        job.last_execution = execution
        if not failed:
            job.last_success = execution

    def _follow_up(
        self, job: Job, cycle_id: str, stamp: int, now: float, outcome: dict[str, Any]
    ) -> int:
        """Set a manager the record's own export could not resolve, if the manager exists
        now that the cycle's records are applied: the sample's second entry for 10018/10019
        (same changeId and cycleId, action Update, one EntryExportUpdate step, the manager in
        modifiedProperties). The sample shows it 2 s after the first entry; the emulator
        stamps and shows it 2 s later (plus log_delay). A manager that still does not exist
        leaves the user's previous manager and writes nothing more. Returns 1 if written."""
        reference = outcome["unresolved_manager"]
        if reference is None:
            return 0
        manager_id = self.by_employee_id.get(reference)
        user = outcome["user"]
        old_manager = (user.get("manager") or {}).get("id")
        if manager_id is None or manager_id == old_manager:
            return 0
        user["manager"] = {"id": manager_id}
        external_id = outcome["data"]["externalId"]
        self._append_entry(
            job,
            cycle_id,
            outcome,
            stamp + FOLLOW_UP_SECONDS,
            now + FOLLOW_UP_SECONDS,
            action="update",
            status="success",
            error=None,
            steps=[entries.export_update(external_id, external_id)],
            changes=[("manager", old_manager, manager_id)],
            external_id=external_id,
            user=user,
            duration_ms=400 + secrets.randbelow(100),
        )
        return 1

    def _append_entry(
        self,
        job: Job,
        cycle_id: str,
        outcome: dict[str, Any],
        stamp: int,
        at: float,
        **fields: Any,
    ) -> None:
        """One entry of the record's change in this cycle, visible from ``at`` (+ log_delay)."""
        entry = entries.entry(
            stamp=stamp,
            tenant_id=self.tenant_id,
            job_id=job.job_id,
            cycle_id=cycle_id,
            change_id=outcome["change_id"],
            sp_id=job.sp_id,
            application_id=self._application_id(job.sp_id),
            app_name=self.app_name,
            **fields,
        )
        self.log_records.append(
            LogRecord(self._next_seq(), stamp, at + self.faults.log_delay, entry)
        )

    def _application_id(self, sp_id: str) -> str:
        """The appId of a job's service principal (targetSystem.details.ApplicationId)."""
        return self.application_ids.setdefault(sp_id.lower(), new_guid())

    def _write_log(
        self, job: Job, cycle_id: str, stamp: int, now: float, outcome: dict[str, Any]
    ) -> None:
        data = outcome["data"]
        external_id = data["externalId"]
        user = outcome["user"]
        before = outcome["before"]
        fault = outcome["fault"]
        changes = outcome["changes"]
        action = outcome["action"]
        unresolved = outcome["unresolved_manager"]
        active = data.get("active") is not False
        steps = [entries.import_add(external_id, data)]
        if before is not None:
            steps.append(entries.import_existing(before, MAPPED_PROPERTIES))
        steps.append(entries.scoping(active))
        if action == "create":
            steps.append(entries.matching_add(external_id))
        error: dict[str, Any] | None = None
        upn = (user or {}).get("userPrincipalName") or data.get("userName") or external_id
        if fault is not None:
            status = "failure"
            error = {
                "errorCode": fault.get("errorCode", "EmulatedFailure"),
                "errorCategory": fault.get("errorCategory", "nonServiceFailure"),
                "reason": fault.get("reason", "The emulator was told to fail this record."),
                "additionalDetails": fault.get("additionalDetails"),
                "recommendedAction": fault.get("recommendedAction"),
            }
            steps.append(entries.export_failed(action, external_id, str(error["reason"])))
            changes = []
        elif not changes and unresolved is None:
            status = "skipped"
            action = "other"
            steps.append(entries.redundant_skip(external_id))
        else:
            # Assumed: an existing user whose only news is a manager Entra cannot resolve yet
            # is logged as the sample logs a create with one (status success, the skip step,
            # then the export step), not as skipped: the record was processed, and the
            # follow-up entry, when there is one, is an update of the same change.
            status = "success"
            if unresolved is not None:
                steps.append(entries.manager_skip(unresolved, upn))
            if action == "create":
                steps.append(entries.export_add(upn, external_id, changes))
            else:
                steps.append(entries.export_update(upn, external_id))
        self._append_entry(
            job,
            cycle_id,
            outcome,
            stamp,
            now,
            action=action,
            status=status,
            error=error,
            steps=steps,
            changes=changes,
            external_id=external_id,
            user=user,
        )

    # ---------------------------------------------------------------- reads
    def directory(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.users.values()))

    def uploads(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.upload_records)

    def logs(self, visible_only: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            now = self.wall()
            return [
                copy.deepcopy(r.entry)
                for r in self.log_records
                if not visible_only or r.visible_at <= now
            ]

    def query_logs(
        self, clauses: list[odata.Clause], descending: bool, top: int, after: list[Any] | None
    ) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """Visible entries matching ``clauses``, keyset-paged on (activityDateTime, seq): many
        entries share one second, and seq orders them the same way on every page."""

        def getter(record: LogRecord) -> Any:
            def get(prop: str) -> Any:
                if prop == "activityDateTime":
                    return record.timestamp
                value: Any = record.entry
                for part in prop.split("/"):
                    value = value.get(part) if isinstance(value, dict) else None
                return value

            return get

        # activityDateTime compares as printed, to the second (the record's timestamp), with
        # the literal as given: `ge 10:00:00.5` leaves out an entry of 10:00:00.
        with self.lock:
            now = self.wall()
            if not descending:
                return self._page_ascending(clauses, getter, top, after, now)
            rows = [
                r
                for r in self.log_records
                if r.visible_at <= now and odata.matches(clauses, getter(r))
            ]
            rows.sort(key=lambda r: (r.timestamp, r.seq), reverse=descending)
            if after is not None:
                key = (int(after[0]), int(after[1]))
                rows = [
                    r
                    for r in rows
                    if ((r.timestamp, r.seq) < key if descending else (r.timestamp, r.seq) > key)
                ]
            page = rows[:top]
            next_key = [page[-1].timestamp, page[-1].seq] if len(rows) > top else None
            return [copy.deepcopy(r.entry) for r in page], next_key

    def _page_ascending(
        self,
        clauses: list[odata.Clause],
        getter: Callable[[LogRecord], Callable[[str], Any]],
        top: int,
        after: list[Any] | None,
        now: float,
    ) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """An ascending page found from where it starts (bisect on an index sorted by
        (timestamp, seq)), not by filtering the whole log: a page costs what it holds, so a
        benchmark of 100,000 entries measures the client, not the emulator (lock held)."""
        records = self.log_records
        last = records[-1] if records else None
        if self._index_size != len(records) or self._index_last is not last:
            self._log_index = sorted(records, key=_log_key)
            self._index_size, self._index_last = len(records), last
        index = self._log_index
        start = 0
        for clause in clauses:
            if clause.prop == "activityDateTime" and clause.op in ("gt", "ge", "eq"):
                # Timestamps are whole seconds: the first second the clause can admit.
                value = float(clause.value)
                first = math.floor(value) + 1 if clause.op == "gt" else math.ceil(value)
                start = max(start, bisect.bisect_left(index, (first, -1), key=_log_key))
        if after is not None:
            key = (int(after[0]), int(after[1]))
            start = max(start, bisect.bisect_right(index, key, key=_log_key))
        page: list[LogRecord] = []
        more = False
        for record in itertools.islice(index, start, None):
            if record.visible_at > now or not odata.matches(clauses, getter(record)):
                continue
            if len(page) == top:
                more = True
                break
            page.append(record)
        next_key = [page[-1].timestamp, page[-1].seq] if more else None
        return [copy.deepcopy(r.entry) for r in page], next_key

    def query_users(
        self, clauses: list[odata.Clause], top: int, after: int | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        with self.lock:
            rows = [
                u
                for u in self.users.values()
                if (after is None or self.user_seq[u["id"]] > after)
                and odata.matches(clauses, u.get, fold_case=True)
            ]
            page = rows[:top]
            next_key = self.user_seq[page[-1]["id"]] if len(rows) > top else None
            return copy.deepcopy(page), next_key

    def get_user(self, key: str) -> dict[str, Any] | None:
        """A user by id or userPrincipalName (as Graph's /users/{id | userPrincipalName})."""
        with self.lock:
            user = self.users.get(key)
            if user is None:
                for candidate in self.users.values():
                    upn = candidate.get("userPrincipalName")
                    if isinstance(upn, str) and upn.lower() == key.lower():
                        user = candidate
                        break
            return copy.deepcopy(user) if user else None

    def seed_users(self, users: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put users straight into the directory (no logs, no uploads): drift-test fixtures."""
        created = []
        with self.lock:
            for fields in users:
                employee_id = fields.get("employeeId")
                user = _new_user(self.wall())
                user.update(copy.deepcopy(fields))
                if user["id"] in self.users:
                    raise FaultError("a seeded user's id is already in the directory")
                if employee_id is not None:
                    if employee_id in self.by_employee_id:
                        raise FaultError("a seeded user's employeeId is already in the directory")
                    self.by_employee_id[employee_id] = user["id"]
                self.users[user["id"]] = user
                self.user_seq[user["id"]] = self._next_seq()
                created.append(copy.deepcopy(user))
        return created

    def job_json(self, job: Job) -> dict[str, Any]:
        with self.lock:
            template = job.job_id.split(".", 1)[0] if "." in job.job_id else "API2AAD"
            users = len(self.users)
            return {
                "id": job.job_id,
                "templateId": template,
                "schedule": {
                    "expiration": None,
                    "interval": "PT40M",
                    "state": "Paused" if job.status == "Paused" else "Active",
                },
                "status": {
                    "code": job.status,
                    "countSuccessiveCompleteFailures": 0,
                    "escrowsPruned": False,
                    "lastExecution": copy.deepcopy(job.last_execution),
                    "lastSuccessfulExecution": copy.deepcopy(job.last_success),
                    "lastSuccessfulExecutionWithExports": copy.deepcopy(job.last_success),
                    "progress": [],
                    "quarantine": copy.deepcopy(job.quarantine),
                    "steadyStateFirstAchievedTime": "0001-01-01T00:00:00Z",
                    "steadyStateLastAchievedTime": "0001-01-01T00:00:00Z",
                    "synchronizedEntryCountByType": [{"key": "User to User", "value": users}],
                    "troubleshootingUrl": None,
                },
                "synchronizationJobSettings": [],
            }
