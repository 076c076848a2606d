"""Benchmark the joiner/mover/leaver planner against plain conversion on a quiet day-2 file.

Usage::

    python benchmarks/plan.py [--rows 100000] [--changed 0.01] [--mapping microsoft-sample]
                              [--repeat R] [--seed S] [--keep DIR] [--check] [--profile]

It writes a day-1 full file of N workers (``benchmarks.convert.generate``, Microsoft's sample
columns) and a day-2 file that is day 1 rewritten row by row with the csv module, except that
exactly ``round(N x changed)`` workers, picked by the seed, have one attribute changed (their
JobTitle or Department becomes another value). Then, each in its own child process so that the
peak RSS belongs to that measurement alone:

* ``state``   - not timed for the targets: converts day 1 and pickles the state the store would
  hold after it, ``{externalId: Known(fingerprint(data), active, "default")}``;
* ``convert`` - plain conversion of day 2: ``Conversion(...).requests()`` with every request body
  serialised (``benchmarks.convert.measure_product``);
* ``plan``    - loads the pickled state *before* its timer starts, then times one pass: the
  same conversion of day 2 (``Conversion.operations()``) feeding each operation into
  ``Planner(known, [], Policy("default", "full", today))``, keeping the operations the planner
  may send, ``finish()``, and serialising the bulk requests (batches of 50,
  ``provisioning.convert.bulk.batches`` / ``serialize``) of only the records ``plan.sends()``
  lets go;
* ``drop``    - for information: what a drop run does with the same preloaded state,
  ``provisioning.jml.planning.make_plan`` (plan pass), ``SendPlan.of`` and ``send_operations``
  (which converts the file again, once per manager wave), batched and serialised the same way.
  No records are stored in the in-memory state, so the movers' changed-attribute lists are
  computed against empty old records.

Targets: records to send == changed workers and requests to send == ceil(changed / 50) (nobody
else is a joiner, mover, rehire or leaver), for the plan and the drop paths, and plan time
<= 1.5 x conversion time (the drop path's ratio is shown, not checked). Peak RSS is each
child's own VmHWM. The exit code is 0 unless ``--check`` is given and a target is
missed. ``--profile`` also runs the plan path under cProfile and prints its hotspots.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import pickle
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.convert import (  # noqa: E402
    CHILD,
    DEPARTMENTS,
    TITLES,
    _import_product,
    generate,
    measure_product,
    own_peak_rss,
)
from benchmarks.convert import run_child as run_convert_child  # noqa: E402

MAX_RATIO = 1.5
FEED = "default"
# After every hire date generate() writes (up to 2025-06-30), so no joiner is held.
TODAY = dt.date(2025, 7, 1)
# Which attribute a changed worker gets changed, and the values it can take.
CHANGES = (("JobTitle", TITLES), ("Department", DEPARTMENTS))

# --------------------------------------------------------------------------------------------
# Day 2
# --------------------------------------------------------------------------------------------


def write_day2(day1: Path, day2: Path, rows: int, changed: int, seed: int) -> int:
    """Rewrite ``day1`` into ``day2`` row by row, changing one attribute of ``changed`` rows.

    The rows are picked by ``seed``; each gets its JobTitle or Department replaced by another
    value of the same list (never the same value). Returns how many rows were changed.
    """
    rng = random.Random(f"day2-{seed}")
    picked = set(rng.sample(range(rows), changed))
    done = 0
    with (
        day1.open(encoding="utf-8", newline="") as source,
        day2.open("w", encoding="utf-8", newline="") as target,
    ):
        reader = csv.reader(source)
        writer = csv.writer(target, lineterminator="\r\n")
        header = next(reader)
        writer.writerow(header)
        columns = [(header.index(column), values) for column, values in CHANGES]
        for index, row in enumerate(reader):
            if index in picked:
                column, values = columns[rng.randrange(len(columns))]
                row[column] = rng.choice([v for v in values if v != row[column]])
                done += 1
            writer.writerow(row)
    return done


# --------------------------------------------------------------------------------------------
# Measurements (run in child processes)
# --------------------------------------------------------------------------------------------


def measure_state(day1: str, mapping_ref: str, state: str, _today: str) -> dict[str, Any]:
    """Convert day 1 and pickle what the store would remember after Entra accepted it all."""
    _import_product()
    from provisioning.convert.mapping import load_mapping
    from provisioning.convert.pipeline import Conversion, Source
    from provisioning.jml.lifecycle import Known, fingerprint

    start = time.perf_counter()
    known: dict[str, Known] = {}
    conversion = Conversion(Source.from_path(day1), load_mapping(mapping_ref))
    for request in conversion.requests():
        for op in request.operations:
            active = op.data.get("active", True) is not False
            known[op.external_id] = Known(fingerprint(op.data), active, FEED)
    with open(state, "wb") as stream:
        pickle.dump(known, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "rows": conversion.summary.rows_read,
        "users": len(known),
        "active": sum(k.active for k in known.values()),
        "seconds": time.perf_counter() - start,
    }


def measure_convert(day2: str, mapping_ref: str, _state: str, _today: str) -> dict[str, Any]:
    return measure_product(day2, mapping_ref)


def _load_state(state: str) -> Any:
    with open(state, "rb") as stream:
        return pickle.load(stream)


def _plan(day2: str, mapping_ref: str, known: Any, today: str) -> dict[str, Any]:
    from provisioning.convert.bulk import batches
    from provisioning.convert.mapping import load_mapping
    from provisioning.convert.pipeline import Conversion, Source
    from provisioning.jml.lifecycle import SENT_ACTIONS, Planner, Policy

    start = time.perf_counter()
    conversion = Conversion(Source.from_path(day2), load_mapping(mapping_ref))
    planner = Planner(known, [], Policy(FEED, "full", dt.date.fromisoformat(today)))
    add = planner.add
    candidates = []  # operations the planner may send; the threshold is only known at finish()
    for op in conversion.operations():
        if add(op.external_id, op.line, op.data, op.dates).action in SENT_ACTIONS:
            candidates.append(op)
    plan = planner.finish()
    waves: list[list[Any]] = [[] for _ in range(plan.waves)]  # a joiner after its new manager
    for op in candidates:
        decision = plan.sends(op.external_id)
        if decision is None:
            continue
        if decision.active is not None:
            op.data = {**op.data, "active": decision.active}
        waves[decision.wave].append(op)
    out = requests = records = 0
    for wave in waves:
        for bulk in batches(wave):
            out += len(bulk.body)
            requests += 1
            records += len(bulk.operations)
    seconds = time.perf_counter() - start
    summary = conversion.summary
    return {
        "rows": summary.rows_read,
        "users": summary.users,
        "rejected": summary.rows_rejected,
        "records": records,
        "requests": requests,
        "seconds": seconds,
        "bytes": out,
        "counts": plan.counts,
        "absent_leavers": len(plan.absent_leavers),
        "manager_warnings": len(plan.manager_warnings),
    }


def measure_plan(day2: str, mapping_ref: str, state: str, today: str) -> dict[str, Any]:
    _import_product()
    import provisioning.jml.lifecycle  # noqa: F401

    known = _load_state(state)  # before the timer: the run loads the state before planning
    result = _plan(day2, mapping_ref, known, today)
    result["state_entries"] = len(known)
    return result


class _MemoryState:
    """The parts of ``WorkerState`` that ``make_plan`` reads, from the preloaded index.

    ``index()`` hands the index over (as ``WorkerState.index()`` returns a fresh dict), so it
    is freed once the plan is made, as in a drop run.
    """

    def __init__(self, known: Any) -> None:
        self.known = known

    def index(self) -> Any:
        known, self.known = self.known, None
        return known

    def held(self) -> list[Any]:
        return []

    def records(self, _external_ids: Any) -> dict[str, Any]:
        return {}


def _drop(day2: str, mapping_ref: str, state: _MemoryState, today: str) -> dict[str, Any]:
    from provisioning.convert.bulk import batches
    from provisioning.convert.mapping import load_mapping
    from provisioning.convert.pipeline import Conversion, Source
    from provisioning.jml.lifecycle import Policy
    from provisioning.jml.planning import SendPlan, make_plan, send_operations

    start = time.perf_counter()
    source = Source.from_path(day2)
    mapping = load_mapping(mapping_ref)
    first = Conversion(source, mapping)
    policy = Policy(FEED, "full", dt.date.fromisoformat(today))
    made = make_plan(first, policy, state)  # type: ignore[arg-type]
    file_hash, summary, counts = first.summary.content_hash, made.conversion, made.plan.counts
    send_plan = SendPlan.of(made.plan)
    del made, first  # a drop run keeps only the send plan for the send pass
    conversions = [0]

    def again(_first: bool) -> Any:
        conversions[0] += 1
        return Conversion(source, mapping, content_hash=file_hash)

    stream = (op for op, _action, _feed in send_operations(again, send_plan, {}, file_hash))
    out = requests = records = 0
    for bulk in batches(stream):
        out += len(bulk.body)
        requests += 1
        records += len(bulk.operations)
    seconds = time.perf_counter() - start
    return {
        "rows": summary.rows_read,
        "users": summary.users,
        "records": records,
        "requests": requests,
        "seconds": seconds,
        "bytes": out,
        "send_conversions": conversions[0],
        "counts": counts,
    }


def measure_drop(day2: str, mapping_ref: str, state: str, today: str) -> dict[str, Any]:
    _import_product()
    import provisioning.jml.planning  # noqa: F401

    memory = _MemoryState(_load_state(state))  # before the timer, as for ``plan``
    return _drop(day2, mapping_ref, memory, today)


def measure_profile(day2: str, mapping_ref: str, state: str, today: str) -> dict[str, Any]:
    import cProfile
    import io
    import pstats

    _import_product()
    import provisioning.jml.lifecycle  # noqa: F401

    known = _load_state(state)
    profiler = cProfile.Profile()
    result = profiler.runcall(_plan, day2, mapping_ref, known, today)
    report = io.StringIO()
    stats = pstats.Stats(profiler, stream=report).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    result["profile"] = report.getvalue()
    return result


MEASURES = {
    "state": measure_state,
    "convert": measure_convert,
    "plan": measure_plan,
    "drop": measure_drop,
    "profile": measure_profile,
}


def child(kind: str, path: str, mapping_ref: str, state: str, today: str) -> None:
    result = MEASURES[kind](path, mapping_ref, state, today)
    scale = 1 if sys.platform == "darwin" else 1024
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    own = own_peak_rss()
    result["rss_mib"] = result["maxrss_mib"] if own is None else own
    sys.stdout.write(json.dumps(result) + "\n")


def run_child(kind: str, path: Path, mapping_ref: str, state: Path) -> dict[str, Any]:
    return run_convert_child(
        kind, path, mapping_ref, str(state), TODAY.isoformat(), script=__file__
    )


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="workers (100000)")
    parser.add_argument(
        "--changed", type=float, default=0.01, help="fraction of workers changed on day 2 (0.01)"
    )
    parser.add_argument("--mapping", default="microsoft-sample", help="mapping name or file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best time")
    parser.add_argument("--seed", type=int, default=20240611, help="random seed of the data")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the files here, keep them")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", action="store_true", help="also cProfile the plan path")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    if not 0 <= args.changed <= 1:
        parser.error("--changed must be a fraction between 0 and 1")
    changed = round(args.rows * args.changed)

    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        day1, day2, state = folder / "day1.csv", folder / "day2.csv", folder / "state.pickle"
        start = time.perf_counter()
        size = generate(day1, args.rows, args.seed)
        done = write_day2(day1, day2, args.rows, changed, args.seed)
        print(
            f"generated day 1 ({args.rows:,} rows, {size / 2**20:.1f} MiB) and day 2 "
            f"({done:,} workers changed) in {time.perf_counter() - start:.1f} s: {folder}"
            + ("" if args.keep else " (temporary)")
        )
        built = run_child("state", day1, args.mapping, state)
        print(
            f"state after day 1: {built['users']:,} workers ({built['active']:,} active), "
            f"built in {built['seconds']:.2f} s (not timed), pickle "
            f"{state.stat().st_size / 2**20:.1f} MiB"
        )
        print(
            f"python {sys.version.split()[0]}, mapping {args.mapping}, today {TODAY}, "
            f"best of {args.repeat} (interleaved)"
        )
        runs: dict[str, list[dict[str, Any]]] = {"convert": [], "plan": [], "drop": []}
        for _ in range(args.repeat):
            for kind, found in runs.items():
                found.append(run_child(kind, day2, args.mapping, state))
        results = {kind: _best(found) for kind, found in runs.items()}
        profile = run_child("profile", day2, args.mapping, state) if args.profile else None

    failed = report(results, args.rows, done)
    if profile is not None:
        print(f"\ncProfile of the plan path ({profile['seconds']:.2f} s under the profiler)")
        print(profile["profile"])
    return 1 if args.check and failed else 0


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fastest run, with the highest peak RSS seen across them."""
    best = min(runs, key=lambda r: r["seconds"])
    best["rss_mib"] = max(r["rss_mib"] for r in runs)
    best["maxrss_mib"] = max(r["maxrss_mib"] for r in runs)
    best["all_seconds"] = [r["seconds"] for r in runs]
    return best


