"""Spools of HR files: hashed copies that are private, locked while alive and swept once their
process is gone (a real process killed with SIGKILL included). Every test works in its own
tmp_path folders: nothing here touches the real temp folder."""

from __future__ import annotations

import fcntl
import gc
import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning.runs import spool as spool_module
from provisioning.runs.spool import (
    CHUNK,
    LEGACY_MAX_AGE,
    Spooled,
    SpoolFolderError,
    spool,
    sweep_stale,
)

ROOT = Path(__file__).resolve().parents[1]
DAY = 24 * 3600.0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A spool folder not created yet: spool() makes it."""
    return tmp_path / "spool"


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """Stands in for the system temp folder where the old drop.spool left hr-drop-* copies."""
    path = tmp_path / "temp"
    path.mkdir()
    return path


def dead_spool(folder: Path, data: bytes = b"WorkerID\n1\n") -> Path:
    """A spool file as a killed process leaves it: named like one, nobody holding its lock."""
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"spool-999999-{uuid.uuid4().hex}.part"
    path.write_bytes(data)
    return path


def lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def payload(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(size))


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_hash_and_size(folder: Path, size: int) -> None:
    data = payload(size)
    with spool(io.BytesIO(data), folder) as spooled:
        assert spooled.size == size
        assert spooled.content_hash == hashlib.sha256(data).hexdigest()
        assert spooled.path.parent == folder
        assert spooled.path.read_bytes() == data


def test_short_reads_are_copied_whole(folder: Path) -> None:
    class Trickle:
        """A stream handing over at most 1000 bytes a read, whatever is asked."""

        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1, /) -> bytes:
            return self._data.read(min(size, 1000))

    data = payload(CHUNK + 5000)
    with spool(Trickle(data), folder) as spooled:
        assert spooled.size == len(data)
        assert spooled.content_hash == hashlib.sha256(data).hexdigest()


def test_open_reads_from_the_start_each_time(folder: Path) -> None:
    data = payload(CHUNK + 3)
    with spool(io.BytesIO(data), folder) as spooled:
        with spooled.open() as first, spooled.open() as second:
            assert first.read(10) == data[:10]
            assert second.read() == data
            assert first.read() == data[10:]
        with spooled.open() as again:
            assert again.read() == data
    with pytest.raises(ValueError):
        spooled.open()


def test_private_folder_and_file_whatever_the_umask(folder: Path) -> None:
    old = os.umask(0)
    try:
        spooled = spool(io.BytesIO(b"x"), folder)
    finally:
        os.umask(old)
    with spooled:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(spooled.path).st_mode) == 0o600
        assert spool_module.SPOOL_NAME.fullmatch(spooled.path.name)
        assert spooled.path.name.startswith(f"spool-{os.getpid()}-")


def test_refuses_a_folder_others_can_read(folder: Path) -> None:
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with pytest.raises(SpoolFolderError):
        spool(io.BytesIO(b"x"), folder)
    assert list(folder.iterdir()) == []


def test_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "spool"
    link.symlink_to(target)
    with pytest.raises(SpoolFolderError):
        spool(io.BytesIO(b"x"), link)
    assert list(target.iterdir()) == []


def test_default_folder_is_in_the_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    with spool(io.BytesIO(b"x")) as spooled:
        assert spooled.path.parent == tmp_path / "hr-provisioning-spool"
        assert stat.S_IMODE(os.stat(spooled.path.parent).st_mode) == 0o700


def test_lock_is_held_while_alive_and_close_deletes(folder: Path) -> None:
    spooled = spool(io.BytesIO(b"WorkerID\n1\n"), folder)
    assert spooled.path.exists()
    assert not lock_is_free(spooled.path)
    assert not spooled.closed
    spooled.close()
    assert spooled.closed
    assert not spooled.path.exists()
    spooled.close()  # idempotent
    spooled.path.unlink(missing_ok=True)
    spooled.close()


def test_context_manager_deletes_even_on_error(folder: Path) -> None:
    with pytest.raises(RuntimeError), spool(io.BytesIO(b"x"), folder) as spooled:
        raise RuntimeError("pipeline failed")
    assert not spooled.path.exists()
    assert list(folder.iterdir()) == []


def test_close_after_the_file_is_already_gone(folder: Path) -> None:
    spooled = spool(io.BytesIO(b"x"), folder)
    spooled.path.unlink()
    spooled.close()
    assert spooled.closed


def test_a_forgotten_spool_is_deleted_when_collected(folder: Path) -> None:
    spooled = spool(io.BytesIO(b"x"), folder)
    path = spooled.path
    del spooled
    gc.collect()
    assert not path.exists()


def test_a_forked_child_exiting_leaves_its_parents_spool(folder: Path) -> None:
    """A forked child inherits the spool's finalizer (atexit runs it on a normal exit); closing
    there must not delete its parent's file."""
    with spool(io.BytesIO(b"x"), folder) as spooled:
        pid = os.fork()
        if pid == 0:  # child
            try:
                spooled.close()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert spooled.path.exists()
        assert not lock_is_free(spooled.path)
    assert not spooled.path.exists()


