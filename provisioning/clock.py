"""Time as the app writes it: UTC moments, ISO 8601 with milliseconds and a Z."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_at(seconds: float) -> str:
    """``iso`` of a wall-clock time in seconds since the epoch (``time.time()``)."""
    return iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


def parse_iso(text: str) -> dt.datetime:
    """The moment of an ISO 8601 text as ``iso`` writes it (and Graph does: ``...Z``)."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
