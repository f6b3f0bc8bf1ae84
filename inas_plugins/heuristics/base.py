"""The contract every query heuristic implements, and small helpers for writing one.

A heuristic declares which model outputs it ``needs`` (see :mod:`.outputs`) and turns them into
``n`` pool positions, most wanted first. Randomness comes only from the ``rng`` it is handed, so a
seeded run queries the same points every time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from .outputs import ModelOutputs


class QueryHeuristic(ABC):
    """Chooses which pool points to label next.

    Subclasses set the class attributes and implement :meth:`select`; register them with
    :func:`~inas_plugins.heuristics.register_heuristic` or an ``inas_plugins.heuristics`` entry point.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` distinct positions into the pool (int64), most wanted first."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class ScoreHeuristic(QueryHeuristic):
    """A heuristic that scores every pool point independently and takes the ``n`` highest.

    Subclasses implement :meth:`scores` (higher = more wanted); ties go to the lower pool position.
    """

    @abstractmethod
    def scores(self, outputs: ModelOutputs) -> np.ndarray:
        """One score per pool point, higher = query first."""

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        check_query_size(n, outputs.pool_size)
        return top_n(self.scores(outputs), n)


def check_query_size(n: int, pool_size: int) -> None:
    """Raise ValueError unless ``0 <= n <= pool_size``."""
    if not 0 <= n <= pool_size:
        raise ValueError(f"cannot query {n} points from a pool of {pool_size}; n must be in [0, {pool_size}]")


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, highest first; equal scores keep pool order."""
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"expected one score per pool point (a 1-D array), got shape {scores.shape}")
    return np.argsort(-scores, kind="stable")[:n].astype(np.int64)


def require(outputs: ModelOutputs, field: str):
    """``outputs.<field>``, or a ValueError saying the heuristic's needs were not computed."""
    value = getattr(outputs, field)
    if value is None:
        raise ValueError(f"ModelOutputs.{field} is missing; compute the outputs with the heuristic's needs "
                         f"(collect_outputs(..., needs=heuristic.needs))")
    return value
