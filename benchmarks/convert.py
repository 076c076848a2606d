"""Benchmark the HR file -> SCIM bulk request conversion against a hand-written floor.

Usage::

    python benchmarks/convert.py [--rows N] [--mapping microsoft-sample] [--keep FILE]
                                 [--repeat R] [--seed S] [--check] [--profile]

It writes a realistic HR export of N rows (the columns of Microsoft's sample CSV) and then
measures, each in its own child process so that the peak RSS belongs to that measurement alone:

* ``python``  - this script's child doing nothing: interpreter + the script's stdlib imports;
* ``imports`` - the same plus the provisioning modules (so their RSS overhead shows);
* ``floor``   - ``csv.DictReader`` + ``json.dumps`` of the same nested SCIM user per row: what a
  minimal converter without checks, duplicate detection or batching costs;
* ``floor-orjson`` - the floor with ``orjson.dumps`` (the product's serialiser) instead; shown
  for information only, the targets compare against ``floor``;
* ``product`` - ``Conversion(Source.from_path(file), load_mapping(m)).requests()`` with
  ``request.body`` serialised for every request (bytes counted, nothing written).

Targets: product time <= 3.0 x floor time, and for N >= 1,000,000 a product peak RSS below
150 MiB. Peak RSS is the child's VmHWM (its own address space since exec); ``ru_maxrss`` is
shown too, but on Linux it also carries the spawning parent's high-water mark across exec, so
it cannot drop below the driver's own peak. The exit code is 0 unless ``--check`` is given
and a target is missed. ``--profile`` also runs the product path under cProfile and prints
its hotspots.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = "_measure"  # hidden sub-command run in the child processes

MAX_RATIO = 3.0
MAX_RSS_MIB = 150.0
RSS_MIN_ROWS = 1_000_000

COLUMNS = [
    "WorkerID",
    "WorkerStatus",
    "WorkerType",
    "UserID",
    "FirstName",
    "LastName",
    "FullName",
    "GenderPronoun",
    "ManagerID",
    "HireDate",
    "OnLeave",
    "Department",
    "Division",
    "CostCenter",
    "Company",
    "Location",
    "JobTitle",
    "StreetAddress",
    "City",
    "CountryCode",
    "OfficePhone",
    "Custom01",
    "Custom02",
    "ZipCode",
]

# --------------------------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    """Names separated by spaces; an underscore is a space inside a name."""
    return [name.replace("_", " ") for name in text.split()]


FIRST_NAMES = _names(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Ashley Donald Emily Steven Kimberly Andrew Donna Paul "
    "Michelle Joshua Carol Kenneth Amanda Kevin Melissa Brian Deborah George Stephanie Timothy "
    "Rebecca Ronald Laura Jason Helen Edward Sharon Jeffrey Cynthia Ryan Kathleen Jacob Amy "
    "Talya Myriam Ginnie Genevra Aarav Priya Wei Mei Hiroshi Yuki Olusegun Chiamaka Mateo "
    "Sofía José Zoë Björn Åsa Łukasz Małgorzata François Anaïs Jürgen Søren Siobhán Dáithí "
    "Nguyễn Thảo Ahmed Fatima Ivan Olga Kwame Ama Rahul Ananya Jean-Luc Marie-Claire"
)
LAST_NAMES = _names(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Fleeta Durware "
    "Fadiman Melony O'Brien O'Connor McAllister Müller Schröder Østergaard Wójcik Kowalczyk "
    "Dubois Lefèvre García-Márquez Núñez Yamamoto Tanaka Zhang Wang Okafor Adeyemi Patel Sharma "
    "Ivanova Petrov Van_der_Berg De_la_Cruz Åkesson Nakamura-Smith"
)
WORKER_TYPES = ("Employee",) * 8 + ("Contractor", "Intern")
PRONOUNS = ("HE/HIM", "SHE/HER", "THEY/THEM", "")
DEPARTMENTS = (
    "Sales",
    "Marketing",
    "Finance",
    "Human Resources",
    "Product Engineering",
    "Research, Development & Innovation",
    "Customer Success",
    "Legal",
    "IT Operations",
    "Supply Chain",
)
DIVISIONS = ("Electronics", "Food", "Media", "Retail", "Healthcare", "Energy", "Services")
COMPANIES = ("Woodgrove", "Fabrikam", "Contoso", "Northwind Traders", "Tailspin Toys, Inc.")
REGIONS = ("Europe", "Asia Pacific", "North America", "Latin America", "Middle East & Africa")
TITLES = (
    "Sales Executive",
    "Vice President",
    "Project Manager",
    "Software Developer",
    "Senior Software Engineer",
    "Data Analyst",
    "Manager, Sales Operations",
    "HR Business Partner",
    "Accountant",
    "Director, Product Marketing",
    "Support Engineer",
    "Chief Technology Officer",
    "Warehouse Associate",
    "Intern",
)
STREETS = (
    "Mansion Ct",
    "Woodgrove Way",
    "Main Street",
    "Microsoft Way",
    "Rue de Rivoli",
    "Hauptstraße",
    "King's Road",
    "Avenida Paulista",
    "Market St",
    "Elm Avenue",
)
CITIES = (  # city, country code, phone prefix
    ("Chicago", "US", "+1 312"),
    ("Redmond", "US", "+1 425"),
    ("New York", "US", "+1 212"),
    ("Toronto", "CA", "+1 416"),
    ("London", "GB", "+44 20"),
    ("Frankfurt", "DE", "+49 69"),
    ("München", "DE", "+49 89"),
    ("Paris", "FR", "+33 1"),
    ("São Paulo", "BR", "+55 11"),
    ("Bengaluru", "IN", "+91 80"),
    ("Tokyo", "JP", "+81 3"),
    ("Sydney", "AU", "+61 2"),
    ("Lagos", "NG", "+234 1"),
    ("Warszawa", "PL", "+48 22"),
)
HIRE_START = dt.date(1995, 1, 1).toordinal()
HIRE_DAYS = dt.date(2025, 6, 30).toordinal() - HIRE_START


def _worker_ids(rows: int) -> tuple[int, Any]:
    """A bijection row index -> 7+ digit WorkerID (scrambled, so ids are unique but unsorted)."""
    modulus = 10 ** max(6, len(str(rows)))
    step = 7919  # prime, coprime with any power of ten
    offset = 4_242

    def worker_id(index: int) -> str:
        return str(modulus + (index * step + offset) % modulus)

    return modulus, worker_id


def generate(path: Path, rows: int, seed: int) -> int:
    """Write a realistic HR CSV of ``rows`` rows to ``path``, chunk by chunk; return its size."""
    rng = random.Random(seed)
    choice, randrange, random_ = rng.choice, rng.randrange, rng.random
    _, worker_id = _worker_ids(rows)
    chunk: list[list[str]] = []
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for index in range(rows):
            wid = worker_id(index)
            first, last = choice(FIRST_NAMES), choice(LAST_NAMES)
            odds = random_()
            if odds < 0.05:  # "Last, First" as some HR systems export it: quoted, with a comma
                full = f"{last}, {first}"
            elif odds < 0.10:
                full = f"{first} {choice(FIRST_NAMES)[0]}. {last}"
            else:
                full = f"{first} {last}"
            city, country, phone = choice(CITIES)
            street = f"{randrange(1, 9999)} {choice(STREETS)}"
            if random_() < 0.15:
                street = f"Suite {randrange(100, 999)}, {street}"
            elif random_() < 0.05:
                street = ""
            chunk.append(
                [
                    wid,
                    "Active" if random_() < 0.9 else "Inactive",
                    choice(WORKER_TYPES),
                    f"{first}.{last}.{wid}@contoso.com".lower().replace(" ", ""),
                    first,
                    last,
                    full,
                    choice(PRONOUNS),
                    worker_id(randrange(index)) if index and random_() < 0.97 else "",
                    dt.date.fromordinal(HIRE_START + randrange(HIRE_DAYS)).isoformat(),
                    "True" if random_() < 0.04 else "False",
                    choice(DEPARTMENTS),
                    choice(DIVISIONS),
                    f"CC{randrange(1000, 9999)}",
                    choice(COMPANIES),
                    choice(REGIONS),
                    choice(TITLES),
                    street,
                    city,
                    country,
                    f"{phone} {randrange(100, 999)} {randrange(1000, 9999)}",
                    f"{choice('TYC')}{randrange(1000, 1999)}",
                    f"BTK{randrange(10, 99)}" if random_() < 0.3 else "",
                    f"{randrange(10000, 99999)}",
                ]
            )
            if len(chunk) == 1_000:  # small, so the parent's RSS (see child()) stays low
                writer.writerows(chunk)
                chunk.clear()
        writer.writerows(chunk)
    return path.stat().st_size


# --------------------------------------------------------------------------------------------
# Measurements (run in child processes)
# --------------------------------------------------------------------------------------------

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCHEMAS = ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE]


def measure_floor(path: str, _mapping: str, dumps: Any = json.dumps) -> dict[str, Any]:
    """The least a converter has to do: parse each row, build the user, serialise it."""
    rows = out = 0
    start = time.perf_counter()
    with open(path, encoding="utf-8-sig", newline="") as stream:
        for row in csv.DictReader(stream):
            user = {
                "schemas": SCHEMAS,
                "externalId": row["WorkerID"],
                "userName": row["UserID"],
                "displayName": row["FullName"],
                "nickName": row["UserID"],
                "userType": row["WorkerType"],
                "title": row["JobTitle"],
                "active": row["WorkerStatus"] == "Active",
                "name": {"givenName": row["FirstName"], "familyName": row["LastName"]},
                "addresses": [
                    {
                        "streetAddress": row["StreetAddress"],
                        "locality": row["City"],
                        "postalCode": row["ZipCode"],
                        "country": row["CountryCode"],
                        "type": "work",
                    }
                ],
                "phoneNumbers": [{"value": row["OfficePhone"], "type": "work"}],
                ENTERPRISE: {
                    "employeeNumber": row["WorkerID"],
                    "costCenter": row["CostCenter"],
                    "organization": row["Company"],
                    "division": row["Division"],
                    "department": row["Department"],
                    "manager": {"value": row["ManagerID"]},
                },
            }
            out += len(dumps(user))  # json.dumps: ASCII, so characters == bytes
            rows += 1
    seconds = time.perf_counter() - start
    return {"rows": rows, "users": rows, "seconds": seconds, "bytes": out}


def measure_floor_orjson(path: str, mapping_ref: str) -> dict[str, Any]:
    """The floor with the product's serialiser (informational; the targets use ``floor``)."""
    import orjson

    return measure_floor(path, mapping_ref, orjson.dumps)


