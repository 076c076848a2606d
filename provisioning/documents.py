"""The JSON documents the app keeps in ``state`` (claims, held changes, approval requests and
approvals, pending records, change records and their outbox entries, seen markers): each is a
pydantic model carrying the version of its schema, ``schema_version``.

A writer dumps the model (:meth:`Document.dump`): the same keys as before versions existed, plus
``schema_version``. A reader validates what it read through the model (:meth:`Document.parse`,
:func:`read_document`, :func:`update_document`):

* a document without ``schema_version`` was written before versions existed: it is version 1
  and reads exactly as it always did;
* a document of a higher version than this code knows was written by a newer version of the
  app (say one rolled back since): :class:`NewerDocument`, never read as if it were the old
  shape, never overwritten;
* a document that does not fit its model: :class:`MalformedDocument`, naming the blob and, in
  plain words, what is wrong (never pydantic's own text, nor a stored value).

Both are :class:`DocumentError`, a :class:`~provisioning.errors.StorageError`: the stored state
cannot be used as it is; the work waits and nothing is lost. What a caller does then (stop, or
skip the document with a warning and leave the blob alone) is decided, and said, where each
document is read.

Raising a model's ``SCHEMA`` means: the new code can still read every older version (migrating
it in :meth:`Document.upgrade`) and older code refuses the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import StorageError, plain_reason

SCHEMA_FIELD = "schema_version"
# At most this many of a document's faults are named in the one line of a MalformedDocument.
_MAX_REASONS = 3


class DocumentError(StorageError):
    """A document in storage that this version of the app cannot use; the message names it."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


class NewerDocument(DocumentError):
    """The document was written by a newer version of the app (a higher ``schema_version``)."""


class MalformedDocument(DocumentError):
    """The document is not JSON, or does not fit its model."""


def none(value: Any) -> bool:
    """For ``Field(exclude_if=none)``: a key written only once it has a value (as before)."""
    return value is None


class Part(BaseModel):
    """A part of a document (a record of a change record...): keys it does not know are kept,
    so a document read and written again loses nothing."""

    model_config = ConfigDict(extra="allow")


class Document(Part):
    """Base of the documents in ``state``. Subclasses name what they are (``WHAT``, for
    messages) and the version of their schema this code writes (``SCHEMA``)."""

    SCHEMA: ClassVar[int] = 1
    WHAT: ClassVar[str] = "document"

    schema_version: int = 1

    @classmethod
    def parse(cls, data: Any, where: str) -> Self:
        """The document of ``data`` as read from the blob ``where`` (``container/name``);
        :class:`NewerDocument` or :class:`MalformedDocument` if it cannot be used."""
        if not isinstance(data, dict):
            raise MalformedDocument(
                f"{where} is not a valid {cls.WHAT}: it is not a JSON object", where
            )
        version = data.get(SCHEMA_FIELD, 1)  # none: written before versions, version 1
        if type(version) is not int or version < 1:
            raise MalformedDocument(
                f"{where} is not a valid {cls.WHAT}: {SCHEMA_FIELD} must be a whole number from 1",
                where,
            )
        if version > cls.SCHEMA:
            raise NewerDocument(
                f"{where} was written by a newer version of the app ({cls.WHAT} schema version "
                f"{version}; this version reads up to {cls.SCHEMA}); it is left as it is for that "
                "version",
                where,
            )
        try:
            document = cls.model_validate(cls.upgrade(data, version))
        except ValidationError as exc:
            raise MalformedDocument(
                f"{where} is not a valid {cls.WHAT}: {reasons(exc)}", where
            ) from None
        return document

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """``data`` of an older ``version`` in the shape of ``SCHEMA`` (nothing to do yet)."""
        return data

    def dump(self) -> dict[str, Any]:
        """What is written: every field (keys of the JSON as before versions) and the version
        this code writes."""
        data = self.model_dump(mode="json")
        data[SCHEMA_FIELD] = self.SCHEMA
        return data

    def stored(self) -> dict[str, Any]:
        """The keys the blob had, without the version: what readers got before versions (a key
        the blob did not have is not made up, even where the model has a default)."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={SCHEMA_FIELD})


def reasons(exc: ValidationError) -> str:
    """A model's faults in plain words, each after where it is ("records.0.status: must be
    one of ..."), at most a few of them."""
    errors = exc.errors(include_url=False)
    said = [
        f"{'.'.join(str(p) for p in e['loc']) or 'the document'}: {plain_reason(e)}"
        for e in errors[:_MAX_REASONS]
    ]
    more = len(errors) - _MAX_REASONS
    return "; ".join(said) + (f" (and {more} more)" if more > 0 else "")


class JsonStore(Protocol):
    """What of :class:`provisioning.storage.BlobStore` the helpers below use."""

    def read_json(self, container: str, name: str) -> tuple[Any, str] | None: ...

    def update_json(
        self,
        container: str,
        name: str,
        change: Callable[[Any | None], Any | None],
        *,
        attempts: int = 20,
    ) -> bool: ...


D = TypeVar("D", bound=Document)


def read_document(
    store: JsonStore, container: str, name: str, model: type[D]
) -> tuple[D, str] | None:
    """``(document, etag)`` of the blob, None if it does not exist; :class:`DocumentError` if
    it cannot be used."""
    where = f"{container}/{name}"
    try:
        found = store.read_json(container, name)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedDocument(
            f"{where} is not a valid {model.WHAT}: it is not JSON", where
        ) from None
    if found is None:
        return None
    return model.parse(found[0], where), found[1]


def update_document(
    store: JsonStore,
    container: str,
    name: str,
    model: type[D],
    change: Callable[[D | None], D | None],
    *,
    attempts: int = 20,
) -> bool:
    """:meth:`BlobStore.update_json` through the model: ``change`` gets the document (None when
    the blob is absent) and returns what to write, or None to write nothing. A blob that cannot
    be used raises :class:`DocumentError` before anything is written."""
    where = f"{container}/{name}"

    def raw(current: Any | None) -> Any | None:
        document = None if current is None else model.parse(current, where)
        changed = change(document)
        return None if changed is None else changed.dump()

    try:
        return store.update_json(container, name, raw, attempts=attempts)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedDocument(
            f"{where} is not a valid {model.WHAT}: it is not JSON", where
        ) from None
