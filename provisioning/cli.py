"""Command line: ``python -m provisioning validate|convert|plan FILE``, and ``approve``,
``release`` and ``reconcile`` against the deployed storage and Graph.

Exit codes (provisioning.runs.claims, provisioning.errors): 0 done (convert: even with rejected
rows, unless --strict); 1 rows were rejected (validate, or convert --strict; reconcile and
release: a run ended partly-rejected or rejected); 2 a setting, an argument, the mapping or the
file is unusable as a whole (ConfigurationError, InputFileError, MappingError); 3 the work waits
(reconcile, release: busy, interrupted, stopped...; GraphServiceError, StorageError); 4 an
unexpected error (a bug); 130 Ctrl-C.

Every error ends in :func:`main`: one line on stderr, ``<label>: <what>`` (the label of its
ProvisioningError class), never a traceback unless ``--traceback`` asks for one, never the
value of an HR attribute or a secret setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn
from rich.table import Table

from .convert.bulk import MAX_OPERATIONS, BulkRequest
from .convert.mapping import BUILTIN, Mapping, load_mapping
from .convert.pipeline import Conversion, Source, Summary
from .convert.readers import FORMATS
from .convert.rows import FileError
from .convert.validation import RowError
from .errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    InputFileError,
    ProvisioningError,
    StorageError,
)
from .functions.services import open_services, open_store, require_services
from .jml.planning import make_plan, policy_for
from .jml.state import WorkerState
from .reconcile.reconciler import Reconciler, take_lock
from .runs.release import Releaser
from .runs.reports import RejectedCsv, printable
from .settings import STATE_CONTAINER, STORAGE_CONNECTION, Settings, load_settings
from .status import EXIT_OK, EXIT_REJECTED, EXIT_UNFINISHED, EXIT_UNUSABLE, exit_code
from .storage import LeaseKeeper

_PROGRESS_MIN_BYTES = 1 << 20
_INVALID_CHOICE = re.compile(r"invalid choice: '(.*)' \(choose from (.*)\)$")
_PACKAGE = Path(__file__).resolve().parent
TRACEBACK_FLAG = "--traceback"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose refusal of an argument is one line on stderr, ``error: <flag>: <problem>``,
    and exit code 2 (EXIT_UNUSABLE), without the usage (``--help`` shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_UNUSABLE, f"error: {plain_argument_error(message)}\n")


def plain_argument_error(message: str) -> str:
    """argparse's message without its Python reprs: ``--format: invalid choice xls; choose
    from csv, json`` rather than ``argument --format: invalid choice: 'xls' (choose from ...``."""
    message = message.removeprefix("argument ")
    found = _INVALID_CHOICE.search(message)
    if found:
        choices = found.group(2).replace("'", "")
        if message.startswith("command: "):
            return f"unknown command {found.group(1)}; choose from {choices}"
        message = (
            message[: found.start()] + f"invalid choice {found.group(1)}; choose from {choices}"
        )
    return " ".join(message.split())


def int_between(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), else a one-line error
    naming the allowed range."""
    allowed = f"between {low} and {high}" if high is not None else f"at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number {allowed}, not {printable(text)}"
            ) from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {value}")
        return value

    return parse


def out_folder(text: str) -> Path:
    """An argparse type: a folder that exists or can be made (no file in the way)."""
    path = Path(text)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({candidate})"
                raise argparse.ArgumentTypeError(
                    f"{printable(text, 200)}{where} is a file, not a folder"
                )
            break
    return path


def fail(err: Console, message: str, label: str = "error") -> int:
    """Print one ``error: message`` line on stderr (never wrapped) and give EXIT_UNUSABLE."""
    err.print(f"[bold red]{label}:[/] {escape(' '.join(message.split()))}", soft_wrap=True)
    return EXIT_UNUSABLE


def report_error(err: Console, error: ProvisioningError) -> int:
    """One ``<label>: <message>`` line on stderr for one of the app's errors; its exit code."""
    fail(err, str(error) or type(error).__name__, error.label)
    return error.exit_code


