"""Benchmark POST /api/changes in-process: how many calls per second, and how long to the 202?

Usage::

    python benchmarks/changes.py [--calls 500] [--warmup 5] [--no-flush]

Starts Azurite (``devtools.azurite.running_azurite``) and the Graph emulator, sets the
environment as the tests' ``env`` fixture does (HRSTORAGE to Azurite, PROVISIONING_* Graph
settings and the managed identity endpoint to the emulator), then calls the ``post_changes``
function of ``function_app.app`` as the Functions host would: one real ``func.HttpRequest`` per
call (built before the timer starts), each one HR record in Microsoft's sample columns for a
distinct worker, with its own Idempotency-Key. Each call is timed from the call to its returned
202; every answer must be a 202 ``queued`` joiner.

It prints calls per second (calls / total time of the calls, one after another on one thread,
as one host worker runs a synchronous function) and the median, p99 and max latency. The first
``--warmup`` calls (container creation, first imports) are made before and left out. Unless
``--no-flush``, the queued changes are then sent by one run of the ``flush_changes`` function
(the queue trigger, called directly) and the bulk requests it made are counted: N calls should
go out in ceil(N / 50) requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def record(i: int) -> dict[str, str]:
    """One worker in Microsoft's sample columns (samples/csv-with-2-records.csv), made distinct."""
    worker = f"{700000 + i}"
    return {
        "WorkerID": worker,
        "WorkerStatus": "Active",
        "WorkerType": "Employee",
        "UserID": f"bench{worker}@contoso.test",
        "FirstName": "Bench",
        "LastName": f"Worker{i}",
        "FullName": f"Bench Worker{i}",
        "ManagerID": "",
        "HireDate": "2020-01-01",
        "Department": "Product Engineering",
        "Division": "Food",
        "CostCenter": "CC3035",
        "Company": "Woodgrove",
        "JobTitle": "Project Manager",
        "StreetAddress": "101 Woodgrove Way",
        "City": "Frankfurt",
        "CountryCode": "DE",
        "OfficePhone": "259-915-1098",
        "ZipCode": "79985",
    }


def request(i: int) -> Any:
    import azure.functions as func

    return func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/changes",
        headers={"Content-Type": "application/json", "Idempotency-Key": f"bench-{i:06d}"},
        params={},
        route_params={},
        body=json.dumps(record(i)).encode(),
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)]


def set_env(azurite: Any, emulator: Any) -> None:
    """As tests/conftest.py's ``env`` fixture."""
    from devtools.local_env import FAST_RETRIES, MSI_CONFLICTS, local_settings

    for name in MSI_CONFLICTS:
        os.environ.pop(name, None)
    os.environ.update(local_settings(azurite, emulator, **FAST_RETRIES))


def call(post: Any, req: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = post(req)
    return time.perf_counter() - started, response


def check_accepted(response: Any, i: int) -> None:
    body = json.loads(response.get_body())
    if response.status_code != 202 or body["status"] != "queued":
        raise SystemExit(f"call {i}: {response.status_code} {body}")
    if [r["action"] for r in body["records"]] != ["joiner"] or body["duplicate"]:
        raise SystemExit(f"call {i}: unexpected answer {body}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls (default 500)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before (default 5)")
    parser.add_argument("--no-flush", action="store_true", help="do not send the queued changes")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be at least 1 and --warmup at least 0")

    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", "GetQueryParameters is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "This class is deprecated", DeprecationWarning)
    from devtools.azurite import running_azurite
    from graph_emulator import GraphEmulator

    total = args.warmup + args.calls
    with (
        tempfile.TemporaryDirectory(prefix="bench-changes-") as folder,
        running_azurite(Path(folder)) as azurite,
        GraphEmulator(rate_limit=(40, 5.0), log_delay=0.0) as emulator,
    ):
        set_env(azurite, emulator)
        import azure.functions as func

        from function_app import app

        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
        post, flush = functions["post_changes"], functions["flush_changes"]

        requests = [request(i) for i in range(total)]
        print(f"azurite up in {azurite.startup_seconds:.1f} s; {args.warmup} warm-up calls ...")
        for i in range(args.warmup):
            check_accepted(call(post, requests[i])[1], i)

        print(f"{args.calls} calls to post_changes, one record each ...")
        latencies: list[float] = []
        started = time.perf_counter()
        for i in range(args.warmup, total):
            seconds, response = call(post, requests[i])
            latencies.append(seconds)
            check_accepted(response, i)
        elapsed = time.perf_counter() - started

        latencies.sort()
        print()
        print(f"calls                {args.calls}")
        print(f"seconds              {elapsed:.2f}")
        print(f"calls/second         {args.calls / elapsed:.1f}")
        print(
            f"latency to 202       median {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
        if args.no_flush:
            return 0

        before = len(emulator.uploads())
        started = time.perf_counter()
        asyncio.run(flush(func.QueueMessage(body=b"flush")))
        flush_seconds = time.perf_counter() - started
        uploads = emulator.uploads()[before:]
        users = len(emulator.directory())
        print(
            f"flush                {flush_seconds:.2f} s, {len(uploads)} bulk requests "
            f"(expected {math.ceil(total / 50)}), {users} users in the emulator's directory "
            f"(expected {total})"
        )
        return 0 if users == total and len(uploads) == math.ceil(total / 50) else 1


if __name__ == "__main__":
    sys.exit(main())
