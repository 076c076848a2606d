"""What Entra has accepted, per worker, and the changes waiting for a date or an approval.

Layout in the ``state`` container:
- ``workers/index-XX.json``: {externalId: [fingerprint, active, feed, seq]} for one of 256 shards
  (by the first two hex digits of the id's SHA-256); small enough to load whole for planning.
- ``workers/records-XX.json``: {externalId: last accepted SCIM record} (leavers need it whole).
- ``workers/deltas/<seq>.json``: what one accepted bulk request changed. A run writes one right
  after Graph accepted the batch (one small write instead of up to 50 shard rewrites); the next
  run or release folds pending deltas into the shards. Shard writes are ETag-conditional and a
  delta only overwrites an entry with an older ``seq``, so a fold interrupted half way, or two
  folds at once, leave the shards right.
- ``held/<id-hash>-<kind>.json``: a future-dated joiner or leaver with the record to send.
- ``approvals/requests/<run-id>.json``: leavers held by the safety threshold;
  ``approvals/<run-id>``: the approval marker a person (or ``python -m provisioning approve``)
  writes to release them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from .lifecycle import Held, Known
from .settings import STATE_CONTAINER
from .storage import BlobStore

log = logging.getLogger(__name__)

_INDEX, _RECORDS, _DELTAS = "workers/index-", "workers/records-", "workers/deltas/"
_HELD, _REQUESTS, _APPROVALS = "held/", "approvals/requests/", "approvals/"
_MAX_CONFLICTS = 20

# One accepted record: (externalId, fingerprint, active, feed, record)
Accepted = tuple[str, str, bool, str, dict[str, Any]]


def accepted_seq(run_id: str, batch: int) -> str:
    """Orders accepted batches by when Graph accepted them (to the microsecond), so the
    state keeps the record Entra got last even across runs started in the same second."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S.%f}-{run_id}-{batch:06d}"


def shard_of(external_id: str) -> str:
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:2]


def id_hash(external_id: str) -> str:
    """Blob names carry a hash, never the HR id itself."""
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:24]


