"""bulkUpload submission over real HTTP against the Graph emulator: msgraph-sdk's pipeline, the
real ManagedIdentityCredential (token from the emulator's identity endpoint), pacing, retries and
outcomes; plus pure unit tests of RateLimiter and RetryPolicy with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

import pytest

from graph_emulator import BUCKET_FULL_MESSAGE, GraphEmulator
from provisioning.clock import iso_at, parse_iso
from provisioning.convert.bulk import CONTENT_TYPE, serialize
from provisioning.errors import ConfigurationError
from provisioning.graph.client import (
    GraphClient,
    HttpResult,
    JobStatus,
    TransportError,
    make_credential,
    parse_error,
    parse_retry_after,
)
from provisioning.graph.pace_book import PENALTY_REASON, Paused
from provisioning.graph.pacing import (
    DEFAULT_MAX_WAIT,
    RateLimiter,
    RetryPolicy,
    WaitTooLong,
    retry_policy_for,
)
from provisioning.graph.submit import BatchOutcome, Submitter
from provisioning.graph.tenant_pace import TenantPace
from provisioning.settings import Settings
from provisioning.storage import BlobStore
from tests.graphs import emulator_settings, scim_operations

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
# raised by kiota when msgraph's generated request builders are imported
pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)


# ---------------------------------------------------------------- helpers


def body(count: int = 2, prefix: str = "E") -> bytes:
    return serialize(scim_operations(count, prefix))


Scenario = Callable[[GraphClient, Submitter, list[float]], Awaitable[Any]]


def run(
    settings: Settings, scenario: Scenario, sleep: Callable[[float], Awaitable[None]] | None = None
) -> Any:
    """Run ``scenario(client, submitter, sleeps)`` with a GraphClient built from ``settings``;
    ``sleeps`` collects the Submitter's waits between attempts."""

    async def main() -> Any:
        sleeps: list[float] = []

        async def recording_sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await (sleep or asyncio.sleep)(seconds)

        client = GraphClient.from_settings(settings)
        try:
            limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_window_seconds)
            submitter = Submitter(
                client, limiter, retry_policy_for(settings), sleep=recording_sleep
            )
            return await scenario(client, submitter, sleeps)
        finally:
            await client.close()

    return asyncio.run(main())


def submit_one(settings: Settings, payload: bytes, crid: str = "crid-1") -> BatchOutcome:
    async def scenario(_: GraphClient, submitter: Submitter, __: list[float]) -> BatchOutcome:
        return await submitter.submit(payload, crid)

    outcome: BatchOutcome = run(settings, scenario)
    return outcome


def statuses(outcome: BatchOutcome) -> list[int]:
    return [a.status for a in outcome.attempts]


