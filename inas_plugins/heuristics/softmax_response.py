"""Softmax response (Geifman and El-Yaniv): query the points whose top softmax probability is lowest.

The paper's best query function. :class:`SoftmaxResponse` is a baal ``AbstractHeuristic`` (works in
baal's ``ActiveLearningLoop``); :class:`SoftmaxResponseQuery` is the registered ``softmax_response``
(alias ``sr``), which scores the deterministic pass with the same scorer.
"""

from __future__ import annotations

import numpy as np
from baal.active.heuristics.heuristics import DEPRECATED, AbstractHeuristic, require_single_item
from scipy.special import softmax

from .base import ScoreHeuristic, require
from .outputs import ModelOutputs
from .registry import register_heuristic

# Rows whose sums are this close to 1 (and whose entries lie in [0, 1]) are taken as probabilities;
# entries may stray from [0, 1] by float rounding (1 - 0.9 - 0.1 < 0).
_SUM_TOLERANCE = 1e-3
_RANGE_TOLERANCE = 1e-6


def looks_like_probabilities(predictions: np.ndarray) -> bool:
    """True when every entry is in [0, 1] and every distribution over axis 1 (classes) sums to 1."""
    predictions = np.asarray(predictions)
    if predictions.size == 0:
        return True
    in_range = predictions.min() >= -_RANGE_TOLERANCE and predictions.max() <= 1.0 + _RANGE_TOLERANCE
    return bool(in_range and np.allclose(predictions.sum(axis=1), 1.0, atol=_SUM_TOLERANCE))


def as_probabilities(predictions: np.ndarray) -> np.ndarray:
    """``predictions`` as probabilities over axis 1: kept if they already are, else softmaxed.

    Unlike baal's ``Certainty`` (which ranks raw logits as if they were probabilities), this accepts
    either. Logits that happen to be valid probabilities are indistinguishable and kept as they are.
    """
    predictions = np.asarray(predictions)
    if not np.issubdtype(predictions.dtype, np.floating):
        predictions = predictions.astype(np.float64)
    if predictions.ndim < 2:
        raise ValueError(f"predictions need a class axis: expected [n, classes, ...], got shape {predictions.shape}")
    return predictions if looks_like_probabilities(predictions) else softmax(predictions, axis=1)


class SoftmaxResponse(AbstractHeuristic):
    """baal heuristic: score = 1 - max softmax probability, highest score queried first.

    Accepts logits or probabilities, ``[n, classes]`` or ``[n, classes, iterations]``; with several
    iterations (MC samples) the probabilities are averaged over them first.
    """

    def __init__(self, shuffle_prop=DEPRECATED, reduction="none"):
        super().__init__(shuffle_prop=shuffle_prop, reverse=True, reduction=reduction)

    @require_single_item
    def compute_score(self, predictions, target_predictions=None):
        probabilities = as_probabilities(predictions)
        if probabilities.ndim >= 3:
            probabilities = probabilities.mean(axis=-1)
        return 1.0 - probabilities.max(axis=1)


@register_heuristic("softmax_response", "1 - max softmax probability of the deterministic pass (the paper's SR)",
                    aliases=("sr",))
class SoftmaxResponseQuery(ScoreHeuristic):
    """Softmax response on the no-dropout predictions."""

    needs = frozenset({"probs"})

    def __init__(self) -> None:
        self.scorer = SoftmaxResponse()

    def scores(self, outputs: ModelOutputs) -> np.ndarray:
        return self.scorer.get_uncertainties(require(outputs, "probs"))
