"""Seen markers: what became of each blob name in hr-inbound, for the sweep, and which outcomes
count as a failed attempt of a file."""

from __future__ import annotations

import hashlib

# In ``state``: one marker per blob name saying what became of it, for the sweep of hr-inbound.
SEEN_PREFIX = "seen/"


# Outcomes that count towards max_file_attempts. Not the file's fault, so not counted: a stopped
# job, a busy claim, and an interrupted run (Graph, the token endpoint or the network failing
# for a while); the other outcomes are final.
FAILING = frozenset({"failed", "error"})


def seen_name(blob: str) -> str:
    """The marker of ``blob``, named as the trigger names it (``hr-inbound/<name>``)."""
    return f"{SEEN_PREFIX}{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:32]}.json"