def max_in_window(times: list[float], window: float, tolerance: float = 0.02) -> int:
    """The largest number of ``times`` that fall within any window of ``window`` seconds."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t - start < window - tolerance))
    return best


class RecordingProxy:
    """A loopback TCP relay in front of the emulator that keeps the request bytes it forwarded:
    what the SDK pipeline really put on the wire."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    with self.lock:
                        self.received.extend(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def header_values(self, name: str) -> list[str]:
        with self.lock:
            text = self.received.decode("latin-1")
        prefix = name.lower() + ":"
        return [
            line.split(":", 1)[1].strip()
            for line in text.split("\r\n")
            if line.lower().startswith(prefix)
        ]

    def close(self) -> None:
        self.listener.close()


# ---------------------------------------------------------------- over HTTP


def test_accepted_with_ids_and_exact_scim_content_type(emu: GraphEmulator) -> None:
    proxy = RecordingProxy(emu.url)
    try:
        settings = emulator_settings(emu, graph_url=f"{proxy.url}/v1.0")
        outcome = submit_one(settings, body(3), "crid-accepted")
        content_types = proxy.header_values("Content-Type")
        authorization = proxy.header_values("Authorization")
        request_lines = [
            line
            for line in bytes(proxy.received).decode("latin-1").split("\r\n")
            if line.startswith("POST ")
        ]
    finally:
        proxy.close()

    assert outcome.status == "accepted" and outcome.accepted
    assert outcome.http_status == 202
    assert outcome.client_request_id == "crid-accepted"
    assert outcome.request_id and len(outcome.request_id) == 36
    assert outcome.location and "auditLogs/provisioning" in outcome.location
    assert outcome.error_code is None and outcome.error_message is None
    assert statuses(outcome) == [202]
    assert outcome.attempts[0].request_id == outcome.request_id
    assert outcome.attempts[0].started_at.endswith("Z")
    # exactly what Graph documents, no charset or other parameter
    assert content_types == [CONTENT_TYPE] == ["application/scim+json"]
    assert len(authorization) == 1 and authorization[0].startswith("Bearer emu.")
    assert request_lines == [
        f"POST /v1.0/servicePrincipals/{emu.sp_id}/synchronization/jobs/{emu.job_id}"
        "/bulkUpload HTTP/1.1"
    ]
    uploads = emu.uploads()
    assert [(u["status"], u["client_request_id"], u["operations"]) for u in uploads] == [
        (202, "crid-accepted", 3)
    ]
    assert len(emu.directory()) == 3
    # JSON-serialisable record of the outcome
    record = json.loads(json.dumps(outcome.as_dict()))
    assert record["status"] == "accepted"
    assert record["attempts"][0]["status"] == 202


def test_51_operations_rejected_with_graph_message_not_retried(emu: GraphEmulator) -> None:
    outcome = submit_one(emulator_settings(emu), body(51), "crid-51")
    assert outcome.status == "rejected"
    assert outcome.http_status == 400
    assert outcome.error_code == "BadRequest"
    assert outcome.error_message and outcome.error_message.startswith("Invalid Data Format")
    assert "50" in outcome.error_message
    assert outcome.request_id
    assert statuses(outcome) == [400]
    assert [u["status"] for u in emu.uploads()] == [400]
    assert emu.directory() == []


@pytest.mark.parametrize("status", [400, 401, 403])
def test_permanent_fault_statuses_are_not_retried(emu: GraphEmulator, status: int) -> None:
    emu.set_faults(status_sequence=[status])
    outcome = submit_one(emulator_settings(emu), body(), f"crid-{status}")
    assert outcome.status == "rejected"
    assert outcome.http_status == status
    assert outcome.error_code and outcome.error_message
    assert outcome.request_id
    assert statuses(outcome) == [status]
    assert [u["status"] for u in emu.uploads()] == [status]


def test_unknown_job_is_rejected_with_404(emu: GraphEmulator) -> None:
    outcome = submit_one(emulator_settings(emu, job_id="API2AAD.0.unknown"), body())
    assert (outcome.status, outcome.http_status, outcome.error_code) == (
        "rejected",
        404,
        "ResourceNotFound",
    )
    assert len(emu.uploads()) == 1


def test_429_storm_paced_and_all_accepted(emu: GraphEmulator) -> None:
    """The emulator allows 3 per second; our limiter (misconfigured at 10 per second) lets bursts
    through, gets 429 + Retry-After, and the shared penalty box then holds every sender."""
    emu.set_faults(rate_limit=(3, 1.0))
    settings = emulator_settings(
        emu, rate_limit_requests=10, rate_limit_window_seconds=1.0, max_attempts=20
    )

    async def scenario(_: GraphClient, submitter: Submitter, __: list[float]) -> Any:
        return await asyncio.gather(
            *(submitter.submit(body(1, f"S{i}-"), f"crid-storm-{i}") for i in range(20))
        )

    outcomes: list[BatchOutcome] = run(settings, scenario)
    assert all(o.status == "accepted" for o in outcomes)
    uploads = emu.uploads()
    accepted = [u for u in uploads if u["status"] == 202]
    assert len(accepted) == 20
    assert any(u["status"] == 429 for u in uploads), "expected a 429 storm"
    assert max_in_window([u["time"] for u in accepted], 1.0) <= 3
    # every attempt we recorded reached the server once: no hidden SDK retries
    for o in outcomes:
        sent = [u for u in uploads if u["client_request_id"] == o.client_request_id]
        assert [u["status"] for u in sent] == statuses(o)
        assert all(a.retry_after and a.retry_after >= 1 for a in o.attempts if a.status == 429)
    assert len(emu.directory()) == 20


def test_pacing_at_the_limit_gets_no_429(emu: GraphEmulator) -> None:
    """Limiter and service agree (5 per 0.5 s): 15 requests, no 429, sliding window respected."""
    emu.set_faults(rate_limit=(5, 0.5))
    settings = emulator_settings(emu, rate_limit_requests=5, rate_limit_window_seconds=0.5)

    async def scenario(_: GraphClient, submitter: Submitter, __: list[float]) -> Any:
        return [await submitter.submit(body(1, f"P{i}-"), f"crid-pace-{i}") for i in range(15)]

    started = time.monotonic()
    outcomes: list[BatchOutcome] = run(settings, scenario)
    elapsed = time.monotonic() - started
    assert [statuses(o) for o in outcomes] == [[202]] * 15
    uploads = emu.uploads()
    assert [u["status"] for u in uploads] == [202] * 15
    assert max_in_window([u["time"] for u in uploads], 0.5) <= 5
    assert elapsed >= 1.0  # three windows: 0, 0.5, 1.0


def test_a_slow_token_comes_before_the_slot_so_no_send_is_late(
    emu: GraphEmulator, store: BlobStore
) -> None:
    """Two processes' senders, each with its own cold credential, share the tenant's pace at
    Graph's limit (5 per 1 s) while the managed-identity endpoint takes 0.6 s per token. Had
    the token been asked for after the slot, the first sends would reach Graph 0.6 s after
    their slots, in the window of the slots counted from them: 429s. The token comes first,
    so no send is late and the emulator answers none."""
    emu.set_faults(rate_limit=(5, 1.0), token_latency_ms=600)
    settings = emulator_settings(emu, rate_limit_requests=5, rate_limit_window_seconds=1.0)

    async def sender(name: str) -> list[BatchOutcome]:
        async with GraphClient.from_settings(settings) as client:
            submitter = Submitter(client, TenantPace(store, settings), retry_policy_for(settings))
            return [
                await submitter.submit(body(1, f"{name}{i}-"), f"crid-{name}-{i}") for i in range(6)
            ]

    async def main() -> list[list[BatchOutcome]]:
        return await asyncio.gather(sender("A"), sender("B"))

    outcomes = [o for each in asyncio.run(main()) for o in each]
    assert [statuses(o) for o in outcomes] == [[202]] * 12
    uploads = emu.uploads()
    assert [u["status"] for u in uploads] == [202] * 12
    assert max_in_window([u["time"] for u in uploads], 1.0) <= 5


def test_503_503_then_accepted_with_backoff(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[503, 503])
    settings = emulator_settings(emu, retry_base_seconds=0.01, retry_max_seconds=1.0)

    async def scenario(_: GraphClient, submitter: Submitter, sleeps: list[float]) -> Any:
        return await submitter.submit(body(), "crid-503"), sleeps

    outcome, sleeps = run(settings, scenario)
    assert outcome.status == "accepted"
    assert statuses(outcome) == [503, 503, 202]
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # equal jitter
    assert [u["status"] for u in emu.uploads()] == [503, 503, 202]


def test_bucket_full_pauses_every_sender_instead_of_retrying(emu: GraphEmulator) -> None:
    """Microsoft's 500 "bucket full": not retried within the backoff's minutes; the pacer is
    paused for PROVISIONING_BUCKET_FULL_PAUSE_MINUTES, so the next submit does not even try."""
    emu.bucket_full_for(60)
    settings = emulator_settings(emu)

    async def scenario(_: GraphClient, submitter: Submitter, sleeps: list[float]) -> Any:
        first = await submitter.submit(body(), "crid-full")
        second = await submitter.submit(body(), "crid-next")
        return first, second, sleeps

    started = time.time()
    first, second, sleeps = run(settings, scenario)
    assert (first.status, first.error_code, first.http_status) == ("failed", "BucketFull", 500)
    assert len(first.attempts) == 1 and sleeps == []
    assert first.attempts[0].error and BUCKET_FULL_MESSAGE[:20] in first.attempts[0].error
    assert first.resume_at is not None and first.error_message is not None
    resume = parse_iso(first.resume_at).timestamp()
    assert started + 600 - 5 < resume < time.time() + 600 + 5  # the Submitter's default
    assert "bucket" in first.error_message and first.resume_at in first.error_message
    assert (second.status, second.error_code, second.attempts) == ("failed", "Paused", [])
    assert [u["status"] for u in emu.uploads()] == [500]  # the second one never went out


def test_dropped_connection_is_retried(emu: GraphEmulator) -> None:
    emu.set_faults(drop_connections=1)
    outcome = submit_one(emulator_settings(emu), body(), "crid-drop")
    assert outcome.status == "accepted"
    assert statuses(outcome) == [0, 202]
    assert outcome.attempts[0].error and outcome.attempts[0].request_id is None
    assert [u["status"] for u in emu.uploads()] == [0, 202]


def test_timeout_is_a_transport_error_then_success(emu: GraphEmulator) -> None:
    emu.set_faults(latency_ms=600)
    settings = emulator_settings(emu, request_timeout_seconds=0.2)

    async def heal_then_sleep(seconds: float) -> None:
        emu.set_faults(latency_ms=0)  # the service recovers while we back off
        await asyncio.sleep(seconds)

    async def scenario(client: GraphClient, submitter: Submitter, __: list[float]) -> Any:
        emu.set_faults(latency_ms=600)
        with pytest.raises(TransportError) as raised:
            await client.post_bulk(body(1, "T"), "crid-raw-timeout")
        assert raised.value.reason.startswith("timeout")
        return await submitter.submit(body(), "crid-timeout")

    outcome = run(settings, scenario, sleep=heal_then_sleep)
    assert outcome.status == "accepted"
    assert statuses(outcome) == [0, 202]
    assert outcome.attempts[0].error and outcome.attempts[0].error.startswith("timeout")
    assert 150 <= outcome.attempts[0].duration_ms < 600
    # the timed-out requests still reached the service, which applied them after its latency:
    # a timeout says nothing about the outcome, hence complete records on every resend
    deadline = time.monotonic() + 3
    while len(emu.uploads()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(u["client_request_id"] for u in emu.uploads()) == [
        "crid-raw-timeout",
        "crid-timeout",
        "crid-timeout",
    ]


def test_max_attempts_exhausted_is_failed(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[503, 503, 503], retry_after=False)
    outcome = submit_one(emulator_settings(emu, max_attempts=3), body(), "crid-503")
    assert outcome.status == "failed"
    assert outcome.http_status == 503
    assert outcome.error_code and outcome.error_message
    assert statuses(outcome) == [503, 503, 503]
    # the SDK's RetryHandler (which retries POST on 503 by default) stayed out of the way
    assert [u["status"] for u in emu.uploads()] == [503, 503, 503]
    assert emu.directory() == []
    assert json.loads(json.dumps(outcome.as_dict()))["status"] == "failed"


def test_transport_errors_until_exhausted_is_failed(emu: GraphEmulator) -> None:
    emu.set_faults(drop_connections=2)
    outcome = submit_one(emulator_settings(emu, max_attempts=2), body(), "crid-drops")
    assert (outcome.status, outcome.http_status, outcome.error_code) == (
        "failed",
        0,
        "TransportError",
    )
    assert statuses(outcome) == [0, 0]


def test_job_status_active_paused_quarantine(emu: GraphEmulator) -> None:
    async def scenario(client: GraphClient, _: Submitter, __: list[float]) -> Any:
        seen = [await client.job_status()]
        emu.set_faults(job_status="Paused")
        seen.append(await client.job_status())
        emu.set_faults(job_status="Quarantine", quarantine_reason="TooManyDeletes")
        seen.append(await client.job_status())
        return seen

    seen = run(emulator_settings(emu), scenario)
    assert seen == [
        JobStatus("Active"),
        JobStatus("Paused"),
        JobStatus("Quarantine", "TooManyDeletes"),
    ]
    assert seen[0].sends and not seen[1].sends and not seen[2].sends


def test_credential_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    async def check() -> None:
        monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "x")
        cases: list[tuple[Literal["auto", "managedidentity", "default"], type]] = [
            ("auto", ManagedIdentityCredential),
            ("managedidentity", ManagedIdentityCredential),
            ("default", DefaultAzureCredential),
        ]
        for choice, expected in cases:
            credential = make_credential(Settings(credential=choice))
            assert isinstance(credential, expected)
            await credential.close()
        monkeypatch.delenv("IDENTITY_ENDPOINT")
        credential = make_credential(Settings(credential="auto"))
        assert isinstance(credential, DefaultAzureCredential)
        await credential.close()

    asyncio.run(check())


# ---------------------------------------------------------------- parsing


def test_parse_retry_after_delta_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0


def test_parse_error_graph_json_and_raw_text() -> None:
    graph = b'{"error": {"code": "BadRequest", "message": "Invalid Data Format: x"}}'
    assert parse_error(graph) == ("BadRequest", "Invalid Data Format: x")
    assert parse_error(b"<html>bad gateway</html>") == (None, "<html>bad gateway</html>")
    long_text = parse_error(b"x" * 2000)[1]
    assert long_text is not None and len(long_text) == 500
    assert parse_error(b"") == (None, None)
    assert HttpResult(202).ok and not HttpResult(429).ok


# ---------------------------------------------------------------- RateLimiter (fake clock)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def assert_window(times: list[float], n: int, window: float) -> None:
    ordered = sorted(times)
    for i in range(len(ordered) - n):
        assert ordered[i + n] - ordered[i] >= window - 1e-9, (i, ordered[i : i + n + 1])


def test_rate_limiter_never_more_than_n_in_any_window_sequential() -> None:
    fake = FakeTime()
    rng = random.Random(7)
    limiter = RateLimiter(4, 5.0, clock=fake.clock, sleep=fake.sleep)
    sends: list[float] = []

    async def main() -> None:
        for _ in range(60):
            fake.now += rng.choice([0.0, 0.0, 0.1, 0.7, 2.0])  # irregular arrivals
            await limiter.acquire()
            sends.append(fake.now)

    asyncio.run(main())
    assert_window(sends, 4, 5.0)
    assert len(sends) == 60


def test_rate_limiter_concurrent_senders_share_the_window() -> None:
    fake = FakeTime()
    limiter = RateLimiter(3, 1.0, clock=fake.clock, sleep=fake.sleep)
    sends: list[float] = []

    async def sender() -> None:
        for _ in range(5):
            await limiter.acquire()
            sends.append(fake.now)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(sender() for _ in range(4)))

    asyncio.run(main())
    assert len(sends) == 20
    assert_window(sends, 3, 1.0)
    # and not slower than needed: 20 sends at 3 per second take (ceil(20/3)-1) seconds
    assert sends[-1] - sends[0] == pytest.approx(6.0)


