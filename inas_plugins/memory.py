"""How much memory a new allocation can have, and byte counts as people read them.

Used before the two allocations that can outgrow a machine without warning: decoding a folder of
large photos (:mod:`inas_plugins.data.folder`) and baal's BatchBALD sampler
(:mod:`inas_plugins.heuristics.baal_builtin`). Both refuse, with their estimate, what would not fit
in :data:`MEMORY_SHARE` of what is available, instead of swapping or being killed minutes later.
Standard library only.
"""

from __future__ import annotations

import os
from typing import Optional

# Share of the available memory one of these allocations may take; the rest is for training.
MEMORY_SHARE = 0.8


def available_memory() -> Optional[int]:
    """Bytes available to a new allocation (Linux ``MemAvailable``), None when the OS does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_allowance(limit: Optional[int] = None) -> Optional[int]:
    """``limit`` when given, else :data:`MEMORY_SHARE` of the available memory (None: unknown)."""
    if limit is not None:
        return int(limit)
    available = available_memory()
    return None if available is None else int(available * MEMORY_SHARE)


def format_bytes(count: float) -> str:
    """``1.50 GiB``, ``12.0 MiB``, ``512 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.2f} {unit}" if unit in ("TiB", "GiB") else f"{count / size:.1f} {unit}"
    return f"{int(count)} B"
