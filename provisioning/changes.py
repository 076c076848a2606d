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

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from .bulk import MAX_OPERATIONS, Operation, batches
from .drop import GraphApi
from .lifecycle import Planner, Policy, today_in
from .mapping import BUILTIN, Mapping, load_mapping
from .outcomes import accepted_entry, graph_reason, job_stop_reason, stop_reason
from .pacing import limiter_for, retry_policy_for
from .readers import record_row
from .runs import client_request_id, iso, utcnow
from .settings import STATE_CONTAINER, Settings
from .state import WorkerState, accepted_seq
from .storage import BlobStore, FlushQueue, PreconditionFailed
from .submit import Submitter
from .tracking import track
from .transforms import SpecError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
API_FEED = "api"
_CHANGES, _OUTBOX = "changes/", "outbox/"
_LOCK, _SCHEDULED = "locks/outbox", "locks/flush-scheduled"
_MAX_CONFLICTS = 10
_PROBLEM = "https://github.com/hr-entra-provisioning/docs/problems/"


class Reply:
    """An HTTP answer: status, JSON body, extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}

    @property
    def content_type(self) -> str:
        return "application/problem+json" if self.status >= 400 else "application/json"


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Reply:
    return Reply(
        status,
        {"type": _PROBLEM + kind, "title": title, "status": status, "detail": detail, **extra},
    )


def caller_allowed(principal_header: str | None, allowed: str) -> tuple[bool, str]:
    """Easy Auth's X-MS-CLIENT-PRINCIPAL, when present, must name an allowed client id."""
    if principal_header is None:
        return True, ""
    try:
        principal = json.loads(base64.b64decode(principal_header))
        claims = {c.get("typ"): c.get("val") for c in principal.get("claims", [])}
    except (ValueError, binascii.Error, AttributeError):
        return False, "the Easy Auth principal header cannot be read"
    client = claims.get("appid") or claims.get("azp") or ""
    allowed_ids = {c.strip().lower() for c in allowed.split(",") if c.strip()}
    if client and client.lower() in allowed_ids:
        return True, client
    return False, "the calling application is not on PROVISIONING_ALLOWED_CLIENT_IDS"


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
    ) -> Reply:
        if len(body) > MAX_BODY_BYTES:
            return problem(
                413, "too-large", "Request body too large", f"at most {MAX_BODY_BYTES} bytes"
            )
        if content_type.split(";")[0].strip().lower() != "application/json":
            return problem(
                415, "media-type", "Unsupported media type", "send Content-Type: application/json"
            )
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem(400, "invalid-json", "Invalid JSON", f"the body is not JSON: {exc}")
        records, change_id, mapping_name = _unwrap(payload, mapping_name)
        if records is None:
            return problem(
                400,
                "invalid-shape",
                "Invalid request",
                "send one HR record (a JSON object), an array of records, "
                'or {"records": [...], "changeId": "..."}',
            )
        if not 1 <= len(records) <= MAX_OPERATIONS:
            return problem(
                400,
                "too-many-records",
                "Invalid request",
                f"send between 1 and {MAX_OPERATIONS} records per call, not {len(records)}",
            )
        try:
            mapping = self._mapping(mapping_name)
        except SpecError as exc:
            return problem(400, "unknown-mapping", "Unknown mapping", str(exc))
        key = change_id or idempotency_key
        change_id = _change_id(key) if key else uuid.uuid4().hex
        existing = self.store.read_json(STATE_CONTAINER, f"{_CHANGES}{change_id}.json")
        if existing is not None:
            return self._accepted(existing[0], duplicate=True)
        users, errors = _validate(records, mapping)
        if errors:
            return problem(
                400,
                "invalid-records",
                "Invalid records",
                f"{len({e['index'] for e in errors})} of {len(records)} records are invalid; "
                "nothing was applied",
                errors=errors,
            )
        change = self._plan(change_id, users, mapping)
        # The outbox entry first: a retry with the same key after a crash rewrites the same
        # entry, and the change record (created once) is what makes the retry a duplicate.
        if change["outbox"]:
            self.store.write_json(
                STATE_CONTAINER, change["outbox"], {"change": change_id, "ops": change.pop("ops")}
            )
        else:
            change.pop("ops")
        try:
            self.store.write_json(
                STATE_CONTAINER, f"{_CHANGES}{change_id}.json", change, create_only=True
            )
        except PreconditionFailed:  # the same key raced us: answer with the first one
            found = self.store.read_json(STATE_CONTAINER, f"{_CHANGES}{change_id}.json")
            assert found is not None
            return self._accepted(found[0], duplicate=True)
        if change["outbox"]:
            self._schedule_flush()
        log.info("change %s accepted: %d records", change_id, len(users))
        return self._accepted(change, duplicate=False)

    def _mapping(self, name: str | None) -> Mapping:
        if name and name not in BUILTIN:
            raise SpecError(f"mapping '{name}' is not one of {', '.join(BUILTIN)}")
        return load_mapping(name or self.settings.mapping)

    def _plan(self, change_id: str, users: list[Operation], mapping: Mapping) -> dict[str, Any]:
        ids = [op.external_id for op in users]
        known = self.state.lookup(ids)
        held = self.state.held_for(ids)
        policy = Policy(
            feed=API_FEED,
            mode="delta",
            today=today_in(self.settings.hr_timezone, self._clock()),
            lookahead_days=self.settings.hire_lookahead_days,
            full_send=self.settings.full_send,
            threshold_percent=self.settings.leaver_threshold_percent,
            threshold_count=self.settings.leaver_threshold_count,
        )
        planner = Planner(known, held, policy)
        decisions = [
            planner.add(op.external_id, i, op.data, op.dates) for i, op in enumerate(users)
        ]
        plan = planner.finish()
        for item in plan.cancel:
            self.state.drop_held(item)
        for item in plan.hold:
            self.state.hold(item)
        received = self._clock()
        ops = []
        records = []
        for index, (op, decision) in enumerate(zip(users, decisions, strict=True)):
            sent = plan.sends(op.external_id) is not None
            records.append(
                {
                    "index": index,
                    "externalId": op.external_id,
                    "action": decision.action,
                    "status": "queued" if sent else "not-sent",
                    "request_id": None,
                }
            )
            if sent:
                data = (
                    op.data if decision.active is None else {**op.data, "active": decision.active}
                )
                feed = known[op.external_id].feed if op.external_id in known else API_FEED
                ops.append(
                    {
                        "index": index,
                        "externalId": op.external_id,
                        "bulkId": f"chg-{change_id[:16]}-{index}",
                        "feed": feed,
                        "data": data,
                    }
                )
        return {
            "id": change_id,
            "status": "queued" if ops else "done",
            "received": iso(received),
            "mapping": mapping.source,
            "records": records,
            "errors": [],
            "outbox": f"{_OUTBOX}{received:%Y%m%dT%H%M%S%f}-{change_id}.json" if ops else None,
            "ops": ops,
        }

    def _accepted(self, change: dict[str, Any], *, duplicate: bool) -> Reply:
        body = {
            "id": change["id"],
            "status": change["status"],
            "records": [
                {k: r[k] for k in ("index", "externalId", "action")} for r in change["records"]
            ],
            "duplicate": duplicate,
        }
        return Reply(202, body, {"Location": f"/api/changes/{change['id']}"})

    def _schedule_flush(self) -> None:
        """One queue message per coalescing window: the first call of a burst schedules it."""
        if self.queue is None:
            return
        try:
            self.store.write_json(
                STATE_CONTAINER, _SCHEDULED, {"at": iso(self._clock())}, create_only=True
            )
        except PreconditionFailed:
            return  # a flush is already scheduled and will pick this change up
        self.queue.schedule(self.settings.coalesce_seconds)

    # --- GET /api/changes/{id} -----------------------------------------------------------

    def status(self, change_id: str) -> Reply:
        if not change_id.isalnum() or len(change_id) > 64:
            return problem(404, "not-found", "Not found", "no such change")
        found = self.store.read_json(STATE_CONTAINER, f"{_CHANGES}{change_id}.json")
        if found is None:
            return problem(404, "not-found", "Not found", f"no change {change_id}")
        change = found[0]
        return Reply(200, {k: v for k, v in change.items() if k != "outbox"})


