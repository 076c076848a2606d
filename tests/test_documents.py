"""The versioned documents in ``state`` (provisioning/documents.py): what a version-less, a newer
and a malformed document read as, in words a person can act on, against a real Azurite for the
reads and writes. Each document's own round trip and the way its reader handles these is tested
with the document (test_state, test_tracking, test_changes, test_blob_drop)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from azure.storage.blob import BlobServiceClient

from provisioning.documents import (
    SCHEMA_FIELD,
    Document,
    DocumentError,
    MalformedDocument,
    NewerDocument,
    read_document,
    update_document,
)
from provisioning.errors import EXIT_UNFINISHED, StorageError
from provisioning.settings import STATE_CONTAINER
from provisioning.storage import BlobStore

if TYPE_CHECKING:
    from tests.conftest import Azurite


class Note(Document):
    WHAT: ClassVar[str] = "note"

    text: str
    count: int = 0
    tags: list[str] = []


WHERE = "state/notes/n1.json"


@pytest.fixture
def store(clean_storage: Azurite) -> Iterator[BlobStore]:
    with BlobStore(BlobServiceClient.from_connection_string(clean_storage.connection_string)) as s:
        s.ensure_containers(STATE_CONTAINER)
        yield s


def raw(store: BlobStore, name: str) -> Any:
    found = store.read_json(STATE_CONTAINER, name)
    assert found is not None
    return found[0]


def test_a_dumped_document_carries_its_version_and_reads_back() -> None:
    note = Note(text="hello", count=2)
    assert note.dump() == {SCHEMA_FIELD: 1, "text": "hello", "count": 2, "tags": []}
    assert Note.parse(note.dump(), WHERE) == note


def test_a_document_without_the_version_is_version_1_and_reads_as_before() -> None:
    old = {"text": "hello", "kept": {"by": "an older version"}}
    note = Note.parse(old, WHERE)
    assert (note.schema_version, note.text, note.count) == (1, "hello", 0)
    # Its own keys, as they were (no made-up defaults), and unknown keys are kept on writing.
    assert note.stored() == old
    assert note.dump() == {SCHEMA_FIELD: 1, "text": "hello", "count": 0, "tags": [], **old}


@pytest.mark.parametrize("version", [2, 99])
def test_a_newer_document_is_refused_in_one_line(version: int) -> None:
    with pytest.raises(NewerDocument) as refused:
        Note.parse({SCHEMA_FIELD: version, "text": "hello"}, WHERE)
    message = str(refused.value)
    assert message == (
        f"{WHERE} was written by a newer version of the app (note schema version {version}; "
        "this version reads up to 1); it is left as it is for that version"
    )
    assert "\n" not in message and refused.value.where == WHERE
    # A storage error: the work waits (exit 3), the CLI prints its one line.
    assert isinstance(refused.value, StorageError) and refused.value.exit_code == EXIT_UNFINISHED


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (["text"], "it is not a JSON object"),
        ("text", "it is not a JSON object"),
        ({SCHEMA_FIELD: "1", "text": "x"}, "schema_version must be a whole number from 1"),
        ({SCHEMA_FIELD: 0, "text": "x"}, "schema_version must be a whole number from 1"),
        ({SCHEMA_FIELD: True, "text": "x"}, "schema_version must be a whole number from 1"),
        ({SCHEMA_FIELD: 1.5, "text": "x"}, "schema_version must be a whole number from 1"),
        ({}, "text: is required"),
        ({"text": 5, "count": "many"}, "text: must be text; count: must be a whole number"),
        ({"text": "x", "tags": ["a", 3]}, "tags.1: must be text"),
    ],
)
def test_a_malformed_document_is_reported_in_plain_words(data: Any, reason: str) -> None:
    with pytest.raises(MalformedDocument) as refused:
        Note.parse(data, WHERE)
    assert str(refused.value) == f"{WHERE} is not a valid note: {reason}"


def test_a_malformed_document_never_shows_pydantic_text_nor_stored_values() -> None:
    secret = "Jane Doe, born 1970-01-01"
    with pytest.raises(MalformedDocument) as refused:
        Note.parse({"text": {"name": secret}, "count": secret, "tags": secret}, WHERE)
    message = str(refused.value)
    assert secret not in message
    for pydantic_words in ("Input should", "type=", "pydantic", "validation error"):
        assert pydantic_words not in message
    assert "\n" not in message


def test_many_faults_are_counted_not_all_listed() -> None:
    with pytest.raises(MalformedDocument) as refused:
        Note.parse({"text": 1, "count": "x", "tags": [1, 2, 3]}, WHERE)
    assert str(refused.value).endswith("(and 2 more)")


def test_read_document_names_the_blob(store: BlobStore) -> None:
    assert read_document(store, STATE_CONTAINER, "notes/n1.json", Note) is None
    store.write_json(STATE_CONTAINER, "notes/n1.json", Note(text="hi").dump())
    found = read_document(store, STATE_CONTAINER, "notes/n1.json", Note)
    assert found is not None and found[0].text == "hi" and found[1]

    store.write_json(STATE_CONTAINER, "notes/n1.json", {SCHEMA_FIELD: 2, "text": "hi"})
    with pytest.raises(NewerDocument, match=f"^{WHERE} was written by a newer version"):
        read_document(store, STATE_CONTAINER, "notes/n1.json", Note)


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\xfa", b""])
def test_a_blob_that_is_not_json_is_malformed(store: BlobStore, body: bytes) -> None:
    store.write_bytes(STATE_CONTAINER, "notes/n1.json", body, "application/json")
    with pytest.raises(MalformedDocument) as refused:
        read_document(store, STATE_CONTAINER, "notes/n1.json", Note)
    assert str(refused.value) == f"{WHERE} is not a valid note: it is not JSON"

    def change(note: Note | None) -> Note | None:
        raise AssertionError("never called on a blob that is not JSON")

    with pytest.raises(MalformedDocument):
        update_document(store, STATE_CONTAINER, "notes/n1.json", Note, change)
    assert store.read_bytes(STATE_CONTAINER, "notes/n1.json") == body  # left as it is


def test_update_document_writes_through_the_model(store: BlobStore) -> None:
    def count(note: Note | None) -> Note:
        if note is None:
            return Note(text="first")
        note.count += 1
        return note

    for _ in range(3):
        assert update_document(store, STATE_CONTAINER, "notes/n1.json", Note, count)
    assert raw(store, "notes/n1.json") == {SCHEMA_FIELD: 1, "text": "first", "count": 2, "tags": []}

    # A version-less document is updated as version 1, keeping its keys.
    store.write_json(STATE_CONTAINER, "notes/n1.json", {"text": "old", "extra": 1})
    assert update_document(store, STATE_CONTAINER, "notes/n1.json", Note, count)
    assert raw(store, "notes/n1.json") == {
        SCHEMA_FIELD: 1,
        "text": "old",
        "count": 1,
        "tags": [],
        "extra": 1,
    }


@pytest.mark.parametrize(
    "stored",
    [{SCHEMA_FIELD: 2, "text": "new", "shape": "unknown"}, {"text": ["not", "text"]}],
    ids=["newer", "malformed"],
)
def test_update_document_never_writes_over_what_it_cannot_read(
    store: BlobStore, stored: dict[str, Any]
) -> None:
    store.write_json(STATE_CONTAINER, "notes/n1.json", stored)
    calls = []

    def change(note: Note | None) -> Note | None:
        calls.append(note)
        return Note(text="overwritten")

    with pytest.raises(DocumentError, match=f"^{WHERE} "):
        update_document(store, STATE_CONTAINER, "notes/n1.json", Note, change)
    assert calls == []
    assert raw(store, "notes/n1.json") == stored
