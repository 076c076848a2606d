"""Manager links Entra could not make yet, and the follow-up sends that make them.

When a worker's manager reference names an externalId that no Entra user has as employeeId
(the manager arrives later: a later file, another feed), Entra provisions the worker, keeps its
previous manager and logs the entry as ``success`` with a skip step. It never goes back to it.
The outcome pass notes such a worker here (:func:`note_unresolved`), and clears it once a send
of the worker set its manager, or its HR record no longer names that manager
(:func:`note_resolved`). Each reconciliation pass then runs :func:`follow_up`: a worker whose
manager now exists in Entra gets its current record sent again, at most
``settings.max_manager_followups`` times.

``state/manager-links.json`` (:class:`ManagerLinks`), written under its ETag, holds per worker
externalId the manager externalId that did not resolve, when it was first seen, the follow-ups
made and Entra's reason text. It holds HR ids and Entra's words: the state container is private,
and none of it is ever logged (counts only).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import Field

from ..clock import iso, parse_iso
from ..convert.bulk import Operation
from ..convert.validation import ENTERPRISE
from ..documents import Document, DocumentError, Part, none, read_document, update_document
from ..errors import GraphServiceError
from ..graph.client import GraphClient
from ..graph.users import users_by_employee_id
from ..jml.ordering import SendGate
from ..jml.state import id_hash
from ..runs.claims import Results, new_run_id
from ..settings import STATE_CONTAINER, Settings
from ..storage import BlobStore
from .resend import resend

log = logging.getLogger(__name__)

LINKS = "manager-links.json"
KIND = "manager-followup"


class ManagerLink(Part):
    """One worker whose manager reference Entra could not resolve."""

    manager: str  # the manager's externalId, as the worker's record named it
    since: str  # ISO time the unresolved reference was first seen
    followups: int = 0  # follow-up sends Graph accepted
    noted: str  # ISO time of the last log entry that reported it unresolved
    checked: str | None = Field(default=None, exclude_if=none)  # last look for the manager
    followed: str | None = Field(default=None, exclude_if=none)  # last follow-up accepted
    reason: str | None = Field(default=None, exclude_if=none)  # Entra's text: never logged


class ManagerLinks(Document):
    """``state/manager-links.json``: unresolved manager links by worker externalId."""

    WHAT: ClassVar[str] = "manager links document"

    links: dict[str, ManagerLink] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A log entry that said the worker's manager reference did not resolve."""

    worker: str
    manager: str
    at: dt.datetime
    reason: str | None = None


def manager_of(record: dict[str, Any] | None) -> str | None:
    """The manager externalId a SCIM record names, None when it names none."""
    extension = (record or {}).get(ENTERPRISE)
    manager = extension.get("manager") if isinstance(extension, dict) else None
    value = manager.get("value") if isinstance(manager, dict) else None
    return value if isinstance(value, str) and value else None


# --- the document ---------------------------------------------------------------------------


def read_links(store: BlobStore) -> dict[str, ManagerLink]:
    """The open links by worker; {} when there are none or the document cannot be used (said
    in a warning naming the blob, never a value: the links wait for a version that can)."""
    try:
        found = read_document(store, STATE_CONTAINER, LINKS, ManagerLinks)
    except DocumentError as exc:
        log.warning("%s; manager links left as they are", exc)
        return {}
    return {} if found is None else found[0].links


def _update(store: BlobStore, change: Callable[[dict[str, ManagerLink]], bool]) -> bool:
    """Apply ``change`` to the links (it returns whether it changed anything), under the
    document's ETag; False when the document cannot be used or kept changing."""

    def apply(current: ManagerLinks | None) -> ManagerLinks | None:
        document = current or ManagerLinks()
        return document if change(document.links) else None

    try:
        done = update_document(store, STATE_CONTAINER, LINKS, ManagerLinks, apply)
    except DocumentError as exc:
        log.warning("%s; manager links not updated", exc)
        return False
    if not done:
        log.warning("state/%s kept changing; manager links not updated", LINKS)
    return done


def note_unresolved(
    store: BlobStore, worker_id: str, manager_id: str, reason: str | None, at: dt.datetime
) -> bool:
    """Note that Entra could not resolve ``worker_id``'s manager ``manager_id`` (see
    :func:`note_unresolved_many`)."""
    return note_unresolved_many(store, [Unresolved(worker_id, manager_id, at, reason)])


def note_unresolved_many(store: BlobStore, items: Iterable[Unresolved]) -> bool:
    """Note unresolved manager references, in one write. A link to the same manager keeps its
    ``since`` and its follow-up count (a follow-up that did not resolve either must not start
    the count again); a link to another manager starts anew."""
    items = list(items)
    if not items:
        return True

    def change(links: dict[str, ManagerLink]) -> bool:
        for item in items:
            link = links.get(item.worker)
            if link is not None and link.manager == item.manager:
                if parse_iso(link.noted) < item.at:
                    link.noted = iso(item.at)
                if item.reason is not None:
                    link.reason = item.reason
                continue
            links[item.worker] = ManagerLink(
                manager=item.manager,
                since=iso(item.at),
                noted=iso(item.at),
                reason=item.reason,
            )
        return True

    return _update(store, change)


def note_resolved(store: BlobStore, worker_ids: Iterable[str]) -> bool:
    """Clear the links of these workers: a send set their manager, or their HR record no
    longer names the manager that did not resolve."""
    ids = set(worker_ids)
    if not ids:
        return True

    def change(links: dict[str, ManagerLink]) -> bool:
        gone = ids & links.keys()
        for worker in gone:
            del links[worker]
        return bool(gone)

    return _update(store, change)