def test_rate_limiter_release_counts_from_the_response() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, 1.0, clock=fake.clock, sleep=fake.sleep)

    async def main() -> list[float]:
        permit = await limiter.acquire()
        start = fake.now
        fake.now += 0.3  # round trip
        limiter.release(permit)
        await limiter.acquire()
        return [start, fake.now]

    first, second = asyncio.run(main())
    assert second - first == pytest.approx(1.3)


def test_rate_limiter_penalise_blocks_everyone() -> None:
    fake = FakeTime()
    limiter = RateLimiter(100, 1.0, clock=fake.clock, sleep=fake.sleep)

    async def main() -> list[float]:
        await limiter.acquire()
        limiter.penalise(2.5)
        limiter.penalise(1.0)  # a shorter penalty does not shorten the longer one
        times = []
        for _ in range(3):
            await limiter.acquire()
            times.append(fake.now)
        return times

    start = fake.now
    times = asyncio.run(main())
    assert times[0] == pytest.approx(start + 2.5)
    assert times == [times[0]] * 3  # after the penalty the window allows a burst again
    assert limiter.wait_time() == 0.0


def test_rate_limiter_validates() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1.0)
    with pytest.raises(ValueError):
        RateLimiter(1, 0.0)


# ---------------------------------------------------------------- RetryPolicy


