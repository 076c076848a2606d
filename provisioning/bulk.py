"""SCIM bulk requests for Entra's bulkUpload endpoint: at most 50 operations, stable bulkIds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
MAX_OPERATIONS = 50  # documented limit of bulkUpload per request
CONTENT_TYPE = "application/scim+json"


def bulk_id(content_hash: str, line: int) -> str:
    """Deterministic id of a row's operation: the same file content and row give the same id,
    so a resend of a request is recognisable in Entra's provisioning logs and in our ledger."""
    return f"{content_hash[:16]}-{line}"


@dataclass(slots=True)
class Operation:
    bulk_id: str
    external_id: str
    line: int
    data: dict[str, Any]
    # Lifecycle dates of the row (hire_date, termination_date), for planning; not sent.
    dates: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BulkRequest:
    index: int  # 1-based position in the run
    operations: list[Operation] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return serialize(self.operations)


def serialize(operations: Iterable[Operation]) -> bytes:
    return orjson.dumps(
        {
            "schemas": [BULK_REQUEST],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": op.bulk_id, "data": op.data}
                for op in operations
            ],
            "failOnErrors": None,
        }
    )


def batches(operations: Iterable[Operation], size: int = MAX_OPERATIONS) -> Iterator[BulkRequest]:
    """Group operations into requests of ``size`` (1..50) in the order given."""
    if not 1 <= size <= MAX_OPERATIONS:
        raise ValueError(f"batch size must be between 1 and {MAX_OPERATIONS}, not {size}")
    current = BulkRequest(1)
    for op in operations:
        current.operations.append(op)
        if len(current.operations) == size:
            yield current
            current = BulkRequest(current.index + 1)
    if current.operations:
        yield current
