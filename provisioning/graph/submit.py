"""Submit one bulk request: paced by the shared RateLimiter, retried by the RetryPolicy, every
attempt recorded, and a single ``BatchOutcome`` at the end.

- accepted: Graph answered 202 (the records are queued; their outcome arrives later in the
  provisioning logs). Only now may the caller update its state.
- rejected: a permanent error (400 Invalid Data Format, 401, 403, 404, ...): not retried, since
  resending the same request cannot succeed; Graph's error code, message and request id kept.
- failed: transient errors (429, 5xx, timeouts, dropped connections, no token) until
  ``max_attempts`` ran out; or, at once, when the next wait (the backoff, a Retry-After on
  another status than 429, or the pacing window) would be longer than the policy's
  ``max_wait`` (``error_code`` "WaitTooLong"): the run is interrupted and resumes later instead
  of holding its claim for hours. Safe to resubmit later: a resent record is matched on its
  externalId again.

- paused: nothing more may be sent for a while, by any sender: Graph answered 500 "bucket
  full" (every sender then pauses PROVISIONING_BUCKET_FULL_PAUSE_MINUTES; Microsoft's
  troubleshooting page for API-driven inbound provisioning advises 5-10 minutes), Graph asked
  with a 429 to wait longer than ``max_wait`` (its answer once the tenant's daily quota is
  used up), a pause or such a Retry-After met by another sender is still on, or the daily call
  quota is used up. ``status`` is "failed" with ``error_code`` in ``PAUSED_CODES`` and
  ``resume_at`` saying when sending may go on; the run ends ``paused`` and resumes by itself,
  and no file attempt is counted.

A timed-out attempt, or one whose connection dropped after the request went out, may still
have been accepted by Graph; resending it is harmless because every operation carries the
complete record (the same record twice is an idempotent update), but it is made visible:
``Attempt.maybe_applied`` marks such an attempt, ``BatchOutcome.maybe_applied_attempts`` counts
them and ``maybe_applied_before_last`` says the batch may have been applied more than once. A
429 or 5xx answer is not counted (Graph answered that it did not take the request), nor is a
refused connection or a failed token request (nothing was sent).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ..clock import iso_at
from .client import HttpResult, TransportError
from .pace_book import Paused, QuotaExhausted
from .pacing import (
    TRANSPORT_ERROR,
    Clock,
    Pacer,
    RetryPolicy,
    Sleep,
    WaitTooLong,
    format_seconds,
)

log = logging.getLogger(__name__)

Status = Literal["accepted", "rejected", "failed"]
# Outcomes that pause every sender rather than fail the batch (see the module's docstring).
PAUSED_CODES = frozenset({"BucketFull", "Paused", "QuotaExhausted", "Throttled"})
# Microsoft documents a 500 whose message says the job's bucket is full; matched on the words,
# not on one exact sentence.
_BUCKET_FULL = re.compile(r"\bbucket\b.*\bfull\b", re.IGNORECASE | re.DOTALL)


def is_bucket_full(result: HttpResult) -> bool:
    return result.status == 500 and bool(_BUCKET_FULL.search(result.error_message or ""))


class BulkPoster(Protocol):
    async def ready(self) -> None: ...

    async def post_bulk(self, body: bytes, client_request_id: str) -> HttpResult: ...


@dataclass(slots=True)
class Attempt:
    started_at: str  # ISO 8601 UTC
    status: int  # HTTP status; 0 when no response came back (timeout, dropped connection)
    request_id: str | None = None
    duration_ms: int = 0
    retry_after: float | None = None
    error: str | None = None  # "<code>: <message>" from Graph, or the transport error's reason
    # No answer, but the request went out (timeout, connection dropped after sending): Graph
    # may have applied it. False for every answer and for what was never sent (no connection,
    # no token).
    maybe_applied: bool = False

    @classmethod
    def unanswered(cls, started: float, t0: float, exc: TransportError) -> Attempt:
        """An attempt that got no HTTP answer (no token, no connection, a dropped one)."""
        return cls(
            started_at=iso_at(started),
            status=TRANSPORT_ERROR,
            duration_ms=round((time.monotonic() - t0) * 1000),
            error=exc.reason,
            maybe_applied=exc.sent,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class BatchOutcome:
    status: Status
    http_status: int  # of the last attempt (0: transport error, or no attempt)
    client_request_id: str
    request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    location: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # How many attempts of this submit may have reached Graph without our getting the answer
    # (``Attempt.maybe_applied``).
    maybe_applied_attempts: int = 0
    # When sending may go on (ISO 8601 UTC), for an outcome with an error_code in PAUSED_CODES.
    resume_at: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def maybe_applied_before_last(self) -> bool:
        """An attempt before the last one may have been applied: for an accepted batch, Graph
        may have applied it twice (harmless, each record is complete, but visible)."""
        return any(a.maybe_applied for a in self.attempts[:-1])

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["maybe_applied_before_last"] = self.maybe_applied_before_last
        return record


def _too_long_message(exc: WaitTooLong) -> str:
    """Why the batch was given up: how long the wait would have been, and the limit."""
    wait, limit = format_seconds(exc.seconds), format_seconds(exc.limit)
    asked = {
        "retry-after": f"Graph asked to wait {wait} s (Retry-After) before the next attempt",
        "backoff": f"the backoff before the next attempt would be {wait} s",
        "window": f"the pacing window would hold the next send for {wait} s",
    }.get(exc.cause, f"the next attempt would wait {wait} s")
    return (
        f"{asked}, longer than the {limit} s allowed (PROVISIONING_MAX_WAIT_SECONDS): "
        "not waiting; resubmit later"
    )


def _request(result: HttpResult) -> str:
    return f", request-id {result.request_id}" if result.request_id else ""


def _describe(result: HttpResult) -> str | None:
    if result.ok:
        return None
    parts = [p for p in (result.error_code, result.error_message) if p]
    return ": ".join(parts) if parts else f"HTTP {result.status}"


class Submitter:
    """Sends bulk requests through ``client.post_bulk``, paced by a ``RateLimiter`` shared by
    every sender of the tenant (``tenant_pace.TenantPace``). ``sleep`` is used for every wait
    (the limiter's and between attempts), so a caller can renew a lease during long backoffs;
    ``clock`` (wall time, seconds) only stamps the attempts."""

    def __init__(
        self,
        client: BulkPoster,
        limiter: Pacer,
        policy: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        bucket_full_pause: float = 600.0,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._bucket_full_pause = bucket_full_pause

    async def submit(self, body: bytes, client_request_id: str) -> BatchOutcome:
        attempts: list[Attempt] = []
        number = 0
        while True:
            number += 1
            try:
                result, attempt = await self._attempt(body, client_request_id)
            except WaitTooLong as exc:  # the limiter would hold this send too long: not sent
                return self._too_long(exc, client_request_id, attempts)
            except Paused as exc:
                return self._paused("Paused", exc.reason, exc.until, client_request_id, attempts)
            except QuotaExhausted as exc:
                why = f"{exc}; the rest waits for the 24-hour window to move"
                return self._paused("QuotaExhausted", why, exc.until, client_request_id, attempts)
            attempts.append(attempt)
            if result is not None and result.ok:
                outcome = BatchOutcome(
                    status="accepted",
                    http_status=result.status,
                    client_request_id=client_request_id,
                    request_id=result.request_id,
                    location=result.location,
                    attempts=attempts,
                    maybe_applied_attempts=_maybe_applied(attempts),
                )
                log.info(
                    "bulkUpload accepted: status=%d request-id=%s client-request-id=%s attempts=%d",
                    result.status,
                    result.request_id,
                    client_request_id,
                    number,
                )
                if outcome.maybe_applied_before_last:
                    log.warning(
                        "bulkUpload accepted after %d unanswered attempt(s) that may have been "
                        "applied too: the batch may have been applied more than once "
                        "client-request-id=%s",
                        outcome.maybe_applied_attempts,
                        client_request_id,
                    )
                return outcome
            status = attempt.status
            if result is not None and is_bucket_full(result):
                until = self._clock() + self._bucket_full_pause
                why = (
                    f"Graph's bucket for the job is full (HTTP 500{_request(result)}): every "
                    f"sender pauses {format_seconds(self._bucket_full_pause / 60)} min"
                )
                self.limiter.pause(self._bucket_full_pause, why)
                return self._paused("BucketFull", why, until, client_request_id, attempts)
            if not self.policy.retryable(status):
                log.error(
                    "bulkUpload rejected: status=%d code=%s request-id=%s client-request-id=%s",
                    status,
                    result.error_code if result else None,
                    attempt.request_id,
                    client_request_id,
                )
                return self._outcome("rejected", result, attempt, client_request_id, attempts)
            if number >= self.policy.max_attempts:
                log.error(
                    "bulkUpload failed after %d attempts: last status=%d client-request-id=%s",
                    number,
                    status,
                    client_request_id,
                )
                return self._outcome("failed", result, attempt, client_request_id, attempts)
            if status == 429 and attempt.retry_after is not None:
                # Penalised even when the wait is too long for us: concurrent submits then give
                # up too (RateLimiter.acquire) rather than earn more 429s.
                self.limiter.penalise(attempt.retry_after)
            delay = self.policy.delay(number, attempt.retry_after)
            if status == 429 and attempt.retry_after is not None and self.policy.too_long(delay):
                until = self._clock() + delay
                why = f"Graph answered 429 with a Retry-After of {format_seconds(delay)} s"
                return self._paused("Throttled", why, until, client_request_id, attempts)
            if self.policy.too_long(delay):
                cause = "retry-after" if attempt.retry_after is not None else "backoff"
                too_long = WaitTooLong(delay, self.policy.max_wait, cause)
                return self._too_long(too_long, client_request_id, attempts)
            log.warning(
                "bulkUpload attempt %d got status=%d (%s); retrying in %.2fs client-request-id=%s",
                number,
                status,
                attempt.error,
                delay,
                client_request_id,
            )
            if delay > 0:
                await self._sleep(delay)

    async def _attempt(
        self, body: bytes, client_request_id: str
    ) -> tuple[HttpResult | None, Attempt]:
        """One paced send. Raises ``WaitTooLong`` when the limiter would hold it too long.
        The token comes first, so that no slot waits on it (and none is taken without one)."""
        started = self._clock()
        t0 = time.monotonic()
        try:
            await self.client.ready()
        except TransportError as exc:
            return None, Attempt.unanswered(started, t0, exc)
        permit = await self.limiter.acquire(self.policy.max_wait, self._sleep)
        started = self._clock()
        t0 = time.monotonic()
        try:
            result = await self.client.post_bulk(body, client_request_id)
        except TransportError as exc:
            return None, Attempt.unanswered(started, t0, exc)
        finally:
            self.limiter.release(permit)
        return result, Attempt(
            started_at=iso_at(started),
            status=result.status,
            request_id=result.request_id,
            duration_ms=round((time.monotonic() - t0) * 1000),
            retry_after=result.retry_after,
            error=_describe(result),
        )

    def _too_long(
        self, exc: WaitTooLong, client_request_id: str, attempts: list[Attempt]
    ) -> BatchOutcome:
        """``failed`` at once, without sleeping: the caller interrupts the run (resumable)."""
        message = _too_long_message(exc)
        log.error(
            "bulkUpload given up after %d attempt(s): %s client-request-id=%s",
            len(attempts),
            message,
            client_request_id,
        )
        return _given_up("WaitTooLong", message, client_request_id, attempts)

    def _paused(
        self,
        code: str,
        reason: str,
        until: float,
        client_request_id: str,
        attempts: list[Attempt],
    ) -> BatchOutcome:
        """``failed`` with a code of ``PAUSED_CODES``: nothing more is sent before ``until``."""
        resume_at = iso_at(until)
        log.warning(
            "bulkUpload paused until %s (%s) client-request-id=%s",
            resume_at,
            code,
            client_request_id,
        )
        message = f"{reason}; sending resumes at {resume_at}"
        return _given_up(code, message, client_request_id, attempts, resume_at=resume_at)

    def _outcome(
        self,
        status: Status,
        result: HttpResult | None,
        attempt: Attempt,
        client_request_id: str,
        attempts: list[Attempt],
    ) -> BatchOutcome:
        if result is None:
            return BatchOutcome(
                status=status,
                http_status=TRANSPORT_ERROR,
                client_request_id=client_request_id,
                error_code="TransportError",
                error_message=attempt.error,
                attempts=attempts,
                maybe_applied_attempts=_maybe_applied(attempts),
            )
        return BatchOutcome(
            status=status,
            http_status=result.status,
            client_request_id=client_request_id,
            request_id=result.request_id,
            error_code=result.error_code,
            error_message=result.error_message or f"HTTP {result.status}",
            location=result.location,
            attempts=attempts,
            maybe_applied_attempts=_maybe_applied(attempts),
        )


def _given_up(
    code: str,
    message: str,
    client_request_id: str,
    attempts: list[Attempt],
    *,
    resume_at: str | None = None,
) -> BatchOutcome:
    """``failed`` without a further attempt, with the last attempt's status and request id."""
    last = attempts[-1] if attempts else None
    return BatchOutcome(
        status="failed",
        http_status=last.status if last else TRANSPORT_ERROR,
        client_request_id=client_request_id,
        request_id=last.request_id if last else None,
        error_code=code,
        error_message=message,
        attempts=attempts,
        maybe_applied_attempts=_maybe_applied(attempts),
        resume_at=resume_at,
    )


def _maybe_applied(attempts: list[Attempt]) -> int:
    return sum(1 for a in attempts if a.maybe_applied)


def client_request_id(content_hash: str, batch: int, part: int = 0) -> str:
    """The same batch of the same file always carries the same client-request-id, so a resend
    after a crash is visible as such in Graph's logs and in ours (``part``: the requests a
    refused batch was narrowed into)."""
    name = f"hr-provisioning:{content_hash}:{batch}" + (f":{part}" if part else "")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))
