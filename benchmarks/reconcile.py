"""Benchmark the outcome passes of the reconciliation timer against Graph's provisioning-log
throttle: how close do they come to the most the throttle allows?

Usage::

    python benchmarks/reconcile.py [--records 100000] [--budget 480] [--memory]

Starts Azurite and the Graph emulator (in its own process, so the heap measured is ours alone;
bulkUpload unthrottled, provisioning-log reads throttled as Graph does: 5 per 10 s), drops one
HR file of ``--records`` distinct workers through the blob function (so every record is
tracked as the app tracks it), then runs outcome passes (``Confirmer``, reading through
msgraph-sdk in pages of 1,000 on the shared read pace), each with a budget of ``--budget``
seconds as the timer's passes have, until every record is confirmed.

It prints the confirmation rate (records per second over all passes) as a fraction of the
ceiling (page size x 5 reads / 10 s = 500 records/s when each record has one entry), the
passes that failed (an exception, or a read that stopped for another reason than the budget),
the 429s the emulator answered, log pages read per record confirmed, and with ``--memory`` the
Python heap peak of the passes (tracemalloc) per record. Every record must end ``success``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def emulator_process() -> Iterator[SimpleNamespace]:
    """``python -m graph_emulator`` as a child process, described as local_settings needs."""
    sp_id, secret = str(uuid.uuid4()), secrets.token_hex(16)
    job_id = f"API2AAD.{uuid.uuid4().hex}.{uuid.uuid4()}"
    command = [sys.executable, "-m", "graph_emulator", "--rate-limit", "none"]
    command += ["--sp-id", sp_id, "--job-id", job_id, "--identity-header", secret]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip().rsplit(" ", 1)[-1]
        if not url.startswith("http://"):
            raise RuntimeError(f"the Graph emulator did not start: {url!r}")
        yield SimpleNamespace(
            sp_id=sp_id,
            job_id=job_id,
            graph_url=f"{url}/v1.0",
            identity_endpoint=f"{url}/msi/token",
            identity_header=secret,
        )
    finally:
        child.terminate()
        child.wait(timeout=10)


def hr_file(records: int) -> bytes:
    from benchmarks.changes import record
    from benchmarks.convert import COLUMNS

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(record(i) for i in range(records))
    return out.getvalue().encode("utf-8")


async def outcome_passes(budget: float, trace: bool) -> dict[str, Any]:
    from provisioning.clock import utcnow
    from provisioning.graph.client import GraphClient
    from provisioning.graph.provisioning_logs import GraphLog
    from provisioning.graph.tenant_pace import TenantPace
    from provisioning.reconcile.confirm import Confirmer
    from provisioning.settings import Settings
    from provisioning.storage import BlobStore

    settings = Settings()
    store = BlobStore.from_settings(settings)
    totals: dict[str, Any] = {"matched": 0, "pages": 0, "lookups": 0, "failed": 0, "passes": []}
    async with GraphClient.from_settings(settings) as graph:

        async def no_sleep(_seconds: float) -> None:
            return None

        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        while True:
            pace = TenantPace.for_log_reads(store, settings, sleep=asyncio.sleep)
            confirmer = Confirmer(
                settings,
                store,
                log_source=GraphLog(graph, pace=pace),
                poster=graph,
                sleep=no_sleep,
                clock=utcnow,
            )
            began = time.perf_counter()
            try:
                report = await confirmer.run(
                    job_active=True,
                    keep_alive=lambda: None,
                    deadline=time.monotonic() + budget,
                )
            except Exception as exc:  # a failed pass is what this counts
                totals["failed"] += 1
                print(f"  pass failed: {type(exc).__name__}: {exc}")
                if totals["failed"] > 3:
                    break
                continue
            reading = report["log"]
            if reading["stopped"] not in ("done", "budget"):
                totals["failed"] += 1
            totals["matched"] += report["matched"]
            totals["pages"] += reading["pages"]
            totals["lookups"] += reading["lookups"]
            totals["passes"].append(report)
            print(
                f"  pass {len(totals['passes'])}: {report['matched']:,} matched in "
                f"{time.perf_counter() - began:.1f} s, {reading['pages']} pages, "
                f"{reading['lookups']} lookups, stopped: {reading['stopped']}, "
                f"{report['open_records']:,} open; seconds {reading['timing']}"
            )
            if report["open_records"] == 0:
                break
        totals["seconds"] = time.perf_counter() - started
        _, totals["peak"] = tracemalloc.get_traced_memory()  # (0, 0) when not tracing
        tracemalloc.stop()
        totals["completed_runs"] = sum(p["completed_runs"] for p in totals["passes"])
    return totals


def log_reads(graph_url: str) -> dict[str, Any]:
    import httpx

    base = graph_url.rsplit("/", 1)[0]
    reply = httpx.get(f"{base}/_emulator/log_reads", timeout=10)
    reply.raise_for_status()
    result: dict[str, Any] = reply.json()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per pass (default: PROVISIONING_RECONCILE_BUDGET_SECONDS, 480)",
    )
    parser.add_argument(
        "--memory", action="store_true", help="trace the heap (slows the passes down)"
    )
    args = parser.parse_args(argv)
    if args.records < 1 or (args.budget is not None and args.budget <= 0):
        parser.error("--records must be at least 1 and --budget above 0")
    sys.path.insert(0, str(ROOT))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from benchmarks.changes import set_env
    from devtools.azurite import running_azurite

    with (
        tempfile.TemporaryDirectory(prefix="bench-reconcile-") as folder,
        running_azurite(Path(folder)) as azurite,
        emulator_process() as emulator,
    ):
        set_env(azurite, emulator)
        import os

        # The drop is not what is measured: let it send as fast as the emulator takes it.
        os.environ["PROVISIONING_RATE_LIMIT_REQUESTS"] = "100000"
        os.environ["PROVISIONING_DAILY_CALL_QUOTA"] = "1000000"
        from devtools.blob_binding import trigger_argument
        from function_app import app
        from provisioning.graph.provisioning_logs import PAGE_SIZE
        from provisioning.settings import INBOUND_CONTAINER, Settings
        from provisioning.storage import BlobStore

        data = hr_file(args.records)
        drop = next(f for f in app.get_functions() if f.get_function_name() == "hr_file_dropped")
        store = BlobStore.from_settings(Settings())
        store.ensure_containers(INBOUND_CONTAINER)
        store.write_bytes(INBOUND_CONTAINER, "bench.csv", data, "text/csv")
        started = time.perf_counter()
        asyncio.run(drop.get_user_function()(trigger_argument(drop, "bench.csv")))
        print(f"dropped {args.records:,} records in {time.perf_counter() - started:.1f} s")
        settings = Settings()
        budget = args.budget or settings.reconcile_budget_seconds
        result = asyncio.run(outcome_passes(budget, args.memory))
        reads = log_reads(emulator.graph_url)

    matched, seconds = result["matched"], result["seconds"]
    ceiling = PAGE_SIZE * settings.log_read_requests / settings.log_read_window_seconds
    rate = matched / seconds
    print(
        f"outcomes: {matched:,} records confirmed in {seconds:.1f} s "
        f"over {len(result['passes'])} passes"
    )
    print(f"  {rate:,.0f} records/s: {rate / ceiling:.3f} of the ceiling ({ceiling:,.0f}/s)")
    print(f"  failed passes: {result['failed']}")
    print(
        f"  429s answered: {reads['throttled']} of {reads['admitted'] + reads['throttled']} reads"
    )
    print(
        f"  log pages per record confirmed: {result['pages'] / max(1, matched):.4f} "
        f"({result['pages']} pages, {result['lookups']} lookups)"
    )
    if args.memory:
        peak = result["peak"]
        print(f"  heap peak   {peak / 2**20:.1f} MiB ({peak / max(1, matched):,.0f} B/record)")
    ok = matched == args.records and result["completed_runs"] == 1 and result["failed"] == 0
    print("every record success, run complete" if ok else "UNEXPECTED: not every record confirmed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