class WorkerState:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    # --- accepted records ----------------------------------------------------------------

    def record_accepted(self, seq: str, entries: list[Accepted]) -> None:
        """Remember what Entra accepted in one bulk request (call after the 202)."""
        self.store.write_json(
            STATE_CONTAINER, f"{_DELTAS}{seq}.json", {"seq": seq, "entries": entries}
        )

    def fold(self) -> int:
        """Fold pending deltas into the shards; returns how many were folded."""
        names = sorted(b.name for b in self.store.list(STATE_CONTAINER, _DELTAS))
        if not names:
            return 0
        by_shard: dict[str, list[tuple[str, Accepted]]] = {}
        for name in names:
            found = self.store.read_json(STATE_CONTAINER, name)
            if found is None:
                continue  # folded and deleted by a concurrent fold
            delta = found[0]
            for entry in delta["entries"]:
                by_shard.setdefault(shard_of(entry[0]), []).append((delta["seq"], entry))
        for shard, entries in sorted(by_shard.items()):
            self._fold_shard(shard, entries)
        for name in names:
            self.store.delete(STATE_CONTAINER, name)
        log.info("state: folded %d accepted batches into %d shards", len(names), len(by_shard))
        return len(names)

    def _fold_shard(self, shard: str, entries: list[tuple[str, Accepted]]) -> None:
        # Each blob keeps the seq of every entry and takes only newer ones, on its own: so the
        # two blobs of a shard end at the newest change whatever order concurrent folds write.
        # Records first: an index entry never points at a record not yet written.
        self._fold_blob(
            f"{_RECORDS}{shard}.json",
            [(seq, e[0], e[4]) for seq, e in entries],
            lambda current: current[0],
            lambda seq, value: [seq, value],
        )
        self._fold_blob(
            f"{_INDEX}{shard}.json",
            [(seq, e[0], (e[1], e[2], e[3])) for seq, e in entries],
            lambda current: current[3],
            lambda seq, value: [*value, seq],
        )

    def _fold_blob(
        self,
        name: str,
        entries: list[tuple[str, str, Any]],
        seq_of: Any,
        make: Any,
    ) -> None:
        def folded(current: Any | None) -> Any | None:
            data = current or {}
            changed = False
            for seq, external_id, value in entries:
                known = data.get(external_id)
                if known is not None and seq_of(known) >= seq:
                    continue  # already folded, or a newer change is there
                data[external_id] = make(seq, value)
                changed = True
            return data if changed else None

        if not self.store.update_json(STATE_CONTAINER, name, folded, attempts=_MAX_CONFLICTS):
            raise RuntimeError(f"state {name} kept changing under us; try again later")

    def index(self) -> dict[str, Known]:
        known: dict[str, Known] = {}
        for blob in self.store.list(STATE_CONTAINER, _INDEX):
            found = self.store.read_json(STATE_CONTAINER, blob.name)
            if found is None:
                continue
            for external_id, (fp, active, feed, _seq) in found[0].items():
                known[external_id] = Known(fp, active, feed)
        return known

    def lookup(self, external_ids: Iterable[str]) -> dict[str, Known]:
        """What is known of these workers only (reads just their shards)."""
        out: dict[str, Known] = {}
        for shard, ids in _by_shard(external_ids).items():
            found = self.store.read_json(STATE_CONTAINER, f"{_INDEX}{shard}.json")
            if found is not None:
                for external_id in ids & found[0].keys():
                    fp, active, feed, _seq = found[0][external_id]
                    out[external_id] = Known(fp, active, feed)
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

    def held(self) -> list[Held]:
        out = []
        for blob in self.store.list(STATE_CONTAINER, _HELD):
            found = self.store.read_json(STATE_CONTAINER, blob.name)
            if found is not None:
                out.append(Held(**found[0]))
        return out

    def held_for(self, external_ids: Iterable[str]) -> list[Held]:
        """The held changes of these workers only (direct reads, no listing)."""
        out = []
        for external_id in set(external_ids):
            for kind in ("joiner", "leaver"):
                name = f"{_HELD}{id_hash(external_id)}-{kind}.json"
                found = self.store.read_json(STATE_CONTAINER, name)
                if found is not None:
                    out.append(Held(**found[0]))
        return out

    def hold(self, held: Held) -> None:
        self.store.write_json(STATE_CONTAINER, _held_name(held), asdict(held))

    def drop_held(self, held: Held) -> None:
        self.store.delete(STATE_CONTAINER, _held_name(held))

    # --- approvals -----------------------------------------------------------------------

    def request_approval(self, run_id: str, feed: str, leavers: dict[str, dict[str, Any]]) -> None:
        self.store.write_json(
            STATE_CONTAINER,
            f"{_REQUESTS}{run_id}.json",
            {"run_id": run_id, "feed": feed, "leavers": leavers},
        )

    def approval_requests(self) -> list[dict[str, Any]]:
        out = []
        for blob in self.store.list(STATE_CONTAINER, _REQUESTS):
            found = self.store.read_json(STATE_CONTAINER, blob.name)
            if found is not None:
                out.append(found[0])
        return out

    def approve(self, run_id: str, by: str) -> bool:
        """Write the approval marker; False when no such request is waiting."""
        if not self.store.exists(STATE_CONTAINER, f"{_REQUESTS}{run_id}.json"):
            return False
        self.store.write_json(STATE_CONTAINER, f"{_APPROVALS}{run_id}", {"approved_by": by})
        return True

    def is_approved(self, run_id: str) -> bool:
        return self.store.exists(STATE_CONTAINER, f"{_APPROVALS}{run_id}")

    def close_request(self, run_id: str) -> None:
        self.store.delete(STATE_CONTAINER, f"{_REQUESTS}{run_id}.json")


def _by_shard(external_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {}
    for external_id in external_ids:
        wanted.setdefault(shard_of(external_id), set()).add(external_id)
    return wanted


def _held_name(held: Held) -> str:
    return f"{_HELD}{id_hash(held.external_id)}-{held.kind}.json"
