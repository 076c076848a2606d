"""What Entra has accepted, per worker, and the changes waiting for a date or an approval.

Layout in the ``state`` container:
- ``workers/index-XX.json``: {externalId: [fingerprint, active, feed, seq, order]} for one of 256
  shards (by the first two hex digits of the id's SHA-256); small enough to load whole for
  planning. ``order`` is the order of the newest HR data known to have reached Entra for the
  worker (see ``provisioning.jml.ordering``); ``fingerprint`` is None while it is not known what
  Entra got (a send whose answer was lost).
- ``workers/records-XX.json``: {externalId: [seq, last accepted SCIM record]} (leavers need it).
- ``workers/deltas/g<gen>.json``: what one turn of the send gate changed, numbered by the gate's
  generation (``provisioning.jml.ordering``): a bulk request about to be sent (``sending``), then
  accepted (``accepted``) or not (``void``); or workers a newer run restated without sending
  (``restated``: order and owning feed only). One small write per request instead of up to 50
  shard rewrites; the next fold merges pending deltas into the shards. Shard writes are
  ETag-conditional and a delta only overwrites an entry with an older ``seq``, so a fold
  interrupted half way, or two folds at once, leave the shards right.
- ``workers/folded.json``: the generation up to which every delta is folded.
- ``held/<id-hash>-<kind>.json``: a future-dated joiner or leaver with the record to send.
- ``approvals/requests/<run-id>.json``: leavers held by the safety threshold;
  ``approvals/<run-id>``: the approval marker a person (or ``python -m provisioning approve``)
  writes to release them. A newer run of the same full feed supersedes an open request.

Held changes, approval requests and approvals are versioned documents
(``provisioning.documents``: ``HeldDocument``, ``ApprovalRequest``, ``Approval``); what a
reader does with one this version cannot use is said where it reads it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

from pydantic import Field

from ..documents import (
    Document,
    DocumentError,
    MalformedDocument,
    NewerDocument,
    Part,
    none,
    read_document,
)
from ..errors import StorageError
from ..settings import STATE_CONTAINER
from ..storage import BlobStore
from .lifecycle import Held, Known

log = logging.getLogger(__name__)

_INDEX, _RECORDS, _DELTAS = "workers/index-", "workers/records-", "workers/deltas/"
_FOLDED = "workers/folded.json"
_HELD, _REQUESTS, _APPROVALS = "held/", "approvals/requests/", "approvals/"
_MAX_CONFLICTS = 20
# The send gate's blob: its generation counter and the newest full-feed run per feed.
GATE = "locks/send"
# A delta still ``sending`` this long after it was written belongs to a dead sender: the fold
# stops waiting for its answer (what it may have sent is kept as "not known").
STALE_SENDING = dt.timedelta(minutes=15)
# Folded deltas are kept this long, so a sender catching up on the gate finds what others did
# without re-reading the shards.
DELTA_RETENTION = dt.timedelta(minutes=15)

DeltaStatus = Literal["sending", "accepted", "void", "restated"]
# One change of one worker: (externalId, fingerprint, active, feed, order, record). For a
# ``sending`` delta the fingerprint and record are None (not known yet whether Entra got it).
Change = tuple[str, str | None, bool, str, str, dict[str, Any] | None]


class HeldChange(Part):
    """A held change (:class:`~provisioning.jml.lifecycle.Held`) as JSON: the document of
    ``held/`` without its version, and the ``hold`` and ``cancel`` lists of a change record."""

    external_id: str
    kind: Literal["joiner", "leaver"]
    due: str  # ISO day in the HR time zone
    feed: str
    record: dict[str, Any] | None = None
    order: str = ""

    @classmethod
    def of(cls, held: Held) -> Self:
        return cls(
            external_id=held.external_id,
            kind=held.kind,
            due=held.due,
            feed=held.feed,
            record=held.record,
            order=held.order,
        )

    def held(self) -> Held:
        return Held(self.external_id, self.kind, self.due, self.feed, self.record, self.order)


class HeldDocument(HeldChange, Document):
    """``held/<id-hash>-<kind>.json``: a future-dated joiner or leaver with the record to send."""

    WHAT: ClassVar[str] = "held change"


class ApprovalRequest(Document):
    """``approvals/requests/<run-id>.json``: leavers of a run held by the safety threshold."""

    WHAT: ClassVar[str] = "approval request"

    run_id: str
    feed: str
    order: str = ""
    leavers: dict[str, dict[str, Any]]
    # Written once a newer run of the feed restated every worker: the leavers are stale.
    superseded_by: str | None = Field(default=None, exclude_if=none)


class Approval(Document):
    """``approvals/<run-id>``: the approval of a request, by a person or the command line."""

    WHAT: ClassVar[str] = "approval"

    approved_by: str


def shard_of(external_id: str) -> str:
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:2]


def id_hash(external_id: str) -> str:
    """Blob names carry a hash, never the HR id itself."""
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:24]


def delta_name(gen: int) -> str:
    return f"{_DELTAS}g{gen:012d}.json"


def _seq(gen: int, status: str) -> str:
    # "g" sorts after the time-based seqs of earlier versions; an accepted delta beats the
    # ``sending`` version of itself.
    return f"g{gen:012d}{'a' if status == 'sending' else 'b'}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _known(value: list[Any]) -> Known:
    fp, active, feed = value[0], value[1], value[2]
    return Known(fp, active, feed, value[4] if len(value) > 4 else "")


class WorkerState:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    # --- accepted records ----------------------------------------------------------------

    def write_delta(self, gen: int, status: DeltaStatus, changes: list[Change]) -> None:
        """Write (or rewrite) the delta of gate generation ``gen``."""
        self.store.write_json(
            STATE_CONTAINER,
            delta_name(gen),
            {"gen": gen, "status": status, "at": _iso(_now()), "changes": changes},
            indent=None,
        )

    def read_delta(self, gen: int, sending: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The delta of generation ``gen``. ``sending``: the gate's pending request, whose
        delta its sender has not written (yet, or ever: it died): it stands for the delta."""
        found = self.store.read_json(STATE_CONTAINER, delta_name(gen))
        if found is not None:
            return dict(found[0])
        if sending is not None and sending.get("gen") == gen:
            return {"status": "sending", "at": sending["at"], "changes": sending["changes"]}
        return None

    def gate(self) -> dict[str, Any]:
        """The send gate's blob: ``gen`` (the newest delta's number), ``feeds`` (watermarks)
        and ``sending`` (a request whose delta is not written yet)."""
        found = self.store.read_json(STATE_CONTAINER, GATE)
        return found[0] if found and isinstance(found[0], dict) else {}

    def folded(self) -> int:
        found = self.store.read_json(STATE_CONTAINER, _FOLDED)
        return int(found[0].get("gen", 0)) if found else 0

    def fold(self) -> int:
        """Fold pending deltas into the shards; returns how many were folded."""
        gate = self.gate()
        start, top, sending = self.folded(), int(gate.get("gen", 0)), gate.get("sending")
        by_shard: dict[str, list[tuple[str, str, Change]]] = {}
        settled_to, settled, count = start, True, 0
        now = _now()
        for gen in range(start + 1, top + 1):
            delta = self.read_delta(gen, sending)
            if delta is not None and delta["status"] != "void":
                status = delta["status"]
                for change in delta["changes"]:
                    by_shard.setdefault(shard_of(change[0]), []).append(
                        (_seq(gen, status), status, tuple(change))
                    )
                count += 1
                if status == "sending" and now - _parse(delta["at"]) < STALE_SENDING:
                    settled = False  # its sender may still be waiting for Graph's answer
            if settled:
                settled_to = gen
        for shard, entries in sorted(by_shard.items()):
            self._fold_shard(shard, entries)
        if settled_to > start:
            self.store.update_json(
                STATE_CONTAINER,
                _FOLDED,
                lambda cur: (
                    None if cur and cur.get("gen", 0) >= settled_to else {"gen": settled_to}
                ),
            )
        self._prune(max(settled_to, start), now)
        if count:
            log.info("state: folded %d deltas into %d shards", count, len(by_shard))
        return count

    def _prune(self, folded: int, now: dt.datetime) -> None:
        for blob in self.store.list(STATE_CONTAINER, _DELTAS):
            stem = blob.name[len(_DELTAS) :].removesuffix(".json")
            if not stem.startswith("g") or not stem[1:].isdigit():
                continue
            if int(stem[1:]) <= folded and now - blob.last_modified > DELTA_RETENTION:
                self.store.delete(STATE_CONTAINER, blob.name)

    def _fold_shard(self, shard: str, entries: list[tuple[str, str, Change]]) -> None:
        # Records first: an index entry never points at a record not yet written.
        def records(current: Any | None) -> Any | None:
            data = current or {}
            changed = False
            for seq, status, change in entries:
                ext, record = change[0], change[5]
                if status != "accepted" or record is None:
                    continue
                known = data.get(ext)
                if known is not None and known[0] >= seq:
                    continue  # already folded, or a newer change is there
                data[ext] = [seq, record]
                changed = True
            return data if changed else None

        def index(current: Any | None) -> Any | None:
            data = current or {}
            changed = False
            for seq, status, change in entries:
                ext, fp, active, feed, order = change[:5]
                before = data.get(ext)
                after = _merged(before, seq, status, fp, active, feed, order)
                if after != before and after is not None:
                    data[ext] = after
                    changed = True
            return data if changed else None

        for name, change in (
            (f"{_RECORDS}{shard}.json", records),
            (f"{_INDEX}{shard}.json", index),
        ):
            if not self.store.update_json(STATE_CONTAINER, name, change, attempts=_MAX_CONFLICTS):
                raise StorageError(
                    f"state/{name} kept changing under us (other writers); try again later"
                )

    def index(self) -> dict[str, Known]:
        known: dict[str, Known] = {}
        for blob in self.store.list(STATE_CONTAINER, _INDEX):
            found = self.store.read_json(STATE_CONTAINER, blob.name)
            if found is None:
                continue
            for external_id, value in found[0].items():
                known[external_id] = _known(value)
        return known

    def lookup(self, external_ids: Iterable[str]) -> dict[str, Known]:
        """What is known of these workers only (reads just their shards)."""
        out: dict[str, Known] = {}
        for shard, ids in _by_shard(external_ids).items():
            found = self.store.read_json(STATE_CONTAINER, f"{_INDEX}{shard}.json")
            if found is not None:
                for external_id in ids & found[0].keys():
                    out[external_id] = _known(found[0][external_id])
        return out

    def records(self, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for shard, ids in _by_shard(external_ids).items():
            found = self.store.read_json(STATE_CONTAINER, f"{_RECORDS}{shard}.json")
            if found is None:
                continue
            out.update({k: v[1] for k, v in found[0].items() if k in ids})
        return out

    # --- held changes --------------------------------------------------------------------

    # A held change this version cannot use (written by a newer version of the app, or not a
    # held change) raises DocumentError naming it, and the caller stops: the plan of a worker
    # depends on its held change (a returning worker cancels a held leaver, a new date replaces
    # a held joiner), so planning without it could leave a stale leaver to be sent later, or
    # write over it. The release stops too rather than send some and not others. Nothing is
    # written or dropped; a person fixes or removes the blob named in the error.

    def held(self) -> list[Held]:
        out = []
        for blob in self.store.list(STATE_CONTAINER, _HELD):
            found = read_document(self.store, STATE_CONTAINER, blob.name, HeldDocument)
            if found is not None:
                out.append(found[0].held())
        return out

    def held_for(self, external_ids: Iterable[str]) -> list[Held]:
        """The held changes of these workers only (direct reads, no listing)."""
        out = []
        for external_id in set(external_ids):
            for kind in ("joiner", "leaver"):
                name = f"{_HELD}{id_hash(external_id)}-{kind}.json"
                found = read_document(self.store, STATE_CONTAINER, name, HeldDocument)
                if found is not None:
                    out.append(found[0].held())
        return out

    def hold(self, held: Held) -> None:
        self.store.write_json(STATE_CONTAINER, _held_name(held), HeldDocument.of(held).dump())

    def drop_held(self, held: Held) -> None:
        self.store.delete(STATE_CONTAINER, _held_name(held))

    # --- approvals -----------------------------------------------------------------------

    # An approval request only holds leavers back. One this version cannot use is left as it
    # is and said in the log, and the others go on: its leavers stay held (never sent by this
    # version: the release only sends requests it reads, and approve() refuses it), and a
    # newer run of its feed cannot mark it superseded (the warning says so; a person decides).

    def request_approval(
        self, run_id: str, feed: str, leavers: dict[str, dict[str, Any]], order: str = ""
    ) -> None:
        request = ApprovalRequest(run_id=run_id, feed=feed, order=order, leavers=leavers)
        self.store.write_json(STATE_CONTAINER, f"{_REQUESTS}{run_id}.json", request.dump())

    def _requests(self, skipped: str) -> list[ApprovalRequest]:
        out = []
        for blob in self.store.list(STATE_CONTAINER, _REQUESTS):
            try:
                found = read_document(self.store, STATE_CONTAINER, blob.name, ApprovalRequest)
            except DocumentError as exc:
                log.warning("%s; %s", exc, skipped)
                continue
            if found is not None:
                out.append(found[0])
        return out

    def approval_requests(self) -> list[dict[str, Any]]:
        """The open approval requests, each with the keys its blob has (``run_id``, ``feed``,
        ``order``, ``leavers``, ``superseded_by``), without the version."""
        return [
            request.stored()
            for request in self._requests("skipped: its leavers stay held, not released")
        ]

    def supersede_requests(self, feed: str, order: str, run_id: str) -> list[str]:
        """Mark the open approval requests of ``feed`` older than ``order`` superseded by run
        ``run_id``: the newer run restated the whole feed, so the old leavers are stale."""
        superseded = []
        for request in self._requests(
            f"skipped: not marked superseded by run {run_id}; its leavers stay held"
        ):
            if (
                request.feed != feed
                or request.superseded_by
                or request.run_id == run_id
                or request.order >= order
            ):
                continue
            request.superseded_by = run_id
            self.store.write_json(
                STATE_CONTAINER, f"{_REQUESTS}{request.run_id}.json", request.dump()
            )
            superseded.append(request.run_id)
        return superseded

    def approve(self, run_id: str, by: str) -> str | None:
        """Write the approval marker; None when done, else why it cannot be approved.

        A request this version cannot use, or an approval written by a newer version, raises
        DocumentError naming it: what the person would approve is not known, so nothing is
        written."""
        found = read_document(
            self.store, STATE_CONTAINER, f"{_REQUESTS}{run_id}.json", ApprovalRequest
        )
        if found is None:
            return f"no approval request for run {run_id} is waiting"
        request = found[0]
        if request.superseded_by:
            return (
                f"run {run_id} was superseded by the newer run {request.superseded_by} of "
                f"feed {request.feed}; its leavers are stale and will not be sent"
            )
        # An earlier approval is replaced (approved again; one written by hand included), one
        # written by a newer version of the app is not (NewerDocument names it).
        with contextlib.suppress(MalformedDocument):
            read_document(self.store, STATE_CONTAINER, f"{_APPROVALS}{run_id}", Approval)
        self.store.write_json(
            STATE_CONTAINER, f"{_APPROVALS}{run_id}", Approval(approved_by=by).dump()
        )
        return None

    def is_approved(self, run_id: str) -> bool:
        """Whether the run's leavers were approved: whether its approval marker exists.

        A marker written by a newer version of the app counts as none, said in the log and
        left as it is: what it means is not known, so the leavers stay held and nobody is
        disabled on it. A marker that is not an approval document still approves, as it always
        did: a person may write the blob by hand, with any content (README, "Safety"); the log
        says it does not fit."""
        try:
            found = read_document(self.store, STATE_CONTAINER, f"{_APPROVALS}{run_id}", Approval)
        except NewerDocument as exc:
            log.warning("%s; run %s counts as not approved: its leavers stay held", exc, run_id)
            return False
        except MalformedDocument as exc:
            log.warning(
                "%s; it approves run %s all the same, as a marker written by hand", exc, run_id
            )
            return True
        return found is not None

    def close_request(self, run_id: str) -> None:
        self.store.delete(STATE_CONTAINER, f"{_REQUESTS}{run_id}.json")
        self.store.delete(STATE_CONTAINER, f"{_APPROVALS}{run_id}")


def _merged(
    before: list[Any] | None,
    seq: str,
    status: str,
    fp: str | None,
    active: bool,
    feed: str,
    order: str,
) -> list[Any] | None:
    """An index entry after one change; orders only ever grow (newest data wins)."""
    if status == "restated":
        if before is None:
            return None  # nothing known to restate
        after = list(before) + [""] * (5 - len(before))
        after[4] = max(after[4], order)
        if before[0] == fp:
            after[2] = feed  # a full feed listing the worker takes it over
        return after
    if before is None or before[3] < seq:
        old_order = before[4] if before is not None and len(before) > 4 else ""
        return [fp, active, feed, seq, max(old_order, order)]
    after = list(before) + [""] * (5 - len(before))
    after[4] = max(after[4], order)
    return after


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _by_shard(external_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for external_id in external_ids:
        wanted.setdefault(shard_of(external_id), set()).add(external_id)
    return wanted


def _held_name(held: Held) -> str:
    return f"{_HELD}{id_hash(held.external_id)}-{held.kind}.json"
