"""The blob trigger's SDK-type binding as the Functions host and the Python worker drive it, for
local runs and tests (no host can run here).

``hr_file_dropped`` is annotated with the ``BlobClient`` of azurefunctions-extensions-bindings-blob.
At indexing, the worker reports its bindings through the extension's registry, which marks that
binding ``SupportsDeferredBinding``; at invocation, the host then sends a *model binding data*
(the connection setting's name, the container and the blob name) instead of the blob's content,
and the worker decodes it with the extension's converter into an ``azure.storage.blob.BlobClient``.
These functions do the worker's part with the extension's real registry and converter, and the
host's part by building the reference it sends.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any

import azurefunctions.extensions.base as sdk_bindings

from provisioning.settings import INBOUND_CONTAINER, STORAGE_CONNECTION

TRIGGER = "blobTrigger"


@dataclass(frozen=True)
class ModelBindingData:
    """The fields of the worker protocol's ``ModelBindingData`` that the extension reads."""

    version: str
    source: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class ParamTypeInfo:
    """The worker's record of a parameter: its binding type and resolved annotation."""

    binding_name: str
    pytype: type


def blob_reference(name: str, container: str = INBOUND_CONTAINER) -> ModelBindingData:
    """What the host's blob extension sends for a deferred blob binding: JSON naming the
    connection setting, the container and the blob."""
    content = {"Connection": STORAGE_CONNECTION, "ContainerName": container, "BlobName": name}
    return ModelBindingData(
        "1.0", "AzureStorageBlobs", "application/json", json.dumps(content).encode("utf-8")
    )


def trigger_parameter(function: Any) -> tuple[str, type]:
    """The blob trigger's parameter name and its annotation as the worker resolves it
    (``typing.get_type_hints`` of the user function). ``function`` is one of
    ``app.get_functions()``."""
    bindings = [json.loads(b) for b in function.get_raw_bindings()]
    (name,) = [b["name"] for b in bindings if b["type"] == TRIGGER]
    return name, typing.get_type_hints(function.get_user_function())[name]


def worker_raw_bindings(function: Any) -> list[dict[str, Any]]:
    """The bindings the worker reports to the host when the extension is installed: its
    registry's get_raw_bindings with the parameter types the worker resolved."""
    name, pytype = trigger_parameter(function)
    registry = sdk_bindings.get_binding_registry()
    raw, _ = registry.get_raw_bindings(function, {name: ParamTypeInfo(TRIGGER, pytype)})
    return [json.loads(b) for b in raw]


def trigger_argument(function: Any, name: str, container: str = INBOUND_CONTAINER) -> Any:
    """The argument the worker passes for ``<container>/<name>``: the registry's converter for
    the trigger decoding the host's reference into the parameter's annotated type. The
    client is built from the connection setting (HRSTORAGE) as in Azure."""
    _, pytype = trigger_parameter(function)
    registry = sdk_bindings.get_binding_registry()
    if not registry.check_supported_type(pytype):
        raise TypeError(f"{pytype!r} is not an SDK type: the host would send the blob's content")
    datum = sdk_bindings.Datum(blob_reference(name, container), "model_binding_data")
    return registry.get(TRIGGER).decode(datum, trigger_metadata={}, pytype=pytype)
