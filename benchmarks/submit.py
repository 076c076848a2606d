"""Benchmark bulkUpload submission: does the pacing use the rate limit without tripping it?

Usage::

    python benchmarks/submit.py [--records 20000] [--rate 40/5] [--batch-size 50] [--senders 1]
                                [--check]

Starts the Graph emulator in-process with its bulkUpload rate limit set to ``--rate`` (the same
limit the client paces at), builds ``--records`` small valid SCIM users into bulk requests of
``--batch-size`` with ``provisioning.convert.bulk``, and submits them one after another through
``Submitter`` + ``RateLimiter`` + ``GraphClient`` (msgraph-sdk pipeline, real
ManagedIdentityCredential against the emulator's identity endpoint).

``--senders N`` (N > 1) measures the tenant-wide pace instead: Azurite is started in a temporary
folder, and N separate processes (benchmarks/senders.py) each deliver a share of the records
through the app's one sender (``Sender``: the send gate and ``TenantPace``, the tenant's pace in
``state/pace.json``), all starting together. The fraction of the limit is then tenant-wide: the
requests of all senders over the time from their start to the last one's end.

Targets: achieved requests/second >= 0.9 x the configured limit, both as a plain ratio and as
pacing efficiency (the least time the sliding window permits for that many requests, a burst of
one window's worth then one window per further burst, divided by the time taken; with
``--senders`` N > 1 it is printed, not checked: the tenant's pace adds a margin to each window
by design, see the README); 0 responses 429; every request accepted; the emulator's directory
holds every record. The exit code is 0
unless ``--check`` is given and a target is missed. At the default 40/5 a run takes ~50 s;
``--rate 400/5`` is a quicker try.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIN_FRACTION = 0.9
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
    from benchmarks.senders import bench_user
    from provisioning.convert.bulk import Operation, batches, bulk_id

    def operations() -> Any:
        for i in range(records):
            data = bench_user(i)
            yield Operation(bulk_id("0123456789abcdef", i + 1), data["externalId"], i + 1, data)

    return [request.body for request in batches(operations(), batch_size)]


def shares(records: int, batch_size: int, senders: int) -> list[tuple[int, int]]:
    """(first record, count) for each sender: whole requests, as evenly as they go, so the N
    senders send as many requests as one would."""
    requests = math.ceil(records / batch_size)
    out = []
    first = 0
    for index in range(senders):
        count = min(
            records - first, (requests // senders + (index < requests % senders)) * batch_size
        )
        out.append((first, count))
        first += count
    return [share for share in out if share[1] > 0]


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
    parser.add_argument(
        "--senders",
        type=int,
        default=1,
        help="separate sender processes sharing the tenant's pace (N > 1 needs Azurite)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")
    if args.senders < 1:
        parser.error("--senders must be at least 1")
    if not 1 <= args.batch_size <= 50:
        parser.error("--batch-size must be 1 to 50")

    sys.path.insert(0, str(ROOT))
    # kiota warns when msgraph's generated request builders are imported
    warnings.filterwarnings("ignore", "GetQueryParameters is deprecated", DeprecationWarning)
    if args.senders > 1:
        return submit_in_processes(args)
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
    return verdict(checks, args.check)


def verdict(checks: dict[str, bool], check: bool) -> int:
    """Print each target met or missed and PASS/FAIL; the exit code (1 only with --check)."""
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISS'}] {name}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 1 if check and not passed else 0


def submit_in_processes(args: argparse.Namespace) -> int:
    """``--senders N``: N processes share the records and the tenant's pace (Azurite)."""
    from azure.storage.blob import BlobServiceClient

    from benchmarks.senders import Job, most_in_window, run_senders
    from devtools.azurite import AzuriteMissing, running_azurite
    from devtools.local_env import local_settings
    from graph_emulator import GraphEmulator
    from provisioning.settings import RESULTS_CONTAINER, STATE_CONTAINER, Settings
    from provisioning.storage import BlobStore

    limit_requests, window = args.rate
    parts = shares(args.records, args.batch_size, args.senders)
    jobs = [Job("submit", {"first": first, "count": count}) for first, count in parts]
    expected = sum(math.ceil(count / args.batch_size) for _, count in parts)
    # Generous: ten times the least time the limit permits, or ten minutes.
    timeout = max(600.0, 10 * math.ceil(expected / limit_requests) * window)
    with contextlib.ExitStack() as stack:
        temp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-submit-")))
        (temp / "azurite").mkdir()
        try:
            azurite = stack.enter_context(running_azurite(temp / "azurite"))
        except AzuriteMissing as exc:
            print(f"--senders {args.senders} needs Azurite: {exc}", file=sys.stderr)
            return 2
        emu = stack.enter_context(GraphEmulator(rate_limit=(limit_requests, window), log_delay=0))
        env = local_settings(
            azurite,
            emu,
            PROVISIONING_RATE_LIMIT_REQUESTS=str(limit_requests),
            PROVISIONING_RATE_LIMIT_WINDOW_SECONDS=str(window),
            PROVISIONING_BATCH_SIZE=str(args.batch_size),
        )
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        with BlobStore(service) as store:
            store.ensure_containers(STATE_CONTAINER, RESULTS_CONTAINER)
        settings = Settings()
        print(
            f"{len(jobs)} sender processes submitting {expected:,} requests of "
            f"{args.batch_size} ({args.records:,} records), one pace for the tenant at "
            f"{limit_requests}/{window:g}s + {settings.pace_margin_seconds:g} s margin "
            f"(emulator limit {limit_requests}/{window:g}s) ..."
        )
        reports = run_senders(jobs, env, temp, timeout=timeout)
        uploads = emu.uploads()
        directory_users = len(emu.directory())
        admitted_max = emu.max_in_window(window)
        server_429 = emu.count_429()

    results = [r.result for r in reports]
    requests = sum(int(r.get("requests", 0)) for r in results)
    accepted = sum(int(r.get("requests_accepted", 0)) for r in results)
    attempts = sum(int(r.get("attempts", 0)) for r in results)
    client_429 = sum(int(r.get("answered_429", 0)) for r in results)
    other_errors = sum(int(r.get("other_failures", 0)) for r in results)
    begun = min((r.started for r in reports if r.started), default=0.0)
    ended = max((r.finished for r in reports if r.finished), default=0.0)
    seconds = ended - begun
    rate = requests / seconds if seconds > 0 else 0.0
    limit = limit_requests / window
    fraction = rate / limit
    ideal = (math.ceil(requests / limit_requests) - 1) * window
    efficiency = ideal / seconds if ideal > 0 and seconds > 0 else 1.0
    # The least time the tenant's pace itself permits: its windows are margin seconds longer.
    margin = settings.pace_margin_seconds
    paced = (math.ceil(requests / limit_requests) - 1) * (window + margin)
    arrivals_max = most_in_window((u["time"] for u in uploads), window)

    checks = {
        "every sender complete": all(r.status == "complete" for r in reports),
        "requests/second >= 0.9 x limit (tenant-wide)": fraction >= MIN_FRACTION,
        "no 429 received": client_429 == 0 and server_429 == 0,
        f"never more than {limit_requests} requests in {window:g} s": arrivals_max
        <= limit_requests,
        "every request accepted": accepted == requests == expected,
        f"directory holds {args.records:,} users": directory_users == args.records,
    }
    print()
    for index, report in enumerate(reports):
        result = report.result
        print(
            f"sender {index + 1}            {report.status}: {result.get('requests', 0):,} "
            f"requests in {report.finished - report.started:.2f} s from "
            f"+{report.started - begun:.2f} s, pace waits {result.get('pace_waited', 0):.2f} s"
            + (f"\n{report.error}" if report.error else "")
        )
    print(f"requests             {requests:,} ({accepted:,} accepted, {attempts:,} attempts)")
    print(f"records              {args.records:,}")
    print(f"seconds              {seconds:.2f} (first start to last end)")
    print(f"requests/second      {rate:.3f} (limit {limit:g}/s = {limit_requests}/{window:g}s)")
    print(f"fraction of limit    {fraction:.3f} tenant-wide (target >= {MIN_FRACTION})")
    print(f"pacing efficiency    {efficiency:.3f} (ideal {ideal:.1f} s / actual {seconds:.2f} s)")
    print(
        f"pace's own ideal     {paced:.1f} s (windows of {window:g} + {margin:g} s margin): "
        f"{paced / seconds if paced > 0 and seconds > 0 else 1.0:.3f} of it"
    )
    print(f"429 responses        {client_429} (emulator counted {server_429}; target 0)")
    print(
        f"most in a window     {arrivals_max} received, {admitted_max} admitted "
        f"(limit {limit_requests} per {window:g} s)"
    )
    print(f"other failures       {other_errors}")
    print(f"directory users      {directory_users:,}")
    return verdict(checks, args.check)


if __name__ == "__main__":
    sys.exit(main())
