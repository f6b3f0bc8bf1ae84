"""Every registered query heuristic inside baal's own loop: :class:`BaalQuery`.

baal's ``ActiveLearningLoop`` and ``ActiveLearningExperiment`` hand a heuristic one thing, the
``[n, classes, iterations]`` predictions of the pool, and label the positions its ``get_ranks``
returns first. That fits uncertainty scores but not coreset (pool and labelled embeddings) nor the
paper's MC-dropout score (the deterministic prediction beside the MC samples). ``BaalQuery`` is a
baal ``AbstractHeuristic`` bound to an :class:`~inas_plugins.wrapper.INASModelWrapper`: the wrapper
keeps what the heuristic ``needs`` from the same pass that made baal's predictions, adds the
labelled set's embeddings, and the registered heuristic's ``select`` picks the batch. So ``coreset``,
``softmax_response``, ``mc_dropout``, baal's own names and third-party plugins all run unchanged in
either of baal's loops::

    heuristic = wrapper.heuristic("coreset", query_size=100)
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=heuristic,
                              query_size=100, iterations=20)
"""

from __future__ import annotations

import types
from typing import Any, Protocol

import numpy as np
from baal.active.heuristics import AbstractHeuristic

from .heuristics import ModelOutputs, QueryHeuristic, ScoreHeuristic, create_heuristic
from .heuristics.base import check_picks



class QuerySource(Protocol):
    """What a BaalQuery needs from the model wrapper (``INASModelWrapper`` provides it). A protocol, so
    this module imports nothing from the wrapper: the wrapper depends on it, not the other way."""

    def record_for_query(self, needs: frozenset[str]) -> None: ...

    def query_outputs(self, predictions: np.ndarray, needs: frozenset[str], heuristic: str) -> ModelOutputs: ...


class BaalQuery(AbstractHeuristic):
    """A registered heuristic (by name, or an instance) as a baal heuristic for ``wrapper``'s pool.

    ``query_size`` must be the loop's: a heuristic whose picks depend on each other (coreset) picks
    exactly that many. ``seed`` seeds the heuristic's randomness; each query draws from one stream.
    ``get_ranks`` returns the picks, most wanted first, and one score per pool item (the heuristic's
    scores where it has them, else the picks' reversed rank and 0 for the rest), which is what baal
    stores as uncertainty.
    """

    def __init__(self, heuristic: str | QueryHeuristic, wrapper: QuerySource, *, query_size: int,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(reverse=True)
        if isinstance(query_size, bool) or not isinstance(query_size, (int, np.integer)) or query_size < 1:
            raise ValueError(f"query_size must be a positive integer, got {query_size!r}")
        if isinstance(heuristic, str):
            heuristic = create_heuristic(heuristic, **kwargs)
        elif not isinstance(heuristic, QueryHeuristic) or kwargs:
            raise ValueError(f"heuristic must be a registered name (see `inas heuristics`) or a QueryHeuristic "
                             f"instance without extra arguments, got {type(heuristic).__name__}")
        self.query = heuristic
        self.wrapper = wrapper
        self.query_size = int(query_size)
        self.rng = np.random.default_rng(seed)
        wrapper.record_for_query(heuristic.needs)

    def get_ranks(self, predictions: Any, target_predictions: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(predictions, types.GeneratorType):
            predictions = np.vstack(list(predictions))
        outputs = self.wrapper.query_outputs(predictions, self.query.needs, self.query.name)
        size = outputs.pool_size
        n = min(self.query_size, size)
        picks = check_picks(self.query.select(outputs, n, self.rng), n, size, self.query.name)
        if isinstance(self.query, ScoreHeuristic):
            scores = np.asarray(self.query.scores(outputs), dtype=np.float64)
        else:
            scores = np.zeros(size, dtype=np.float64)
            scores[picks] = np.arange(n, 0, -1, dtype=np.float64)
        return picks, scores

    def compute_score(self, predictions, target_predictions=None):
        """Not used: :meth:`get_ranks` asks the registered heuristic directly."""
        raise NotImplementedError("BaalQuery ranks with the registered heuristic; call get_ranks")

    def get_uncertainties(self, predictions, target_predictions=None):
        return self.get_ranks(predictions)[1]

    def __repr__(self) -> str:
        return f"BaalQuery({self.query.name!r}, query_size={self.query_size})"
