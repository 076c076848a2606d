"""The scheduled pickup of ``hr-inbound``: files no run has processed are processed now.

Event Grid can miss a file (an event lost or expired, files copied in by SFTP or a copy job, a
deployment without the subscription). A sweep lists the container, oldest file first, and gives
each file no run has seen to :class:`~provisioning.runs.drop.DropProcessor` exactly as its blob
trigger would, under the same name (``hr-inbound/<name>``), so the feed, the claim and the seen
marker are the same whichever path got there first, and the content's claim keeps it exactly once.

What a file's marker (``state/seen/``, written by every run) says decides:

* complete, partly-rejected (the rest got in; the rejections are in its results), duplicate,
  held-for-approval, superseded (a newer run of the feed was accepted): done, skipped;
* rejected (the file as a whole is unusable, or Graph refused every record): moved to
  ``hr-inbound/failed/``, since running it again can never succeed; a person fixes it and
  drops it again;
* stopped (the job is paused), busy (another instance holds the claim) or interrupted (Graph,
  the token endpoint or the network failing for a while): processed again, for as long as it
  takes: none of it is the file's fault;
* paused (Graph's bucket was full, or the daily quota used up): processed again once the
  tenant's pace (``state/pace.json``) allows sending; while it does not, the sweep starts no
  file at all (they would only meet the same pause), and says until when;
* failed (403), error: processed again until ``max_file_attempts`` attempts failed, then moved
  to ``failed/``.

Every move writes ``results/failed/<date>/<hash of the name>.json`` with the reason. Files under
``failed/`` are never processed, neither here nor by the trigger.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from azure.core.exceptions import AzureError

from ..clock import iso, iso_at, utcnow
from ..documents import DocumentError
from ..graph.pace_book import hold
from ..graph.tenant_pace import limits_for, read_book
from ..settings import INBOUND_CONTAINER, RESULTS_CONTAINER, STATE_CONTAINER, Settings
from ..status import FAILING, FINAL, SETTLED
from ..storage import BlobInfo, BlobStore, PreconditionFailed
from .drop import DropProcessor
from .seen import SEEN_PREFIX, SeenMarker, read_marker, seen_name
from .spool import spool, sweep_stale

log = logging.getLogger(__name__)

FAILED_PREFIX = "failed/"

Verdict = Literal["skip", "move", "retry"]


def is_failed(name: str) -> bool:
    """Whether a blob of hr-inbound (``name`` with or without the container) was set aside."""
    return name.removeprefix(f"{INBOUND_CONTAINER}/").startswith(FAILED_PREFIX)


class Sweeper:
    def __init__(
        self,
        settings: Settings,
        store: BlobStore,
        processor: DropProcessor,
        *,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.processor = processor
        self._clock = clock

    async def sweep(self, *, budget_seconds: float | None = None) -> dict[str, Any]:
        """Process what no run has, oldest first; once ``budget_seconds`` have passed no further
        file is started (the next sweep picks the rest up). Returns what it did, in counts."""
        begun = time.monotonic()
        self.store.ensure_containers(RESULTS_CONTAINER, STATE_CONTAINER)
        sweep_stale()  # copies of HR files left by killed runs
        markers = {m.name: m for m in self.store.list(STATE_CONTAINER, SEEN_PREFIX)}
        blobs = sorted(
            (b for b in self.store.list(INBOUND_CONTAINER) if not is_failed(b.name)),
            key=lambda b: (b.last_modified, b.name),
        )
        counts: Counter[str] = Counter()
        processed: Counter[str] = Counter()
        held = self._held()
        for index, info in enumerate(blobs):
            if budget_seconds is not None and time.monotonic() - begun > budget_seconds:
                counts["deferred_for_budget"] = len(blobs) - index
                log.warning("sweep out of time: %d files left for the next one", len(blobs) - index)
                break
            try:
                await self._sweep_one(info, markers, counts, processed, held)
            except DocumentError as exc:
                # A claim this version cannot use (newer, or damaged): left as it is, said in
                # one line; the file waits for a person (or the newer version) each sweep.
                counts["errors"] += 1
                log.error("sweep left %s/%s alone: %s", INBOUND_CONTAINER, info.name, exc)
            except Exception:
                counts["errors"] += 1
                log.exception("sweep could not handle %s/%s", INBOUND_CONTAINER, info.name)
        result: dict[str, Any] = {
            "listed": len(blobs),
            "seen": counts["seen"],
            "processed": dict(processed),
            "moved_to_failed": counts["moved_to_failed"],
            "skipped_busy": counts["skipped_busy"],
            "deferred_for_budget": counts["deferred_for_budget"],
            "deferred_for_pause": counts["deferred_for_pause"],
            "paused": held,
            "errors": counts["errors"],
        }
        processed_counts = ", ".join(f"{k} {v}" for k, v in sorted(processed.items()))
        log.info(
            "sweep of %s: %d listed, %d seen, processed: %s, %d moved to failed/, %d errors",
            INBOUND_CONTAINER,
            len(blobs),
            counts["seen"],
            processed_counts or "none",
            counts["moved_to_failed"],
            counts["errors"],
        )
        return result

    async def _sweep_one(
        self,
        info: BlobInfo,
        markers: dict[str, BlobInfo],
        counts: Counter[str],
        processed: Counter[str],
        held: str | None,
    ) -> None:
        blob = f"{INBOUND_CONTAINER}/{info.name}"
        try:
            marker = self._marker(info, markers.get(seen_name(blob)))
        except DocumentError as exc:
            self._unusable(exc, blob, counts)
            return
        if marker is not None and self._verdict(marker) == "skip":
            counts["seen"] += 1
            return
        if marker is None or self._verdict(marker) == "retry":
            if held is not None:
                counts["deferred_for_pause"] += 1
                return
            status = await self._process(info, blob)
            if status is None:
                return
            if status == "busy":
                counts["skipped_busy"] += 1
                return
            if status == "seen":
                counts["seen"] += 1
            else:
                processed[status] += 1
            # What this attempt recorded decides whether the file is now set aside.
            try:
                marker = read_marker(self.store, seen_name(blob))
            except DocumentError as exc:
                self._unusable(exc, blob, counts)
                return
            if marker is None or self._verdict(marker) != "move":
                return
        if self._move(info, marker):
            counts["moved_to_failed"] += 1

    def _held(self) -> str | None:
        """Why nothing may be sent now, and until when (a bucket-full pause, the daily quota
        used up); None when sending may go on, or when the pace cannot be read (a run then
        finds out for itself)."""
        try:
            book = read_book(self.store)
        except (DocumentError, AzureError):
            return None
        found = hold(book, self._clock().timestamp(), limits_for(self.settings))
        if found is None:
            return None
        until, why = found
        reason = f"{why}; sending resumes at {iso_at(until)}"
        log.warning("sweep starts no file: %s", reason)
        return reason

    @staticmethod
    def _unusable(exc: DocumentError, blob: str, counts: Counter[str]) -> None:
        # A marker this version cannot use (a newer version of the app wrote it, or it is not
        # a marker): what became of the file is not known, so the file is left where it is,
        # neither run again nor set aside, and the marker is not written over (mark_seen leaves
        # it too); said, and counted as an error, at every sweep until a person removes the
        # marker or the version that wrote it runs again. The file's claim keeps it exactly once.
        log.warning("%s; the sweep leaves %s alone", exc, blob)
        counts["errors"] += 1

    def _marker(self, info: BlobInfo, listed: BlobInfo | None) -> SeenMarker | None:
        """The blob's marker if it tells about this version of the blob: written after the
        blob's last change (times of one storage account) and for the same size."""
        if listed is None or listed.last_modified < info.last_modified:
            return None
        marker = read_marker(self.store, listed.name)
        if marker is None or marker.size != info.size:
            return None
        return marker

    def _verdict(self, marker: SeenMarker) -> Verdict:
        status = marker.status
        if status == "rejected":
            return "move"
        if status in SETTLED:
            return "skip"
        if status in FAILING and marker.failed_attempts >= self.settings.max_file_attempts:
            return "move"
        return "retry"

    async def _process(self, info: BlobInfo, blob: str) -> str | None:
        """Process the blob as its trigger would: the outcome's status, "seen" if its claim shows
        this very blob was processed already, None if it is gone."""
        stream = self.store.open_read(INBOUND_CONTAINER, info.name)
        if stream is None:
            return None
        with stream:
            spooled = spool(stream)
        with spooled:
            content_hash, size = spooled.content_hash, spooled.size
            claim = self.processor.claims.load(content_hash)
            if claim is not None and claim.status in FINAL and claim.blob == blob:
                # Only its marker was missing or older than the blob (rewritten with the same
                # content): a duplicate run would add a results folder and nothing else.
                self.processor.mark_seen(blob, size, content_hash, claim.status, claim.reason)
                return "seen"
            outcome = await self.processor.process_file(blob, spooled.path, content_hash, size)
            return outcome.status

    def _move(self, info: BlobInfo, marker: SeenMarker) -> bool:
        """Set the blob aside under ``failed/`` with a record of why; False if it changed."""
        failed_name = f"{FAILED_PREFIX}{info.name}"
        try:
            self.store.move(INBOUND_CONTAINER, info.name, failed_name, etag=info.etag)
        except PreconditionFailed:
            log.info(
                "%s/%s changed while being set aside; left for the next sweep",
                INBOUND_CONTAINER,
                info.name,
            )
            return False
        moment = self._clock()
        name_hash = hashlib.sha256(info.name.encode("utf-8")).hexdigest()[:16]
        record_name = f"failed/{moment:%Y-%m-%d}/{name_hash}.json"
        self.store.write_json(
            RESULTS_CONTAINER,
            record_name,
            {
                "blob": f"{INBOUND_CONTAINER}/{info.name}",
                "failed_blob": f"{INBOUND_CONTAINER}/{failed_name}",
                "moved": iso(moment),
                "status": marker.status,
                "reason": marker.reason,
                "attempts": marker.attempts,
                "failed_attempts": marker.failed_attempts,
                "run_id": marker.run_id,
                "results": marker.results,
                "content_hash": marker.content_hash,
            },
        )
        log.error(
            "%s/%s moved to %s (%s after %s attempts); see %s/%s",
            INBOUND_CONTAINER,
            info.name,
            failed_name,
            marker.status,
            marker.attempts,
            RESULTS_CONTAINER,
            record_name,
        )
        return True