def test_retry_policy_retryable_statuses() -> None:
    for status in (0, 429, 500, 502, 503, 504):
        assert RetryPolicy.retryable(status)
    for status in (200, 202, 400, 401, 403, 404, 405, 409, 413):
        assert not RetryPolicy.retryable(status)


def test_retry_policy_exponential_equal_jitter_bounds() -> None:
    policy = RetryPolicy(8, base=2.0, max_delay=300.0, rng=random.Random(1))
    for attempt in range(1, 12):
        cap = min(300.0, 2.0 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), attempt
        assert max(delays) - min(delays) > cap / 4  # really jittered, across the range
    assert policy.delay(1000, None) <= 300.0
    assert RetryPolicy(3, 0.0, 10.0).delay(3, None) == 0.0


def test_retry_policy_honours_retry_after_in_full() -> None:
    policy = RetryPolicy(8, base=2.0, max_delay=10.0, rng=random.Random(1))
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(1, 600.0) == 600.0  # above max_delay: sending earlier only earns a 429


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(0, 1.0, 1.0)
    with pytest.raises(ValueError):
        RetryPolicy(1, -1.0, 1.0)


# ---------------------------------------------------------------- Submitter with a fake client


class ScriptedClient:
    """A stand-in for GraphClient for the pure Submitter logic (no HTTP): answers in turn."""

    def __init__(self, answers: list[HttpResult | TransportError]) -> None:
        self.answers = answers
        self.calls = 0

    async def ready(self) -> None:
        """The token is at hand (the credential is not what these tests are about)."""

    async def post_bulk(self, body: bytes, client_request_id: str) -> HttpResult:
        answer = self.answers[self.calls]
        self.calls += 1
        if isinstance(answer, TransportError):
            raise answer
        return answer


