"""Transient failures around bulkUpload and the job status, over real HTTP against the Graph
emulator with the real azure-identity ManagedIdentityCredential (its token from the emulator's
managed-identity endpoint):

- a token endpoint that is down, refuses or drops the connection is retried like a dropped
  connection and ends ``failed`` (the run ``interrupted``), never an exception escaping;
- ``GraphClient.job_status`` raises ``GraphUnavailable`` for any of these and for a Graph port
  that is closed or drops the connection;
- a wait longer than ``max_wait_seconds`` (a day-long Retry-After) is not slept: ``failed`` with
  ``WaitTooLong`` at once;
- an attempt that may have reached Graph without an answer is counted
  (``maybe_applied_attempts`` / ``maybe_applied_before_last``), a 429 or 5xx answer is not.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError

from graph_emulator import GraphEmulator
from provisioning.graph.client import GraphClient, GraphUnavailable, JobStatus, TransportError
from provisioning.graph.outcomes import stop_reason
from provisioning.graph.pacing import RateLimiter, retry_policy_for
from provisioning.graph.submit import BatchOutcome, Submitter
from provisioning.settings import Settings
from tests.graphs import emulator_settings
from tests.test_submit import body

# raised by kiota when msgraph's generated request builders are imported
pytestmark = pytest.mark.filterwarnings(
    "ignore:GetQueryParameters is deprecated:DeprecationWarning"
)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settings_for(emu: GraphEmulator, **changes: Any) -> Settings:
    """test_submit's settings, with the managed identity always (never a developer sign-in)."""
    return emulator_settings(emu, **{"credential": "managedidentity", "max_attempts": 3, **changes})


def fresh_credential() -> AsyncTokenCredential:
    """The real ManagedIdentityCredential, new (so its token cache is empty and the first
    request of the client asks the endpoint), without azure-core's own retries of the token
    request: each Submitter attempt then makes exactly one token request, so a fault of N
    token failures spans N attempts (the default retries are exercised separately)."""
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(retry_total=0)


Scenario = Callable[[GraphClient, Submitter], Awaitable[Any]]


class Waits:
    """The waits requested from the Submitter's sleep: Retry-After and backoff, and the rate
    limiter's window and penalty box (the limiter sleeps through its caller's sleep)."""

    def __init__(self) -> None:
        self.submitter: list[float] = []

    def sleep_for(self, into: list[float]) -> Callable[[float], Awaitable[None]]:
        async def sleep(seconds: float) -> None:
            into.append(seconds)
            await asyncio.sleep(seconds)

        return sleep


def run(
    settings: Settings,
    scenario: Scenario,
    credential: Callable[[], AsyncTokenCredential] | None = fresh_credential,
) -> tuple[Any, Waits]:
    """``scenario(client, submitter)`` with a GraphClient built from ``settings`` (with a fresh
    credential, or when ``credential`` is None the one ``make_credential`` picks) and a
    Submitter wired with the configured pace and retries (``retry_policy_for``)."""
    waits = Waits()

    async def main() -> Any:
        client = GraphClient.from_settings(settings, credential() if credential else None)
        try:
            submitter = Submitter(
                client,
                RateLimiter(settings.rate_limit_requests, settings.rate_limit_window_seconds),
                retry_policy_for(settings),
                sleep=waits.sleep_for(waits.submitter),
            )
            return await scenario(client, submitter)
        finally:
            await client.close()

    return asyncio.run(main()), waits


def submit_one(
    settings: Settings, payload: bytes, crid: str = "crid-1", **kw: Any
) -> tuple[BatchOutcome, Waits]:
    async def scenario(_: GraphClient, submitter: Submitter) -> BatchOutcome:
        return await submitter.submit(payload, crid)

    outcome, waits = run(settings, scenario, **kw)
    assert isinstance(outcome, BatchOutcome)
    return outcome, waits


def statuses(outcome: BatchOutcome) -> list[int]:
    return [a.status for a in outcome.attempts]


def assert_no_secret(text: str | None, emu: GraphEmulator) -> None:
    assert text is not None
    assert emu.identity_header not in text
    assert "emu." not in text  # the emulator's tokens
    for token in emu.state.tokens:
        assert token not in text


# ---------------------------------------------------------------- token endpoint, bulkUpload


