"""SCIM bulk requests for Entra's bulkUpload endpoint: at most 50 operations, stable bulkIds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
MAX_OPERATIONS = 50  # documented limit of bulkUpload per request
CONTENT_TYPE = "application/scim+json"


def bulk_id(content_hash: str, record: int) -> str:
    """Deterministic id of a record's operation: the same file content and record give the same
    id, so a resend of a request is recognisable in Entra's provisioning logs and in our
    ledger. ``record`` is the record's ordinal, not its line: every record of a JSON array
    written on one line starts on line 1."""
    return f"{content_hash[:16]}-{record}"


@dataclass(slots=True)
class Operation:
    bulk_id: str
    external_id: str
    line: int
    data: dict[str, Any]
    # Lifecycle dates of the row (hire_date, termination_date), for planning; not sent.
    dates: dict[str, str] = field(default_factory=dict)
    # Ordinal of the record in its file (0 for operations that do not come from a file).
    record: int = 0


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
    """Group operations into requests of ``size`` (1..50) in the order given.

    A bulkId already in the request starts the next one: SCIM (RFC 7644 3.7) wants bulkIds
    unique within a request, and whether Graph enforces it is undocumented, so none is ever
    sent twice in one request whatever made the operations."""
    if not 1 <= size <= MAX_OPERATIONS:
        raise ValueError(f"batch size must be between 1 and {MAX_OPERATIONS}, not {size}")
    current = BulkRequest(1)
    ids: set[str] = set()
    for op in operations:
        if op.bulk_id in ids:
            yield current
            current, ids = BulkRequest(current.index + 1), set()
        current.operations.append(op)
        ids.add(op.bulk_id)
        if len(current.operations) == size:
            yield current
            current, ids = BulkRequest(current.index + 1), set()
    if current.operations:
        yield current
