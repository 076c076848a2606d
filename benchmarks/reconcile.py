"""Benchmark the outcome pass of the reconciliation timer: how fast are provisioning-log entries
matched to sent records, and how much memory does it take per record?

Usage::

    python benchmarks/reconcile.py [--records 10000] [--page-size 100] [--memory]

Starts Azurite and the Graph emulator (in its own process, so the heap measured is ours alone;
rate limit off), drops one HR file of ``--records``
distinct workers through the blob function (so every record is tracked as the app tracks it),
then times one outcome pass (``provisioning.reconcile.confirm.Confirmer``) reading the emulator's
provisioning logs through msgraph-sdk in pages of ``--page-size``. It prints records matched
per second, log pages read, the pass time split into log reading and the rest (merging tracked
batches, matching, writing the ledger, summary, report), and with ``--memory`` the Python heap
peak of the pass (tracemalloc) per record. Every record must end ``success``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import io
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
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


async def outcome_pass(page_size: int, trace: bool) -> dict[str, Any]:
    from provisioning.clock import utcnow
    from provisioning.graph.client import GraphClient
    from provisioning.graph.provisioning_logs import LogEntry, provisioning_entries
    from provisioning.reconcile.confirm import Confirmer
    from provisioning.settings import Settings
    from provisioning.storage import BlobStore

    settings = Settings()
    reading = {"seconds": 0.0, "entries": 0}
    async with GraphClient.from_settings(settings) as graph:

        async def entries(since: dt.datetime) -> AsyncIterator[LogEntry]:
            stream = provisioning_entries(graph.sdk, graph.job_id, since, page_size=page_size)
            while True:
                started = time.perf_counter()
                try:
                    entry = await anext(stream)
                except StopAsyncIteration:
                    return
                finally:
                    reading["seconds"] += time.perf_counter() - started
                reading["entries"] += 1
                yield entry

        async def no_sleep(_seconds: float) -> None:
            return None

        confirmer = Confirmer(
            settings,
            BlobStore.from_settings(settings),
            entries=entries,
            poster=graph,
            sleep=no_sleep,
            clock=utcnow,
        )
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        report = await confirmer.run(job_active=True, keep_alive=lambda: None)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()  # (0, 0) when not tracing
        tracemalloc.stop()
    return {
        **report,
        "seconds": seconds,
        "peak": peak,
        **{f"log_{k}": v for k, v in reading.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument(
        "--memory", action="store_true", help="trace the heap (slows the pass down ~2x)"
    )
    args = parser.parse_args(argv)
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

        os.environ["PROVISIONING_RATE_LIMIT_REQUESTS"] = "100000"
        from devtools.blob_binding import trigger_argument
        from function_app import app
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
        result = asyncio.run(outcome_pass(args.page_size, args.memory))

    matched = result["matched"]
    pages = -(-result["log_entries"] // args.page_size)
    print(f"outcome pass: {matched:,} records matched in {result['seconds']:.2f} s")
    print(f"  {matched / result['seconds']:,.0f} records/s")
    print(f"  log reading {result['log_seconds']:.2f} s ({pages} pages of {args.page_size})")
    print(f"  the rest    {result['seconds'] - result['log_seconds']:.2f} s")
    if args.memory:
        peak = result["peak"]
        print(f"  heap peak   {peak / 2**20:.1f} MiB ({peak / matched:,.0f} B/record)")
    ok = matched == args.records and result["completed_runs"] == 1
    print("every record success, run complete" if ok else f"UNEXPECTED: {result}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
