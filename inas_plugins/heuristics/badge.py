"""BADGE (Ash et al., ICLR 2020): k-means++ seeding on the gradient embeddings of the last layer.

The gradient embedding of a pool point is the gradient of the cross-entropy loss, with the
predicted class as the label, with respect to the weights of the final linear layer:
``g = (p - onehot(argmax p)) outer h``, ``p`` the softmax probabilities and ``h`` the penultimate
features. Its norm is large where the network is unsure (uncertainty), and k-means++ seeding on
``g`` spreads the picks over different directions (diversity).

``g`` has ``C * D`` entries per point (10 classes x 512 features = 5,120 floats: 1 GB for a
50,000-point pool), so it is never formed. The two factors are kept apart, ``a = p - onehot``
``(N, C)`` and ``h`` ``(N, D)``, and every quantity k-means++ needs follows from the outer-product
identity ``<a_i h_i^T, a_j h_j^T> = <a_i, a_j> <h_i, h_j>``:

* ``||g_i||^2 = ||a_i||^2 ||h_i||^2``;
* ``||g_i - g_c||^2 = ||g_i||^2 + ||g_c||^2 - 2 <a_i, a_c> <h_i, h_c>``,

so the distance of every point to a new centre costs one ``(N, C) @ (C,)`` and one ``(N, D) @ (D,)``
product, and memory is ``N (C + D + 3)`` floats: linear in the pool, in torch on the embeddings'
device. The seeding follows BADGE's reference code: the first centre is the point with the largest
gradient norm, each next one is drawn with probability proportional to its squared distance to the
nearest centre chosen so far (D^2 sampling) from the ``rng`` the query is handed. Only the pool is
seeded (labelled points are not centres), as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .base import QueryHeuristic, check_query_size, require
from .checks import finite_matrix
from .outputs import ModelOutputs
from .registry import register_heuristic


def gradient_factors(probs: Tensor | np.ndarray, embeddings: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """The two factors of the gradient embeddings: ``a = p - onehot(argmax p)`` and ``h``, on ``h``'s device.

    ``g_i = a_i outer h_i`` (flattened) is the last layer's gradient embedding of point ``i``.
    """
    features = finite_matrix(embeddings, "pool embeddings")
    probabilities = finite_matrix(probs, "pool probabilities").to(features.device)
    if probabilities.shape[0] != features.shape[0]:
        raise ValueError(f"{probabilities.shape[0]} probability rows but {features.shape[0]} embedding rows")
    factor = probabilities.clone()
    if factor.shape[0]:
        rows = torch.arange(factor.shape[0], device=factor.device)
        factor[rows, probabilities.argmax(dim=1)] -= 1.0
    return factor, features


def badge_seeding(
    probs: Tensor | np.ndarray,
    embeddings: Tensor | np.ndarray,
    n: int,
    *,
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Pick ``n`` pool positions by k-means++ seeding on the gradient embeddings, in pick order.

    Args:
        probs: ``(N, C)`` softmax probabilities of the deterministic pass.
        embeddings: ``(N, D)`` penultimate features of the same pass.
        n: how many to pick (``0 <= n <= N``).
        rng: the D^2 draws (default: a generator seeded with 0).
        progress: show a progress bar over picks.

    Ties for the first centre go to the lowest position. When every unpicked point is at distance
    zero from a centre (e.g. confident duplicates), the next pick is drawn uniformly from the
    unpicked points, so ``n`` distinct positions always come back.
    """
    factor, features = gradient_factors(probs, embeddings)
    num_points = features.shape[0]
    check_query_size(n, num_points)
    rng = rng if rng is not None else np.random.default_rng(0)
    picks = np.empty(n, dtype=np.int64)
    if n == 0:
        return picks
    with torch.inference_mode():
        # Squared norms in float64: the D^2 weights are differences of such terms.
        factor_norms = torch.linalg.vector_norm(factor, dim=1).double().square_()
        feature_norms = torch.linalg.vector_norm(features, dim=1).double().square_()
        gradient_norms = factor_norms * feature_norms
        nearest = torch.full((num_points,), float("inf"), dtype=torch.float64, device=features.device)
        picked = torch.zeros(num_points, dtype=torch.bool, device=features.device)
        pick = int(torch.argmax(gradient_norms))
        for step in tqdm(range(n), desc="badge", unit="pick", disable=not progress, leave=False):
            if step > 0:
                pick = _draw(nearest, picked, rng)
            picks[step] = pick
            picked[pick] = True
            # ||g_i - g_c||^2 = ||g_i||^2 + ||g_c||^2 - 2 <a_i, a_c> <h_i, h_c>, never N x (C*D).
            cross = (factor @ factor[pick]).double() * (features @ features[pick]).double()
            distances = (gradient_norms + gradient_norms[pick] - 2.0 * cross).clamp_(min=0.0)
            torch.minimum(nearest, distances, out=nearest)
            nearest[pick] = 0.0  # exactly (rounding may leave a trace); earlier picks stay 0 under the minimum
    return picks


def _draw(nearest: Tensor, picked: Tensor, rng: np.random.Generator) -> int:
    """One D^2 draw: position ``i`` with probability ``nearest[i] / sum(nearest)`` (uniform over the
    unpicked points when every weight is zero). One ``rng.random()`` per draw, as ``rng.choice(p=...)``."""
    cumulative = torch.cumsum(nearest, dim=0)
    total = float(cumulative[-1])
    if total > 0.0:
        threshold = torch.tensor([rng.random() * total], dtype=cumulative.dtype, device=cumulative.device)
        position = int(torch.searchsorted(cumulative, threshold, right=True))
        if position < nearest.shape[0]:
            return position
        return int(torch.nonzero(nearest > 0).flatten()[-1])  # rounding put the draw at the very end
    remaining = torch.nonzero(~picked).flatten()
    return int(remaining[int(rng.integers(remaining.numel()))])


@register_heuristic("badge", "k-means++ seeding on last-layer gradient embeddings (p - onehot) x penultimate "
                    "features (Ash et al.)")
class BadgeQuery(QueryHeuristic):
    """BADGE: uncertain and diverse points, by k-means++ seeding on the last layer's gradient embeddings."""

    needs = frozenset({"probs", "embeddings"})

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        return badge_seeding(require(outputs, "probs"), require(outputs, "pool_embeddings"), n, rng=rng,
                             progress=self.progress)
