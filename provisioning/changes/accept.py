"""Changes pushed over HTTP (Logic Apps, ServiceNow, an HR webhook): accept, plan, persist,
and send them coalesced with other calls in full bulk requests.

A call is checked whole: if any record is invalid nothing is applied and the 400 lists every
record's problems (RFC 9457 problem details). A valid call is planned like a delta file (same
mapping, validation and joiner/mover/leaver rules), written to ``state`` (the change record and
its outbox entry) and only then acknowledged with 202, so a stopped instance loses nothing.
A flush, triggered through a storage queue message made visible after the coalescing window,
sends everything waiting in the outbox in bulk requests of 50, paced like file runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from ..clock import iso, utcnow
from ..convert.bulk import MAX_OPERATIONS, Operation
from ..convert.mapping import BUILTIN, Mapping, load_mapping
from ..convert.read_json import json_object, record_row
from ..convert.transforms import SpecError
from ..convert.validation import control_problem, id_key
from ..documents import DocumentError, read_document, update_document
from ..errors import plain_reason
from ..jml.lifecycle import Planner, Policy, today_in
from ..jml.ordering import new_order
from ..jml.state import HeldChange, WorkerState
from ..settings import STATE_CONTAINER, Settings
from ..storage import BlobStore, FlushQueue, PreconditionFailed
from .models import Change, ChangeAccepted, ChangeRequest, RecordError
from .records import (
    API_FEED,
    FLUSH_SCHEDULED,
    MAX_CONFLICTS,
    OUTBOX_PREFIX,
    ChangeOperation,
    ChangeRecord,
    FlushScheduled,
    OutboxEntry,
    RecordState,
    StoredChangeStatus,
    change_name,
)
from .replies import Reply, problem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class ChangeService:
    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        queue: FlushQueue | None,
        *,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.state = WorkerState(store)
        self._clock = clock

    # --- POST /api/changes ---------------------------------------------------------------

    def submit(
        self,
        body: bytes,
        content_type: str,
        *,
        mapping_name: str | None = None,
        idempotency_key: str | None = None,
        caller: str = "",
    ) -> Reply:
        """Accept one call. ``caller``: who Easy Auth says is calling (empty without it);
        idempotency keys are scoped to it, so two callers never share a change."""
        if len(body) > MAX_BODY_BYTES:
            return problem(
                413, "too-large", "Request body too large", f"at most {MAX_BODY_BYTES} bytes"
            )
        if content_type.split(";")[0].strip().lower() != "application/json":
            return problem(
                415, "media-type", "Unsupported media type", "send Content-Type: application/json"
            )
        try:
            # A record with a repeated key is rejected, as in a file, not read last-one-wins.
            payload = json.loads(body, object_pairs_hook=json_object)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem(400, "invalid-json", "Invalid JSON", f"the body is not JSON: {exc}")
        except RecursionError:
            return problem(400, "invalid-json", "Invalid JSON", "the body is nested too deeply")
        try:
            request = ChangeRequest.model_validate(payload)
        except ValidationError as exc:
            return _refused(exc)
        records = request.records
        try:
            mapping = self._mapping(request.mapping or mapping_name)
        except SpecError as exc:
            return problem(400, "unknown-mapping", "Unknown mapping", str(exc))
        key = request.change_id or idempotency_key  # the body's changeId wins, as documented
        change_id = _change_id(caller, key) if key else uuid.uuid4().hex
        digest = _body_hash(records, mapping.source)
        # A document this version cannot use (written by a newer version of the app, or not
        # what it should be) stops the call with a 500, said in the log, and is left as it is:
        # the change record of this key (whether this call repeats it is not known; it is only
        # ever created create-only and updated ETag-conditionally), or a held change of one of
        # its workers (the plan depends on it: provisioning.jml.state). Nothing of the call is
        # sent; the caller tries again later.
        try:
            existing = read_document(
                self.store, STATE_CONTAINER, change_name(change_id), ChangeRecord
            )
            if existing is not None:
                return self._repeat(existing[0], digest)
            users, errors = _validate(records, mapping)
            if errors:
                return problem(
                    400,
                    "invalid-records",
                    "Invalid records",
                    f"{len({e.index for e in errors})} of {len(records)} records are invalid; "
                    "nothing was applied",
                    errors=errors,
                )
            change = self._plan(change_id, users, mapping, digest)
            # The change record first, created once: whoever creates it owns the change; a
            # retry or a concurrent call with the same key finds it and completes what is
            # missing.
            try:
                self.store.write_json(
                    STATE_CONTAINER, change_name(change_id), change.dump(), create_only=True
                )
            except PreconditionFailed:
                found = read_document(
                    self.store, STATE_CONTAINER, change_name(change_id), ChangeRecord
                )
                assert found is not None
                return self._repeat(found[0], digest)
            change = self._complete(change)
        except DocumentError as exc:
            log.error("change %s not accepted: %s", change_id, exc)
            return problem(
                500,
                "unreadable-change",
                "Change not accepted",
                f"change {change_id} could not be accepted: the app's state holds a document "
                "this version cannot read; nothing of it is sent; the host log has the details",
            )
        log.info("change %s accepted: %d records", change_id, len(users))
        return self._accepted(change, duplicate=False)

    def _repeat(self, change: ChangeRecord, digest: str) -> Reply:
        """The same key again: the same body is a duplicate (finished if a crash interrupted
        it), another body is a conflict."""
        if change.body_hash not in (None, digest):
            return problem(
                409,
                "idempotency-key-reused",
                "Idempotency key reused",
                f"change {change.id} was accepted with this key and another body; "
                "use a new key for a new change",
            )
        return self._accepted(self._complete(change), duplicate=True)

    def _complete(self, change: ChangeRecord) -> ChangeRecord:
        """Apply a change still ``accepting``: its held changes, its outbox entry (named by
        the change, so doing this twice writes the same entry), the flush; then ``queued``.
        Idempotent, so the call that created the change and any retry may both run it."""
        if change.status != "accepting":
            return change
        for item in change.cancel:
            self.state.drop_held(item.held())
        for item in change.hold:
            self.state.hold(item.held())
        if change.ops:
            self.store.write_json(
                STATE_CONTAINER,
                f"{OUTBOX_PREFIX}{change.id}.json",
                OutboxEntry(change=change.id, order=change.order).dump(),
            )
            self._schedule_flush()
        final: StoredChangeStatus = "queued" if change.ops else "done"

        def settled(current: ChangeRecord | None) -> ChangeRecord | None:
            if current is None or current.status != "accepting":
                return None  # a flush already moved it on
            current.status = final
            return current

        update_document(
            self.store,
            STATE_CONTAINER,
            change_name(change.id),
            ChangeRecord,
            settled,
            attempts=MAX_CONFLICTS,
        )
        return change.model_copy(update={"status": final})

    def _mapping(self, name: str | None) -> Mapping:
        if name and name not in BUILTIN:
            raise SpecError(_not_builtin(name))
        return load_mapping(name or self.settings.mapping)

    def _plan(
        self, change_id: str, users: list[Operation], mapping: Mapping, digest: str
    ) -> ChangeRecord:
        """The change record: the planned action per record and the operations to send. Pure
        planning; nothing is written here."""
        received = self._clock()
        order = new_order(received, change_id)
        ids = [op.external_id for op in users]
        known = self.state.lookup(ids)
        held = self.state.held_for(ids)
        policy = Policy(
            feed=API_FEED,
            mode="delta",
            today=today_in(self.settings.hr_timezone, received),
            lookahead_days=self.settings.hire_lookahead_days,
            full_send=self.settings.full_send,
            threshold_percent=self.settings.leaver_threshold_percent,
            threshold_count=self.settings.leaver_threshold_count,
            order=order,
            watermarks=dict(self.state.gate().get("feeds", {})),
        )
        planner = Planner(known, held, policy)
        decisions = [
            planner.add(op.external_id, i, op.data, op.dates) for i, op in enumerate(users)
        ]
        plan = planner.finish()
        ops = []
        records = []
        for index, (op, decision) in enumerate(zip(users, decisions, strict=True)):
            # An unchanged record goes too: the newest HR data must be what Entra has last,
            # even if an older file run is still sending this worker.
            sent = plan.sends(op.external_id) is not None or decision.action == "unchanged"
            records.append(
                RecordState(
                    index=index,
                    externalId=op.external_id,
                    action=decision.action,
                    status="queued" if sent else "not-sent",
                    request_id=None,
                )
            )
            if sent:
                data = (
                    op.data if decision.active is None else {**op.data, "active": decision.active}
                )
                ops.append(
                    ChangeOperation(
                        index=index,
                        externalId=op.external_id,
                        bulkId=f"chg-{change_id[:16]}-{index}",
                        feed=decision.feed,
                        data=data,
                    )
                )
        return ChangeRecord(
            id=change_id,
            status="accepting",
            received=iso(received),
            order=order,
            body_hash=digest,
            mapping=mapping.source,
            records=records,
            errors=[],
            ops=ops,
            hold=[HeldChange.of(h) for h in plan.hold],
            cancel=[HeldChange.of(h) for h in plan.cancel],
        )

    def _accepted(self, change: ChangeRecord, *, duplicate: bool) -> Reply:
        body = ChangeAccepted.model_validate(
            {
                "id": change.id,
                "status": _shown(change.status),
                # index, externalId and action of each
                "records": [r.model_dump() for r in change.records],
                "duplicate": duplicate,
            }
        )
        return Reply(202, body, {"Location": f"/api/changes/{change.id}"})

    def _schedule_flush(self) -> None:
        """One queue message per coalescing window: the first call of a burst schedules it."""
        if self.queue is None:
            return
        try:
            self.store.write_json(
                STATE_CONTAINER,
                FLUSH_SCHEDULED,
                FlushScheduled(at=iso(self._clock())).dump(),
                create_only=True,
            )
        except PreconditionFailed:
            return  # a flush is already scheduled and will pick this change up
        self.queue.schedule(self.settings.coalesce_seconds)

    # --- GET /api/changes/{id} -----------------------------------------------------------

    def status(self, change_id: str) -> Reply:
        if not change_id.isalnum() or len(change_id) > 64:
            return problem(404, "not-found", "Not found", "no such change")
        try:
            found = read_document(self.store, STATE_CONTAINER, change_name(change_id), ChangeRecord)
        except DocumentError as exc:
            # Said plainly to the caller, in full in the log; the record is left as it is.
            log.error("change %s cannot be read: %s", change_id, exc)
            return _unreadable(change_id)
        if found is None:
            return problem(404, "not-found", "Not found", f"no change {change_id}")
        change = found[0]
        try:
            # Only what the model names is shown: the change record's own fields (its
            # operations, held changes, body hash, order) are the app's business. The keys the
            # record has, as it has them: one written before outcomes existed has none.
            shown = Change.model_validate({**change.stored(), "status": _shown(change.status)})
        except ValidationError as exc:
            # Whatever wrote the record wrote something the document does not describe: a
            # bug. Said plainly to the caller, in full in the log; never an undocumented body.
            log.error("change %s does not fit its model: %s", change_id, _reasons(exc))
            return _unreadable(change_id)
        return Reply(200, shown)


def _unreadable(change_id: str) -> Reply:
    """The 500 for a change record this version cannot read or show."""
    return problem(
        500,
        "unreadable-change",
        "Change not readable",
        f"change {change_id} is stored in a form this version cannot show; "
        "the host log has the details",
    )


def _shown(status: str) -> str:
    # "accepting" lasts from the change record's creation to its outbox entry: for the
    # caller it is already queued (a retry of the call completes it).
    return "queued" if status == "accepting" else status


def _refused(exc: ValidationError) -> Reply:
    """The 400 for a call that is not a ``ChangeRequest``, the most basic fault first: not
    one of the three forms, then the number of records, then the envelope's mapping."""
    errors = exc.errors(include_url=False)
    kinds = {e["type"] for e in errors}
    if kinds & {"union_tag_not_found", "union_tag_invalid"}:
        return problem(
            400,
            "invalid-shape",
            "Invalid request",
            "send one HR record (a JSON object), an array of records, "
            'or {"records": [...], "changeId": "..."}',
        )
    for error in errors:
        if error["type"] in ("too_short", "too_long") and error["loc"][-1:] == ("records",):
            count = error["ctx"]["actual_length"]
            return problem(
                400,
                "too-many-records",
                "Invalid request",
                f"send between 1 and {MAX_OPERATIONS} records per call, not {count}",
            )
    for error in errors:
        if error["loc"][:2] == ("envelope", "mapping"):
            return problem(400, "unknown-mapping", "Unknown mapping", _not_builtin(error["input"]))
    # The first part of a location is the form the call took (record, records, envelope).
    return problem(400, "invalid-shape", "Invalid request", _reasons(exc, skip=1))