def storage_failure(error: AzureError) -> StorageError:
    """A StorageError for a failure of the storage SDK, the only Azure SDK whose errors are not
    wrapped where they are raised (Graph's are: GraphUnavailable). Said from the status and
    error code alone: the SDK's text can carry the account URL with a SAS token."""
    settings = f"{STORAGE_CONNECTION} or {STORAGE_CONNECTION}__blobServiceUri"
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    code_text = str(getattr(code, "value", code) or "")
    answered = f"HTTP {status}" + (f" {code_text}" if code_text else "")
    if isinstance(status, int) and status in (401, 403):
        return StorageError(
            f"the storage account refused the app ({answered}): check the key in "
            f"{STORAGE_CONNECTION} or the identity's Storage Blob Data Contributor role"
        )
    if isinstance(status, int):
        return StorageError(f"the storage account answered {answered}")
    if isinstance(error, ClientAuthenticationError):
        return StorageError(
            f"no token for the storage account ({type(error).__name__}); check "
            f"{STORAGE_CONNECTION}__clientId or the managed identity"
        )
    if isinstance(error, ServiceRequestError):
        return StorageError(f"could not connect to the storage account; check {settings}")
    if isinstance(error, ServiceResponseError):
        return StorageError("the storage account did not answer (connection lost or timed out)")
    return StorageError(f"{type(error).__name__} from the storage account")


def unexpected(err: Console, error: BaseException) -> int:
    """One line for an error the app did not foresee (a bug): its type and where it was
    raised, never its text (it could quote an HR value); EXIT_INTERNAL."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    where = ""
    if ours or frames:
        frame = (ours or frames)[-1]
        path = Path(frame.filename).resolve()
        shown = path.relative_to(_PACKAGE.parent) if ours else Path(path.name)
        where = f" at {shown}:{frame.lineno}"
    fail(
        err,
        f"{type(error).__name__}{where}, a bug: run python -m provisioning {TRACEBACK_FLAG} "
        "COMMAND ... for the details (they may quote HR data) and report it",
        "internal error",
    )
    return EXIT_INTERNAL


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m provisioning",
        description="Turn HR exports into SCIM bulk requests for Entra ID inbound provisioning.",
    )
    parser.add_argument(
        TRACEBACK_FLAG,
        action="store_true",
        help="on an error, print the Python traceback before its one line",
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
        "--limit",
        type=int_between(1),
        default=1000,
        help="show at most this many errors (default 1000)",
    )
    convert = commands.add_parser("convert", help="write SCIM bulk request JSON files")
    common(convert)
    convert.add_argument("--out", type=out_folder, required=True, help="output folder")
    convert.add_argument(
        "--batch-size",
        type=int_between(1, MAX_OPERATIONS),
        default=settings.batch_size,
        help=f"operations per request, 1-50 (default {settings.batch_size})",
    )
    convert.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    plan = commands.add_parser(
        "plan", help="show what a run would do (joiners, movers, leavers...) without sending"
    )
    common(plan)
    plan.add_argument("--feed", default="", help="feed name (default: 'default')")
    plan.add_argument("--mode", choices=("full", "delta"), help="feed mode (default: settings)")
    plan.add_argument("--full-send", action="store_true", help="send unchanged records too")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--limit", type=int_between(1), default=50, help="ids shown per list (default 50)"
    )
    approve = commands.add_parser(
        "approve", help="approve the leavers a run held at the safety threshold"
    )
    approve.add_argument("run_id")
    approve.add_argument("--by", default=os.environ.get("USER", "cli"), help="who approves")
    commands.add_parser("release", help="send due held changes and approved leavers now")
    reconcile = commands.add_parser(
        "reconcile",
        help="one reconciliation pass now: health, sweep, release, outcomes, retries, drift",
    )
    reconcile.add_argument(
        "--no-sweep", action="store_true", help="leave unprocessed files in hr-inbound alone"
    )
    drift = reconcile.add_mutually_exclusive_group()
    drift.add_argument("--drift", action="store_true", help="write a drift report even if not due")
    drift.add_argument("--no-drift", action="store_true", help="no drift report this time")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. The one place errors end: one of the app's own
    (ProvisioningError, and storage SDK failures as StorageError) is its line and its class's
    exit code; anything else is one ``internal error`` line and EXIT_INTERNAL."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True, highlight=False)
    try:
        return _main(arguments, err)
    except Exception as exc:
        if TRACEBACK_FLAG in arguments:
            traceback.print_exception(exc, file=sys.stderr)
        if isinstance(exc, ProvisioningError):
            return report_error(err, exc)
        if isinstance(exc, AzureError):
            return report_error(err, storage_failure(exc))
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            # A file or folder the command reads or writes (--out full, not writable...).
            return fail(err, f"{exc.filename}: {exc.strerror}")
        return unexpected(err, exc)
    except KeyboardInterrupt:
        fail(err, "stopped (Ctrl-C); a run resumes where it stopped", "interrupted")
        return EXIT_INTERRUPTED


def _main(argv: list[str], err: Console) -> int:
    out = Console(highlight=False)
    settings = load_settings()
    args = _parser(settings).parse_args(argv)
    return _command(settings, args, out, err)


def _command(settings: Settings, args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.command in ("approve", "release", "reconcile"):
        return _state_command(settings, args, out, err)
    mapping = load_mapping(args.mapping)  # SpecError, a MappingError
    source = _readable(args.file)
    if args.command == "validate":
        return _validate(source, mapping, args, out, err)
    if args.command == "plan":
        return _plan(settings, source, mapping, args, out, err)
    return _convert(source, mapping, args, out, err)


def _readable(path: Path) -> Source:
    """The input file, or InputFileError when it cannot be opened (missing, a folder, no
    permission)."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise InputFileError(f"{path}: {reason or type(exc).__name__}") from None
    return Source.from_path(path)


