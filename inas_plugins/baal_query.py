"""Every registered query heuristic inside baal's own loop: :class:`BaalQuery`.

baal's ``ActiveLearningLoop`` and ``ActiveLearningExperiment`` hand a heuristic one thing, the
``[n, classes, iterations]`` predictions of the pool, and label the positions its ``get_ranks``
returns first. That fits uncertainty scores but not coreset (pool and labelled embeddings) nor the
paper's MC-dropout score (the deterministic prediction beside the MC samples). ``BaalQuery`` is a
baal ``AbstractHeuristic`` bound to an :class:`~inas_plugins.wrapper.INASModelWrapper`: its
:class:`PoolRecorder` keeps what the heuristic ``needs`` from the very pass that made baal's
predictions, the wrapper adds the labelled set's embeddings, and the registered heuristic picks the
batch. So ``coreset``, ``softmax_response``, ``mc_dropout``, baal's own names and third-party
plugins all run unchanged in either of baal's loops::

    heuristic = wrapper.heuristic("coreset", query_size=100)
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=heuristic,
                              query_size=100, iterations=20)

What was recorded is used only for the predictions it was recorded with: the generator the pass
yielded them from (``wrapper.predict_on_dataset_generator``), or an array with the same bytes
(``predict_on_dataset``'s, checked by a digest), never another pool of the same length. A pointwise
heuristic is scored chunk by chunk: with the generator no ``[n, classes, K]`` array exists at all,
and from an array no softmaxed copy of it is made.
"""

from __future__ import annotations

import hashlib
import types
import weakref
from typing import Any, Iterable, Iterator, Optional, Protocol

import numpy as np
import torch
from baal.active.heuristics import AbstractHeuristic
from torch import Tensor

from .active_round import checked_picks
from .heuristics import ModelOutputs, QueryHeuristic, ScoreHeuristic, create_heuristic
from .heuristics.outputs import scores_in_chunks
from .settings import check_positive_int

# Rows of a predictions array scored at a time (C x K floats each, softmaxed as one block).
CHUNK_ROWS = 512


class PoolPass:
    """What one predict pass over a pool computed beside baal's predictions (the deterministic
    probabilities, the embeddings), and a digest of the predictions it yielded."""

    def __init__(self) -> None:
        self.source: Optional[weakref.ref] = None  # the generator that yields the predictions
        self.digest = hashlib.blake2b(digest_size=16)
        self.rows = 0
        self.offsets = [0]
        self.probs: list[np.ndarray] = []
        self.embeddings: list[Tensor] = []

    def add(self, predictions: np.ndarray, outputs: dict[str, Tensor]) -> None:
        """Record one batch: the predictions about to be yielded and the outputs computed with them."""
        self.digest.update(np.ascontiguousarray(predictions).data)
        self.rows += len(predictions)
        self.offsets.append(self.rows)
        if "logits" in outputs:
            self.probs.append(torch.softmax(outputs["logits"].float().cpu(), dim=1).numpy())
        if "embeddings" in outputs:
            self.embeddings.append(outputs["embeddings"])

    def yielded_by(self, predictions: Any) -> bool:
        return self.source is not None and self.source() is predictions

    def probs_rows(self, start: int, stop: int) -> np.ndarray:
        """The recorded probabilities of rows ``start:stop`` (from the batches that hold them)."""
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        last = int(np.searchsorted(self.offsets, stop, side="left"))
        block = np.concatenate(self.probs[first:last]) if last - first > 1 else self.probs[first]
        return block[start - self.offsets[first]:stop - self.offsets[first]]


class PoolRecorder:
    """For one BaalQuery: which extra outputs a predict pass should keep, and the latest pass's."""

    def __init__(self, needs: frozenset[str]) -> None:
        self.wants = frozenset({"logits"} if "probs" in needs else set()) | (
            {"embeddings"} if "embeddings" in needs else set())
        self.latest: Optional[PoolPass] = None

    def begin(self) -> PoolPass:
        self.latest = PoolPass()
        return self.latest

    def pass_for(self, predictions: Any) -> Optional[PoolPass]:
        """The latest pass if it made exactly ``predictions`` (the generator itself, or an array of its bytes)."""
        recorded = self.latest
        if recorded is None:
            return None
        if isinstance(predictions, types.GeneratorType):
            return recorded if recorded.yielded_by(predictions) else None
        if len(predictions) != recorded.rows:
            return None
        digest = hashlib.blake2b(np.ascontiguousarray(predictions).data, digest_size=16)
        return recorded if digest.digest() == recorded.digest.digest() else None


