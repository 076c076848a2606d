"""Pacing and retry decisions for bulkUpload: pure logic, clock / sleep / randomness injected.

``RateLimiter`` keeps Entra's documented limit (by default 40 requests per 5 seconds) from the
client side with a sliding window, so a well-behaved run never sees a 429. ``RetryPolicy`` says
which outcomes are worth another attempt and how long to wait before it.

Every wait is bounded by ``max_wait`` (PROVISIONING_MAX_WAIT_SECONDS): a run holds the claim on
its file while it waits, so a Retry-After of a day (Graph's answer once the daily quota is used
up) must not put it to sleep for a day. A wait longer than that raises ``WaitTooLong`` (or, in
the Submitter, ends the batch ``failed``) instead, and the run resumes later.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .pace_book import PENALTY_REASON, Paused

if TYPE_CHECKING:
    from ..settings import Settings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# 0 stands for "no HTTP response": timeout, refused or dropped connection.
TRANSPORT_ERROR = 0
RETRYABLE_STATUSES = frozenset({TRANSPORT_ERROR, 408, 429, 500, 502, 503, 504})
# Longest single wait (seconds) unless configured: the default of PROVISIONING_MAX_WAIT_SECONDS.
DEFAULT_MAX_WAIT = 300.0


class WaitTooLong(Exception):
    """The next send would have to wait longer than allowed; nothing was slept.

    ``seconds`` is the wait that was asked for, ``limit`` the maximum, and ``cause`` what asked
    for it: ``"retry-after"`` (Graph's Retry-After on another status than 429), ``"backoff"``
    (our exponential backoff) or ``"window"`` (the pacing window itself). A 429's Retry-After
    longer than allowed is a pause instead (:class:`Paused`): it holds every sender."""

    def __init__(self, seconds: float, limit: float, cause: str) -> None:
        super().__init__(
            f"{cause}: a wait of {format_seconds(seconds)} s, longer than the "
            f"{format_seconds(limit)} s allowed"
        )
        self.seconds = seconds
        self.limit = limit
        self.cause = cause


def format_seconds(seconds: float) -> str:
    """``86400``, ``4.5``, ``0.25``: whole seconds once they are large, else two decimals."""
    if not math.isfinite(seconds):
        return str(seconds)
    if abs(seconds) >= 100:
        return f"{seconds:.0f}"
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


@dataclass(slots=True, eq=False)
class Permit:
    """One send counted against the window, from ``at`` (its send time, moved to its response
    time by ``RateLimiter.release``) until ``at + window_seconds``."""

    at: float
    released: bool = False


class RateLimiter:
    """At most ``requests`` sends in any ``window_seconds`` (a sliding window over send times),
    shared by every coroutine sending through it, plus a penalty box for ``Retry-After``.

    ``acquire()`` waits for a free slot and returns a ``Permit``; ``release(permit)`` (optional,
    call it when the response has arrived) moves the permit's time to the response time. The
    server counts a request somewhere between its send and its response, so counting the window
    from the response keeps the client strictly behind the server's window even when one request
    took longer to reach the server than another (the first one also fetches a token and opens a
    connection): the sliding window over send times still holds, with a margin of one round trip.
    """

    def __init__(
        self,
        requests: int,
        window_seconds: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests < 1:
            raise ValueError("requests must be at least 1")
        if not window_seconds > 0 or not math.isfinite(window_seconds):
            raise ValueError("window_seconds must be a positive number")
        self.requests = requests
        self.window_seconds = float(window_seconds)
        self._clock = clock
        self._sleep = sleep
        self._permits: list[Permit] = []
        self._blocked_until = -math.inf
        self._paused: tuple[float, str] | None = None
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self.waited_seconds = 0.0  # total time acquire() spent waiting (observability)

    @property
    def blocked_until(self) -> float:
        """Clock time before which nobody sends (after a penalty); -inf when none."""
        return self._blocked_until

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        self._permits = [p for p in self._permits if p.at > horizon]

    def _waits(self, now: float) -> tuple[float, float]:
        """(penalty, window): seconds from ``now`` until the penalty box opens and until the
        window has room; either may be negative (no wait)."""
        self._expire(now)
        penalty = self._blocked_until - now
        window = 0.0
        if len(self._permits) >= self.requests:
            times = sorted(p.at for p in self._permits)
            # the oldest send that must leave the window before one more fits
            window = times[len(times) - self.requests] + self.window_seconds - now
        return penalty, window

    def wait_time(self) -> float:
        """Seconds until a send would be allowed now (0 when it would be)."""
        return max(0.0, *self._waits(self._clock()))

    async def acquire(self, max_wait: float = math.inf, sleep: Sleep | None = None) -> Permit:
        """Wait until a send is allowed, count it, and return its permit.

        Raises ``WaitTooLong`` without sleeping when the send could not go within ``max_wait``
        seconds of this call (time spent queueing behind other senders included), and
        :class:`Paused` when what holds it is a penalty (a long Retry-After) or a pause: neither
        may hold a run for hours. ``sleep`` is the caller's own (one that keeps its lease),
        used instead of the limiter's for this wait."""
        sleep = sleep or self._sleep
        deadline = self._clock() + max_wait
        async with self._lock:
            while True:
                now = self._clock()
                if self._paused is not None and self._paused[0] > now:
                    raise Paused(time.time() + self._paused[0] - now, self._paused[1])
                penalty, window = self._waits(now)
                wait = max(penalty, window)
                if wait <= 0:
                    break
                if now + wait > deadline:
                    if penalty >= window:  # Graph's own Retry-After: a pause, for every sender
                        raise Paused(time.time() + penalty, PENALTY_REASON)
                    raise WaitTooLong(wait, max_wait, "window")
                self.waited_seconds += wait
                await sleep(wait)
            permit = Permit(self._clock())
            self._permits.append(permit)
            return permit

    def release(self, permit: Permit) -> None:
        """The response of ``permit``'s send arrived: count the send from now on."""
        if not permit.released:
            permit.released = True
            permit.at = max(permit.at, self._clock())

    def penalise(self, seconds: float) -> None:
        """The server asked us to wait (429 + Retry-After): nobody sends for ``seconds``."""
        if seconds > 0 and math.isfinite(seconds):
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)

    def pause(self, seconds: float, reason: str) -> None:
        """Graph's bucket is full: ``acquire`` raises :class:`Paused` for ``seconds``."""
        until = self._clock() + seconds
        if self._paused is None or until > self._paused[0]:
            self._paused = (until, reason)

    async def aclose(self) -> None:
        """Nothing to finish: this pace lives in the process only."""