def test_submitter_429_penalises_the_shared_limiter_and_waits_retry_after() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    policy = RetryPolicy(5, 0.5, 10.0, rng=random.Random(3))
    client = ScriptedClient(
        [HttpResult(429, "r1", "c", retry_after=4.0, error_code="TooManyRequests"), HttpResult(202)]
    )
    submitter = Submitter(client, limiter, policy, sleep=fake.sleep, clock=fake.clock)

    async def main() -> BatchOutcome:
        started = fake.now
        outcome = await submitter.submit(b"{}", "c")
        assert fake.now - started == pytest.approx(4.0)
        assert limiter.blocked_until == pytest.approx(started + 4.0)
        return outcome

    outcome = asyncio.run(main())
    assert outcome.status == "accepted"
    assert [a.retry_after for a in outcome.attempts] == [4.0, None]
    assert outcome.attempts[0].error == "TooManyRequests"
    assert fake.sleeps == [4.0]  # the limiter did not add a second wait


def test_submitter_gives_up_on_a_retry_after_longer_than_max_wait() -> None:
    """A day-long Retry-After (the daily quota used up) is not slept on: a pause at once, and
    the next submit through the same limiter is not even sent (the penalty box)."""
    fake = FakeTime()
    limiter = RateLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    policy = RetryPolicy(8, 0.5, 10.0, rng=random.Random(3), max_wait=300.0)
    client = ScriptedClient(
        [HttpResult(429, "r1", "c", retry_after=86400.0, error_code="TooManyRequests")]
    )
    submitter = Submitter(client, limiter, policy, sleep=fake.sleep, clock=fake.clock)

    async def main() -> tuple[BatchOutcome, BatchOutcome]:
        return await submitter.submit(b"{}", "c"), await submitter.submit(b"{}", "d")

    started = fake.now
    outcome, held = asyncio.run(main())
    assert fake.sleeps == [] and fake.now == started
    assert (outcome.status, outcome.error_code, outcome.http_status, outcome.request_id) == (
        "failed",
        "Throttled",
        429,
        "r1",
    )
    assert outcome.resume_at == iso_at(started + 86400.0)
    assert outcome.error_message == (
        f"Graph answered 429 with a Retry-After of 86400 s; sending resumes at {outcome.resume_at}"
    )
    assert [a.status for a in outcome.attempts] == [429]
    assert limiter.blocked_until == pytest.approx(started + 86400.0)
    assert (held.status, held.error_code, held.attempts, held.http_status) == (
        "failed",
        "Paused",
        [],
        0,
    )
    assert held.error_message and held.error_message.startswith(
        "Graph asked every sender to wait (429 with Retry-After); sending resumes at"
    )
    assert client.calls == 1


