"""The main job, locally: Azurite and the Graph emulator stand in for Azure and Entra.

``scripts/run-local [FILE] [--mapping M] [--out DIR]`` (``python -m devtools.run_local``) starts
both on loopback, drops FILE (default: Microsoft's 1,000-row sample) into ``hr-inbound``, invokes
the blob function exactly as the Functions host would (through ``app.get_functions()``, with the
BlobClient the Python worker builds for its SDK-typed binding, and the real managed-identity
credential), runs one pass of the reconciliation timer (which reads the emulator's provisioning
logs into the run's ledger), then prints the run's outcome, copies its results to
``out/local-run/`` and shows what the emulator's directory now holds.

Every setting in the environment (README, Settings) applies as in Azure, checked the same way;
only the ones that point at Azure are replaced by Azurite and the emulator (devtools/local_env).
The exit code is the run's (provisioning.status.exit_code); a bad setting or argument
is one line on stderr and exit code 2.
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
from graph_emulator.state import FaultError
from provisioning.cli import OneLineParser, out_folder
from provisioning.convert.mapping import BUILTIN, load_mapping
from provisioning.convert.transforms import SpecError
from provisioning.errors import ConfigurationError
from provisioning.settings import load_settings
from provisioning.status import EXIT_UNUSABLE, exit_code

from .azurite import ROOT, running_azurite
from .local_env import MSI_CONFLICTS, local_settings

DEFAULT_FILE = ROOT / "samples" / "csv-with-1000-records.csv"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="scripts/run-local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE, help="HR export")
    parser.add_argument(
        "--mapping",
        help=f"built-in mapping ({', '.join(BUILTIN)}) or a mapping file "
        "(default: PROVISIONING_MAPPING, else microsoft-sample)",
    )
    parser.add_argument(
        "--out",
        type=out_folder,
        default=ROOT / "out" / "local-run",
        help="folder the run's results are copied to (default: out/local-run)",
    )
    parser.add_argument(
        "--graph-faults",
        type=_faults,
        default={},
        metavar="JSON",
        help="faults for the Graph emulator to play, e.g. "
        "'{\"status_sequence\": [202, 400]}' refuses the second bulk request "
        "(keys: graph_emulator/README.md)",
    )
    args = parser.parse_args(argv)
    # Checked before anything starts, as the deployed app checks them.
    try:
        mapping: str = args.mapping or load_settings().mapping
        load_mapping(mapping)
    except ConfigurationError as exc:
        return _fail(str(exc))
    except SpecError as exc:
        return _fail(str(exc), "mapping error")
    if not args.file.is_file():
        return _fail(f"no such file: {args.file}")
    with (
        tempfile.TemporaryDirectory(prefix="azurite-") as location,
        running_azurite(Path(location)) as azurite,
        GraphEmulator(rate_limit=(40, 5.0)) as emulator,
    ):
        print(f"Azurite blob service  {azurite.blob_url}")
        print(f"Graph emulator        {emulator.graph_url}")
        try:
            emulator.set_faults(**args.graph_faults)
        except (FaultError, TypeError, ValueError) as exc:
            return _fail(f"--graph-faults: {exc}")
        # Only the settings pointing at Azure change; the rest of the environment applies.
        for name in MSI_CONFLICTS:
            os.environ.pop(name, None)  # they would take the token from elsewhere
        os.environ.update(local_settings(azurite, emulator, PROVISIONING_MAPPING=mapping))
        summary = drop_and_run(args.file)
        if summary is None:
            print("no run summary was written (see the errors above)", file=sys.stderr)
            return exit_code("error")
        copy_results(summary["_prefix"], args.out)
        show(summary, emulator, args.out)
    return exit_code(summary["status"], unusable=bool(summary.get("file_error")))


def _faults(text: str) -> dict[str, Any]:
    try:
        faults = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a JSON object of fault settings") from None
    if not isinstance(faults, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of fault settings")
    return faults


def _fail(message: str, label: str = "error") -> int:
    print(f"{label}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_UNUSABLE


def drop_and_run(file: Path) -> dict[str, Any] | None:
    """The run's summary, None if the blob function wrote none (it logged why)."""
    import azure.functions as func

    import function_app
    from devtools.blob_binding import trigger_argument
    from provisioning.settings import INBOUND_CONTAINER, RESULTS_CONTAINER
    from provisioning.storage import BlobStore

    store = BlobStore.from_settings(load_settings())
    store.ensure_containers(INBOUND_CONTAINER)
    name = file.name
    store.write_bytes(INBOUND_CONTAINER, name, file.read_bytes(), "text/csv")
    print(f"dropped               {INBOUND_CONTAINER}/{name} ({file.stat().st_size:,} bytes)")
    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    # The BlobClient the worker builds from the host's reference to the blob (SDK-type binding).
    blob = trigger_argument(functions["hr_file_dropped"], name)
    asyncio.run(functions["hr_file_dropped"].get_user_function()(blob))
    # What the timer would do some minutes later: Entra's outcome of every record.
    asyncio.run(functions["reconcile"].get_user_function()(func.timer.TimerRequest()))
    summaries = [
        b.name for b in store.list(RESULTS_CONTAINER, "runs/") if b.name.endswith("summary.json")
    ]
    found = store.read_json(RESULTS_CONTAINER, summaries[-1]) if summaries else None
    if found is None:
        return None
    summary: dict[str, Any] = found[0]
    summary["_prefix"] = summaries[-1].rsplit("/", 1)[0] + "/"
    return summary


def copy_results(prefix: str, out: Path) -> None:
    from provisioning.settings import RESULTS_CONTAINER
    from provisioning.storage import BlobStore

    store = BlobStore.from_settings(load_settings())
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
    counts = ", ".join(f"{k}={v}" for k, v in (outcomes.get("counts") or {}).items())
    print(f"  {'entra outcomes':<22}{outcomes.get('status')} ({counts or 'none yet'})")
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
    statuses = ", ".join(f"HTTP {k}: {v}" for k, v in _statuses(uploads).items())
    print(f"bulkUpload calls received: {len(uploads)} ({statuses or 'none'})")


def _statuses(uploads: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for upload in uploads:
        counts[str(upload["status"])] = counts.get(str(upload["status"]), 0) + 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
