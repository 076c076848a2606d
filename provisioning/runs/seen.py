"""Seen markers: what became of each blob name in hr-inbound, for the sweep.

A marker is a versioned document (:class:`SeenMarker`, ``provisioning.documents``). One this
version cannot use (written by a newer version of the app, or not a marker) is never written
over: a run of its blob leaves it as it is (with a warning), and the sweep leaves its blob alone
and says so every time (:func:`read_marker` raises, the sweep decides), until a person removes
the marker or the version that wrote it runs again. Nothing is lost: the blob stays in
hr-inbound, and its claim keeps the content exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import ClassVar

from ..clock import iso
from ..documents import Document, DocumentError, read_document
from ..settings import STATE_CONTAINER
from ..status import FAILING
from ..storage import BlobStore
from .claims import Claim, ClaimStore

log = logging.getLogger(__name__)

# In ``state``: one marker per blob name saying what became of it, for the sweep of hr-inbound.
SEEN_PREFIX = "seen/"


def seen_name(blob: str) -> str:
    """The marker of ``blob``, named as the trigger names it (``hr-inbound/<name>``)."""
    return f"{SEEN_PREFIX}{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:32]}.json"


class SeenMarker(Document):
    """``seen/<hash of the name>.json``: the last run of a blob (``hr-inbound/<name>``) and how
    it ended, written by every run (``DropProcessor.mark_seen``), read by the sweep."""

    WHAT: ClassVar[str] = "seen marker"

    blob: str
    size: int
    content_hash: str
    status: str  # a RunStatus
    reason: str | None = None
    # The run of the content (None when there is no claim, or it could not be read).
    run_id: str | None = None
    results: str | None = None
    attempts: int | None = None
    # Failed attempts of this content under this name, towards max_file_attempts.
    failed_attempts: int = 0
    at: str


def read_marker(store: BlobStore, name: str) -> SeenMarker | None:
    """The marker ``name`` (``seen/...``), None if there is none; DocumentError if this
    version cannot use it."""
    found = read_document(store, STATE_CONTAINER, name, SeenMarker)
    return None if found is None else found[0]


def write_marker(
    store: BlobStore,
    claims: ClaimStore,
    blob: str,
    size: int,
    content_hash: str,
    status: str,
    reason: str | None,
    moment: dt.datetime,
) -> None:
    """Record what became of ``blob``: ``status`` and ``reason``, with its run's details from
    the content's claim, and its failed attempts counted on from the marker of the same content.
    A marker this version cannot use is left as it is (a warning says so)."""
    name = seen_name(blob)
    claim: Claim | None
    try:
        claim = claims.load(content_hash)
    except DocumentError as exc:
        # The run stopped on it already; the marker still says what became of the blob (so
        # the sweep counts the attempt), without the run's details.
        log.warning("%s; %s is marked as seen without its run's details", exc, blob)
        claim = None
    if status == "duplicate" and claim is not None and claim.blob == blob:
        # An event delivered twice: what became of this blob is what its run did.
        status, reason = claim.status, claim.reason
    try:
        earlier = read_marker(store, name)
    except DocumentError as exc:
        log.warning("%s; not written over: %s stays marked as it is", exc, blob)
        return
    same = earlier is not None and earlier.content_hash == content_hash
    marker = SeenMarker(
        blob=blob,
        size=size,
        content_hash=content_hash,
        status=status,
        reason=reason,
        run_id=claim.run_id if claim else None,
        results=claim.results_prefix if claim else None,
        attempts=claim.attempts if claim else None,
        failed_attempts=(earlier.failed_attempts if earlier and same else 0)
        + (1 if status in FAILING else 0),
        at=iso(moment),
    )
    store.write_json(STATE_CONTAINER, name, marker.dump())