def test_submitter_waits_a_retry_after_equal_to_max_wait() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    policy = RetryPolicy(8, 0.5, 10.0, max_wait=30.0)
    client = ScriptedClient([HttpResult(503, retry_after=30.0), HttpResult(202)])
    submitter = Submitter(client, limiter, policy, sleep=fake.sleep, clock=fake.clock)
    outcome = asyncio.run(submitter.submit(b"{}", "c"))
    assert outcome.status == "accepted"
    assert fake.sleeps == [30.0]


def test_submitter_gives_up_when_the_backoff_exceeds_max_wait() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    # backoffs 10, 20, 40 (equal jitter: 5-10, 10-20, 20-40) against a limit of 12
    policy = RetryPolicy(8, 10.0, 100.0, rng=random.Random(5), max_wait=12.0)
    client = ScriptedClient([HttpResult(500)] * 8)
    submitter = Submitter(client, limiter, policy, sleep=fake.sleep, clock=fake.clock)
    outcome = asyncio.run(submitter.submit(b"{}", "c"))
    assert (outcome.status, outcome.error_code) == ("failed", "WaitTooLong")
    assert all(delay <= 12.0 for delay in fake.sleeps)
    assert len(outcome.attempts) == len(fake.sleeps) + 1 < 8
    assert outcome.error_message and outcome.error_message.startswith(
        "the backoff before the next attempt would be "
    )