def report(results: dict[str, dict[str, Any]], rows: int, changed: int) -> bool:
    convert, plan, drop = results["convert"], results["plan"], results["drop"]
    ratio = plan["seconds"] / convert["seconds"] if convert["seconds"] else float("inf")
    drop_ratio = drop["seconds"] / convert["seconds"] if convert["seconds"] else float("inf")
    want_requests = math.ceil(changed / 50)
    checks = [
        (
            f"records to send {plan['records']:,} == changed workers {changed:,}",
            plan["records"] == changed,
        ),
        (
            f"requests to send {plan['requests']:,} == {want_requests:,}",
            plan["requests"] == want_requests,
        ),
        (
            f"drop path sends {drop['records']:,} records in {drop['requests']:,} requests "
            f"== {changed:,} in {want_requests:,}",
            drop["records"] == changed and drop["requests"] == want_requests,
        ),
        (f"time ratio plan/conversion {ratio:.2f} <= {MAX_RATIO}", ratio <= MAX_RATIO),
    ]

    header = f"{'measurement':<12}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'requests':>10}"
    header += f"{'MiB JSON':>10}{'peak RSS MiB':>14}{'ru_maxrss':>11}"
    print()
    print(header)
    print("-" * len(header))
    for kind, r in results.items():
        print(
            f"{kind:<12}{r['rows']:>10,}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>10,.0f}"
            f"{r['requests']:>10,}{r['bytes'] / 2**20:>10.2f}{r['rss_mib']:>14.1f}"
            f"{r['maxrss_mib']:>11.1f}"
        )
    print("peak RSS: the child's own VmHWM; ru_maxrss (Linux) includes the parent's peak")
    for kind, r in results.items():
        print(f"{kind} runs: " + ", ".join(f"{s:.2f} s" for s in r["all_seconds"]))
    print()
    counts = ", ".join(f"{k} {v:,}" for k, v in plan["counts"].items())
    print(f"rows {rows:,}; changed workers {changed:,}; state entries {plan['state_entries']:,}")
    print(f"plan: {counts}; manager warnings {plan['manager_warnings']:,}")
    print(
        f"records to send {plan['records']:,}; requests to send {plan['requests']:,} "
        f"(conversion sends {convert['requests']:,})"
    )
    print(
        f"plan time {plan['seconds']:.2f} s; conversion time {convert['seconds']:.2f} s; "
        f"ratio {ratio:.2f}"
    )
    print(
        f"drop path (information): {drop['seconds']:.2f} s, ratio {drop_ratio:.2f} to "
        f"conversion; plan pass + {drop['send_conversions']} send conversion(s) of the file"
    )
    print(
        f"peak RSS: conversion {convert['rss_mib']:.1f} MiB, plan {plan['rss_mib']:.1f} MiB, "
        f"drop {drop['rss_mib']:.1f} MiB (plan and drop hold the state)"
    )
    for text, ok in checks:
        print(f"{text}: {'PASS' if ok else 'FAIL'}")
    return not all(ok for _, ok in checks)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == CHILD:
        child(*sys.argv[2:7])
        sys.exit(0)
    sys.exit(main())
