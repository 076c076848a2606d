"""The HTTP change API's bodies as pydantic models: the request of ``POST /api/changes`` and
every answer (``202``, ``200`` of ``GET /api/changes/{id}``, the problem details of every
refusal).

openapi.json documents these shapes; tests/test_openapi.py checks that each of its component
schemas says what the model of the same name says (required fields, properties, types and
bounds), so the two cannot drift apart.

The records of a call are kept as parsed, not converted: they are checked by the mapping (its
columns, transforms and required values, known only once the mapping is chosen), which lists
every record's problems at once, and the mark the JSON reader puts on a record with a repeated
key (``provisioning.convert.read_json.json_object``) must reach that check. Their model types
(``HrRecord``, ``HrValue``) say what a valid record looks like, for the document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    PlainValidator,
    RootModel,
    Tag,
)
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypeAliasType

from ..convert.bulk import MAX_OPERATIONS
from ..jml import lifecycle

# --- the request ------------------------------------------------------------------------

MappingName = TypeAliasType("MappingName", Literal["microsoft-sample", "hr-suite"])
"""A built-in mapping (provisioning.convert.mapping.BUILTIN; a test keeps the two equal)."""

HrValue = TypeAliasType("HrValue", str | float | bool | None)
"""A cell: text; numbers and booleans are read as text, null is an empty cell."""


def _as_parsed(value: Any) -> Any:
    return value


HrRecord = TypeAliasType(
    "HrRecord",
    Annotated[Any, PlainValidator(_as_parsed, json_schema_input_type=dict[str, HrValue])],
)
"""One worker, HR column name to value; kept as parsed for the mapping to check (a record that
is not an object is one of the problems it lists)."""

HrRecords = TypeAliasType(
    "HrRecords", Annotated[list[HrRecord], Field(min_length=1, max_length=MAX_OPERATIONS)]
)


def _text_or_none(value: Any) -> str | None:
    # A changeId is any value that says something: a number is its text; "", 0 and null are
    # no key at all (the Idempotency-Key header, if any, is used).
    return str(value) if value else None


def _or_none(value: Any) -> Any:
    return value or None  # "mapping": "" or null: the ?mapping= parameter, or the default


class ChangeEnvelope(BaseModel):
    """Records with a change id (the idempotency key) and a mapping; other keys are ignored."""

    records: HrRecords
    changeId: Annotated[
        Annotated[str, Field(min_length=1)] | SkipJsonSchema[None], BeforeValidator(_text_or_none)
    ] = None
    mapping: Annotated[MappingName | SkipJsonSchema[None], BeforeValidator(_or_none)] = None


def _shape(payload: Any) -> str | None:
    """Which form a call takes, by its JSON alone: an array is records, an object with a
    ``records`` array an envelope, any other object one record; anything else none."""
    if isinstance(payload, list):
        return "records"
    if isinstance(payload, dict):
        return "envelope" if isinstance(payload.get("records"), list) else "record"
    return None


class ChangeRequest(
    RootModel[
        Annotated[
            Annotated[HrRecord, Tag("record")]
            | Annotated[HrRecords, Tag("records")]
            | Annotated[ChangeEnvelope, Tag("envelope")],
            Discriminator(_shape),
        ]
    ]
):
    """The body of ``POST /api/changes``: one HR record, an array of records, or an
    envelope."""

    @property
    def records(self) -> list[Any]:
        if isinstance(self.root, ChangeEnvelope):
            return self.root.records
        return self.root if isinstance(self.root, list) else [self.root]

    @property
    def change_id(self) -> str | None:
        return self.root.changeId if isinstance(self.root, ChangeEnvelope) else None

    @property
    def mapping(self) -> str | None:
        return self.root.mapping if isinstance(self.root, ChangeEnvelope) else None


# --- the answers -------------------------------------------------------------------------
# Built by the service and sent as ``model_dump(mode="json", exclude_unset=True)``: a field
# typed ``... | SkipJsonSchema[None] = None`` is optional, left out of the body when not set
# (the document says optional, not nullable).

Action = TypeAliasType("Action", lifecycle.Action)

ChangeStatus = TypeAliasType(
    "ChangeStatus",
    Literal["queued", "done", "sent", "partly-rejected", "retrying", "superseded"],
)

RecordStatus = TypeAliasType(
    "RecordStatus", Literal["queued", "not-sent", "sent", "rejected", "retrying", "superseded"]
)

Index = Annotated[int, Field(ge=0)]
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""An ISO 8601 time as the app writes it (provisioning.clock.iso), passed on as text."""


class AcceptedRecord(BaseModel):
    index: Index
    externalId: str
    action: Action


class ChangeAccepted(BaseModel):
    """``202``: the change id and the planned action of each record."""

    id: str
    status: ChangeStatus
    records: list[AcceptedRecord]
    duplicate: bool


class EntraOutcome(BaseModel):
    """What Entra did with a record, from the provisioning logs (the reconciliation timer)."""

    status: Literal[
        "pending",
        "retrying",
        "success",
        "warning",
        "skipped",
        "failure",
        "unconfirmed",
        "superseded",
    ]
    action: str | None = None
    error_code: str | None = None
    reason: str | None = None
    recommended_action: str | None = None
    target_id: str | None = None
    log_time: DateTime | None = None
    sends: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = None


class RecordOutcome(BaseModel):
    index: Index
    externalId: str
    action: Action
    status: RecordStatus
    request_id: str | None
    entra: EntraOutcome | SkipJsonSchema[None] = None


class ChangeError(BaseModel):
    """Graph's error for a record it did not accept."""

    index: Index
    reason: str


class Change(BaseModel):
    """``200`` of ``GET /api/changes/{id}``: the change as planned, each record's status.
    The change record's own fields (operations, held changes, body hash, order) are not in
    it and so never shown."""

    id: str
    status: ChangeStatus
    received: DateTime
    mapping: str | SkipJsonSchema[None] = None
    records: list[RecordOutcome]
    errors: list[ChangeError]
    outcomes: Literal["pending", "complete"] | SkipJsonSchema[None] = None


class RecordError(BaseModel):
    """One problem of one record of a refused call."""

    index: Index
    column: str
    attribute: str
    reason: str


class Problem(BaseModel):
    """Problem details (RFC 9457), the body of every refusal."""

    type: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    title: str
    status: Annotated[int, Field(ge=400, le=599)]
    detail: str
    errors: list[RecordError] | SkipJsonSchema[None] = None


Body = ChangeAccepted | Change | Problem
