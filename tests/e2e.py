"""End-to-end helpers: the Graph emulator and the app's settings pointed at it and Azurite,
and the blob function invoked as the Functions host would."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import azure.functions as func

from graph_emulator import GraphEmulator
from provisioning.settings import RESULTS_CONTAINER, Settings
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
    """Invoke the function as the host would: a real InputStream for hr-inbound/<name>."""
    blob = func.blob.InputStream(
        data=data,
        name=f"hr-inbound/{name}",
        uri=f"http://127.0.0.1/devstoreaccount1/hr-inbound/{name}",
        length=len(data),
    )
    return asyncio.run(the_function().get_user_function()(blob))


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
