"""Local copies of HR files ("spools") that cannot outlive the process that made them.

What it is for: the pipeline reads a dropped HR file twice (a check pass, then the send pass)
and the blob stream the host hands over can be read only once, so the stream is copied to a
local file first, hashed on the way (the SHA-256 names the run's claim). Such a copy is personal
data. A copy removed only in a ``finally`` outlives a process killed mid-run (host recycle, OOM,
``kill -9``), and nothing ever came back for it.

So every spool lives in one dedicated folder (``<temp>/hr-provisioning-spool/``, mode 0o700,
files 0o600), is named ``spool-<pid>-<uuid>.part``, and its owner holds an exclusive ``flock``
on it for as long as it lives. The kernel drops that lock when the owner dies however it dies,
so :func:`sweep_stale` can tell a dead spool from a live one by trying to take the lock: if it
can, the owner is gone and the file is deleted. A reused pid cannot fool it (the pid in the name
is only for people reading a listing).

What it must never do:

* delete a spool whose owner is alive (the lock decides, never the pid, the age or the name);
* follow a symlink, or touch anything in the folder not named like a spool;
* write a spool into a folder someone else owns or can read (it refuses instead);
* leave a partial copy behind when the stream fails half way (removed, and the error raised);
* raise from a sweep because a file vanished or changed under it (another sweeper, its owner
  finishing): a sweep is housekeeping, it logs and goes on.

Locks are ``flock`` locks: the folder must be on a local file system (the Functions host's temp
folder is). A child made by ``fork`` (without ``exec``) shares the lock, so a spool stays live
until the child is gone too; descriptors are close-on-exec.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)

CHUNK = 1 << 20
FOLDER_NAME = "hr-provisioning-spool"
FOLDER_MODE = 0o700
FILE_MODE = 0o600
# spool-<pid>-<uuid4 hex>.part; the pid is informative only.
SPOOL_NAME = re.compile(r"spool-(\d+)-([0-9a-f]{32})\.part")
# What drop.spool used to leave behind: tempfile.mkstemp(prefix="hr-drop-") in the temp folder.
LEGACY_NAME = re.compile(r"hr-drop-[a-z0-9_]{8}")
# Old-style copies carry no lock, so a live one cannot be told from a dead one; their last write
# ends the copy, and no run outlives the Functions timeout (5-10 min on Consumption, 30 min by
# default on Premium/Flex, host.json sets none), so a day old is dead with a wide margin.
LEGACY_MAX_AGE = 24 * 3600.0

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_ATTEMPTS = 5


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class SpoolFolderError(PermissionError):
    """The spool folder is not a private directory of this user: nothing is written there."""


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / FOLDER_NAME


def _private_folder(folder: str | Path | None) -> Path:
    """The spool folder, created 0o700 if missing; refused unless a directory (not a symlink)
    owned by this user that no one else can read."""
    path = Path(folder) if folder is not None else default_folder()
    try:
        path.mkdir(mode=FOLDER_MODE, parents=True)
    except FileExistsError:
        pass
    else:
        os.chmod(path, FOLDER_MODE, follow_symlinks=False)  # whatever the umask left
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolFolderError(f"spool folder {path} is not a directory (or is a symlink)")
    if info.st_uid != os.geteuid():
        raise SpoolFolderError(f"spool folder {path} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        raise SpoolFolderError(
            f"spool folder {path} has mode {stat.S_IMODE(info.st_mode):o}: others could read "
            f"personal data; it must be {FOLDER_MODE:o}"
        )
    return path


def _remove(path: Path, fd: int, owner: int | None = None) -> None:
    """Delete the spool while still holding its lock, then release the lock. A child forked
    from ``owner`` only closes its copy of the descriptor: the spool is its parent's."""
    try:
        if owner is None or owner == os.getpid():
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


