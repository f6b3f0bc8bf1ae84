"""MC-dropout as the paper uses it: how much the dropout samples disagree on the predicted class.

Score = variance, over the K dropout passes, of the probability of the class the network predicts
*without* dropout. The registered ``mc_dropout`` takes that class from the deterministic pass.

:class:`MCDropoutVariance` is the same score as a baal ``AbstractHeuristic`` for baal's own
``ActiveLearningLoop``. There the heuristic only sees the ``[n, classes, K]`` MC predictions, not the
deterministic pass, so it uses the argmax of the mean MC prediction as the predicted class (the MC
estimate of the same prediction; with dropout only before a linear layer the two rarely differ).
"""

from __future__ import annotations

import numpy as np
from baal.active.heuristics.heuristics import DEPRECATED, AbstractHeuristic, require_single_item

from .base import ScoreHeuristic, require
from .outputs import ModelOutputs
from .registry import register_heuristic
from .softmax_response import as_probabilities


def predicted_class_variance(mc_probs: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Variance over passes (last axis) of ``mc_probs[i, predicted[i], :]``, one score per point."""
    mc_probs = np.asarray(mc_probs)
    predicted = np.asarray(predicted, dtype=np.int64)
    if mc_probs.ndim != 3:
        raise ValueError(f"MC predictions must be [n, classes, passes], got shape {mc_probs.shape}")
    if predicted.shape != (mc_probs.shape[0],):
        raise ValueError(f"need one predicted class per point: {mc_probs.shape[0]}, got shape {predicted.shape}")
    if mc_probs.shape[0] and (predicted.min() < 0 or predicted.max() >= mc_probs.shape[1]):
        raise ValueError(f"predicted classes must lie in [0, {mc_probs.shape[1]})")
    chosen = np.take_along_axis(mc_probs, predicted[:, None, None], axis=1)[:, 0, :]
    return chosen.astype(np.float64).var(axis=1)


class MCDropoutVariance(AbstractHeuristic):
    """baal heuristic: variance over MC passes of the probability of the predicted class.

    Input ``[n, classes, K]`` probabilities or logits. The predicted class is the argmax of the mean
    over passes (baal's loop does not provide the deterministic prediction).
    """

    def __init__(self, shuffle_prop=DEPRECATED, reduction="none"):
        super().__init__(shuffle_prop=shuffle_prop, reverse=True, reduction=reduction)

    @require_single_item
    def compute_score(self, predictions, target_predictions=None):
        probabilities = as_probabilities(predictions)
        if probabilities.ndim != 3:
            raise ValueError(f"MCDropoutVariance needs [n, classes, iterations] predictions, got shape "
                             f"{probabilities.shape}")
        return predicted_class_variance(probabilities, probabilities.mean(axis=-1).argmax(axis=1))


@register_heuristic("mc_dropout", "variance over dropout passes of the probability of the class predicted "
                    "without dropout (the paper's MC-dropout)")
class MCDropoutQuery(ScoreHeuristic):
    """The paper's MC-dropout score, with the predicted class from the deterministic pass."""

    needs = frozenset({"probs", "mc_probs"})

    def scores(self, outputs: ModelOutputs) -> np.ndarray:
        probs = require(outputs, "probs")
        return predicted_class_variance(require(outputs, "mc_probs"), np.asarray(probs).argmax(axis=1))
