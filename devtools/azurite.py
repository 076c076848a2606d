"""Start Azurite (the npm storage emulator installed by scripts/bootstrap) on loopback.

Used by the tests and by the local run; never deployed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
AZURITE_START_TIMEOUT = 30.0

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    blob_port: int
    queue_port: int
    location: Path
    startup_seconds: float

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{AZURITE_ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_url};"
            f"QueueEndpoint={self.queue_url};"
        )


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _start(location: Path) -> tuple[subprocess.Popen[bytes], Azurite]:
    # The combined binary always starts the table service too; it gets a free port, unused.
    blob_port, queue_port, table_port = _free_ports(3)
    command = [
        str(AZURITE),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--location",
        str(location),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(blob_port),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(queue_port),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(table_port),
    ]
    started = time.monotonic()
    with (location / "azurite.log").open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=location,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole at the end
        )
    deadline = started + AZURITE_START_TIMEOUT
    while True:
        if all(_accepts(port) for port in (blob_port, queue_port, table_port)):
            azurite = Azurite(blob_port, queue_port, location, time.monotonic() - started)
            return process, azurite
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            log = (location / "azurite.log").read_text(errors="replace")[-2000:]
            state = f"exited with {process.returncode}" if process.poll() is not None else ""
            raise RuntimeError(
                f"Azurite did not start within {AZURITE_START_TIMEOUT:.0f} s {state}\n{log}"
            )
        time.sleep(0.05)


class AzuriteMissing(RuntimeError):
    pass


@contextmanager
def running_azurite(location: Path) -> Iterator[Azurite]:
    """Azurite (blob + queue) with its data in ``location``, stopped when the block ends."""
    if not os.access(AZURITE, os.X_OK):
        raise AzuriteMissing(f"{AZURITE.relative_to(ROOT)} is missing: run scripts/bootstrap")
    if shutil.which("node") is None:
        raise AzuriteMissing("node is not on PATH: Azurite needs Node.js")
    # A port taken between choosing and binding makes Azurite exit; choose again then.
    for attempt in range(3):
        try:
            process, instance = _start(location)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield instance
    finally:
        _stop(process)
