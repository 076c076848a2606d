"""The main job, locally: Azurite and the Graph emulator stand in for Azure and Entra.

``python -m devtools.run_local [FILE]`` starts both on loopback, drops FILE (default: Microsoft's
1,000-row sample) into ``hr-inbound``, invokes the blob function exactly as the Functions host
would (through ``app.get_functions()``, with a real InputStream and the real managed-identity
credential), runs one pass of the reconciliation timer (which reads the emulator's provisioning
logs into the run's ledger), then prints the run's outcome, copies its results to
``out/local-run/`` and shows what the emulator's directory now holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from graph_emulator import GraphEmulator

from .azurite import ROOT, running_azurite
from .local_env import local_settings

DEFAULT_FILE = ROOT / "samples" / "csv-with-1000-records.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.run_local", description=__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--mapping", default="microsoft-sample")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "local-run")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="azurite-") as location,
        running_azurite(Path(location)) as azurite,
        GraphEmulator(rate_limit=(40, 5.0)) as emulator,
    ):
        print(f"Azurite blob service  {azurite.blob_url}")
        print(f"Graph emulator        {emulator.graph_url}")
        os.environ.update(local_settings(azurite, emulator, PROVISIONING_MAPPING=args.mapping))
        summary = drop_and_run(args.file)
        copy_results(summary["_prefix"], args.out)
        show(summary, emulator, args.out)
    return 0 if summary["status"] == "complete" else 1


def drop_and_run(file: Path) -> dict[str, Any]:
    import azure.functions as func

    import function_app
    from provisioning.settings import INBOUND_CONTAINER, RESULTS_CONTAINER, Settings
    from provisioning.storage import BlobStore

    store = BlobStore.from_settings(Settings())
    store.ensure_containers(INBOUND_CONTAINER)
    name = file.name
    store.write_bytes(INBOUND_CONTAINER, name, file.read_bytes(), "text/csv")
    print(f"dropped               {INBOUND_CONTAINER}/{name} ({file.stat().st_size:,} bytes)")
    data = store.read_bytes(INBOUND_CONTAINER, name) or b""
    blob = func.blob.InputStream(
        data=data, name=f"{INBOUND_CONTAINER}/{name}", uri=store.url(INBOUND_CONTAINER, name)
    )
    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    asyncio.run(functions["hr_file_dropped"].get_user_function()(blob))
    # What the timer would do some minutes later: Entra's outcome of every record.
    asyncio.run(functions["reconcile"].get_user_function()(func.timer.TimerRequest()))
    summaries = [
        b.name for b in store.list(RESULTS_CONTAINER, "runs/") if b.name.endswith("summary.json")
    ]
    found = store.read_json(RESULTS_CONTAINER, summaries[-1])
    assert found is not None
    summary: dict[str, Any] = found[0]
    summary["_prefix"] = summaries[-1].rsplit("/", 1)[0] + "/"
    return summary


def copy_results(prefix: str, out: Path) -> None:
    from provisioning.settings import RESULTS_CONTAINER, Settings
    from provisioning.storage import BlobStore

    store = BlobStore.from_settings(Settings())
    out.mkdir(parents=True, exist_ok=True)
    for blob in store.list(RESULTS_CONTAINER, prefix):
        target = out / blob.name[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(RESULTS_CONTAINER, blob.name) or b"")


def show(summary: dict[str, Any], emulator: GraphEmulator, out: Path) -> None:
    print()
    print(
        f"run {summary['run_id']}: {summary['status']}"
        + (f" ({summary['reason']})" if summary.get("reason") else "")
    )
    for key in ("rows_read", "rows_rejected", "records_sent", "records_accepted", "requests"):
        print(f"  {key:<22}{summary.get(key)}")
    outcomes = summary.get("outcomes") or {}
    print(f"  {'entra outcomes':<22}{outcomes.get('status')} {outcomes.get('counts')}")
    print(f"results               results/{summary['_prefix']} (copied to {out}/)")
    for name in ("summary.json", "report.html", "ledger.csv", "rejected.csv", "failures.csv"):
        print(f"  {out / name}")
    users = emulator.directory()
    enabled = sum(1 for u in users if u.get("accountEnabled"))
    with_manager = sum(1 for u in users if u.get("manager"))
    print()
    print(
        f"emulator directory: {len(users)} users ({enabled} enabled, "
        f"{len(users) - enabled} disabled, {with_manager} with a manager)"
    )
    print(f"  {'employeeId':<12}{'displayName':<28}{'jobTitle':<26}enabled")
    for user in users[:10]:
        print(
            f"  {user.get('employeeId') or '':<12}{(user.get('displayName') or '')[:27]:<28}"
            f"{(user.get('jobTitle') or '')[:25]:<26}{user.get('accountEnabled')}"
        )
    if len(users) > 10:
        print(f"  ... and {len(users) - 10} more")
    uploads = emulator.uploads()
    print(f"bulkUpload calls received: {len(uploads)} ({json.dumps(_statuses(uploads))})")


def _statuses(uploads: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for upload in uploads:
        counts[str(upload["status"])] = counts.get(str(upload["status"]), 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
