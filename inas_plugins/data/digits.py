"""``digits``: scikit-learn's bundled 8x8 handwritten digits, the offline default of ``inas run``.

It ships inside scikit-learn (no download), loads in milliseconds and trains in minutes on a CPU,
so a fresh install can run the whole active loop. Flips are not valid: a mirrored 2 is not a 2.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import ImageSet, LoadedDataset
from .splits import stratified_split

# load_digits stores 4x4-block pixel counts, 0..16.
DIGITS_MAX_VALUE = 16
DIGITS_FILE = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package


def load_digits_dataset(
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    **_: object,
) -> LoadedDataset:
    """1,797 grayscale 8x8 digits, ``test_fraction`` of each class held out with ``seed``.

    ``data_dir`` is not used (the registry rejects one).
    """
    pixels, targets = _read_digits()
    scaled = np.rint(pixels.reshape(-1, 1, 8, 8) * (255.0 / DIGITS_MAX_VALUE)).clip(0, 255).astype(np.uint8)
    everything = ImageSet(torch.from_numpy(scaled), torch.from_numpy(targets.astype(np.int64)))
    train_index, test_index = stratified_split(everything.labels, test_fraction, seed)
    return LoadedDataset(name="digits", train=everything.subset(train_index), test=everything.subset(test_index),
                         classes=[str(digit) for digit in range(10)], channels=1, flips_valid=False)


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 64) pixel counts and (1797,) labels.

    Reads scikit-learn's bundled CSV directly (20 ms) because importing ``sklearn.datasets`` takes
    seconds, which would dominate the start of ``inas run``; falls back to ``load_digits`` if the
    file ever moves.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent.joinpath(*DIGITS_FILE)
        try:
            table = np.loadtxt(path, delimiter=",")
            if table.shape == (1797, 65):
                return table[:, :-1], table[:, -1]
        except (OSError, ValueError):
            pass
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target