def _unwrap(
    payload: Any, mapping_name: str | None
) -> tuple[list[Any] | None, str | None, str | None]:
    if isinstance(payload, list):
        return payload, None, mapping_name
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        change_id = payload.get("changeId")
        return (
            payload["records"],
            str(change_id) if change_id else None,
            payload.get("mapping") or mapping_name,
        )
    if isinstance(payload, dict):
        return [payload], None, mapping_name
    return None, None, mapping_name


def _change_id(key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"hr-provisioning-change:{key}").hex


def _validate(records: list[Any], mapping: Mapping) -> tuple[list[Operation], list[dict[str, Any]]]:
    header = mapping.columns
    bound = mapping.bind(header)
    mapped = frozenset(header)
    users: list[Operation] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        row = record_row(record, header, index)
        if row.problem is not None:
            errors.append(
                {
                    "index": index,
                    "column": row.problem[0],
                    "attribute": "",
                    "reason": row.problem[1],
                }
            )
            continue
        bad = [c for c in row.nested if c in mapped]
        for column in bad:
            errors.append(
                {
                    "index": index,
                    "column": column,
                    "attribute": "",
                    "reason": "holds an object or array; a single value is expected",
                }
            )
        problems: list[Any] = []
        user = bound.build(row.values, problems)
        dates = bound.dates(row.values, problems)
        for leaf, reason in problems:
            errors.append(
                {
                    "index": index,
                    "column": ", ".join(leaf.columns),
                    "attribute": leaf.path,
                    "reason": reason,
                }
            )
        external_id = user.get("externalId")
        if external_id is not None and external_id in seen:
            errors.append(
                {
                    "index": index,
                    "column": ", ".join(bound.external_id_leaf.columns),
                    "attribute": "externalId",
                    "reason": f"the same externalId as record {seen[external_id]} of this call",
                }
            )
        if external_id is not None:
            seen.setdefault(external_id, index)
        if not problems and not bad:
            users.append(Operation("", external_id or "", index, user, dates))
    return users, errors


