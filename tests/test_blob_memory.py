"""Memory on the Functions path: a 200 MiB HR file dropped into hr-inbound goes through the blob
function as ``app.get_functions()`` exposes it, with the argument the Python worker builds for its
SDK-typed binding (a BlobClient from the host's reference to the blob, devtools.blob_binding), and
the function's peak memory stays far below the file's size.

The function runs in a child process, so that what the test itself holds (the emulator, Azurite's
client, pytest) does not count: the child first drops a small file (every import, client and token
is then in place), resets its peak resident set (``/proc/self/clear_refs``), and reports its
resident set before the large drop and its peak (``VmHWM``) after it. The provisioning job is
paused in the Graph emulator, so the run stops after the file was read whole: copied to the
run's spool while hashed (its hash and size are in the run's summary) and claimed, then the job
is checked and nothing is sent. Sending its ~914,000 records would take hours at Graph's pace;
the reading of the blob, which is what used to hold the file in memory, is all done by then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from graph_emulator import GraphEmulator
from provisioning.settings import INBOUND_CONTAINER
from tests.columns import COLUMNS
from tests.e2e import runs

ROOT = Path(__file__).resolve().parent.parent
FILE_BYTES = 200 * 1024 * 1024
BIG = "feed/workers-200mib.csv"
# What the drop of a 200 MiB file may add to the function's resident set. Measured here: see
# README (How a dropped file is provisioned). Before the SDK-type binding, the worker's
# InputStream alone held the whole file (200 MiB), before the spool's copy of it.
MAX_GROWTH_MIB = 64


def _row(index: int) -> str:
    """One valid active worker; only the ids and names vary (the content is not what is
    measured, its size is)."""
    wid = str(10_000_000 + index)
    return (
        f"{wid},Active,Employee,u{wid}@contoso.com,First{index % 997},Last{index % 991},"
        f"First{index % 997} Last{index % 991},,10000000,2020-01-{1 + index % 28:02d},No,"
        "Product Engineering,Retail,CC-1042,Contoso,Redmond,Software Developer,"
        f"{index % 9000 + 1} Microsoft Way,Redmond,US,+1 425 555 {index % 10000:04d},,,98052\r\n"
    )


def write_hr_file(path: Path, size: int) -> str:
    """A CSV export of at least ``size`` bytes (whole rows, written 8,000 at a time); its
    SHA-256."""
    digest = hashlib.sha256()
    written = 0
    index = 0
    with path.open("wb") as out:
        header = (",".join(COLUMNS) + "\r\n").encode("utf-8")
        digest.update(header)
        out.write(header)
        written += len(header)
        while written < size:
            piece = "".join(_row(i) for i in range(index, index + 8_000)).encode("utf-8")
            index += 8_000
            digest.update(piece)
            out.write(piece)
            written += len(piece)
    return digest.hexdigest()


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (VmRSS: resident now; VmHWM: peak resident)."""
    text = Path("/proc/self/status").read_text(encoding="ascii")
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match, field
    return int(match.group(1))


def child(name: str) -> dict[str, Any]:
    """In the child process: warm up with a small drop, reset the peak, drop ``name`` (already
    in hr-inbound) through the function's entry point; the resident sets, in KiB."""
    from tests.e2e import drop, the_function, trigger_argument

    drop((",".join(COLUMNS) + "\r\n" + _row(0)).encode("utf-8"), "warm-up.csv")
    function = the_function().get_user_function()
    argument = trigger_argument(name)  # what the worker passes: a BlobClient, not the bytes
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS
    baseline = _status_kib("VmRSS")
    started = time.monotonic()
    asyncio.run(function(argument))
    return {
        "argument": f"{type(argument).__module__}.{type(argument).__qualname__}",
        "baseline_kib": baseline,
        "peak_kib": _status_kib("VmHWM"),
        "seconds": round(time.monotonic() - started, 1),
    }


def test_a_200_mib_drop_keeps_the_function_s_memory_flat(
    env: dict[str, str], emulator: GraphEmulator, tmp_path: Path
) -> None:
    export = tmp_path / "workers.csv"
    content_hash = write_hr_file(export, FILE_BYTES)
    size = export.stat().st_size
    with BlobServiceClient.from_connection_string(env["HRSTORAGE"]) as service:
        container = service.get_container_client(INBOUND_CONTAINER)
        container.create_container()
        with export.open("rb") as data:
            container.upload_blob(BIG, data, length=size, max_concurrency=4)
    export.unlink()
    # Nothing is to be sent: the run reads the file whole, claims it, finds the job paused.
    emulator.set_faults(job_status="Paused")

    done = subprocess.run(
        [sys.executable, "-m", "tests.test_blob_memory", BIG],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    assert measured["argument"] == "azure.storage.blob._blob_client.BlobClient"
    # The function's run read the whole blob: the spool's hash and size are the file's.
    (summary,) = [s for s in runs() if s["source_blob"] == f"{INBOUND_CONTAINER}/{BIG}"]
    assert summary["status"] == "stopped"
    assert (summary["source_bytes"], summary["content_hash"]) == (size, content_hash)
    assert not [u for u in emulator.uploads() if u["status"] == 202]
    growth_mib = (measured["peak_kib"] - measured["baseline_kib"]) / 1024
    print(f"200 MiB drop: {measured} -> peak growth {growth_mib:.1f} MiB")
    assert growth_mib < MAX_GROWTH_MIB, measured


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1])))
