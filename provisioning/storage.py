"""The small synchronous storage interface the app uses; nothing else imports azure.storage.

One storage account holds the HR drops, the results and the run state (see ``settings``). Writes
of state are conditional: on the ETag read before (``etag=``), on absence (``create_only``) or on
a held lease, and a condition that does not hold raises :class:`PreconditionFailed`. Large blobs
are read and written in pieces (:meth:`BlobStore.open_read`, :meth:`BlobStore.staged`) so their
size never sits in memory. Blob contents are never logged.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import IO, Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobLeaseClient,
    BlobServiceClient,
    ContentSettings,
)
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from .errors import ConfigurationError, StorageError
from .settings import FLUSH_QUEUE, STORAGE_CONNECTION, Settings

log = logging.getLogger(__name__)

# A StagedBlob stages a block whenever this much is buffered.
BLOCK_SIZE = 4 * 1024 * 1024
# open_read fetches the blob in ranges of this size (one GET each), so about one range is held
# in memory at a time. Kept small because the SDK briefly allocates a list with one slot per
# byte of every range it downloads (``list()`` of a generator whose ``len`` is the
# Content-Length): 8 bytes per byte of range while the GET completes.
READ_CHUNK_SIZE = 256 * 1024

JSON_CONTENT_TYPE = "application/json"

# move() waits this long, looking every COPY_POLL_SECONDS, for a server-side copy still pending.
COPY_TIMEOUT_SECONDS = 60.0
COPY_POLL_SECONDS = 0.5


class PreconditionFailed(StorageError):
    """An ETag, create-only or lease condition of a storage operation did not hold."""


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    last_modified: datetime
    etag: str


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    if isinstance(code, Enum):
        return str(code.value)
    return str(code or "")


def _is_condition_failure(error: HttpResponseError) -> bool:
    """412 (ETag, lease id) or a 409 that reports an existing blob or a lease conflict."""
    if error.status_code == 412:
        return True
    code = _error_code(error)
    return error.status_code == 409 and (code == "BlobAlreadyExists" or code.startswith("Lease"))


def _failed(container: str, name: str, error: HttpResponseError) -> PreconditionFailed:
    code = _error_code(error) or str(error.status_code)
    return PreconditionFailed(f"{container}/{name}: {code}")


def _uses_managed_identity(settings: Settings) -> bool:
    if settings.credential == "managedidentity":
        return True
    return settings.credential == "auto" and bool(os.environ.get("IDENTITY_ENDPOINT"))


class Lease:
    """A held lease on one blob; renew it well within its duration, release it when done."""

    def __init__(self, blob: BlobClient, lease_id: str, container: str, name: str) -> None:
        self._blob = blob
        self.id = lease_id
        self._container = container
        self._name = name

    @property
    def _client(self) -> BlobLeaseClient:
        # A fresh client per call: BlobLeaseClient forgets its id once released.
        return BlobLeaseClient(self._blob, lease_id=self.id)

    def renew(self) -> None:
        """Extend the lease by its duration; :class:`PreconditionFailed` if it was lost."""
        try:
            self._client.renew()
        except HttpResponseError as error:
            if error.status_code in (404, 409, 412):
                raise _failed(self._container, self._name, error) from error
            raise

    def release(self) -> None:
        """Give the lease up. Best effort, never raises: an unreleased lease expires by itself."""
        try:
            self._client.release()
        except AzureError as error:
            status = getattr(error, "status_code", None)
            if status not in (404, 409, 412):
                log.warning(
                    "could not release lease on %s/%s: %s",
                    self._container,
                    self._name,
                    type(error).__name__,
                )


class StagedBlob:
    """A block blob written in pieces: nothing is visible until :meth:`commit`.

    ``write`` buffers and stages a block whenever :data:`BLOCK_SIZE` bytes are buffered, so memory
    stays around one block however large the blob grows. ``commit`` stages the rest and commits
    the blocks in write order, replacing any existing blob. An uncommitted StagedBlob leaves no
    visible blob (the service discards uncommitted blocks after a week).
    """

    def __init__(self, client: BlobClient, container: str, name: str) -> None:
        self._client = client
        self._container = container
        self._name = name
        # Unique per writer so concurrent writers of the same blob never mix their blocks;
        # all ids of one blob must have the same length.
        self._prefix = uuid.uuid4().hex
        self._blocks: list[BlobBlock] = []
        self._staged_size = 0
        self._buffer = bytearray()
        self._committed = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._staged_size + len(self._buffer)

    def write(self, data: bytes) -> None:
        if self._committed:
            raise ValueError(f"{self._container}/{self._name} is already committed")
        self._buffer += data
        if len(self._buffer) >= BLOCK_SIZE:
            self._stage()

    def _stage(self) -> None:
        block_id = base64.b64encode(f"{self._prefix}-{len(self._blocks):08d}".encode()).decode()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._client.stage_block(block_id, data, length=len(data))
        self._blocks.append(BlobBlock(block_id=block_id))
        self._staged_size += len(data)

    def commit(self, content_type: str) -> None:
        if self._committed:
            raise ValueError(f"{self._container}/{self._name} is already committed")
        if self._buffer:
            self._stage()
        self._client.commit_block_list(
            self._blocks, content_settings=ContentSettings(content_type=content_type)
        )
        self._committed = True


class _RangeReader(io.RawIOBase):
    """Reads one blob version range by range (one ranged download per chunk).

    Every range is requested with the ETag of the first look, so a blob replaced mid-read fails
    with :class:`PreconditionFailed` instead of returning a mix of two versions.
    """

    def __init__(
        self, client: BlobClient, container: str, name: str, size: int, etag: str, chunk_size: int
    ) -> None:
        super().__init__()
        self._chunk_size = chunk_size
        self._client = client
        self._container = container
        self._name = name
        self._size = size
        self._etag = etag
        self._offset = 0  # of the next range to fetch
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._chunk:
            if self._offset >= self._size:
                return 0
            self._chunk = memoryview(self._fetch())
        out = memoryview(buffer).cast("B")
        count = min(len(out), len(self._chunk))
        out[:count] = self._chunk[:count]
        self._chunk = self._chunk[count:]
        return count

    def _fetch(self) -> bytes:
        length = min(self._chunk_size, self._size - self._offset)
        try:
            downloader = self._client.download_blob(
                offset=self._offset,
                length=length,
                etag=self._etag,
                match_condition=MatchConditions.IfNotModified,
            )
            data = downloader.readall()
        except HttpResponseError as error:
            if error.status_code == 412:
                raise _failed(self._container, self._name, error) from error
            raise
        if not data:
            raise OSError(f"{self._container}/{self._name}: empty range at {self._offset}")
        self._offset += len(data)
        return data


class BlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        """A connection string (HRSTORAGE) if set, else the identity-based connection."""
        if settings.storage_connection_string:
            return cls(BlobServiceClient.from_connection_string(settings.storage_connection_string))
        if not settings.storage_blob_service_uri:
            raise ConfigurationError(
                "blob storage is not configured: set "
                f"{STORAGE_CONNECTION}__blobServiceUri (storage_blob_service_uri, with "
                f"{STORAGE_CONNECTION}__clientId for a user-assigned managed identity) or "
                f"{STORAGE_CONNECTION} (storage_connection_string, e.g. for Azurite)"
            )
        credential = storage_credential(settings)
        return cls(BlobServiceClient(settings.storage_blob_service_uri, credential=credential))

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _blob(self, container: str, name: str) -> BlobClient:
        return self._service.get_blob_client(container, name)

    def ensure_containers(self, *names: str) -> None:
        """Create the containers that do not exist yet (private, no anonymous access)."""
        for name in names:
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(name)

    def read_json(self, container: str, name: str) -> tuple[Any, str] | None:
        """``(data, etag)``, or None if the blob does not exist."""
        try:
            downloader = self._blob(container, name).download_blob()
            raw = downloader.readall()
        except ResourceNotFoundError:
            return None
        return json.loads(raw), str(downloader.properties.etag)

    def write_json(
        self,
        container: str,
        name: str,
        data: Any,
        *,
        etag: str | None = None,
        create_only: bool = False,
        lease: Lease | None = None,
        indent: int | None = 2,
    ) -> str:
        """Write ``data`` as UTF-8 JSON (indented unless ``indent`` is None: large state blobs
        that people rarely read) and return the new ETag.

        ``etag``: only if the blob is still that version; ``create_only``: only if it does not
        exist; ``lease``: required while the blob is leased. :class:`PreconditionFailed` if a
        condition does not hold.
        """
        if etag is not None and create_only:
            raise ValueError("etag and create_only exclude each other")
        # A lone surrogate (a JSON key written \ud800, quoted in an error) cannot be UTF-8: it is
        # written as the JSON escape it came from, which reads back as the same string.
        body = json.dumps(data, indent=indent, ensure_ascii=False).encode(
            "utf-8", "backslashreplace"
        )
        conditions: dict[str, Any] = {}
        if etag is not None:
            conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        elif create_only:
            conditions = {"match_condition": MatchConditions.IfMissing}
        if lease is not None:
            conditions["lease"] = lease.id
        try:
            result = self._blob(container, name).upload_blob(
                body,
                overwrite=True,
                content_settings=ContentSettings(content_type=JSON_CONTENT_TYPE),
                **conditions,
            )
        except HttpResponseError as error:
            if _is_condition_failure(error):
                raise _failed(container, name, error) from error
            if etag is not None and _error_code(error) == "BlobNotFound":
                # The version we read is gone: as much a lost race as a changed ETag.
                raise _failed(container, name, error) from error
            raise
        return str(result["etag"])

    def update_json(
        self,
        container: str,
        name: str,
        change: Callable[[Any | None], Any | None],
        *,
        attempts: int = 20,
    ) -> bool:
        """Read, change and write a JSON blob, conditional on what was read (its ETag, or its
        absence), again from a fresh read whenever someone else wrote in between.

        ``change`` gets the current data (None when the blob is absent) and returns what to
        write, or None to write nothing. False if the blob kept changing ``attempts`` times."""
        for _ in range(attempts):
            found = self.read_json(container, name)
            data = change(None if found is None else found[0])
            if data is None:
                return True
            try:
                if found is None:
                    self.write_json(container, name, data, create_only=True)
                else:
                    self.write_json(container, name, data, etag=found[1])
                return True
            except PreconditionFailed:
                # Stagger the next try, so writers that collided do not collide again.
                time.sleep(random.uniform(0, 0.02))
        return False

    def write_bytes(self, container: str, name: str, data: bytes, content_type: str) -> str:
        """Create or replace the blob; returns the new ETag."""
        try:
            result = self._blob(container, name).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )
        except HttpResponseError as error:
            if _is_condition_failure(error):  # e.g. the blob is leased
                raise _failed(container, name, error) from error
            raise
        return str(result["etag"])

    def read_bytes(self, container: str, name: str) -> bytes | None:
        try:
            return self._blob(container, name).download_blob().readall()
        except ResourceNotFoundError:
            return None

    def open_read(
        self, container: str, name: str, *, chunk_size: int = READ_CHUNK_SIZE
    ) -> IO[bytes] | None:
        """A buffered binary stream over the blob, fetched in ranges as it is read; None if absent.

        It holds no lease; if the blob is replaced while being read, reading raises
        :class:`PreconditionFailed`.
        """
        client = self._blob(container, name)
        try:
            properties = client.get_blob_properties()
        except ResourceNotFoundError:
            return None
        size = int(properties.size)
        if size == 0:
            return io.BytesIO()
        raw = _RangeReader(client, container, name, size, str(properties.etag), chunk_size)
        return io.BufferedReader(raw, buffer_size=64 * 1024)

    def exists(self, container: str, name: str) -> bool:
        return bool(self._blob(container, name).exists())

    def delete(self, container: str, name: str) -> None:
        """Delete the blob and its snapshots; a missing blob or container is fine."""
        try:
            self._blob(container, name).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError:
            pass
        except HttpResponseError as error:
            if _is_condition_failure(error):  # leased
                raise _failed(container, name, error) from error
            raise

    def move(self, container: str, name: str, new_name: str, *, etag: str) -> None:
        """Move version ``etag`` of a blob to ``new_name`` in the same container.

        A server-side copy (the bytes never pass through the app), then a delete of exactly that
        version. :class:`PreconditionFailed` if the blob was replaced or deleted meanwhile: a new
        version is a new file and stays (if it came after the copy, the copy holds the old one).
        """
        source = self._blob(container, name)
        target = self._blob(container, new_name)
        try:
            copy = target.start_copy_from_url(
                source.url, source_etag=etag, source_match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError as error:
            raise _failed(container, name, error) from error
        except HttpResponseError as error:
            if _is_condition_failure(error):
                raise _failed(container, name, error) from error
            raise
        status = str(copy["copy_status"])
        deadline = time.monotonic() + COPY_TIMEOUT_SECONDS
        while status == "pending":
            if time.monotonic() > deadline:
                target.abort_copy(str(copy["copy_id"]))
                raise TimeoutError(f"copy of {container}/{name} to {new_name} did not finish")
            time.sleep(COPY_POLL_SECONDS)
            status = str(target.get_blob_properties().copy.status)
        if status != "success":
            raise OSError(f"copy of {container}/{name} to {new_name} ended {status}")
        try:
            source.delete_blob(
                delete_snapshots="include", etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError:
            pass  # another mover was faster
        except HttpResponseError as error:
            if _is_condition_failure(error):
                raise _failed(container, name, error) from error
            raise

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose names start with ``prefix``, in name order; nothing if no container."""
        blobs = self._service.get_container_client(container).list_blobs(
            name_starts_with=prefix or None
        )
        try:
            for blob in blobs:
                yield BlobInfo(
                    name=blob.name,
                    size=int(blob.size),
                    last_modified=blob.last_modified,
                    etag=str(blob.etag),
                )
        except ResourceNotFoundError:
            return

    def acquire_lease(self, container: str, name: str, seconds: int = 60) -> Lease | None:
        """Lease the (existing) blob for ``seconds`` (15-60, or -1 for infinite).

        None if someone else holds a lease on it; :class:`FileNotFoundError` if it does not exist.
        """
        try:
            blob = self._blob(container, name)
            lease = blob.acquire_lease(lease_duration=seconds)
        except ResourceNotFoundError as error:
            raise FileNotFoundError(f"{container}/{name} does not exist") from error
        except HttpResponseError as error:
            if error.status_code == 409 and _error_code(error) == "LeaseAlreadyPresent":
                return None
            raise
        return Lease(blob, str(lease.id), container, name)

    def staged(self, container: str, name: str) -> StagedBlob:
        return StagedBlob(self._blob(container, name), container, name)

    def url(self, container: str, name: str) -> str:
        return str(self._blob(container, name).url)