async def flush(
    settings: Settings,
    store: BlobStore,
    graph: GraphApi,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], Any] = utcnow,
) -> dict[str, Any]:
    """Send everything waiting in the outbox; one flush at a time (blob lease)."""
    if not store.exists(STATE_CONTAINER, _LOCK):
        store.write_bytes(STATE_CONTAINER, _LOCK, b"", "text/plain")
    lease = store.acquire_lease(STATE_CONTAINER, _LOCK, settings.lease_seconds)
    if lease is None:
        return {"status": "busy"}
    started = time.monotonic()
    begun_at = clock()
    flush_id = f"{begun_at:%Y%m%dT%H%M%S}-flush-{uuid.uuid4().hex[:6]}"
    totals = {"changes": 0, "records_sent": 0, "records_accepted": 0, "requests": 0}
    state = WorkerState(store)
    try:
        # New calls from here on schedule a new flush rather than rely on this one.
        store.delete(STATE_CONTAINER, _SCHEDULED)
        names = sorted(b.name for b in store.list(STATE_CONTAINER, _OUTBOX))
        if not names:
            return {"status": "nothing-queued", **totals}
        job = await graph.job_status()
        if job.code != "Active":
            reason = job_stop_reason(job)
            log.error("flush %s stopped: %s", flush_id, reason)
            return {"status": "stopped", "reason": reason, **totals}
        entries = []
        for name in names:
            found = store.read_json(STATE_CONTAINER, name)
            if found is not None:
                entries.append((name, found[0]))
        ops: list[tuple[Operation, str, str]] = []  # operation, change id, feed
        for _name, entry in entries:
            for item in entry["ops"]:
                op = Operation(item["bulkId"], item["externalId"], item["index"], item["data"])
                ops.append((op, entry["change"], item["feed"]))
        where = {op.bulk_id: (change, feed) for op, change, feed in ops}
        submitter = Submitter(
            graph, limiter_for(settings, sleep), retry_policy_for(settings), sleep=sleep
        )
        outcome_of: dict[str, dict[str, Any]] = {}
        stop: str | None = None
        for request in batches((op for op, _, _ in ops), MAX_OPERATIONS):
            result = await submitter.submit(
                request.body, client_request_id(flush_id, request.index)
            )
            totals["requests"] += 1
            totals["records_sent"] += len(request.operations)
            for op in request.operations:
                outcome_of[op.bulk_id] = {
                    "status": {"accepted": "sent", "rejected": "rejected"}.get(
                        result.status, "retrying"
                    ),
                    "request_id": result.request_id,
                    "error": None
                    if result.status == "accepted"
                    else graph_reason(result, "answered"),
                }
            if result.status == "accepted":
                totals["records_accepted"] += len(request.operations)
                state.record_accepted(
                    accepted_seq(flush_id, request.index),
                    [accepted_entry(op, where[op.bulk_id][1]) for op in request.operations],
                )
                track(
                    store,
                    run_id=flush_id,
                    results_prefix=f"runs/{begun_at:%Y-%m-%d}/{flush_id}/",
                    kind="changes",
                    batch=request.index,
                    operations=request.operations,
                    accepted_at=clock(),
                    actions={
                        op.bulk_id: f"change {where[op.bulk_id][0]}" for op in request.operations
                    },
                )
            else:
                ended = stop_reason(result)
                if ended is not None:
                    stop = ended[1]
                    break
            lease.renew()
        for name, entry in entries:
            change_id = entry["change"]
            results = [outcome_of.get(item["bulkId"]) for item in entry["ops"]]
            settled = all(r is not None and r["status"] in ("sent", "rejected") for r in results)
            _update_change(store, change_id, entry["ops"], results, settled)
            totals["changes"] += 1
            if settled:
                store.delete(STATE_CONTAINER, name)
        # Fold now, so the next call's plan sees what this flush sent.
        state.fold()
        if stop:
            log.error("flush %s interrupted: %s", flush_id, stop)
            return {"status": "interrupted", "reason": stop, **totals}
        return {"status": "complete", **totals, "seconds": round(time.monotonic() - started, 3)}
    finally:
        lease.release()