def _rejected(source: Source, error: FileError) -> InputFileError:
    return InputFileError(f"{source.name}: {error}")


def _storage_configured(settings: Settings) -> bool:
    return bool(settings.storage_connection_string or settings.storage_blob_service_uri)


def _plan(
    settings: Settings,
    source: Source,
    mapping: Mapping,
    args: argparse.Namespace,
    out: Console,
    err: Console,
) -> int:
    feed = args.feed or "default"
    overrides: dict[str, Any] = {"full_send": args.full_send or settings.full_send}
    if args.mode:
        overrides["feed_modes"] = {feed: args.mode}
    settings = settings.model_copy(update=overrides)
    state = None
    if _storage_configured(settings):
        state = WorkerState(open_store(settings))
        state.fold()
    else:
        err.print("no storage configured (HRSTORAGE): planning against an empty state")
    conversion = Conversion(source, mapping, fmt=args.format)
    try:
        made = make_plan(conversion, policy_for(settings, feed), state)
    except FileError as exc:
        raise _rejected(source, exc) from exc
    report = made.report()
    if args.json:
        out.print_json(data=report)
        return EXIT_OK
    table = Table(title=f"Plan for {source.name} (feed {report['feed']}, {report['mode']})")
    table.add_column("action")
    table.add_column("workers", justify="right")
    for action, count in report["counts"].items():
        table.add_row(action, str(count))
    out.print(table)
    limit: int = args.limit

    def show(title: str, items: list[str]) -> None:
        if items:
            shown = ", ".join(items[:limit]) + (
                f" … (+{len(items) - limit})" if len(items) > limit else ""
            )
            out.print(f"[bold]{title}[/] ({len(items)}): {shown}")

    show("joiners", report["joiners"])
    show("rehires", report["rehires"])
    show(
        "movers",
        [
            f"{m['externalId']} [{', '.join(m['changed'])}]" if m["changed"] else m["externalId"]
            for m in report["movers"]
        ],
    )
    show("leavers", report["leavers"])
    show("skipped (inactive, never provisioned)", report["skipped"])
    show("conflicts (externalId differs only in case from a known worker's)", report["conflicts"])
    show("held", [f"{h['externalId']} {h['kind']} until {h['due']}" for h in report["held"]])
    show("manager not found", report["manager_not_found"])
    if report["held_for_approval"]:
        out.print(
            f"[bold red]{len(report['held_for_approval'])} leavers exceed the safety threshold "
            f"of {report['leaver_threshold']}:[/] a run would hold them for approval"
        )
    return EXIT_OK


def reconcile_exit_code(report: dict[str, Any]) -> int:
    """The worst of the pass (not ``complete``: EXIT_UNFINISHED) and of every run its sweep
    processed (runs.exit_code of each status), so a swept file that ended partly-rejected
    makes the pass exit 1."""
    codes = [EXIT_OK if report.get("status") == "complete" else EXIT_UNFINISHED]
    processed = (report.get("sweep") or {}).get("processed") or {}
    codes += [exit_code(str(status)) for status, count in processed.items() if count]
    return max(codes)