class Failing:
    """Hands over one chunk, then fails like a dropped blob download."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise ConnectionResetError("blob stream broken")
        return b"x" * size


def test_failing_stream_leaves_no_file(folder: Path) -> None:
    with pytest.raises(ConnectionResetError):
        spool(Failing(), folder)
    assert list(folder.iterdir()) == []


def test_sweep_leaves_a_live_spool_of_this_process(folder: Path, legacy: Path) -> None:
    with spool(io.BytesIO(b"WorkerID\n1\n"), folder) as spooled:
        assert sweep_stale(folder, legacy_folder=legacy) == 0
        assert spooled.path.exists()
        with spooled.open() as handle:
            assert handle.read() == b"WorkerID\n1\n"


def test_sweep_of_a_missing_folder(tmp_path: Path, legacy: Path) -> None:
    assert sweep_stale(tmp_path / "never-made", legacy_folder=legacy) == 0


@pytest.fixture
def spooling_process(folder: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another Python process that spooled a file and is still running."""
    code = textwrap.dedent(
        f"""
        import io, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from provisioning.runs.spool import spool
        spooled = spool(io.BytesIO(b"WorkerID,Name\\n1,Ada\\n" * 100000), {str(folder)!r})
        print(spooled.path, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line, f"the spooling process printed nothing (exit code {proc.poll()})"
        yield proc, Path(line)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_sweep_removes_the_spool_of_a_killed_process(
    spooling_process: tuple[subprocess.Popen[str], Path], folder: Path, legacy: Path
) -> None:
    proc, path = spooling_process
    assert path.parent == folder
    assert path.name.startswith(f"spool-{proc.pid}-")
    assert path.stat().st_size == len(b"WorkerID,Name\n1,Ada\n") * 100000

    # Alive in another process: left alone.
    assert sweep_stale(folder, legacy_folder=legacy) == 0
    assert path.exists()

    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert path.exists()  # no finally ran: this is the leftover the sweep is for

    assert sweep_stale(folder, legacy_folder=legacy) == 1
    assert not path.exists()
    assert sweep_stale(folder, legacy_folder=legacy) == 0


def test_sweep_ignores_unrelated_files_and_symlinks(
    tmp_path: Path, folder: Path, legacy: Path
) -> None:
    dead = dead_spool(folder)
    outside = tmp_path / "outside.csv"
    outside.write_bytes(b"personal data elsewhere")
    keep = {
        "notes.txt": b"n",
        "spool-1-notahex.part": b"n",
        f"spool-1-{uuid.uuid4().hex}.part.bak": b"n",
        f"spool-x-{uuid.uuid4().hex}.part": b"n",
    }
    for name, data in keep.items():
        (folder / name).write_bytes(data)
    link = folder / f"spool-1-{uuid.uuid4().hex}.part"
    link.symlink_to(outside)
    subdir = folder / f"spool-2-{uuid.uuid4().hex}.part"
    subdir.mkdir()
    fifo = folder / f"spool-3-{uuid.uuid4().hex}.part"
    os.mkfifo(fifo)

    assert sweep_stale(folder, legacy_folder=legacy) == 1
    assert not dead.exists()
    for name in keep:
        assert (folder / name).exists()
    assert link.is_symlink()
    assert outside.read_bytes() == b"personal data elsewhere"
    assert subdir.is_dir()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_sweep_does_not_follow_a_symlinked_folder(tmp_path: Path, legacy: Path) -> None:
    target = tmp_path / "elsewhere"
    dead = dead_spool(target)
    link = tmp_path / "spool"
    link.symlink_to(target)
    assert sweep_stale(link, legacy_folder=legacy) == 0
    assert dead.exists()


def test_sweep_survives_a_file_vanishing_meanwhile(
    folder: Path, legacy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed, then deleted by someone else before the sweep opens it: not counted, no error."""
    vanishing = dead_spool(folder)
    dead = dead_spool(folder)
    real_open = os.open

    def open_after_another_sweeper(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == vanishing.name and kwargs.get("dir_fd") is not None:
            vanishing.unlink(missing_ok=True)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_another_sweeper)
    assert sweep_stale(folder, legacy_folder=legacy) == 1
    assert not vanishing.exists()
    assert not dead.exists()


def test_spool_swept_before_its_lock_is_taken_is_made_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweeper may lock and delete a new spool between its creation and its owner's lock; the
    owner then sees its name no longer leads to its file and starts over under a new name."""
    real_flock = fcntl.flock
    swept: list[str] = []

    def flock_after_a_sweeper(fd: int, operation: int) -> None:
        if not swept:
            name = next(p for p in folder.iterdir() if p.name.endswith(".part"))
            swept.append(name.name)
            name.unlink()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweeper)
    with spool(io.BytesIO(b"WorkerID\n1\n"), folder) as spooled:
        assert swept and spooled.path.name != swept[0]
        assert spooled.path.read_bytes() == b"WorkerID\n1\n"
        assert [p.name for p in folder.iterdir()] == [spooled.path.name]


def test_sweep_removes_old_style_copies_only_once_a_day_old(
    folder: Path, legacy: Path, tmp_path: Path
) -> None:
    old = legacy / "hr-drop-ab12_x9z"
    old.write_bytes(b"personal data")
    other = legacy / "hr-drop-report.csv"  # not what mkstemp makes
    other.write_bytes(b"x")
    unrelated = legacy / "somebody-else"
    unrelated.write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    link = legacy / "hr-drop-linklink"
    link.symlink_to(outside)

    # Fresh: perhaps still in use by an old-style run.
    assert sweep_stale(folder, legacy_folder=legacy) == 0
    assert old.exists()

    later = time.time() + LEGACY_MAX_AGE + 60
    assert sweep_stale(folder, legacy_folder=legacy, now=later) == 1
    assert not old.exists()
    assert other.exists() and unrelated.exists() and outside.exists() and link.is_symlink()


def test_legacy_copies_in_the_temp_folder_only_with_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(temp))
    old = temp / "hr-drop-abcdefgh"
    old.write_bytes(b"personal data")
    later = time.time() + 2 * DAY

    assert sweep_stale(tmp_path / "own", now=later) == 0
    assert old.exists()

    dead = dead_spool(temp / "hr-provisioning-spool")
    assert sweep_stale(now=later) == 2
    assert not old.exists()
    assert not dead.exists()


def test_spooled_is_typed_for_the_pipeline(folder: Path) -> None:
    """Spooled.open fits pipeline.Source (an opener of binary files)."""
    from provisioning.convert.pipeline import Source

    with spool(io.BytesIO(b"WorkerID\n1\n"), folder) as spooled:
        assert isinstance(spooled, Spooled)
        source = Source(spooled.path.name, spooled.open)
        with source.open() as handle:
            assert handle.read() == b"WorkerID\n1\n"
        assert "closed" not in repr(spooled)
    assert "closed" in repr(spooled)