def _update_change(
    store: BlobStore,
    change_id: str,
    items: list[dict[str, Any]],
    results: list[dict[str, Any] | None],
    settled: bool,
) -> None:
    name = f"{_CHANGES}{change_id}.json"
    found = store.read_json(STATE_CONTAINER, name)
    if found is None:
        return
    change = found[0]
    by_index = {r["index"]: r for r in change["records"]}
    for item, result in zip(items, results, strict=True):
        if result is None:
            continue
        record = by_index[item["index"]]
        record["status"] = result["status"]
        record["request_id"] = result["request_id"]
        if result["error"]:
            change["errors"].append({"index": item["index"], "reason": result["error"]})
    statuses = {r["status"] for r in change["records"] if r["status"] != "not-sent"}
    if settled:
        change["status"] = "sent" if statuses <= {"sent"} else "partly-rejected"
    else:
        change["status"] = "retrying"
    store.write_json(STATE_CONTAINER, name, change)


def record_entra_outcomes(
    store: BlobStore,
    change_id: str,
    outcomes: dict[int, dict[str, Any]],
    final_states: Collection[str],
) -> None:
    """Put Entra's outcome of each record (by index) on the change, for ``GET /api/changes``;
    its ``outcomes`` are complete once every record sent has one of ``final_states``.

    Written by the reconciliation timer; ETag-conditional, so a flush updating the same change
    at the same moment is read again rather than overwritten."""

    def with_outcomes(change: dict[str, Any] | None) -> dict[str, Any] | None:
        if change is None:
            return None
        for record in change["records"]:
            if record["index"] in outcomes:
                record["entra"] = outcomes[record["index"]]
        sent = [r for r in change["records"] if r["status"] == "sent"]
        complete = all(r.get("entra", {}).get("status") in final_states for r in sent)
        change["outcomes"] = "complete" if complete else "pending"
        return change

    name = f"{_CHANGES}{change_id}.json"
    if not store.update_json(STATE_CONTAINER, name, with_outcomes, attempts=_MAX_CONFLICTS):
        log.warning("change %s kept changing; its Entra outcomes wait for the next pass", change_id)
