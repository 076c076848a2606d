"""Where a run's durable facts live: the file claim and checkpoint in ``state``, and the
results a person reads in ``results/runs/<date>/<run-id>/``.

The claim (``state/files/<sha256>.json``) is keyed by the file's content, so the same content
dropped twice, or one drop seen by two triggers, maps to one run. It carries the checkpoint:
``next_batch`` is the number the next bulk request gets (a request whose answer was lost is
known from the worker state, see ``provisioning.jml.ordering``). ``order`` is the order of the
file's HR data (``provisioning.jml.ordering``), fixed when the content is first claimed. Every
write is conditional on the blob's ETag, and the running instance holds a lease. The claim is a
versioned document (:class:`Claim`, ``provisioning.documents``); one this version cannot use
stops whoever loads it (:meth:`ClaimStore.load`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from ..clock import iso, parse_iso
from ..documents import Document, read_document
from ..jml.ordering import new_order
from ..settings import RESULTS_CONTAINER, STATE_CONTAINER
from ..status import RunStatus
from ..storage import BlobStore, Lease, PreconditionFailed


def new_run_id(moment: dt.datetime, content_hash: str) -> str:
    # Sortable by time, recognisable by content, unique across retries of a duplicate.
    return f"{moment:%Y%m%dT%H%M%S}-{content_hash[:8]}-{uuid.uuid4().hex[:6]}"


class Claim(Document):
    """The claim of one file content, as kept in ``state/files/<sha256>.json``."""

    # Keys of earlier versions (such as in_flight) are left out, as they always were.
    model_config = ConfigDict(extra="ignore")
    WHAT: ClassVar[str] = "claim"

    content_hash: str
    run_id: str
    blob: str
    created: str
    results_prefix: str
    status: str = RunStatus.RUNNING
    attempts: int = 0
    next_batch: int = 1
    reason: str | None = None
    duplicates: list[dict[str, Any]] = Field(default_factory=list)
    order: str = ""

    @classmethod
    def new(cls, content_hash: str, blob: str, moment: dt.datetime) -> Claim:
        run_id = new_run_id(moment, content_hash)
        prefix = f"runs/{moment:%Y-%m-%d}/{run_id}/"
        return cls(
            content_hash=content_hash,
            run_id=run_id,
            blob=blob,
            created=iso(moment),
            results_prefix=prefix,
            order=new_order(moment, run_id),
        )

    @property
    def data_order(self) -> str:
        """The order of the file's data (claims written before orders existed: their creation)."""
        return self.order or new_order(parse_iso(self.created), self.run_id)

    @property
    def name(self) -> str:
        return claim_name(self.content_hash)


def claim_name(content_hash: str) -> str:
    return f"files/{content_hash}.json"


class ClaimStore:
    """Reads and writes claims with ETags; ``save`` fails if someone else wrote in between."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._etags: dict[str, str] = {}

    def load(self, content_hash: str) -> Claim | None:
        """The claim of this content, None if there is none.

        A claim this version cannot use (written by a newer version of the app, or not a
        claim) raises :class:`~provisioning.documents.DocumentError` naming it: whoever loads
        it stops. The claim is the content's exactly-once record and the run's checkpoint:
        running the file without it could send it twice or resume at the wrong batch, and it
        is never written over (``create`` is create-only, ``save`` needs the ETag read here).
        The run ends in an error (its seen marker says so) and the file stays where it is, tried
        again by its trigger's retries and by every sweep, each saying why; the claim stays as
        it is for a person.
        """
        found = read_document(self.store, STATE_CONTAINER, claim_name(content_hash), Claim)
        if found is None:
            return None
        claim, etag = found
        self._etags[content_hash] = etag
        return claim

    def create(self, claim: Claim) -> bool:
        """Create the claim; False if another run claimed this content first."""
        try:
            etag = self.store.write_json(
                STATE_CONTAINER, claim.name, claim.dump(), create_only=True
            )
        except PreconditionFailed:
            return False
        self._etags[claim.content_hash] = etag
        return True

    def save(self, claim: Claim, lease: Lease | None = None) -> None:
        etag = self.store.write_json(
            STATE_CONTAINER,
            claim.name,
            claim.dump(),
            etag=self._etags.get(claim.content_hash),
            lease=lease,
        )
        self._etags[claim.content_hash] = etag

    def lease(self, claim: Claim, seconds: int = 60) -> Lease | None:
        return self.store.acquire_lease(STATE_CONTAINER, claim.name, seconds)


class Results:
    """The results folder of one run."""

    def __init__(self, store: BlobStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def url(self, name: str) -> str:
        return self.store.url(RESULTS_CONTAINER, self.path(name))

    def write_json(self, name: str, data: Any) -> None:
        self.store.write_json(RESULTS_CONTAINER, self.path(name), data)

    def read_json(self, name: str) -> Any | None:
        found = self.store.read_json(RESULTS_CONTAINER, self.path(name))
        return None if found is None else found[0]

    def write_text(self, name: str, text: str, content_type: str) -> None:
        self.store.write_bytes(
            # A lone surrogate cannot be UTF-8: shown escaped (\ud800) rather than crash the run.
            RESULTS_CONTAINER,
            self.path(name),
            text.encode("utf-8", "backslashreplace"),
            content_type,
        )

    def batch_name(self, index: int) -> str:
        return f"batches/{index:06d}.json"
