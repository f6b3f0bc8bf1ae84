"""Seeded, class-balanced index selection: held-out test splits and size limits.

Both keep every class's share of the data, so a held-out test set or a CPU-sized pool has the
same class balance as the full set, and both depend only on (labels, seed), never on global RNG state.
"""

from __future__ import annotations

import numpy as np
import torch

from ..settings import check_positive_int
from .base import DatasetError

# Separate random streams, so the held-out split and the size limit of one seed are independent.
SPLIT_STREAM = 1
LIMIT_STREAM = 2


def check_test_fraction(test_fraction: float) -> float:
    if not 0.0 < float(test_fraction) < 1.0:
        raise DatasetError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    return float(test_fraction)


def stratified_split(labels: torch.Tensor | np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``test_fraction`` of each class: returns sorted (train_indices, test_indices).

    Every class with at least two items keeps at least one item on each side.
    """
    test_fraction = check_test_fraction(test_fraction)
    labels = _as_numpy(labels)
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        else:
            n_test = 0
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return _sorted_concat(train_parts), _sorted_concat(test_parts)


def stratified_subset(labels: torch.Tensor | np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` items drawn per class in proportion to the class sizes.

    Shares are rounded by largest remainder, so the result has exactly ``size`` items
    (or all of them when ``size`` is not smaller than the set).
    """
    labels = _as_numpy(labels)
    check_positive_int("", "size", size, DatasetError)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, LIMIT_STREAM])
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - quota), kind="stable")
    quota[remainder_order[: size - int(quota.sum())]] += 1
    picked = [rng.permutation(np.flatnonzero(labels == label))[:n] for label, n in zip(classes, quota)]
    return _sorted_concat(picked)


def _as_numpy(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        return labels.cpu().numpy()
    return np.asarray(labels)


def _sorted_concat(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)
