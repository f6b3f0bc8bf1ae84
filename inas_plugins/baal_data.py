"""Reading a baal user's dataset: the view without random augmentation, which items the last network
saw, and the input format.

The wrapper streams the user's ``Dataset`` as baal does (a ``DataLoader`` per epoch). Where the data
is only scored -- the search's V', the training metrics, coreset's labelled embeddings -- it is read
without random augmentation when the dataset says how: baal's ``ActiveLearningDataset(...,
pool_specifics={"transform": test_transform})``, the attributes baal sets on its pool.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .training.sources import InputFormat, split_batch


def evaluation_view(dataset: Dataset) -> Dataset:
    """The items of ``dataset``, in the same order, without random augmentation where it says how.

    For baal's ``ActiveLearningDataset`` with ``pool_specifics`` (e.g. ``{"transform": test_transform}``)
    those attributes are set on a shallow copy of the underlying dataset -- baal sets them on a deep
    copy for its pool; a shallow one is enough since the attributes are replaced, not mutated, and
    copies no image data -- restricted to the labelled items. Any other dataset is returned as it is:
    it is then scored through its own transforms.
    """
    specifics = getattr(dataset, "pool_specifics", None)
    inner = getattr(dataset, "_dataset", None)
    indices = getattr(dataset, "get_indices_for_active_step", None)
    if not specifics or inner is None or not callable(indices):
        return dataset
    view = copy.copy(inner)
    for attribute, value in specifics.items():
        if not hasattr(view, attribute):
            raise ValueError(f"pool_specifics names {attribute!r}, which the dataset {type(inner).__name__} does not have")
        setattr(view, attribute, value)
    return Subset(view, list(indices()))


def labelled_oracle_indices(dataset: Dataset) -> Optional[np.ndarray]:
    """The oracle indices of a baal ActiveLearningDataset's labelled items, in its item order; else None."""
    labelled_map = getattr(dataset, "labelled_map", None)
    return np.flatnonzero(np.asarray(labelled_map)) if labelled_map is not None else None


def seen_before(dataset: Dataset, trained_on: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    """Which items of ``dataset`` the last training set held (a mask), or None when that is unknown:
    only a baal ActiveLearningDataset says which of its items are which."""
    labelled = labelled_oracle_indices(dataset)
    if labelled is None or trained_on is None:
        return None
    return torch.from_numpy(np.isin(labelled, trained_on))


def fit_input_format(dataset: Dataset, *, batch_size: int, workers: int, collate_fn: Callable) -> InputFormat:
    """The input format of a training set: float images as they are (decided by the first batch);
    uint8 images with their channel statistics, from one streamed pass."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn)
    return InputFormat.fit(split_batch(batch)[0] for batch in loader)


def untrained_format(dataset: Dataset, collate_fn: Callable) -> InputFormat:
    """Before any training: the format :meth:`InputFormat.untrained` gives the first item."""
    first = next(iter(DataLoader(dataset, batch_size=1, collate_fn=collate_fn)), None)
    if first is None:
        return InputFormat.normalised()
    return InputFormat.untrained(split_batch(first, with_labels=False)[0])
