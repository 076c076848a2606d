"""Benchmark bulkUpload submission: does the pacing use the rate limit without tripping it?

Usage::

    python benchmarks/submit.py [--records 20000] [--rate 40/5] [--batch-size 50] [--check]

Starts the Graph emulator in-process with its bulkUpload rate limit set to ``--rate`` (the same
limit the client paces at), builds ``--records`` small valid SCIM users into bulk requests of
``--batch-size`` with ``provisioning.convert.bulk``, and submits them one after another through
``Submitter`` + ``RateLimiter`` + ``GraphClient`` (msgraph-sdk pipeline, real
ManagedIdentityCredential against the emulator's identity endpoint).

Targets: achieved requests/second >= 0.9 x the configured limit, both as a plain ratio and as
pacing efficiency (the least time the sliding window permits for that many requests, a burst of
one window's worth then one window per further burst, divided by the time taken); 0 responses
429; every request accepted; the emulator's directory holds every record. The exit code is 0
unless ``--check`` is given and a target is missed. At the default 40/5 a run takes ~50 s;
``--rate 400/5`` is a quicker try.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIN_FRACTION = 0.9
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
MSI_VARIABLES = ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET")


def parse_rate(text: str) -> tuple[int, float]:
    head, _, tail = text.partition("/")
    try:
        requests, window = int(head), float(tail or "1")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--rate must look like 40/5, not {text!r}") from exc
    if requests < 1 or window <= 0:
        raise argparse.ArgumentTypeError("--rate needs requests >= 1 and seconds > 0")
    return requests, window


def build_bodies(records: int, batch_size: int) -> list[bytes]:
    from provisioning.convert.bulk import Operation, batches, bulk_id

    def operations() -> Any:
        for i in range(records):
            external_id = f"B{i:07d}"
            data = {
                "schemas": [CORE],
                "externalId": external_id,
                "userName": f"{external_id.lower()}@contoso.test",
                "displayName": f"Bench User {i}",
                "name": {"givenName": "Bench", "familyName": f"User{i}"},
                "active": True,
            }
            yield Operation(bulk_id("0123456789abcdef", i + 1), external_id, i + 1, data)

    return [request.body for request in batches(operations(), batch_size)]


async def submit_all(settings: Any, bodies: list[bytes]) -> tuple[list[Any], float, float]:
    from provisioning.graph.client import GraphClient
    from provisioning.graph.pacing import RateLimiter, RetryPolicy
    from provisioning.graph.submit import Submitter

    client = GraphClient.from_settings(settings)
    try:
        limiter = RateLimiter(settings.rate_limit_requests, settings.rate_limit_window_seconds)
        policy = RetryPolicy(
            settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds
        )
        submitter = Submitter(client, limiter, policy)
        outcomes = []
        started = time.monotonic()
        for index, body in enumerate(bodies, 1):
            outcomes.append(await submitter.submit(body, f"bench-{index:05d}"))
        return outcomes, time.monotonic() - started, limiter.waited_seconds
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rate", type=parse_rate, default=(40, 5.0), help="requests/seconds")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")

    sys.path.insert(0, str(ROOT))
    # kiota warns when msgraph's generated request builders are imported
    warnings.filterwarnings("ignore", "GetQueryParameters is deprecated", DeprecationWarning)
    from graph_emulator import GraphEmulator
    from provisioning.settings import Settings

    limit_requests, window = args.rate
    print(f"building {args.records:,} users into bulk requests of {args.batch_size} ...")
    bodies = build_bodies(args.records, args.batch_size)

    with GraphEmulator(rate_limit=(limit_requests, window), log_delay=0.0) as emu:
        for name in MSI_VARIABLES:
            os.environ.pop(name, None)
        os.environ["IDENTITY_ENDPOINT"] = emu.identity_endpoint
        os.environ["IDENTITY_HEADER"] = emu.identity_header
        settings = Settings(
            graph_url=emu.graph_url,
            service_principal_id=emu.sp_id,
            job_id=emu.job_id,
            credential="auto",
            rate_limit_requests=limit_requests,
            rate_limit_window_seconds=window,
        )
        print(
            f"submitting {len(bodies):,} requests at {limit_requests}/{window:g}s "
            f"(emulator limit {limit_requests}/{window:g}s) ..."
        )
        outcomes, seconds, waited = asyncio.run(submit_all(settings, bodies))
        uploads = emu.uploads()
        directory_users = len(emu.directory())

    requests = len(bodies)
    accepted = sum(1 for o in outcomes if o.status == "accepted")
    attempts = [a for o in outcomes for a in o.attempts]
    client_429 = sum(1 for a in attempts if a.status == 429)
    server_429 = sum(1 for u in uploads if u["status"] == 429)
    other_errors = sum(1 for a in attempts if a.status not in (202, 429))
    durations = sorted(a.duration_ms for a in attempts)
    rate = requests / seconds if seconds > 0 else math.inf
    limit = limit_requests / window
    fraction = rate / limit
    ideal = (math.ceil(requests / limit_requests) - 1) * window
    # one window's burst covers everything: nothing to pace, efficiency is moot
    efficiency = ideal / seconds if ideal > 0 else 1.0

    checks = {
        "requests/second >= 0.9 x limit": fraction >= MIN_FRACTION,
        "pacing efficiency >= 0.9": efficiency >= MIN_FRACTION,
        "no 429 received": client_429 == 0 and server_429 == 0,
        "every request accepted": accepted == requests,
        f"directory holds {args.records:,} users": directory_users == args.records,
    }
    print()
    print(f"requests             {requests:,} ({accepted:,} accepted, {len(attempts):,} attempts)")
    print(f"records              {args.records:,}")
    print(f"seconds              {seconds:.2f} (limiter waits {waited:.2f})")
    print(f"requests/second      {rate:.3f} (limit {limit:g}/s = {limit_requests}/{window:g}s)")
    print(f"fraction of limit    {fraction:.3f} (target >= {MIN_FRACTION})")
    print(f"pacing efficiency    {efficiency:.3f} (ideal {ideal:.1f} s / actual {seconds:.2f} s)")
    print(f"429 responses        {client_429} (emulator counted {server_429}; target 0)")
    print(f"other failures       {other_errors}")
    if durations:
        p50 = statistics.median(durations)
        p99 = durations[min(len(durations) - 1, math.ceil(0.99 * len(durations)) - 1)]
        print(f"request latency      p50 {p50:.0f} ms, p99 {p99} ms, max {durations[-1]} ms")
    print(f"directory users      {directory_users:,}")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISS'}] {name}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