# --- the follow-up ----------------------------------------------------------------------------


async def follow_up(
    settings: Settings,
    store: BlobStore,
    graph: GraphClient,
    *,
    sleep: Callable[[float], Awaitable[None]],
    keep_alive: Callable[[], None],
    clock: Callable[[], dt.datetime],
    pending: Collection[str] = frozenset(),
) -> dict[str, Any]:
    """One pass over the open links: drop those whose worker is gone or no longer has that
    manager in HR; for the others whose manager now exists in Entra, send the worker's current
    record again through the send gate (its own run, kind ``manager-followup``, confirmed by
    the outcome pass like any run), at most ``settings.max_manager_followups`` times a link.

    Left for a later pass: a worker whose last send is unanswered (its run resumes it), one in
    ``pending`` (a send awaiting its outcome, which notes the link again or clears it), and one
    whose last follow-up still waits for its log entry (up to ``outcome_timeout_minutes``).
    Call it only while the job is healthy: it sends.

    Returns counts: ``links``, ``checked``, ``managers_found``, ``sent``, ``accepted``,
    ``dropped``, ``exhausted``, ``waiting``; with ``results_prefix`` when it sent."""
    links = read_links(store)
    counts: dict[str, Any] = dict.fromkeys(
        ("links", "checked", "managers_found", "sent", "accepted", "dropped", "exhausted"), 0
    )
    counts["links"] = len(links)
    counts["waiting"] = 0
    if not links:
        return counts
    now = clock()
    gate = SendGate.from_settings(store, settings, sleep=sleep)
    state = gate.view.state
    state.fold()  # the current records are the shards'
    current, known = state.records(links), state.lookup(links)
    keep_alive()
    timeout = dt.timedelta(minutes=settings.outcome_timeout_minutes)
    dropped: dict[str, str] = {}  # worker -> the manager of the link dropped
    candidates: dict[str, str] = {}  # worker -> manager to look for
    for worker, link in links.items():
        record, found = current.get(worker), known.get(worker)
        if record is None or found is None or manager_of(record) != link.manager:
            dropped[worker] = link.manager
        elif link.followups >= settings.max_manager_followups:
            counts["exhausted"] += 1
        elif (
            found.fingerprint is None
            or worker in pending
            or (
                link.followed is not None
                and parse_iso(link.noted) < parse_iso(link.followed)
                and now - parse_iso(link.followed) < timeout
            )
        ):
            counts["waiting"] += 1
        else:
            candidates[worker] = link.manager
    counts["dropped"] = len(dropped)
    counts["checked"] = len(candidates)
    try:
        present = await users_by_employee_id(graph.sdk, set(candidates.values()))
    except (GraphServiceError, httpx.HTTPError) as exc:
        # Graph's message may quote the filter, which names HR ids: only its kind is logged.
        status = getattr(exc, "status", None)
        log.warning(
            "manager follow-up: looking managers up in Entra failed (%s%s); the links wait "
            "for the next pass",
            type(exc).__name__,
            f" HTTP {status}" if status else "",
        )
        _settle(store, dropped, set(), set(), now)
        return {**counts, "checked": 0, "error": type(exc).__name__}
    keep_alive()
    ready = sorted(w for w, m in candidates.items() if m.casefold() in present)
    counts["managers_found"] = len({candidates[w].casefold() for w in ready})
    accepted: set[str] = set()
    if ready:
        run_id = new_run_id(now, "mgrfollw")
        prefix = f"runs/{now:%Y-%m-%d}/{run_id}/"
        operations = [Operation(f"manager-{id_hash(w)[:12]}", w, 0, current[w]) for w in ready]
        sent = await resend(
            settings,
            store,
            graph,
            operations,
            kind=KIND,
            action="manager follow-up",
            results_prefix=prefix,
            sleep=sleep,
            keep_alive=keep_alive,
            clock=clock,
            gate=gate,
        )
        accepted = sent.accepted
        counts.update(sent=len(sent.sent), accepted=len(accepted), results_prefix=prefix)
        Results(store, prefix).write_json(
            "summary.json",
            {
                "run_id": run_id,
                "kind": KIND,
                "status": "complete" if sent.report["errors"] == [] else "interrupted",
                "started": iso(now),
                "finished": iso(clock()),
                **{k: v for k, v in sent.report.items() if k != "errors"},
                "errors": sent.report["errors"],
            },
        )
    _settle(store, dropped, set(candidates), accepted, now)
    log.info("manager follow-up: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def _settle(
    store: BlobStore,
    dropped: dict[str, str],
    checked: set[str],
    accepted: set[str],
    now: dt.datetime,
) -> None:
    """Write what the pass did, each change applied only to the link it was decided on (the
    outcome pass may have noted the worker again meanwhile, under another manager)."""
    if not (dropped or checked):
        return
    stamp = iso(now)

    def change(links: dict[str, ManagerLink]) -> bool:
        for worker, manager in dropped.items():
            if worker in links and links[worker].manager == manager:
                del links[worker]
        for worker in checked:
            link = links.get(worker)
            if link is None:
                continue
            link.checked = stamp
            if worker in accepted:
                link.followups += 1
                link.followed = stamp
        return True

    _update(store, change)


def open_workers(store: BlobStore) -> frozenset[str]:
    """Workers with an open manager link (the drift report lists them apart)."""
    return frozenset(read_links(store))