def storage_credential(settings: Settings) -> TokenCredential:
    """The identity of the storage connection: managed identity in Azure, else developer."""
    if _uses_managed_identity(settings):
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.storage_client_id or None)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.storage_client_id or None)


class FlushQueue:
    """The storage queue whose messages trigger a flush of coalesced HTTP changes.

    Messages are base64 text, the Functions queue trigger's default encoding, and are made
    visible only after the coalescing window, so one flush picks up a whole burst of calls.
    """

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> FlushQueue:
        encode = TextBase64EncodePolicy()
        if settings.storage_connection_string:
            client = QueueClient.from_connection_string(
                settings.storage_connection_string, FLUSH_QUEUE, message_encode_policy=encode
            )
        elif settings.storage_queue_service_uri:
            client = QueueClient(
                settings.storage_queue_service_uri,
                FLUSH_QUEUE,
                credential=storage_credential(settings),
                message_encode_policy=encode,
            )
        else:
            raise ConfigurationError(
                f"queue storage is not configured: set {STORAGE_CONNECTION}__queueServiceUri "
                f"or {STORAGE_CONNECTION}"
            )
        return cls(client)

    def schedule(self, delay_seconds: float) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._client.create_queue()
        self._client.send_message("flush", visibility_timeout=max(0, math.ceil(delay_seconds)))

    def pending(self) -> int:
        with contextlib.suppress(ResourceNotFoundError):
            return self._client.get_queue_properties().approximate_message_count or 0
        return 0

    def close(self) -> None:
        self._client.close()


class LeaseKeeper:
    """Holds the claim's lease through long waits (a bucket-full backoff lasts minutes)."""

    def __init__(
        self, lease: Lease, seconds: int, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.lease = lease
        self._every = seconds / 3
        self._sleep = sleep
        self._renewed = time.monotonic()

    def renew_if_due(self) -> None:
        if time.monotonic() - self._renewed > self._every:
            self.lease.renew()
            self._renewed = time.monotonic()

    async def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.renew_if_due()
            await self._sleep(min(left, self._every))
        self.renew_if_due()
