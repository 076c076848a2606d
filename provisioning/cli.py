"""Command line: ``python -m provisioning validate|convert FILE``.

Exit codes: 0 done (convert: even with rejected rows, unless --strict); 1 rows were rejected
(validate, or convert --strict); 2 the file or the mapping is unusable as a whole.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn
from rich.table import Table

from .bulk import BulkRequest
from .mapping import BUILTIN, Mapping, load_mapping
from .pipeline import Conversion, Source, Summary
from .readers import FORMATS, FileError
from .reports import RejectedCsv, printable
from .settings import Settings
from .transforms import SpecError
from .validation import RowError

EXIT_OK, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2
_PROGRESS_MIN_BYTES = 1 << 20


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m provisioning",
        description="Turn HR exports into SCIM bulk requests for Entra ID inbound provisioning.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("file", type=Path, help="HR export: .csv .tsv .txt .json .jsonl .xlsx")
        sub.add_argument(
            "--mapping",
            default=settings.mapping,
            help=f"built-in mapping ({', '.join(BUILTIN)}) or a YAML/JSON mapping file "
            f"(default: {settings.mapping})",
        )
        sub.add_argument(
            "--format",
            choices=FORMATS,
            default=settings.input_format,
            help="input format (default: from the file extension)",
        )

    validate = commands.add_parser("validate", help="check a file and list every rejected row")
    common(validate)
    validate.add_argument(
        "--limit", type=int, default=1000, help="show at most this many errors (default 1000)"
    )
    convert = commands.add_parser("convert", help="write SCIM bulk request JSON files")
    common(convert)
    convert.add_argument("--out", type=Path, required=True, help="output folder")
    convert.add_argument(
        "--batch-size",
        type=int,
        default=settings.batch_size,
        help=f"operations per request, 1-50 (default {settings.batch_size})",
    )
    convert.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings()
    args = _parser(settings).parse_args(argv)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        mapping = load_mapping(args.mapping)
    except SpecError as exc:
        err.print(f"[bold red]mapping error:[/] {exc}", markup=True)
        return EXIT_UNUSABLE
    if not args.file.is_file():
        err.print(f"[bold red]error:[/] no such file: {args.file}")
        return EXIT_UNUSABLE
    source = Source.from_path(args.file)
    if args.command == "validate":
        return _validate(source, mapping, args, out, err)
    return _convert(source, mapping, args, out, err)


@contextmanager
def _progress(err: Console, path: Path) -> Iterator[Callable[[float], None] | None]:
    if not err.is_terminal or path.stat().st_size < _PROGRESS_MIN_BYTES:
        yield None
        return
    columns = (BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(path.name, total=1.0)
        yield lambda share: bar.update(task, completed=share)


def _run(
    conversion: Conversion, path: Path, err: Console, each: Callable[[BulkRequest], None]
) -> bool:
    """Drive a conversion; False when the file was rejected as a whole."""
    with _progress(err, path) as progress:
        conversion.on_progress = progress
        try:
            for request in conversion.requests():
                each(request)
        except FileError as exc:
            err.print(f"[bold red]file rejected:[/] {conversion.source.name}: {exc}")
            return False
    return True


def _validate(
    source: Source, mapping: Mapping, args: argparse.Namespace, out: Console, err: Console
) -> int:
    errors: list[RowError] = []
    limit: int = args.limit

    def keep(error: RowError) -> None:
        if len(errors) < limit:
            errors.append(error)

    conversion = Conversion(source, mapping, fmt=args.format, on_reject=keep)
    if not _run(conversion, args.file, err, lambda request: None):
        return EXIT_UNUSABLE
    summary = conversion.summary
    if errors:
        table = Table(title=f"Rejected rows in {source.name}")
        for name in ("line", "column", "attribute", "reason", "value"):
            table.add_column(name, overflow="fold", justify="right" if name == "line" else "left")
        for e in errors:
            table.add_row(str(e.line), e.column, e.attribute, e.reason, printable(e.value))
        out.print(table)
        errors_total = sum(summary.rejections_by_attribute.values())
        if errors_total > len(errors):
            out.print(f"... {errors_total - len(errors)} more errors not shown (--limit)")
    _print_counts(out, summary)
    return EXIT_REJECTED if summary.rows_rejected else EXIT_OK


def _convert(
    source: Source, mapping: Mapping, args: argparse.Namespace, out: Console, err: Console
) -> int:
    folder: Path = args.out
    folder.mkdir(parents=True, exist_ok=True)
    # Files of an earlier conversion into the same folder would be mistaken for this one's.
    for stale in [*folder.glob("bulk-*.json"), folder / "summary.json", folder / "rejected.csv"]:
        stale.unlink(missing_ok=True)
    written: list[str] = []

    def write(request: BulkRequest) -> None:
        name = f"bulk-{request.index:04d}.json"
        (folder / name).write_bytes(request.body)
        written.append(name)

    with (folder / "rejected.csv").open("w", encoding="utf-8", newline="") as rejected:
        conversion = Conversion(
            source,
            mapping,
            fmt=args.format,
            batch_size=args.batch_size,
            on_reject=RejectedCsv(rejected),
        )
        ok = _run(conversion, args.file, err, write)
    summary = conversion.summary
    report = {**summary.as_dict(), "requests_written": written}
    (folder / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not ok:
        return EXIT_UNUSABLE
    _print_counts(out, summary)
    out.print(f"wrote {len(written)} bulk request(s), summary.json and rejected.csv to {folder}")
    return EXIT_REJECTED if args.strict and summary.rows_rejected else EXIT_OK


def _print_counts(out: Console, summary: Summary) -> None:
    out.print(
        f"{summary.file}: {summary.rows_read} rows read, {summary.users} valid, "
        f"{summary.rows_rejected} rejected"
        + (f" ({summary.duplicate_ids} duplicated externalIds)" if summary.duplicate_ids else "")
        + f", {summary.requests} bulk request(s)"
    )