def _product(path: str, mapping_ref: str) -> dict[str, Any]:
    from provisioning.convert.mapping import load_mapping
    from provisioning.convert.pipeline import Conversion, Source

    out = requests = 0
    start = time.perf_counter()
    conversion = Conversion(Source.from_path(path), load_mapping(mapping_ref))
    for request in conversion.requests():
        out += len(request.body)
        requests += 1
    seconds = time.perf_counter() - start
    summary = conversion.summary
    return {
        "rows": summary.rows_read,
        "users": summary.users,
        "rejected": summary.rows_rejected,
        "requests": requests,
        "seconds": seconds,
        "bytes": out,
    }


def measure_product(path: str, mapping_ref: str) -> dict[str, Any]:
    _import_product()
    return _product(path, mapping_ref)


def measure_imports(_path: str, _mapping: str) -> dict[str, Any]:
    _import_product()
    return {}


def measure_python(_path: str, _mapping: str) -> dict[str, Any]:
    return {}


def measure_profile(path: str, mapping_ref: str) -> dict[str, Any]:
    import cProfile
    import io
    import pstats

    _import_product()
    profiler = cProfile.Profile()
    result = profiler.runcall(_product, path, mapping_ref)
    report = io.StringIO()
    stats = pstats.Stats(profiler, stream=report).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
    result["profile"] = report.getvalue()
    return result