def test_rate_limiter_acquire_bounded_by_max_wait() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, 600.0, clock=fake.clock, sleep=fake.sleep)

    async def main() -> None:
        await limiter.acquire(max_wait=300.0)
        # the window itself: the next slot is 600 s away
        with pytest.raises(WaitTooLong) as window:
            await limiter.acquire(max_wait=300.0)
        assert (window.value.cause, window.value.seconds, window.value.limit) == (
            "window",
            600.0,
            300.0,
        )
        limiter.penalise(86400.0)
        before = time.time()
        with pytest.raises(Paused) as penalty:  # Graph's own wait: a pause, not a failure
            await limiter.acquire(max_wait=300.0)
        assert penalty.value.reason == PENALTY_REASON
        assert before + 86400.0 - 1 < penalty.value.until < time.time() + 86400.0 + 1
        assert fake.sleeps == []
        # without a bound (the default) it waits, as before
        await limiter.acquire()
        assert fake.sleeps == [pytest.approx(86400.0)]

    asyncio.run(main())


def test_rate_limiter_max_wait_counts_the_time_queued_behind_others() -> None:
    """Two senders queue for one slot a window of 200 s apart: the second has waited 200 s for
    the lock when its own wait of 200 s begins, 400 s in all, over a limit of 300."""
    fake = FakeTime()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)  # let the other sender start (and queue) before time moves on
        await fake.sleep(seconds)

    limiter = RateLimiter(1, 200.0, clock=fake.clock, sleep=sleep)

    async def main() -> list[Any]:
        await limiter.acquire()
        results = await asyncio.gather(
            limiter.acquire(max_wait=300.0), limiter.acquire(max_wait=300.0), return_exceptions=True
        )
        return list(results)

    first, second = asyncio.run(main())
    assert not isinstance(first, BaseException)
    assert isinstance(second, WaitTooLong)
    assert fake.sleeps == [pytest.approx(200.0)]


def test_max_wait_setting_reaches_the_retry_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_wait_seconds == 300 == DEFAULT_MAX_WAIT
    assert retry_policy_for(Settings()).max_wait == 300.0
    monkeypatch.setenv("PROVISIONING_MAX_WAIT_SECONDS", "42")
    assert retry_policy_for(Settings()).max_wait == 42.0
    monkeypatch.setenv("PROVISIONING_MAX_WAIT_SECONDS", "0.5")
    with pytest.raises(ValueError):
        Settings()
    with pytest.raises(ValueError):
        RetryPolicy(3, 1.0, 1.0, max_wait=0)
    assert RetryPolicy(3, 1.0, 1.0, max_wait=math.inf).too_long(1e12) is False


def test_maybe_applied_counts_unanswered_attempts_that_were_sent() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    policy = RetryPolicy(8, 0.0, 0.0)
    client = ScriptedClient(
        [
            TransportError("ConnectError: refused", sent=False),  # never reached Graph
            HttpResult(503),  # answered: not taken
            TransportError("timeout (ReadTimeout)"),  # sent, no answer
            HttpResult(202),
        ]
    )
    submitter = Submitter(client, limiter, policy, sleep=fake.sleep, clock=fake.clock)
    outcome = asyncio.run(submitter.submit(b"{}", "c"))
    assert outcome.status == "accepted"
    assert [a.maybe_applied for a in outcome.attempts] == [False, False, True, False]
    assert outcome.maybe_applied_attempts == 1 and outcome.maybe_applied_before_last
    record = outcome.as_dict()
    assert record["maybe_applied_attempts"] == 1 and record["maybe_applied_before_last"] is True

    unsent = ScriptedClient([TransportError("no token", sent=False), HttpResult(202)])
    outcome = asyncio.run(
        Submitter(unsent, limiter, policy, sleep=fake.sleep, clock=fake.clock).submit(b"{}", "d")
    )
    assert outcome.maybe_applied_attempts == 0 and not outcome.maybe_applied_before_last


def test_a_client_without_its_job_is_a_configuration_error(emu: GraphEmulator) -> None:
    async def build() -> None:
        GraphClient.from_settings(emulator_settings(emu, job_id=""))

    with pytest.raises(ConfigurationError, match="PROVISIONING_SERVICE_PRINCIPAL_ID and "):
        asyncio.run(build())
