"""Coreset by greedy k-center (Sener and Savarese, 2018) on the penultimate embeddings.

Each pick is the pool point farthest from its nearest centre (the labelled points plus the points
picked so far). The distance to the nearest centre is kept as one running minimum per pool point,
so a pick costs one ``(N, D) @ (D,)`` product and memory stays linear in N: no N x N matrix is ever
formed. Everything runs in torch on the embeddings' device, so a GPU is used when they live there.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .base import QueryHeuristic, require
from .checks import pool_and_labelled
from .outputs import ModelOutputs
from .registry import register_heuristic

# Labelled centres are folded in by blocks of (N_pool x m) distances of at most this many elements.
DEFAULT_CHUNK_ELEMENTS = 1 << 24


def k_center_greedy(
    pool: Tensor | np.ndarray,
    n: int,
    labelled: Tensor | np.ndarray | None = None,
    *,
    rng: np.random.Generator | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: bool = False,
) -> np.ndarray:
    """Pick ``n`` pool positions by greedy k-center, in pick order.

    Args:
        pool: ``(N, D)`` embeddings of the unlabelled points.
        n: how many to pick (``0 <= n <= N``).
        labelled: ``(M, D)`` embeddings of the labelled points, the initial centres (may be empty).
        rng: with no labelled points there is no distance to maximise yet, so the first pick is a
            pool point drawn from ``rng`` (default: a generator seeded with 0).
        chunk_elements: bound on the temporary ``N x m`` block used to fold in the labelled centres.
        progress: show a progress bar over picks.

    Distances are squared Euclidean in float32 (the argmax is the same as for plain distances). Ties
    go to the lowest pool position. Extra memory: about 3 N floats plus one ``chunk_elements`` block.
    """
    points, centres = pool_and_labelled(pool, n, labelled, chunk_elements)
    num_points = points.shape[0]
    squared_norms = torch.linalg.vector_norm(points, dim=1).square_()
    nearest = torch.full((num_points,), float("inf"), dtype=torch.float32, device=points.device)
    _fold_in_centres(points, squared_norms, centres, nearest, chunk_elements)

    picks = np.empty(n, dtype=np.int64)
    distances = torch.empty_like(nearest)
    with torch.inference_mode():
        for step in tqdm(range(n), desc="coreset", unit="pick", disable=not progress, leave=False):
            if step == 0 and torch.isinf(nearest).all():
                pick = int((rng if rng is not None else np.random.default_rng(0)).integers(num_points))
            else:
                pick = int(torch.argmax(nearest))
            picks[step] = pick
            # ||x||^2 + ||c||^2 - 2 x.c for every pool point x, in one matrix-vector product.
            torch.addmv(squared_norms, points, points[pick], alpha=-2.0, out=distances)
            distances.add_(squared_norms[pick]).clamp_(min=0.0)
            torch.minimum(nearest, distances, out=nearest)
            nearest[pick] = float("-inf")  # never picked twice, even among exact duplicates
    return picks


def _fold_in_centres(points: Tensor, squared_norms: Tensor, centres: Tensor, nearest: Tensor,
                     chunk_elements: int) -> None:
    """``nearest = min(nearest, min over centres of squared distance)``, one block of centres at a time."""
    centre_norms = torch.linalg.vector_norm(centres, dim=1).square_()
    per_block = max(1, chunk_elements // max(1, points.shape[0]))
    with torch.inference_mode():
        for start in range(0, centres.shape[0], per_block):
            block = centres[start:start + per_block]
            distances = points @ block.T
            distances.mul_(-2.0).add_(centre_norms[start:start + per_block]).add_(squared_norms[:, None])
            torch.minimum(nearest, distances.min(dim=1).values.clamp_(min=0.0), out=nearest)


@register_heuristic("coreset", "greedy k-center on penultimate embeddings, labelled points as initial centres "
                    "(Sener and Savarese)")
class CoresetQuery(QueryHeuristic):
    """Coreset selection: cover the embedding space of the pool with the fewest, farthest points."""

    needs = frozenset({"embeddings"})

    def __init__(self, progress: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        self.progress = progress
        self.chunk_elements = chunk_elements

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        return k_center_greedy(require(outputs, "pool_embeddings"), n, outputs.labelled_embeddings, rng=rng,
                               chunk_elements=self.chunk_elements, progress=self.progress)
