"""One run directory, one process: an OS-level lock, what "holds a run" means, and stale temp files.

Two ``inas run`` on the same ``--out`` would interleave their files (config.json of one run,
results.json of the other), and a check like "config.json exists" cannot stop them: both pass it
before either writes. So a run takes an exclusive ``flock`` on ``DIR/.inas.lock`` *before* it looks
at or writes anything in the directory and holds it until it exits; the kernel releases it when the
process dies, however it dies (``kill -9`` included), so a lock is never stale. The holder writes
its PID into the file, which the refused process names in its one-line error.

The lock file is unlinked on release. A process that opened the old file just before the unlink
would then lock a file no longer in the directory, so :meth:`RunDirLock.acquire` checks, after
locking, that the path still names the inode it locked, and starts over if not (the usual
lock-file race; see ``flock(2)``).

A directory *holds a run* once its config.json exists (the first file a run writes; everything a
run needs to start again is in it). Before that, whatever is there (the lock file, temporary files
of an interrupted atomic write) belongs to no run, and a new run may start in it.

Only the standard library is imported: the CLI takes the lock before it imports torch.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path
from typing import Optional

from .run_files import CONFIG_NAME, LOCK_NAME

# The temporary files of inas_plugins.atomic: ".<target>.<8 hex>.tmp".
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


class RunDirError(Exception):
    """The run directory cannot be used; the message is one line."""


class RunDirBusy(RunDirError):
    """Another live process holds the run directory."""

    def __init__(self, run_dir: Path, pid: Optional[int]) -> None:
        owner = f"process {pid}" if pid else "another process"
        super().__init__(f"{run_dir} is in use by {owner} (another `inas run`); wait for it to finish, "
                         f"or choose another --out")
        self.pid = pid


def holds_run(run_dir: Path) -> bool:
    """True once a run has written its configuration into ``run_dir``."""
    return (Path(run_dir) / CONFIG_NAME).is_file()


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the temporary files interrupted atomic writes left behind; call only under the lock."""
    removed = []
    for entry in os.scandir(run_dir):
        if entry.is_file(follow_symlinks=False) and _TEMP_FILE.match(entry.name):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    return sorted(removed)


class RunDirLock:
    """Exclusive ownership of ``run_dir`` for the life of this object (or process).

    ``acquire()`` creates the directory if needed (remembering whether it did), takes the lock and
    writes the PID; it raises :class:`RunDirBusy` when another live process holds it and
    :class:`RunDirError` (one line) when the directory cannot be created or written. ``release()``
    unlinks the lock file and unlocks; with ``remove_if_unused=True`` it also removes a directory it
    created when nothing but the lock file and temporary files ended up in it, and the parents it
    created for it when they are empty (a run that failed before writing anything leaves no trace).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._created: list[Path] = []  # what acquire() made: the run directory, then its new parents
        self._fd: Optional[int] = None

    @property
    def created_dir(self) -> bool:
        return bool(self._created)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunDirLock":
        if self._fd is not None:
            return self
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunDirError(f"--out {self.run_dir} exists and is not a directory")
        try:
            if not self.run_dir.exists():
                missing = [self.run_dir, *(parent for parent in self.run_dir.absolute().parents if not parent.exists())]
                self.run_dir.mkdir(parents=True)
                self._created = missing
        except FileExistsError:  # created by a racing process: fine, the lock decides
            pass
        except OSError as error:
            raise RunDirError(f"cannot create the run directory {self.run_dir}: {_reason(error)}") from None
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RunDirError(f"cannot write the run directory {self.run_dir}: {_reason(error)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                pid = _read_pid(fd)
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirBusy(self.run_dir, pid) from None
                raise RunDirError(f"cannot lock the run directory {self.run_dir}: {_reason(error)}") from None
            if _same_file(fd, self.path):
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                except OSError as error:
                    os.close(fd)
                    raise RunDirError(f"cannot write the run directory {self.run_dir}: {_reason(error)}") from None
                self._fd = fd
                return self
            os.close(fd)  # the holder unlinked it meanwhile: lock the new file instead
        raise RunDirError(f"cannot lock the run directory {self.run_dir}: the lock file keeps changing")

    def release(self, remove_if_unused: bool = False) -> None:
        if self._fd is None:
            return
        try:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            if remove_if_unused and self.created_dir and not holds_run(self.run_dir):
                remove_stale_temp_files(self.run_dir)
                try:
                    for directory in self._created:
                        directory.rmdir()  # only succeeds when empty
                except OSError:
                    pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