@pytest.mark.parametrize("token_status", [500, 503, 0])
def test_token_endpoint_down_is_retried_then_failed(emu: GraphEmulator, token_status: int) -> None:
    emu.set_faults(token_failures=100, token_status=token_status)
    outcome, waits = submit_one(settings_for(emu, max_attempts=3), body(), "crid-token-down")

    assert (outcome.status, outcome.http_status, outcome.error_code) == (
        "failed",
        0,
        "TransportError",
    )
    assert statuses(outcome) == [0, 0, 0]
    assert len(waits.submitter) == 2  # retried with backoff like a dropped connection
    asked = 100 - emu.faults()["token_failures"]
    # one token request per attempt; aiohttp resends a GET once when the connection drops
    assert asked == (3 if token_status else 6)
    assert outcome.error_message and outcome.error_message.startswith("token request failed")
    expected = "HTTP 500" if token_status == 500 else "HTTP 503" if token_status else "Server"
    assert expected in outcome.error_message
    assert_no_secret(outcome.error_message, emu)
    assert all(a.error == outcome.error_message for a in outcome.attempts)
    # nothing reached Graph: no token, no request
    assert emu.uploads() == []
    assert outcome.maybe_applied_attempts == 0 and not outcome.maybe_applied_before_last
    # and the run is interrupted (resumable), as for any batch that kept failing
    stop = stop_reason(outcome)
    assert stop is not None and stop[0] == "interrupted"


