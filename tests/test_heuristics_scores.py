"""Softmax response and the paper's MC-dropout score, alone and inside baal's ActiveLearningLoop."""

import numpy as np
import pytest
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.active.heuristics import BALD
from scipy.special import softmax
from torch.utils.data import TensorDataset

from inas_plugins.heuristics import (MCDropoutVariance, ModelOutputs, SeededPowerSampling, SoftmaxResponse,
                                     as_probabilities, create_heuristic, predicted_class_variance)


def _logits(n=40, classes=5, seed=0):
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, classes))


@pytest.mark.parametrize("as_probs", [False, True], ids=["logits", "probs"])
def test_softmax_response_ranking_is_one_minus_max_softmax(as_probs):
    logits = _logits()
    probs = softmax(logits, axis=1)
    expected = np.argsort(-(1.0 - probs.max(axis=1)), kind="stable")
    ranks, scores = SoftmaxResponse().get_ranks(probs if as_probs else logits)
    np.testing.assert_allclose(scores, 1.0 - probs.max(axis=1), rtol=1e-12)
    assert ranks.tolist() == expected.tolist()
    picks = create_heuristic("softmax_response").select(ModelOutputs(probs=probs.astype(np.float32)), 10,
                                                        np.random.default_rng(0))
    assert picks.tolist() == expected[:10].tolist()


def test_probability_detection_and_alias():
    logits_in_unit_range = np.full((3, 4), 0.5)  # in [0, 1] but rows sum to 2: logits, softmaxed
    np.testing.assert_allclose(as_probabilities(logits_in_unit_range), 0.25)
    probs = softmax(_logits(4, 3), axis=1)
    np.testing.assert_array_equal(as_probabilities(probs), probs)
    mc_logits = np.stack([_logits(6, 3, seed) for seed in range(4)], axis=-1)  # [n, classes, iterations]
    expected = 1.0 - softmax(mc_logits, axis=1).mean(-1).max(1)
    np.testing.assert_allclose(SoftmaxResponse().get_uncertainties(mc_logits), expected)
    assert type(create_heuristic("sr")) is type(create_heuristic("softmax_response"))


def test_predicted_class_variance_by_hand():
    mc = np.zeros((2, 3, 4))
    mc[0, 0] = [0.2, 0.4, 0.6, 0.8]
    mc[0, 1] = 1 - mc[0, 0]
    mc[1, 2] = [0.5, 0.5, 0.5, 0.5]
    mc[1, 0] = 0.5
    np.testing.assert_allclose(predicted_class_variance(mc, np.array([0, 2])), [np.var([0.2, 0.4, 0.6, 0.8]), 0.0])
    with pytest.raises(ValueError, match="predicted classes"):
        predicted_class_variance(mc, np.array([0, 3]))


def test_mc_dropout_uses_the_deterministic_prediction():
    # Point 0: the MC mean favours class 0, whose probability varies, but the deterministic pass predicts
    # class 1, whose probability is constant: the paper's score is 0 there.
    mc = np.zeros((2, 3, 4))
    mc[0, 0] = [0.9, 0.1, 0.9, 0.9]
    mc[0, 1] = 0.1
    mc[0, 2] = 1 - mc[0, 0] - mc[0, 1]
    mc[1, 0] = [0.6, 0.4, 0.6, 0.4]
    mc[1, 1] = 1 - mc[1, 0]
    probs = np.array([[0.3, 0.4, 0.3], [0.5, 0.45, 0.05]])
    heuristic = create_heuristic("mc_dropout")
    assert heuristic.needs == {"probs", "mc_probs"}
    np.testing.assert_allclose(heuristic.scores(ModelOutputs(probs=probs, mc_probs=mc)), [0.0, 0.01], atol=1e-12)
    picks = heuristic.select(ModelOutputs(probs=probs, mc_probs=mc), 2, np.random.default_rng(0))
    assert picks.tolist() == [1, 0]
    # baal's version has no deterministic pass and uses the argmax of the MC mean (class 0 for point 0).
    np.testing.assert_allclose(MCDropoutVariance().get_uncertainties(mc), [0.12, 0.01])


class _ToyPredictor:
    """``get_probabilities`` for baal's loop: [n, classes, K] MC softmax of a fixed noisy linear model."""

    def __init__(self, classes=4, iterations=8):
        self.weights = torch.randn(6, classes, generator=torch.Generator().manual_seed(0)) * 3
        self.iterations = iterations

    def __call__(self, dataset, **kwargs) -> np.ndarray:
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        noise = torch.randn(self.iterations, *x.shape, generator=torch.Generator().manual_seed(1)) * 0.5
        logits = (x[None] + noise) @ self.weights  # [K, n, classes]
        return torch.softmax(logits, -1).permute(1, 2, 0).numpy()


def _toy_al_dataset():
    x = torch.randn(60, 6, generator=torch.Generator().manual_seed(2))
    dataset = ActiveLearningDataset(TensorDataset(x, torch.zeros(60, dtype=torch.long)))
    dataset.label(list(range(0, 60, 6)))  # 10 labelled, 50 in the pool
    return dataset


@pytest.mark.parametrize("make_heuristic, scorer", [
    (SoftmaxResponse, SoftmaxResponse()),
    (MCDropoutVariance, MCDropoutVariance()),
])
def test_our_baal_heuristics_run_in_baals_active_learning_loop(make_heuristic, scorer):
    dataset, predict = _toy_al_dataset(), _ToyPredictor()
    pool_before = (~dataset.labelled).nonzero()[0]
    scores = scorer.get_uncertainties(predict(dataset.pool))
    expected = set(pool_before[np.argsort(-scores, kind="stable")[:5]].tolist())
    loop = ActiveLearningLoop(dataset, predict, make_heuristic(), query_size=5)
    assert loop.step()
    newly_labelled = set(dataset.labelled.nonzero()[0].tolist()) - set(range(0, 60, 6))
    assert newly_labelled == expected


def test_seeded_stochastic_heuristic_runs_in_baals_loop_and_is_reproducible():
    labelled_sets = []
    for _ in range(2):
        dataset = _toy_al_dataset()
        heuristic = SeededPowerSampling(BALD(), query_size=5, seed=123)
        assert ActiveLearningLoop(dataset, _ToyPredictor(), heuristic, query_size=5).step()
        assert dataset.n_labelled == 15
        labelled_sets.append(dataset.labelled.copy())
    np.testing.assert_array_equal(*labelled_sets)
