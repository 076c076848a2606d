"""What the tests that talk to the Graph emulator share: SCIM operations to send, and settings
pointing at an emulator with fast retries and no client-side pacing to speak of."""

from __future__ import annotations

from typing import Any

from graph_emulator import GraphEmulator
from provisioning.convert.bulk import Operation
from provisioning.settings import Settings

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def scim_operations(
    count: int, prefix: str = "E", *, first_line: int = 1, digits: int = 5
) -> list[Operation]:
    """``count`` valid users ``<prefix><number>``, one per line from ``first_line``."""
    ops = []
    for i in range(count):
        external_id = f"{prefix}{i:0{digits}d}"
        data = {
            "schemas": [CORE],
            "externalId": external_id,
            "userName": f"{external_id.lower()}@contoso.test",
            "displayName": f"User {external_id}",
            "active": True,
        }
        ops.append(Operation(f"{prefix}-{i}", external_id, i + first_line, data))
    return ops


def emulator_settings(emu: GraphEmulator, graph_url: str | None = None, **changes: Any) -> Settings:
    """Settings for ``emu`` (its Graph URL unless ``graph_url``), the real credential."""
    values: dict[str, Any] = {
        "graph_url": graph_url or emu.graph_url,
        "service_principal_id": emu.sp_id,
        "job_id": emu.job_id,
        "credential": "auto",
        "request_timeout_seconds": 5.0,
        "max_attempts": 4,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "rate_limit_requests": 1000,
        "rate_limit_window_seconds": 1.0,
    }
    values.update(changes)
    return Settings(**values)
