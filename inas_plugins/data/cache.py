"""Opt-in cache of decoded folder datasets (``cache_dir=``), so large images are decoded only once.

The key hashes the directory, the decode options and every file's path, size and modification
time, so adding, removing or editing an image invalidates it. Files are written atomically and
read back with ``weights_only=True``; nothing is ever written into the user's data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_open
from .base import DatasetError

CACHE_VERSION = 2  # 2: an int image_size keeps the aspect (shorter side + centre crop)
CACHED_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def folder_key(root: Path, files: Sequence[str], options: dict[str, object]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, "root": str(root.resolve()), "options": options},
                             sort_keys=True, default=str).encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir).expanduser() / f"folder-{key}.pt"


def load(cache_dir: str | Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached tensors for ``key``, or None when absent or unreadable (then it is rebuilt)."""
    path = cache_path(cache_dir, key)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(payload, dict) or any(not isinstance(payload.get(k), torch.Tensor) for k in CACHED_KEYS):
        return None
    return {k: payload[k] for k in CACHED_KEYS}


def save(cache_dir: str | Path, key: str, tensors: dict[str, torch.Tensor]) -> Path:
    """Write the tensors atomically; DatasetError (one line) when the cache directory is not writable."""
    path = cache_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as handle:  # streamed: the cache can be large, no second copy in memory
            torch.save({k: tensors[k] for k in CACHED_KEYS}, handle)
    except OSError as error:
        raise DatasetError(f"cannot write the dataset cache {path}: {error.strerror or error}") from error
    return path