def _import_product() -> None:
    sys.path.insert(0, str(ROOT))
    import provisioning.convert.bulk
    import provisioning.convert.mapping
    import provisioning.convert.pipeline  # noqa: F401


MEASURES = {
    "python": measure_python,
    "imports": measure_imports,
    "floor": measure_floor,
    "floor-orjson": measure_floor_orjson,
    "product": measure_product,
    "profile": measure_profile,
}


def own_peak_rss() -> float | None:
    """VmHWM: the peak RSS of this process's own address space since exec (Linux), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child(kind: str, path: str, mapping_ref: str) -> None:
    result = MEASURES[kind](path, mapping_ref)
    # ru_maxrss is in KiB on Linux (bytes on macOS). On Linux it is a floor of the *parent's*
    # peak too: the kernel carries the spawning address space's high-water mark across exec.
    scale = 1 if sys.platform == "darwin" else 1024
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    own = own_peak_rss()
    result["rss_mib"] = result["maxrss_mib"] if own is None else own
    sys.stdout.write(json.dumps(result) + "\n")


def run_child(
    kind: str, path: Path, mapping_ref: str, *extra: str, script: str = __file__
) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (``script`` CHILD kind path mapping extra)."""
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve()), CHILD, kind, str(path), mapping_ref, *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"the '{kind}' measurement failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def best_of(kind: str, path: Path, mapping_ref: str, repeat: int) -> dict[str, Any]:
    """Fastest of ``repeat`` runs, with the highest peak RSS seen across them."""
    runs = [run_child(kind, path, mapping_ref) for _ in range(repeat)]
    best = min(runs, key=lambda r: r.get("seconds", 0.0))
    best["rss_mib"] = max(r["rss_mib"] for r in runs)
    best["maxrss_mib"] = max(r["maxrss_mib"] for r in runs)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows to generate (100000)")
    parser.add_argument("--mapping", default="microsoft-sample", help="mapping name or file")
    parser.add_argument("--keep", type=Path, metavar="FILE", help="write the CSV here and keep it")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; best time")
    parser.add_argument("--seed", type=int, default=20240611, help="random seed of the data")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", action="store_true", help="also cProfile the product path")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")

    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        path = args.keep or Path(tmp) / "hr-export.csv"
        if path.suffix.lower() != ".csv":
            parser.error("--keep FILE must end in .csv (the pipeline detects the format by it)")
        start = time.perf_counter()
        size = generate(path, args.rows, args.seed)
        print(
            f"generated {args.rows:,} rows, {size / 2**20:.1f} MiB in "
            f"{time.perf_counter() - start:.1f} s: {path}" + ("" if args.keep else " (temporary)")
        )
        print(f"python {sys.version.split()[0]}, mapping {args.mapping}, best of {args.repeat}")
        results = {
            kind: best_of(kind, path, args.mapping, args.repeat if timed else 1)
            for kind, timed in (
                ("python", False),
                ("imports", False),
                ("floor", True),
                ("floor-orjson", True),
                ("product", True),
            )
        }
        profile = run_child("profile", path, args.mapping) if args.profile else None

    failed = report(results, args.rows)
    if profile is not None:
        print(f"\ncProfile of the product path ({profile['seconds']:.2f} s under the profiler)")
        print(profile["profile"])
    return 1 if args.check and failed else 0


