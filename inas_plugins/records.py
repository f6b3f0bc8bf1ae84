"""The records of a run: one trained search candidate, one active-learning round.

``RoundRecord`` is the typed form of one entry of ``results.json``'s ``"rounds"`` list and
``CandidateRecord`` of one entry of its ``"candidates"``. ``to_dict`` gives exactly the dict that
is written to the file (same keys, same order, same rounding), ``from_dict`` reads one back:

* it validates, raising a one-line ValueError that says which key is wrong (callers such as
  :func:`inas_plugins.results.load_results` prefix the file and the round);
* it migrates records written by older versions: keys that did not exist then get the value that
  means "not recorded" (``queried`` 0, candidate ``epochs`` 0, ...);
* keys it does not know are kept in ``extra`` and written back after the known ones, so a file
  written by a newer version (or annotated by hand) survives a read/write round trip.

This module imports nothing heavy (no torch), so the report and the CLI can use it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .space import Arch

__all__ = ["CandidateRecord", "RoundRecord", "arch_text"]

# Decimal places the loop rounds to when it records a round (results.json stays readable and diffable).
ACCURACY_DIGITS = 5
SECONDS_DIGITS = 3


def arch_text(arch: Any) -> str:
    """``[2, 4]`` -> ``"2x4"`` (strings pass through), the way architectures appear in CSV and plots."""
    if isinstance(arch, (list, tuple)) and len(arch) == 2:
        return f"{arch[0]}x{arch[1]}"
    return "" if arch is None else str(arch)


@dataclass
class CandidateRecord:
    """One trained candidate: its architecture, size, validation accuracy and cost."""

    arch: Arch
    params: int
    val_accuracy: float
    seconds: float
    iteration: int  # the iteration in which it was first trained
    epochs: int = 0  # premature epochs it was trained for (fewer when successive halving dropped it)
    inherited: bool = False  # started from a parent's weights
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are

    KEYS = ("arch", "params", "val_accuracy", "seconds", "iteration", "epochs", "inherited")

    def to_dict(self) -> dict:
        return {"arch": self.arch.as_list(), "params": self.params, "val_accuracy": self.val_accuracy,
                "seconds": self.seconds, "iteration": self.iteration, "epochs": self.epochs,
                "inherited": self.inherited, **_unshadowed(self.extra, self.KEYS)}

    @classmethod
    def from_dict(cls, data: Any) -> "CandidateRecord":
        """Read one candidate; ``iteration`` (1: the paper's single iteration), ``epochs`` (0: not
        recorded) and ``inherited`` (False) were not written by the first versions and get defaults."""
        if not isinstance(data, dict):
            raise ValueError(f"a candidate must be an object, got {type(data).__name__}")
        return cls(
            arch=_arch(data.get("arch"), "arch"),
            params=_integer(data, "params"),
            val_accuracy=_number(data, "val_accuracy"),
            seconds=_number(data, "seconds", default=0.0),
            iteration=_integer(data, "iteration", default=1),
            epochs=_integer(data, "epochs", default=0),
            inherited=_boolean(data, "inherited", default=False),
            extra={key: value for key, value in data.items() if key not in cls.KEYS},
        )


@dataclass
class RoundRecord:
    """One active-learning round: the architecture trained on the labelled set, its test accuracy,
    the search candidates that led to it, the time spent and how many points were queried after it."""

    round: int
    labelled: int
    arch: Arch
    params: int
    depth: Optional[int]  # None only for records that did not store it (see plots' depth-from-arch)
    test_accuracy: float
    candidates: list[CandidateRecord] = field(default_factory=list)
    search_seconds: float = 0.0
    train_seconds: float = 0.0
    query_seconds: float = 0.0
    queried: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are

    KEYS = ("round", "labelled", "arch", "params", "depth", "test_accuracy", "candidates",
            "search_seconds", "train_seconds", "query_seconds", "queried")

    def to_dict(self) -> dict:
        """The results.json dict, rounded as the loop records it (idempotent on rounded values)."""
        return {
            "round": self.round,
            "labelled": self.labelled,
            "arch": self.arch.as_list(),
            "params": self.params,
            "depth": self.depth,
            "test_accuracy": round(float(self.test_accuracy), ACCURACY_DIGITS),
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "search_seconds": round(float(self.search_seconds), SECONDS_DIGITS),
            "train_seconds": round(float(self.train_seconds), SECONDS_DIGITS),
            "query_seconds": round(float(self.query_seconds), SECONDS_DIGITS),
            "queried": self.queried,
            **_unshadowed(self.extra, self.KEYS),
        }

    @classmethod
    def from_dict(cls, data: Any) -> "RoundRecord":
        """Read and validate one round; older records get defaults for keys they lack.

        Required: ``labelled``, ``test_accuracy`` (checked first, as load_results always did),
        ``round``, ``arch`` and ``params``. Defaults: ``depth`` None, ``candidates`` [], the three
        ``*_seconds`` 0.0, ``queried`` 0 (the last round queries nothing, and the first versions
        did not record it).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a round must be an object, got {type(data).__name__}")
        labelled = _integer(data, "labelled")
        test_accuracy = _number(data, "test_accuracy")
        if not 0.0 <= test_accuracy <= 1.0:
            raise ValueError(f"'test_accuracy' must be in [0, 1], got {test_accuracy!r}")
        raw_candidates = data.get("candidates")
        if raw_candidates is None:
            raw_candidates = []
        if not isinstance(raw_candidates, list):
            raise ValueError(f"'candidates' must be a list, got {type(raw_candidates).__name__}")
        candidates = []
        for index, candidate in enumerate(raw_candidates):
            try:
                candidates.append(CandidateRecord.from_dict(candidate))
            except ValueError as error:
                raise ValueError(f"candidate {index}: {error}") from None
        return cls(
            round=_integer(data, "round"),
            labelled=labelled,
            arch=_arch(data.get("arch"), "arch"),
            params=_integer(data, "params"),
            depth=_integer(data, "depth", default=None),
            test_accuracy=test_accuracy,
            candidates=candidates,
            search_seconds=_number(data, "search_seconds", default=0.0),
            train_seconds=_number(data, "train_seconds", default=0.0),
            query_seconds=_number(data, "query_seconds", default=0.0),
            queried=_integer(data, "queried", default=0),
            extra={key: value for key, value in data.items() if key not in cls.KEYS},
        )


# --------------------------------------------------------------------------- validation helpers

_REQUIRED = object()


def _unshadowed(extra: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """``extra`` without known keys, so an extra entry can never overwrite a typed field."""
    return {key: value for key, value in extra.items() if key not in known}


def _number(data: dict, key: str, default: Any = _REQUIRED) -> Any:
    value = data.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"needs a number '{key}', got {value!r}")
    return value


def _integer(data: dict, key: str, default: Any = _REQUIRED) -> Any:
    value = data.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"needs a non-negative integer '{key}', got {value!r}")
    return value


def _boolean(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"'{key}' must be true or false, got {value!r}")
    return value


def _arch(value: Any, key: str) -> Arch:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise ValueError(f"needs '{key}' as [blocks, stacks], got {value!r}")
    try:
        return Arch(int(value[0]), int(value[1]))
    except ValueError as error:
        raise ValueError(f"'{key}' {list(value)!r} is not an architecture: {error}") from None
