"""End-to-end helpers: the Graph emulator and the app's settings pointed at it and Azurite,
and the blob function invoked as the Functions host would."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from devtools import blob_binding
from graph_emulator import GraphEmulator
from provisioning.settings import INBOUND_CONTAINER, RESULTS_CONTAINER, Settings
from provisioning.storage import BlobStore


@functools.cache
def functions() -> dict[str, Any]:
    """The app's functions by name. get_functions() indexes the app and may run only once per
    app, as in the host, so every test shares this."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def the_function() -> Any:
    return functions()["hr_file_dropped"]


def drop(data: bytes, name: str = "workers.csv") -> Any:
    """Drop ``data`` as hr-inbound/<name> (uploaded to storage) and invoke the function as the
    host and the Python worker would: with the SDK-typed argument the worker builds from the
    host's reference to the blob (devtools.blob_binding)."""
    blobs = store()
    blobs.ensure_containers(INBOUND_CONTAINER)
    blobs.write_bytes(INBOUND_CONTAINER, name, data, "text/csv")
    return asyncio.run(the_function().get_user_function()(trigger_argument(name)))


def trigger_argument(name: str) -> Any:
    """The BlobClient the Python worker passes the function for hr-inbound/<name>."""
    return blob_binding.trigger_argument(the_function(), name)


def store() -> BlobStore:
    return BlobStore.from_settings(Settings())


def runs(kind: str = "summary.json") -> list[dict[str, Any]]:
    found = [b.name for b in store().list(RESULTS_CONTAINER, "runs/") if b.name.endswith(kind)]
    out = []
    for name in sorted(found):
        data = store().read_json(RESULTS_CONTAINER, name)
        assert data is not None
        out.append({**data[0], "_name": name})
    return out


def result_text(summary: dict[str, Any], name: str) -> str:
    prefix = summary["_name"].rsplit("/", 1)[0]
    data = store().read_bytes(RESULTS_CONTAINER, f"{prefix}/{name}")
    assert data is not None, name
    return data.decode("utf-8")


def sent_external_ids(emu: GraphEmulator) -> list[str]:
    return [ext for u in emu.uploads() if u["status"] == 202 for _, ext in u["records"]]


def worker_raw_bindings() -> list[dict[str, Any]]:
    """The function's bindings as the Python worker reports them to the host."""
    return blob_binding.worker_raw_bindings(the_function())
