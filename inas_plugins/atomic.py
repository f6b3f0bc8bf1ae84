"""The one way this project replaces a file: write a temporary file next to it, fsync, rename over it.

A run can be interrupted at any moment (Ctrl-C, a killed job), and ``inas run --resume``,
``inas report`` and the dataset cache read what is left. So every file the package writes goes
through here: a reader sees either the old complete file or the new complete file, never half of
one. Keeping it in one small module (no imports from the rest of the package) means results,
plots, checkpoints, the dataset cache and the benchmark scripts cannot drift apart on how it is
done, and importing it never pulls in anything heavy.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the ``with`` block ends without an exception.

    For writers that stream (``torch.save`` of a large tensor dict) and should not first build the
    whole file in memory. The temporary file lives in the target's directory (``os.replace`` is
    atomic only within one file system) and is removed again if anything fails before the rename,
    including an exception raised inside the block.
    """
    path = Path(path)
    handle, temp_name = _create_temp_file(path)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            yield temp_file
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Serialise ``obj`` first (a TypeError leaves the old file untouched), then write it atomically.

    NaN and infinities are refused: they are not JSON and other tools would choke on them. numpy and
    torch scalars/arrays (anything with ``tolist``) are converted to plain numbers and lists.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _create_temp_file(path: Path) -> tuple[int, str]:
    """A new hidden file next to ``path``; unlike ``tempfile.mkstemp`` (mode 0600) it gets the
    usual permissions (0666 minus the umask), so the finished file is as readable as any other."""
    for _ in range(100):
        temp_name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp_name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not possible on every platform, so best effort."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
