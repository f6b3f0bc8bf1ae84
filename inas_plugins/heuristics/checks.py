"""Input checks shared by the embedding-based query functions (BADGE, TypiClust, ProbCover).

A network whose training diverged hands the query NaN or infinite embeddings; every distance then
compares false and the picks are silently arbitrary. These checks turn that into one clear error.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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
