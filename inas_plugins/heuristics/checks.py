"""Input checks shared by the embedding-based query functions (coreset, BADGE, TypiClust, ProbCover).

A network whose training diverged hands the query NaN or infinite embeddings; every distance then
compares false and the picks are silently arbitrary. These checks turn that into one clear error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..settings import check_positive_int
from .base import check_query_size


def finite_matrix(values: Tensor | np.ndarray, what: str, *, width: int | None = None) -> Tensor:
    """``values`` as a contiguous float32 ``(N, D)`` tensor on its own device, or a one-line ValueError.

    Refuses a wrong rank, a width other than ``width`` (when given) and NaN or infinite entries,
    naming ``what`` (e.g. "pool embeddings") and how many rows are affected.
    """
    matrix = torch.as_tensor(values).detach()
    if matrix.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (points, features) array, got shape {tuple(matrix.shape)}")
    if width is not None and matrix.shape[0] and matrix.shape[1] != width:
        raise ValueError(f"{what} have width {matrix.shape[1]}, expected {width}")
    matrix = matrix.to(torch.float32).contiguous()
    bad_rows = int((~torch.isfinite(matrix)).any(dim=1).sum()) if matrix.numel() else 0
    if bad_rows:
        raise ValueError(f"{what} contain NaN or infinite values in {bad_rows} of {matrix.shape[0]} rows; "
                         "the network's outputs are not usable (did training diverge?)")
    return matrix


def pool_and_labelled(pool: Tensor | np.ndarray, n: int, labelled: Tensor | np.ndarray | None,
                      chunk_elements: int) -> tuple[Tensor, Tensor]:
    """What coreset, TypiClust and ProbCover start from, each input checked once.

    The pool and labelled embeddings as finite float32 ``(N, D)`` and ``(M, D)`` matrices on the
    pool's device (no labelled points: ``(0, D)``), after checking that ``n`` points can be picked
    from the pool and that ``chunk_elements`` (the bound on temporary distance blocks) is positive.
    """
    points = finite_matrix(pool, "pool embeddings")
    check_query_size(n, points.shape[0])
    known = (finite_matrix(labelled, "labelled embeddings", width=points.shape[1]).to(points.device)
             if labelled is not None else points[:0])
    check_positive_int("", "chunk_elements", chunk_elements)
    return points, known