class Pacer(Protocol):
    """What the Submitter needs of a pace: :class:`RateLimiter` (one process) or
    :class:`~provisioning.graph.tenant_pace.TenantPace` (the tenant, in storage)."""

    waited_seconds: float

    async def acquire(self, max_wait: float = math.inf, sleep: Sleep | None = None) -> Permit: ...

    def release(self, permit: Permit) -> None: ...

    def penalise(self, seconds: float) -> None: ...

    def pause(self, seconds: float, reason: str) -> None: ...

    async def aclose(self) -> None: ...


class RetryPolicy:
    """Which statuses are retried, and the delay before the next attempt.

    ``delay(attempt, retry_after)``: after the ``attempt``-th failed attempt (1-based), wait
    ``retry_after`` when the server sent one (honoured in full, not capped: sending earlier only
    earns another 429); otherwise exponential backoff ``base * 2^(attempt-1)`` capped at
    ``max_delay``, with equal jitter (half of it fixed, half uniformly random), so the delay lies
    in ``[d/2, d]`` for the capped backoff ``d``.

    ``max_wait``: the longest wait the Submitter accepts before an attempt, whether a
    Retry-After or the backoff; beyond it (``too_long``) the batch is given up rather than
    slept on. The same bound applies to the rate limiter's wait (``RateLimiter.acquire``).
    """

    def __init__(
        self,
        max_attempts: int,
        base: float,
        max_delay: float,
        rng: random.Random | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base < 0 or max_delay < 0:
            raise ValueError("base and max_delay must not be negative")
        if not max_wait > 0:  # also refuses NaN; math.inf means unbounded
            raise ValueError("max_wait must be a positive number")
        self.max_attempts = max_attempts
        self.base = float(base)
        self.max_delay = float(max_delay)
        self.rng = rng if rng is not None else random.Random()
        self.max_wait = float(max_wait)

    @staticmethod
    def retryable(status: int) -> bool:
        """429, 5xx gateway/server errors, 408 and 0 (transport error / timeout) are transient;
        anything else (400 Invalid Data Format, 401, 403, 404, 405, ...) is permanent."""
        return status in RETRYABLE_STATUSES

    def backoff(self, attempt: int) -> float:
        """The capped exponential backoff before jitter."""
        exponent = max(0, attempt - 1)
        if exponent >= 64:  # 2**64 * base overflows any sane cap
            return self.max_delay
        return min(self.max_delay, self.base * (2.0**exponent))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return float(retry_after)
        capped = self.backoff(attempt)
        half = capped / 2.0
        return half + self.rng.uniform(0.0, half)

    def too_long(self, delay: float) -> bool:
        """True when ``delay`` exceeds ``max_wait``: give up instead of sleeping."""
        return delay > self.max_wait


def retry_policy_for(settings: Settings) -> RetryPolicy:
    """The configured retries (PROVISIONING_MAX_ATTEMPTS, PROVISIONING_RETRY_*,
    PROVISIONING_MAX_WAIT_SECONDS)."""
    return RetryPolicy(
        settings.max_attempts,
        settings.retry_base_seconds,
        settings.retry_max_seconds,
        max_wait=settings.max_wait_seconds,
    )