class Spooled:
    """A spool: the local copy of one stream, its SHA-256 and size.

    Holds the file's lock until :meth:`close` (or the end of a ``with`` block) deletes the file;
    closing twice is harmless. Forgotten ones are closed when collected or at interpreter exit.
    """

    def __init__(self, path: Path, fd: int, content_hash: str, size: int) -> None:
        self.path = path
        self.content_hash = content_hash
        self.size = size
        self._file = os.fstat(fd)
        self._finalizer = weakref.finalize(self, _remove, path, fd, os.getpid())

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def open(self) -> BinaryIO:
        """A new read handle from the start of the file (each one has its own position)."""
        if self.closed:
            raise ValueError(f"spool {self.path.name} is closed")
        fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        try:
            if not _same_file(os.fstat(fd), self._file):
                raise FileNotFoundError(errno.ENOENT, "spool was replaced", str(self.path))
            return open(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Delete the file and release its lock; a no-op when already closed."""
        self._finalizer()

    def __enter__(self) -> Spooled:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Spooled({str(self.path)!r}, {self.content_hash[:12]}..., {self.size}, {state})"


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _create_locked(folder: Path) -> tuple[Path, int]:
    """A new empty spool file in ``folder``, 0o600, with its lock held.

    Between creating the file and locking it, a sweeper may take the lock first and delete the
    file (it looks dead). Once locked, the name must still lead to this very file; if not, try
    again under a new name.
    """
    for _ in range(_CREATE_ATTEMPTS):
        path = folder / f"spool-{os.getpid()}-{uuid.uuid4().hex}.part"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                here = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                here = None
            if here is not None and _same_file(here, os.fstat(fd)):
                return path, fd
        except BaseException:
            with contextlib.suppress(OSError):
                if _same_file(os.stat(path, follow_symlinks=False), os.fstat(fd)):
                    path.unlink()
            os.close(fd)
            raise
        log.info("spool %s was swept before it was locked; trying another name", path.name)
        os.close(fd)
    raise OSError(f"could not create a spool in {folder} in {_CREATE_ATTEMPTS} attempts")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def spool(stream: Readable, folder: str | Path | None = None) -> Spooled:
    """Copy ``stream`` to a new spool in ``folder`` (default :func:`default_folder`) in 1 MiB
    chunks, hashing it on the way. If reading or writing fails, the partial file is deleted and
    the error raised."""
    path, fd = _create_locked(_private_folder(folder))
    try:
        digest = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            _write_all(fd, chunk)
            size += len(chunk)
        return Spooled(path, fd, digest.hexdigest(), size)
    except BaseException:
        _remove(path, fd)
        raise


def _sweep_spools(folder: Path) -> int:
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    except FileNotFoundError:
        return 0
    except OSError as exc:  # a symlink (ELOOP), not a directory, no access
        log.warning("spool folder %s not swept: %s", folder, exc)
        return 0
    removed = 0
    try:
        with os.scandir(dir_fd) as entries:
            names = [e.name for e in entries if SPOOL_NAME.fullmatch(e.name)]
        for name in names:
            if _remove_if_dead(dir_fd, name):
                removed += 1
                log.warning("removed the spool %s of a process that is gone", name)
    finally:
        os.close(dir_fd)
    return removed


def _remove_if_dead(dir_fd: int, name: str) -> bool:
    """Delete spool ``name`` if its lock can be taken: its owner is gone."""
    try:
        # O_NONBLOCK: should a FIFO have been put under that name, do not wait on it.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP):
            log.warning("spool %s not swept: %s", name, exc)
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # live: its owner holds the lock
        # Locked, so its owner cannot be using it; delete it only if the name still leads here.
        if not _same_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), opened):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False  # deleted meanwhile (its owner finishing, another sweeper)
    except OSError as exc:
        log.warning("spool %s not swept: %s", name, exc)
        return False
    finally:
        os.close(fd)


def _sweep_legacy(folder: Path, max_age: float, now: float) -> int:
    """Delete ``hr-drop-*`` copies of the old ``drop.spool`` older than ``max_age`` seconds.

    They carry no lock, so age is the only sign their owner is gone (see LEGACY_MAX_AGE). Only
    regular files of this user directly in ``folder``; symlinks are never followed.
    """
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            log.warning("temp folder %s not swept: %s", folder, exc)
        return 0
    removed = 0
    try:
        with os.scandir(dir_fd) as entries:
            names = [e.name for e in entries if LEGACY_NAME.fullmatch(e.name)]
        for name in names:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                    continue
                if now - max(info.st_mtime, info.st_ctime) < max_age:
                    continue
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("old spool %s not removed: %s", name, exc)
                continue
            removed += 1
            log.warning("removed the old-style spool %s (%s)", name, folder)
    finally:
        os.close(dir_fd)
    return removed


def sweep_stale(
    folder: str | Path | None = None,
    *,
    legacy_folder: str | Path | None = None,
    legacy_max_age: float = LEGACY_MAX_AGE,
    now: float | None = None,
) -> int:
    """Delete the spools in ``folder`` whose owner is gone; how many files were deleted.

    A spool whose lock cannot be taken is live and left alone; anything not named like a spool,
    and symlinks, are ignored. Never raises over a file that vanishes or changes meanwhile.

    Also deletes ``hr-drop-*`` copies left by the old ``drop.spool`` directly in
    ``legacy_folder`` once older than ``legacy_max_age`` seconds (counted in the result too).
    ``legacy_folder`` defaults to the system temp folder, but only when ``folder`` is the default
    too: a caller with a folder of its own (a test) never reaches into the shared temp folder.
    """
    removed = _sweep_spools(Path(folder) if folder is not None else default_folder())
    if legacy_folder is None and folder is None:
        legacy_folder = tempfile.gettempdir()
    if legacy_folder is not None:
        moment = time.time() if now is None else now
        removed += _sweep_legacy(Path(legacy_folder), legacy_max_age, moment)
    return removed