def test_token_endpoint_refusing_connections_is_retried_then_failed(
    emu: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{closed_port()}/msi/token")
    outcome, _ = submit_one(settings_for(emu, max_attempts=2), body(), "crid-token-refused")
    assert (outcome.status, outcome.error_code, statuses(outcome)) == (
        "failed",
        "TransportError",
        [0, 0],
    )
    assert outcome.error_message and outcome.error_message.startswith(
        "token request failed: ServiceRequestError"
    )
    assert emu.uploads() == []


def test_token_endpoint_back_within_the_attempts_is_accepted(emu: GraphEmulator) -> None:
    emu.set_faults(token_failures=2, token_status=500)
    outcome, waits = submit_one(settings_for(emu, max_attempts=4), body(), "crid-token-back")
    assert outcome.status == "accepted"
    assert statuses(outcome) == [0, 0, 202]
    assert len(waits.submitter) == 2
    assert emu.faults()["token_failures"] == 0
    assert [(u["status"], u["client_request_id"]) for u in emu.uploads()] == [
        (202, "crid-token-back")
    ]
    assert len(emu.directory()) == 2
    # a token failure sent nothing: no double application to report
    assert outcome.maybe_applied_attempts == 0 and not outcome.maybe_applied_before_last


def test_token_endpoint_down_with_the_default_credential_retries(emu: GraphEmulator) -> None:
    """The credential ``make_credential`` builds, with azure-core's own retries of the token
    request (about 5 s of backoff): still a ``failed`` outcome, no exception."""
    emu.set_faults(token_failures=100, token_status=503)
    started = time.monotonic()
    outcome, _ = submit_one(
        settings_for(emu, max_attempts=1), body(), "crid-default-cred", credential=None
    )
    assert time.monotonic() - started < 30
    assert (outcome.status, outcome.error_code, statuses(outcome)) == (
        "failed",
        "TransportError",
        [0],
    )
    assert emu.faults()["token_failures"] < 99  # azure-core asked more than once
    assert emu.uploads() == []


def test_post_bulk_raises_transport_error_not_an_azure_exception(emu: GraphEmulator) -> None:
    emu.set_faults(token_failures=1, token_status=500)

    async def scenario(client: GraphClient, _: Submitter) -> TransportError:
        with pytest.raises(TransportError) as raised:
            await client.post_bulk(body(1), "crid-raw")
        return raised.value

    error, _ = run(settings_for(emu), scenario)
    assert error.sent is False
    assert error.reason == "token request failed: ClientAuthenticationError, HTTP 500"
    from azure.core.exceptions import ClientAuthenticationError

    assert isinstance(error.__cause__, ClientAuthenticationError)


# ---------------------------------------------------------------- job status


@pytest.mark.parametrize("token_status", [500, 0])
def test_job_status_with_the_token_endpoint_down_is_graph_unavailable(
    emu: GraphEmulator, token_status: int
) -> None:
    emu.set_faults(token_failures=10, token_status=token_status)

    async def scenario(client: GraphClient, _: Submitter) -> tuple[GraphUnavailable, JobStatus]:
        with pytest.raises(GraphUnavailable) as raised:
            await client.job_status()
        emu.set_faults(token_failures=0)  # the endpoint is back
        return raised.value, await client.job_status()

    error, after = run(settings_for(emu), scenario)[0]
    assert error.reason.startswith("token request failed")
    assert error.status is None
    assert_no_secret(error.reason, emu)
    assert after == JobStatus("Active")


def test_job_status_with_the_graph_port_closed_is_graph_unavailable(emu: GraphEmulator) -> None:
    settings = settings_for(emu, graph_url=f"http://127.0.0.1:{closed_port()}/v1.0")

    async def scenario(client: GraphClient, _: Submitter) -> GraphUnavailable:
        with pytest.raises(GraphUnavailable) as raised:
            await client.job_status()
        return raised.value

    error, _ = run(settings, scenario)
    assert error.reason.startswith("ConnectError")
    assert error.status is None


def test_job_status_with_dropped_connections_and_5xx_is_graph_unavailable(
    emu: GraphEmulator,
) -> None:
    async def scenario(client: GraphClient, _: Submitter) -> list[Any]:
        seen: list[Any] = []
        for fault in ([0], [500], [403]):
            emu.set_faults(read_sequence=fault)
            try:
                seen.append(await client.job_status())
            except (GraphUnavailable, APIError) as exc:
                seen.append(exc)
        seen.append(await client.job_status())
        return seen

    dropped, server_error, refused, healthy = run(settings_for(emu), scenario)[0]
    assert isinstance(dropped, GraphUnavailable)
    assert dropped.reason.startswith("RemoteProtocolError") and dropped.status is None
    assert isinstance(server_error, GraphUnavailable)
    assert (server_error.reason, server_error.status) == ("Graph answered HTTP 500", 500)
    # a permanent answer is not "unavailable": it still raises the SDK's error
    assert isinstance(refused, APIError) and not isinstance(refused, GraphUnavailable)
    assert refused.response_status_code == 403
    assert healthy == JobStatus("Active")


# ---------------------------------------------------------------- waits are bounded


def test_retry_after_of_a_day_fails_at_once_without_sleeping(emu: GraphEmulator) -> None:
    """The daily quota used up: Graph answers 429 with a Retry-After of about 86400 s. The batch
    is paused at once (Throttled), and so is the next one (the penalty box), without sending
    it; nothing slept."""
    emu.set_faults(daily_quota=1)
    settings = settings_for(emu, max_attempts=8)
    assert settings.max_wait_seconds == 300

    async def scenario(_: GraphClient, submitter: Submitter) -> list[tuple[BatchOutcome, float]]:
        results = []
        for i in range(3):
            started = time.monotonic()
            outcome = await submitter.submit(body(1, f"Q{i}-"), f"crid-quota-{i}")
            results.append((outcome, time.monotonic() - started))
        return results

    results, waits = run(settings, scenario)
    (first, _), (throttled, elapsed), (held, held_elapsed) = results
    assert first.status == "accepted"

    assert (throttled.status, throttled.error_code, throttled.http_status) == (
        "failed",
        "Throttled",
        429,
    )
    assert elapsed < 0.5 and held_elapsed < 0.5  # real time: no day-long (or any) sleep
    assert statuses(throttled) == [429]
    retry_after = throttled.attempts[0].retry_after
    assert retry_after is not None and 86000 < retry_after <= 86400
    assert throttled.request_id == throttled.attempts[0].request_id
    message = throttled.error_message or ""
    assert f"Graph answered 429 with a Retry-After of {retry_after:.0f} s" in message
    assert f"sending resumes at {throttled.resume_at}" in message
    assert "Q1-" not in message  # no HR value
    stop = stop_reason(throttled)
    assert stop is not None and stop[0] == "paused"

    # the next batch is not even sent: the limiter's penalty box holds every sender for a day
    assert (held.status, held.error_code, held.attempts, held.http_status) == (
        "failed",
        "Paused",
        [],
        0,
    )
    assert "429 with Retry-After" in (held.error_message or "")
    assert [u["status"] for u in emu.uploads()] == [202, 429]

    # the injected sleeps were never asked for anything
    assert waits.submitter == []


def test_backoff_longer_than_max_wait_fails_at_once(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[503], retry_after=False)
    settings = settings_for(
        emu, retry_base_seconds=5, retry_max_seconds=10, max_wait_seconds=1, max_attempts=5
    )
    started = time.monotonic()
    outcome, waits = submit_one(settings, body(), "crid-backoff")
    assert time.monotonic() - started < 2
    assert (outcome.status, outcome.error_code, statuses(outcome)) == (
        "failed",
        "WaitTooLong",
        [503],
    )
    assert outcome.error_message and outcome.error_message.startswith(
        "the backoff before the next attempt would be "
    )
    assert "longer than the 1 s allowed" in outcome.error_message
    assert waits.submitter == []


def test_retry_after_within_max_wait_is_honoured(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[429])  # answered with Retry-After: 1
    outcome, waits = submit_one(settings_for(emu, max_wait_seconds=1), body(), "crid-ra-1")
    assert outcome.status == "accepted"
    assert statuses(outcome) == [429, 202]
    assert waits.submitter == [1.0]


# ---------------------------------------------------------------- possible double application


def test_dropped_response_then_accepted_may_have_been_applied_twice(emu: GraphEmulator) -> None:
    emu.set_faults(drop_connections=1)
    outcome, _ = submit_one(settings_for(emu), body(), "crid-dropped")
    assert outcome.status == "accepted"
    assert statuses(outcome) == [0, 202]
    assert [a.maybe_applied for a in outcome.attempts] == [True, False]
    assert outcome.maybe_applied_attempts == 1
    assert outcome.maybe_applied_before_last
    record = json.loads(json.dumps(outcome.as_dict()))
    assert record["maybe_applied_attempts"] == 1
    assert record["maybe_applied_before_last"] is True
    assert record["attempts"][0]["maybe_applied"] is True


def test_timeout_then_accepted_may_have_been_applied_twice(emu: GraphEmulator) -> None:
    emu.set_faults(latency_ms=600)
    settings = settings_for(emu, request_timeout_seconds=0.2)

    async def scenario(_: GraphClient, submitter: Submitter) -> BatchOutcome:
        original = submitter._sleep

        async def heal_then_sleep(seconds: float) -> None:
            emu.set_faults(latency_ms=0)
            await original(seconds)

        submitter._sleep = heal_then_sleep
        return await submitter.submit(body(), "crid-timeout")

    outcome, _ = run(settings, scenario)
    assert statuses(outcome) == [0, 202]
    assert outcome.maybe_applied_before_last and outcome.maybe_applied_attempts == 1
    # and it really was: the timed-out request reached the emulator, which applied it
    deadline = time.monotonic() + 3
    while len(emu.uploads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [u["status"] for u in emu.uploads()] == [202, 202]


@pytest.mark.parametrize("status", [429, 502, 503])
def test_an_error_answer_then_accepted_was_applied_once(emu: GraphEmulator, status: int) -> None:
    # without Retry-After so that the test does not wait a second; the answer is what counts
    emu.set_faults(status_sequence=[status], retry_after=False)
    outcome, _ = submit_one(settings_for(emu), body(), f"crid-{status}")
    assert statuses(outcome) == [status, 202]
    assert [a.maybe_applied for a in outcome.attempts] == [False, False]
    assert outcome.maybe_applied_attempts == 0
    assert not outcome.maybe_applied_before_last
    assert outcome.as_dict()["maybe_applied_before_last"] is False


def test_refused_connection_was_never_sent(emu: GraphEmulator) -> None:
    settings = settings_for(emu, graph_url=f"http://127.0.0.1:{closed_port()}/v1.0")
    outcome, _ = submit_one(settings, body(), "crid-refused")
    assert (outcome.status, statuses(outcome)) == ("failed", [0, 0, 0])
    assert outcome.error_message and outcome.error_message.startswith("ConnectError")
    assert outcome.maybe_applied_attempts == 0 and not outcome.maybe_applied_before_last


def test_dropped_connections_until_failed_count_every_attempt(emu: GraphEmulator) -> None:
    emu.set_faults(status_sequence=[0, 0])
    outcome, _ = submit_one(settings_for(emu, max_attempts=2), body(), "crid-drops")
    assert (outcome.status, statuses(outcome)) == ("failed", [0, 0])
    # the batch may have been applied although it "failed": both attempts are counted
    assert outcome.maybe_applied_attempts == 2 and outcome.maybe_applied_before_last
