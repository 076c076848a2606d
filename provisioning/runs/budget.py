"""A run's calls against the tenant's daily quota (pure): how many bulk requests its plan
needs, how many the quota has left, and, when it does not fit, when each part goes (joiners,
then leavers, then movers: ``planning.SEND_PARTS``, the order the send pass follows).

Written in ``plan.json`` and the summary (``plan.budget``), shown in ``report.html`` and
logged, before the first request goes: a person reads up front that a day-1 load of 300,000
workers takes three days, which part goes when, and why. The run itself sends what the quota
allows, ends ``paused`` with the time sending can go on, and the sweep resumes it then.
"""

from __future__ import annotations

import math
from typing import Any

from ..clock import iso_at
from ..graph.pace_book import Limits, PaceBook, schedule, used_today
from ..jml.planning import PART_OF, SEND_PARTS, SendPlan


def part_records(send_plan: SendPlan) -> list[tuple[str, int]]:
    """(part, records it sends), in send order; absent leavers count with the leavers."""
    counts = dict.fromkeys((name for name, _ in SEND_PARTS), 0)
    for action, _, _, _ in send_plan.sends.values():
        counts[PART_OF[action]] += 1
    counts["leavers"] += len(send_plan.absent)
    return list(counts.items())


def budget(
    send_plan: SendPlan, batch_size: int, book: PaceBook, now: float, limits: Limits
) -> dict[str, Any]:
    """The run's budget: requests needed and left, whether it fits today, and each part's
    requests with the earliest time of its first and last one. Requests are counted per part
    (a part's last batch is counted whole), so the figure errs on the high side; retries and
    400s narrowed into halves are not foreseen."""
    records = part_records(send_plan)
    requests = [(name, math.ceil(count / batch_size)) for name, count in records]
    needed = sum(n for _, n in requests)
    left = max(0, limits.quota - used_today(book, now))
    parts = schedule(book, now, limits, requests)
    fits = needed <= left
    report: dict[str, Any] = {
        "daily_quota": limits.quota,
        "calls_left_now": left,
        "requests_needed": needed,
        "fits_now": fits,
        "parts": [
            {
                "part": part.name,
                "records": count,
                "requests": part.requests,
                "first_request": iso_at(part.first) if part.requests else None,
                "last_request": iso_at(part.last) if part.requests else None,
            }
            for part, (_, count) in zip(parts, records, strict=True)
        ],
    }
    if not fits:
        ends = max(part.last for part in parts)
        report["reason"] = (
            f"{needed} requests needed, {left} of the daily quota of {limits.quota} left: sent "
            f"over the days until {iso_at(ends)} at the earliest, joiners first, then leavers, "
            "then movers; the run pauses when the quota is used up and resumes by itself"
        )
    return report
