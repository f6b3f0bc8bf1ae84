"""The adapter from a baal ``AbstractHeuristic`` to our :class:`QueryHeuristic`.

Kept apart from :mod:`.baal_builtin` (which registers baal's own heuristics and so imports the
registry) because the registry needs the adapter too, to wrap third-party baal heuristics named by
entry points: both import this module, and neither imports the other. It imports baal, so the
registry imports it only when such a plugin is loaded.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
from baal.active.heuristics import AbstractHeuristic

from .base import QueryHeuristic, check_query_size, require, top_n
from .outputs import ModelOutputs

__all__ = ["BaalHeuristic", "wrap_baal_heuristic"]


class BaalHeuristic(QueryHeuristic):
    """A baal ``AbstractHeuristic`` as a :class:`QueryHeuristic`.

    ``baal_class`` is built with the keyword arguments given to the constructor. It is fed
    ``mc_probs`` when it needs MC samples, else the deterministic ``probs``, and its ranking (highest
    first when the baal heuristic is ``reversed``, else lowest first) gives the query order.
    """

    baal_class: ClassVar[type[AbstractHeuristic]]
    needs = frozenset({"mc_probs"})

    def __init__(self, **baal_kwargs: Any) -> None:
        inspect.signature(self.baal_class).bind_partial(**baal_kwargs)  # TypeError now, not at query time
        self.baal_kwargs = baal_kwargs

    def make_scorer(self, n: int, rng: np.random.Generator) -> AbstractHeuristic:
        return self.baal_class(**self.baal_kwargs)

    def predictions(self, outputs: ModelOutputs) -> np.ndarray:
        if "mc_probs" in self.needs:
            return require(outputs, "mc_probs")
        if "probs" in self.needs:
            return require(outputs, "probs")
        return np.zeros((outputs.pool_size, 1), dtype=np.float32)

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        check_query_size(n, outputs.pool_size)
        scorer = self.make_scorer(n, rng)
        scores = np.asarray(scorer.get_uncertainties(self.predictions(outputs)), dtype=np.float64)
        return top_n(scores if scorer.reversed else -scores, n)


def wrap_baal_heuristic(baal_class: type[AbstractHeuristic]) -> type[BaalHeuristic]:
    """A :class:`BaalHeuristic` subclass for a third-party baal heuristic.

    It is fed MC samples ``[n, classes, K]`` unless the class declares its own ``needs``.
    """
    doc = (baal_class.__doc__ or "").strip()
    return type(f"{baal_class.__name__}Query", (BaalHeuristic,), {
        "baal_class": baal_class,
        "needs": frozenset(getattr(baal_class, "needs", {"mc_probs"})),
        "description": doc.splitlines()[0].strip() if doc else f"baal heuristic {baal_class.__name__}",
        "__module__": baal_class.__module__,
    })