def _state_command(settings: Settings, args: argparse.Namespace, out: Console, err: Console) -> int:
    require_services(settings, graph=args.command != "approve")
    if args.command == "approve":
        state = WorkerState(open_store(settings))
        refused = state.approve(args.run_id, args.by)
        if refused is not None:
            return fail(err, refused)
        out.print(f"approved run {args.run_id}; the next release sends its leavers")
        return EXIT_OK
    if args.command == "reconcile":
        drift = True if args.drift else False if args.no_drift else None
        report = asyncio.run(_reconcile(settings, sweep=not args.no_sweep, drift=drift))
        out.print_json(json.dumps(report))
        return reconcile_exit_code(report)
    summary = asyncio.run(_release(settings))
    out.print(
        f"release {summary['run_id']}: {summary['status']}"
        + (f" ({summary['reason']})" if summary.get("reason") else "")
        + f", {summary.get('due_held', 0)} held changes due, "
        f"{len(summary.get('approved_runs', []))} approved runs, "
        f"{summary.get('records_accepted', 0)} records accepted"
    )
    return exit_code(summary["status"])


async def _release(settings: Settings) -> dict[str, Any]:
    async with open_services(settings) as (store, graph):
        store.ensure_containers(STATE_CONTAINER)
        # Under the timer's lock: a release and a timer pass at once could send a change twice.
        lease = take_lock(store, settings)
        if lease is None:
            return {"run_id": "-", "status": "busy", "reason": "a reconciliation pass is running"}
        keeper = LeaseKeeper(lease, settings.lease_seconds, asyncio.sleep)
        try:
            return await Releaser(
                settings, store, graph, sleep=keeper.sleep, keep_alive=keeper.renew_if_due
            ).release()
        finally:
            lease.release()


async def _reconcile(settings: Settings, *, sweep: bool, drift: bool | None) -> dict[str, Any]:
    async with open_services(settings) as (store, graph):
        return await Reconciler(settings, store, graph).run(sweep=sweep, drift=drift)


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
) -> None:
    """Drive a conversion; InputFileError when the file was rejected as a whole."""
    with _progress(err, path) as progress:
        conversion.on_progress = progress
        try:
            for request in conversion.requests():
                each(request)
        except FileError as exc:
            raise _rejected(conversion.source, exc) from exc


def _validate(
    source: Source, mapping: Mapping, args: argparse.Namespace, out: Console, err: Console
) -> int:
    errors: list[RowError] = []
    limit: int = args.limit

    def keep(error: RowError) -> None:
        if len(errors) < limit:
            errors.append(error)

    conversion = Conversion(source, mapping, fmt=args.format, on_reject=keep)
    _run(conversion, args.file, err, lambda request: None)
    summary = conversion.summary
    if errors:
        table = Table(title=f"Rejected rows in {source.name}")
        for name in ("record", "line", "column", "attribute", "reason", "value"):
            numeric = name in ("record", "line")
            table.add_column(name, overflow="fold", justify="right" if numeric else "left")
        for e in errors:
            table.add_row(
                str(e.record), str(e.line), e.column, e.attribute, e.reason, printable(e.value)
            )
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(err, f"--out: cannot make the folder {folder}: {exc.strerror or exc}")
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
        try:
            _run(conversion, args.file, err, write)
        except InputFileError:
            _write_summary(folder, conversion.summary, written)  # its file_error says why
            raise
    summary = conversion.summary
    _write_summary(folder, summary, written)
    _print_counts(out, summary)
    out.print(f"wrote {len(written)} bulk request(s), summary.json and rejected.csv to {folder}")
    return EXIT_REJECTED if args.strict and summary.rows_rejected else EXIT_OK


def _write_summary(folder: Path, summary: Summary, written: list[str]) -> None:
    report = {**summary.as_dict(), "requests_written": written}
    (folder / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _print_counts(out: Console, summary: Summary) -> None:
    out.print(
        f"{summary.file}: {summary.rows_read} rows read, {summary.users} valid, "
        f"{summary.rows_rejected} rejected"
        + (f" ({summary.duplicate_ids} duplicated externalIds)" if summary.duplicate_ids else "")
        + f", {summary.requests} bulk request(s)"
    )