def _reasons(exc: ValidationError, *, skip: int = 0) -> str:
    """Pydantic's errors in plain words, each after where it is ("records.0.status: must be
    one of ..."); ``skip``: leading parts of the location to leave out."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][skip:]) or 'body'}: {plain_reason(e)}"
        for e in exc.errors(include_url=False)
    )


def _not_builtin(name: object) -> str:
    return f"mapping '{name}' is not one of {', '.join(BUILTIN)}"


def _change_id(caller: str, key: str) -> str:
    # Scoped to the caller: two callers choosing the same key make two changes.
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hr-provisioning-change:{caller}:{key}").hex


def _body_hash(records: list[Any], mapping: str) -> str:
    """What a repeated key must carry again to be a duplicate (key order does not matter)."""
    body = {"records": records, "mapping": mapping}
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # What orjson cannot write (an integer beyond 64 bits, a lone surrogate) the standard
        # library can, escaped: such a body still gets a stable hash instead of a 500.
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(canonical).hexdigest()


def _validate(records: list[Any], mapping: Mapping) -> tuple[list[Operation], list[RecordError]]:
    header = mapping.columns
    bound = mapping.bind(header)
    mapped = frozenset(header)
    users: list[Operation] = []
    errors: list[RecordError] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        row = record_row(record, header, index)
        if row.problem is not None:
            errors.append(
                RecordError(
                    index=index,
                    column=row.problem[0],
                    attribute="",
                    reason=row.problem[1],
                )
            )
            continue
        bad = [c for c in row.nested if c in mapped]
        for column in bad:
            errors.append(
                RecordError(
                    index=index,
                    column=column,
                    attribute="",
                    reason="holds an object or array; a single value is expected",
                )
            )
        # As a file's rows are checked (convert.pipeline): no control character or lone
        # surrogate reaches a directory attribute (nor the fingerprint, which cannot hold one).
        for column, value in zip(header, row.values, strict=False):
            reason = control_problem(value) if column in mapped and column not in bad else None
            if reason is not None:
                bad.append(column)
                errors.append(RecordError(index=index, column=column, attribute="", reason=reason))
        problems: list[Any] = []
        user = bound.build(row.values, problems)
        dates = bound.dates(row.values, problems)
        for leaf, reason in problems:
            errors.append(
                RecordError(
                    index=index,
                    column=", ".join(leaf.columns),
                    attribute=leaf.path,
                    reason=reason,
                )
            )
        external_id = user.get("externalId")
        key = None if external_id is None else id_key(external_id)
        if key is not None and key in seen:
            errors.append(
                RecordError(
                    index=index,
                    column=", ".join(bound.external_id_leaf.columns),
                    attribute="externalId",
                    reason="the same externalId (ignoring case) as record "
                    f"{seen[key]} of this call",
                )
            )
        if key is not None:
            seen.setdefault(key, index)
        if not problems and not bad:
            users.append(Operation("", external_id or "", index, user, dates))
    return users, errors
