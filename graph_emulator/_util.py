"""Small helpers shared by the emulator modules: time stamps, ids and Graph error bodies."""

from __future__ import annotations

import ipaddress
import math
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any


def new_guid() -> str:
    return str(uuid.uuid4())


def new_job_id(tenant_id: str | None = None) -> str:
    """A job id shaped like Entra's API-driven provisioning jobs: ``API2AAD.<32 hex>.<guid>``.
    In Microsoft's sample log page the 32 hex digits are the tenant id without its dashes."""
    hex_part = (tenant_id or "").replace("-", "").lower()
    if len(hex_part) != 32 or any(ch not in "0123456789abcdef" for ch in hex_part):
        hex_part = secrets.token_hex(16)
    return f"API2AAD.{hex_part}.{new_guid()}"


def iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, as Graph prints DateTimeOffset."""
    micros = round(ts * 1_000_000)
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{micros % 1_000_000 // 1000:03d}Z"


def iso_seconds(ts: float) -> str:
    """ISO 8601 UTC truncated to whole seconds, as provisioning-log entries print
    ``activityDateTime`` (``2023-01-03T22:40:50Z`` in Microsoft's sample page,
    tests/data/microsoft/provisioning-log-sample.json)."""
    return datetime.fromtimestamp(math.floor(ts), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Parse an OData DateTimeOffset literal (``2024-01-01T00:00:00Z``, fractions, offsets)."""
    value = text.strip().strip("'")
    # A '+' offset decoded from an unencoded query string arrives as a space.
    if len(value) > 19 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # fromisoformat accepts at most 6 fractional digits; Graph may send 7.
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits += rest[0]
            rest = rest[1:]
        value = f"{head}.{(digits + '000000')[:6]}{rest}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def graph_error(
    code: str, message: str, request_id: str, client_request_id: str, now: float
) -> dict[str, Any]:
    """Microsoft Graph's JSON error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
