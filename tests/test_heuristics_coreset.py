"""Greedy k-center against a brute-force reference that builds the full distance matrix."""

import numpy as np
import pytest
import torch

from inas_plugins.heuristics import ModelOutputs, create_heuristic, k_center_greedy


def brute_force_k_center(pool: np.ndarray, n: int, labelled: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Textbook k-center greedy: full (pool x all points) distance matrix in float64."""
    everything = np.concatenate([pool, labelled]).astype(np.float64)
    distances = np.sqrt(((pool[:, None, :].astype(np.float64) - everything[None, :, :]) ** 2).sum(-1))
    centres = list(range(len(pool), len(everything)))
    picks: list[int] = []
    for _ in range(n):
        if not centres:
            pick = int(rng.integers(len(pool)))
        else:
            nearest = distances[:, centres].min(axis=1)
            nearest[picks] = -np.inf
            pick = int(np.argmax(nearest))
        picks.append(pick)
        centres.append(pick)
    return picks


@pytest.mark.parametrize("num_labelled, chunk_elements", [(12, 1 << 24), (12, 7), (0, 1 << 24)])
def test_k_center_matches_brute_force(num_labelled, chunk_elements):
    data_rng = np.random.default_rng(3)
    pool = data_rng.normal(size=(150, 16)).astype(np.float32)
    labelled = data_rng.normal(size=(num_labelled, 16)).astype(np.float32)
    expected = brute_force_k_center(pool, 40, labelled, np.random.default_rng(11))
    picks = k_center_greedy(torch.from_numpy(pool), 40, torch.from_numpy(labelled), rng=np.random.default_rng(11),
                            chunk_elements=chunk_elements)
    assert picks.tolist() == expected


def test_k_center_accepts_numpy_and_never_repeats_duplicates():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 4)).astype(np.float32)
    pool = np.concatenate([base, base])  # every point twice: distances hit zero before the pool runs out
    picks = k_center_greedy(pool, len(pool), None, rng=np.random.default_rng(1))
    assert sorted(picks.tolist()) == list(range(len(pool)))
    assert set(picks[:10] % 10) == set(range(10))  # each distinct point is covered before any duplicate


def test_coreset_heuristic_by_name_uses_labelled_centres():
    pool = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [9.0, 0.0]])
    labelled = torch.tensor([[9.0, 0.1]])
    outputs = ModelOutputs(pool_embeddings=pool, labelled_embeddings=labelled)
    picks = create_heuristic("coreset").select(outputs, 2, np.random.default_rng(0))
    assert picks.tolist() == [0, 2]  # (0,0) is farthest from the labelled centre, then (5,5)


def test_k_center_rejects_bad_input():
    pool = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="pool of 5"):
        k_center_greedy(pool, 6)
    with pytest.raises(ValueError, match="width"):
        k_center_greedy(pool, 2, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2-D"):
        k_center_greedy(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="pool_embeddings is missing"):
        create_heuristic("coreset").select(ModelOutputs(n_pool=5), 2, np.random.default_rng(0))
