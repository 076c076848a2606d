"""Seen markers: what became of each blob name in hr-inbound, for the sweep."""

from __future__ import annotations

import hashlib

# In ``state``: one marker per blob name saying what became of it, for the sweep of hr-inbound.
SEEN_PREFIX = "seen/"


def seen_name(blob: str) -> str:
    """The marker of ``blob``, named as the trigger names it (``hr-inbound/<name>``)."""
    return f"{SEEN_PREFIX}{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:32]}.json"