class QuerySource(Protocol):
    """What a BaalQuery needs from the model wrapper (``INASModelWrapper`` provides it). A protocol, so
    this module imports nothing from the wrapper: the wrapper depends on it, not the other way."""

    def add_recorder(self, recorder: PoolRecorder) -> None: ...

    def labelled_embeddings(self) -> Tensor: ...


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
        query_size = check_positive_int("", "query_size", query_size)
        if isinstance(heuristic, str):
            heuristic = create_heuristic(heuristic, **kwargs)
        elif not isinstance(heuristic, QueryHeuristic) or kwargs:
            raise ValueError(f"heuristic must be a registered name (see `inas heuristics`) or a QueryHeuristic "
                             f"instance without extra arguments, got {type(heuristic).__name__}")
        self.query = heuristic
        self.wrapper = wrapper
        self.query_size = query_size
        self.rng = np.random.default_rng(seed)
        self.recorder = PoolRecorder(heuristic.needs)
        wrapper.add_recorder(self.recorder)

    def get_ranks(self, predictions: Any, target_predictions: Any = None) -> tuple[np.ndarray, np.ndarray]:
        recorded = self.recorder.pass_for(predictions) if self.recorder.wants else None
        if scores_in_chunks(self.query):
            scores = np.concatenate([self.query.scores(outputs)  # type: ignore[attr-defined]
                                     for outputs in self._chunk_outputs(predictions, recorded)] or [np.zeros(0)])
            scores = np.asarray(scores, dtype=np.float64)
            n = min(self.query_size, len(scores))
            return checked_picks(self.query, n, len(scores), self.query.name, scores=scores), scores
        if isinstance(predictions, types.GeneratorType):
            predictions = np.vstack(list(predictions))
        outputs = self._outputs(_checked(predictions, self.query.name), 0, recorded)
        if "embeddings" in self.query.needs:
            self._add_embeddings(outputs, recorded)
        size = outputs.pool_size
        n = min(self.query_size, size)
        picks = checked_picks(self.query, n, size, self.query.name, outputs=outputs, rng=self.rng)
        if isinstance(self.query, ScoreHeuristic):
            return picks, np.asarray(self.query.scores(outputs), dtype=np.float64)
        scores = np.zeros(size, dtype=np.float64)
        scores[picks] = np.arange(n, 0, -1, dtype=np.float64)
        return picks, scores

    def _chunk_outputs(self, predictions: Any, recorded: Optional[PoolPass]) -> Iterator[ModelOutputs]:
        """The heuristic's outputs for successive row blocks of the predictions (an array or a generator)."""
        start = 0
        for chunk in _row_blocks(predictions):
            yield self._outputs(_checked(chunk, self.query.name), start, recorded)
            start += len(chunk)

    def _outputs(self, predictions: np.ndarray, start: int, recorded: Optional[PoolPass]) -> ModelOutputs:
        """``probs`` and ``mc_probs`` of rows ``start:start + len(predictions)`` of the pool."""
        name, needs, rows = self.query.name, self.query.needs, len(predictions)
        outputs = ModelOutputs(n_pool=rows)
        if "mc_probs" in needs:
            if predictions.shape[2] < 2:
                raise ValueError(f"heuristic {name!r} needs MC-dropout samples: predict with iterations > 1, e.g. "
                                 "ActiveLearningLoop(..., iterations=20) or ActiveLearningExperiment(..., iterations=20)")
            outputs.mc_probs = torch.softmax(torch.from_numpy(predictions).float(), dim=1).numpy()
        if "probs" in needs:
            if recorded is not None and recorded.probs:
                outputs.probs = recorded.probs_rows(start, start + rows)
            elif predictions.shape[2] == 1:
                outputs.probs = torch.softmax(torch.from_numpy(predictions[..., 0]).float(), dim=1).numpy()
            else:
                raise ValueError(f"heuristic {name!r} needs the deterministic predictions of the pool, kept from the "
                                 "pass that made these predictions: make it with wrapper.heuristic(...) before "
                                 "predicting, and give it the wrapper's own predictions")
        return outputs

    def _add_embeddings(self, outputs: ModelOutputs, recorded: Optional[PoolPass]) -> None:
        if recorded is None or not recorded.embeddings:
            raise ValueError(f"heuristic {self.query.name!r} needs the pool embeddings of the predict_on_dataset call "
                             "that made these predictions; make it with wrapper.heuristic(...) before predicting "
                             "on the pool")
        outputs.pool_embeddings = torch.cat(recorded.embeddings)
        outputs.labelled_embeddings = self.wrapper.labelled_embeddings()

    def compute_score(self, predictions, target_predictions=None):
        """Not used: :meth:`get_ranks` asks the registered heuristic directly."""
        raise NotImplementedError("BaalQuery ranks with the registered heuristic; call get_ranks")

    def get_uncertainties(self, predictions, target_predictions=None):
        return self.get_ranks(predictions)[1]

    def __repr__(self) -> str:
        return f"BaalQuery({self.query.name!r}, query_size={self.query_size})"


def _row_blocks(predictions: Any) -> Iterable[np.ndarray]:
    """A generator's batches as they come; an array in blocks of :data:`CHUNK_ROWS` rows."""
    if isinstance(predictions, types.GeneratorType):
        return (np.asarray(chunk) for chunk in predictions)
    predictions = np.asarray(predictions)
    return (predictions[start:start + CHUNK_ROWS] for start in range(0, len(predictions), CHUNK_ROWS))


def _checked(predictions: np.ndarray, name: str) -> np.ndarray:
    predictions = np.asarray(predictions)
    if predictions.ndim != 3:
        raise ValueError(f"heuristic {name!r} expects predict_on_dataset's [n, classes, iterations] output, "
                         f"got shape {predictions.shape}")
    return predictions
