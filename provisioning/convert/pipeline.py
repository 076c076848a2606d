"""HR file -> SCIM bulk requests: read, map, validate and batch in one streaming pass.

Before any user is produced, a check pass reads the whole file once: it hashes the content
(for deterministic bulkIds), surfaces file-level faults (encoding, broken quoting, bad JSON)
and finds duplicate externalIds. So a bad file is rejected whole before a single request
exists, and every duplicate is rejected, not just the later ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .bind import BoundMapping
from .bulk import MAX_OPERATIONS, BulkRequest, Operation, batches, bulk_id
from .compile import Mapping
from .readers import detect_format, open_table
from .rows import FileError, Row, Table
from .validation import (
    DuplicateFinder,
    Duplicates,
    RowError,
    control_problem,
    duplicate_reason,
    field_count_problem,
    has_control,
    id_key,
)

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Source:
    """A re-readable file: the pipeline reads it more than once and never holds it whole."""

    name: str
    open: Opener

    @classmethod
    def from_path(cls, path: str | Path) -> Source:
        path = Path(path)
        return cls(path.name, lambda: path.open("rb"))


@dataclass
class Summary:
    file: str
    format: str = ""
    mapping: str = ""
    content_hash: str = ""
    rows_read: int = 0
    rows_rejected: int = 0
    users: int = 0
    requests: int = 0
    duplicate_ids: int = 0
    file_error: str | None = None
    rejections_by_attribute: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RowCheck:
    """Faults that make a row unusable as a whole, found the same way by both passes: the
    reader's own, a wrong number of fields, an object where a value is mapped, and a control
    character in a cell the mapping reads."""

    def __init__(self, header: list[str], columns: list[str]) -> None:
        self.width = len(header)
        self.mapped = frozenset(columns)
        index = {name: i for i, name in enumerate(header)}
        self.read = [(index[c], c) for c in columns if c in index]

    def suspect(self, row: Row) -> bool:
        """Cheap: False for nearly every good row; True means :meth:`problem` must decide."""
        values = row.values
        return (
            row.problem is not None
            or bool(row.nested)
            or len(values) != self.width
            # isprintable() is a fast C scan, true for nearly every row and false for every
            # control character; the exact check runs only when it is false.
            or (not "".join(values).isprintable() and has_control("\n".join(values)))
        )

    def problem(self, row: Row) -> tuple[str, str] | None:
        """(column, reason) when the row cannot be mapped at all, else None."""
        if row.problem is not None:
            return row.problem
        if len(row.values) != self.width:
            return "", field_count_problem(len(row.values), self.width)
        for column in row.nested:
            if column in self.mapped:
                return column, "holds an object or array; a single value is expected"
        for i, column in self.read:
            reason = control_problem(row.values[i])
            if reason is not None:
                return column, reason
        return None

    def usable(self, row: Row) -> bool:
        return not self.suspect(row) or self.problem(row) is None


def packed_as(head: bytes, fmt: str | None) -> str | None:
    """Why a file starting with ``head`` is an archive, not an export of format ``fmt``; None
    if it is not one. Said before anything else: "not valid UTF-8" would send a person after
    the wrong fault."""
    if head.startswith(b"\x1f\x8b"):
        return "the file is gzip-compressed; decompress it and drop the export inside"
    if head.startswith(b"PK\x03\x04") and fmt != "xlsx":
        return (
            "the file is a ZIP archive (a workbook saved under another extension, or a zipped "
            "export); name a workbook .xlsx, or unzip the export"
        )
    return None


def content_hash(source: Source) -> str:
    digest = hashlib.sha256()
    with source.open() as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Conversion:
    """One conversion of one file. Iterate :meth:`requests`; read :attr:`summary` after."""

    def __init__(
        self,
        source: Source,
        mapping: Mapping,
        *,
        fmt: str | None = None,
        batch_size: int = MAX_OPERATIONS,
        on_reject: Callable[[RowError], None] | None = None,
        on_progress: Callable[[float], None] | None = None,
        content_hash: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_OPERATIONS:
            raise ValueError(f"batch size must be between 1 and {MAX_OPERATIONS}, not {batch_size}")
        self.source = source
        self.mapping = mapping
        self.batch_size = batch_size
        self.on_reject = on_reject or (lambda error: None)
        self.on_progress = on_progress
        self.summary = Summary(file=source.name, mapping=mapping.source)
        self._fmt = fmt
        self._known_hash = content_hash
        # externalIds of rejected rows, where one can be read: the worker is still in the
        # file, so a full feed must not take them for leavers.
        self.rejected_ids: set[str] = set()
        self._duplicates = Duplicates({}, set())

    def operations(self) -> Iterator[Operation]:
        """Yield one operation per valid row; raises FileError (before the first) for a bad file."""
        try:
            self._check_file()
        except FileError as exc:
            self.summary.file_error = str(exc)
            raise
        yield from self._operations()

    def requests(self) -> Iterator[BulkRequest]:
        """The operations in bulk requests of ``batch_size``."""
        for request in batches(self.operations(), self.batch_size):
            self.summary.requests += 1
            yield request

    def _open(self, stream: IO[bytes]) -> tuple[Table, BoundMapping]:
        table = open_table(stream, self.source.name, self.summary.format)
        return table, self.mapping.bind(table.header)

    def _check_file(self) -> None:
        with self.source.open() as stream:
            head = stream.read(4)
        try:
            fmt = self._fmt or detect_format(self.source.name)
        except FileError:
            fmt = None  # an archive says so first; otherwise the unknown extension is the fault
        packed = packed_as(head, fmt)
        if packed is not None:
            raise FileError(packed)
        self.summary.format = fmt or detect_format(self.source.name)
        self.summary.content_hash = self._known_hash or content_hash(self.source)
        finder = DuplicateFinder()
        columns = self.mapping.columns
        with self.source.open() as stream:
            table, bound = self._open(stream)
            check = RowCheck(table.header, columns)
            for row in table.rows:
                # Rows the main pass rejects anyway must not make a good row a "duplicate".
                if check.usable(row):
                    external_id = bound.external_id(row.values)
                    if external_id is not None:
                        finder.add(external_id)
        candidates = finder.candidates()
        if candidates:
            with self.source.open() as stream:
                table, bound = self._open(stream)
                check = RowCheck(table.header, columns)
                ids = (bound.external_id(r.values) for r in table.rows if check.usable(r))
                self._duplicates = DuplicateFinder.confirm(
                    candidates, (i for i in ids if i is not None)
                )
        self.summary.duplicate_ids = len(self._duplicates)

    def _note_rejected_id(self, bound: BoundMapping, values: list[str]) -> None:
        try:
            external_id = bound.external_id(values)
        except IndexError:  # a short row: the id column is not there
            return
        if external_id:
            self.rejected_ids.add(external_id)

    def _reject(self, row: Row, column: str, attribute: str, reason: str, value: str) -> None:
        summary = self.summary
        key = attribute or column or "row"
        counts = summary.rejections_by_attribute
        counts[key] = counts.get(key, 0) + 1
        self.on_reject(
            RowError(
                self.source.name, summary.rows_read, row.line, column, attribute, reason, value
            )
        )

    def _operations(self) -> Iterator[Operation]:
        summary = self.summary
        duplicates = self._duplicates
        file_hash = summary.content_hash
        progress = self.on_progress
        with self.source.open() as stream:
            table, bound = self._open(stream)
            check = RowCheck(table.header, self.mapping.columns)
            ext_leaf = bound.external_id_leaf
            ext_column = ", ".join(ext_leaf.columns)
            errors: list[Any] = []
            for row in table.rows:
                summary.rows_read += 1
                if progress is not None and summary.rows_read % 1000 == 0:
                    progress(table.progress())
                values = row.values
                if check.suspect(row):
                    problem = check.problem(row)
                    if problem is not None:
                        summary.rows_rejected += 1
                        self._note_rejected_id(bound, values)
                        self._reject(row, problem[0], "", problem[1], "")
                        continue
                user = bound.build(values, errors)
                dates = bound.dates(values, errors)
                external_id: str = user.get("externalId", "")
                repeated = bool(duplicates) and id_key(external_id) in duplicates
                if errors or repeated:
                    summary.rows_rejected += 1
                    self._note_rejected_id(bound, values)
                    reported = set()
                    for leaf, reason in errors:
                        columns = ", ".join(leaf.columns)
                        if (columns, reason) in reported:
                            continue  # one cell read by two attributes: one error, not two
                        reported.add((columns, reason))
                        self._reject(row, columns, leaf.path, reason, bound.raw_value(leaf, values))
                    if repeated:
                        key = id_key(external_id)
                        reason = duplicate_reason(duplicates[key], key in duplicates.cased)
                        self._reject(row, ext_column, "externalId", reason, external_id)
                    errors.clear()
                    continue
                summary.users += 1
                record = summary.rows_read
                yield Operation(
                    bulk_id(file_hash, record), external_id, row.line, user, dates, record
                )
        if progress is not None:
            progress(1.0)


def convert_all(
    source: Source, mapping: Mapping, **options: Any
) -> tuple[list[BulkRequest], Summary]:
    """Convenience for small inputs and tests: materialise every request."""
    conversion = Conversion(source, mapping, **options)
    return list(conversion.requests()), conversion.summary
