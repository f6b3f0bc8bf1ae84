"""The contract every query heuristic implements, and small helpers for writing one.

A heuristic declares which model outputs it ``needs`` (see :mod:`.outputs`) and turns them into
``n`` pool positions, most wanted first. Randomness comes only from the ``rng`` it is handed, so a
seeded run queries the same points every time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

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

    ``pointwise = True`` (the default) promises that a point's score depends on that point's outputs
    only, so the active loop may score the pool batch by batch (:func:`.outputs.pool_scores`) and
    never hold the whole ``(N, C, K)`` MC-dropout array; set it False when a score depends on the
    rest of the pool (a normalisation over the pool, say).
    """

    pointwise: ClassVar[bool] = True

    @abstractmethod
    def scores(self, outputs: ModelOutputs) -> np.ndarray:
        """One score per pool point, higher = query first."""

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.select_by_scores(self.scores(outputs), n)

    def select_by_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        """The picks from the pool's scores: what :meth:`select` does once the scores are known."""
        scores = np.asarray(scores)
        check_query_size(n, len(scores))
        return top_n(scores, n)

    @property
    def picks_by_scores(self) -> bool:
        """True when :meth:`select` is this class's ranking of the scores (a subclass may pick its own
        way from them), so the picks follow from the scores alone and may be computed batch by batch."""
        return type(self).select is ScoreHeuristic.select


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


def check_picks(picks: Any, n: int, pool_size: int, name: str) -> np.ndarray:
    """The picks of heuristic ``name`` as int64, or a one-line ValueError naming it and the problem.

    What every caller of :meth:`QueryHeuristic.select` checks before labelling anything: a 1-d array
    of integers (floats are not truncated), exactly ``n`` of them, each a position in
    ``[0, pool_size)`` (a negative index would silently label the end of the pool), none twice.
    """
    array = np.asarray(picks)
    if array.ndim != 1 or (array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer))):
        raise ValueError(f"heuristic {name!r} must return a 1-d array of integer pool positions, got "
                         f"{array.dtype} of shape {array.shape}")
    array = array.astype(np.int64)
    if len(array) != n:
        raise ValueError(f"heuristic {name!r} returned {len(array)} picks, not the {n} asked for")
    if array.size and (array.min() < 0 or array.max() >= pool_size):
        raise ValueError(f"heuristic {name!r} returned positions outside the pool of {pool_size} "
                         f"(0..{pool_size - 1}): {int(array.min())}..{int(array.max())}")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"heuristic {name!r} returned the same pool position more than once")
    return array


def require(outputs: ModelOutputs, field: str):
    """``outputs.<field>``, or a ValueError saying the heuristic's needs were not computed."""
    value = getattr(outputs, field)
    if value is None:
        raise ValueError(f"ModelOutputs.{field} is missing; compute the outputs with the heuristic's needs "
                         f"(collect_outputs(..., needs=heuristic.needs))")
    return value