def report(results: dict[str, dict[str, Any]], rows: int) -> bool:
    floor, product = results["floor"], results["product"]
    ratio = product["seconds"] / floor["seconds"] if floor["seconds"] else float("inf")
    ratio_ok = ratio <= MAX_RATIO
    rss_checked = rows >= RSS_MIN_ROWS
    rss_ok = product["rss_mib"] < MAX_RSS_MIB

    header = f"{'measurement':<14}{'rows':>11}{'seconds':>10}{'rows/s':>11}{'peak RSS MiB':>14}"
    header += f"{'ru_maxrss':>11}{'x floor':>9}"
    print()
    print(header)
    print("-" * len(header))
    for kind, r in results.items():
        if "seconds" in r:
            numbers = f"{r['rows']:>11,}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>11,.0f}"
        else:
            numbers = f"{'-':>11}{'-':>10}{'-':>11}"
        extra = f"{ratio:>9.2f}" if kind == "product" else f"{'':>9}"
        print(f"{kind:<14}{numbers}{r['rss_mib']:>14.1f}{r['maxrss_mib']:>11.1f}{extra}")
    print("peak RSS: the child's own VmHWM; ru_maxrss (Linux) includes the parent's peak")
    print()
    print(
        f"product: {product['users']:,} users, {product['rejected']:,} rejected, "
        f"{product['requests']:,} requests, {product['bytes'] / 2**20:.1f} MiB of JSON; "
        f"floor: {floor['bytes'] / 2**20:.1f} MiB of JSON"
    )
    print(f"time ratio {ratio:.2f} <= {MAX_RATIO}: {'PASS' if ratio_ok else 'FAIL'}")
    tight = results.get("floor-orjson")
    if tight and tight["seconds"]:
        print(f"  (for information: {product['seconds'] / tight['seconds']:.2f} x floor-orjson)")
    if rss_checked:
        verdict = "PASS" if rss_ok else "FAIL"
    else:
        verdict = f"n/a (checked from {RSS_MIN_ROWS:,} rows; {'PASS' if rss_ok else 'FAIL'} now)"
    print(f"peak RSS {product['rss_mib']:.1f} MiB < {MAX_RSS_MIB:.0f} MiB: {verdict}")
    return not ratio_ok or (rss_checked and not rss_ok)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == CHILD:
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
