"""ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022): greedy maximum coverage of delta-balls.

Every point ``x`` (labelled or pool) owns the open ball ``B(x) = {y : ||x - y|| < delta}`` in
embedding space. The labelled points' balls count as covered; each pick is the pool point whose ball
covers the most still-uncovered points (ties: the lowest pool position), until every point is
covered, after which the remaining picks are drawn at random from the unpicked pool, as in the
authors' code.

The radius follows the paper's purity rule: cluster all points with k-means into as many clusters
as there are classes (pseudo-labels); a ball is pure when every point in it has its centre's
pseudo-label; ``delta`` is the largest radius at which at least ``purity`` (0.95) of the balls are
pure. With open balls, ``B(x)`` is pure exactly when ``delta <= r(x)``, ``r(x)`` the distance from ``x``
to the nearest point of another pseudo-label, so the rule has a closed form: ``delta`` is the
``ceil(purity * N)``-th largest ``r(x)``. One pass of blocked distances finds every ``r(x)``; no grid
of radii is tried.

Memory is linear in the pool: distances are computed in blocks of at most ``chunk_elements``
(torch, on the embeddings' device; float64 on centred points, since a float32 Gram-matrix distance
errs by about 1e-3 of the norms, which blurs exactly the small radii the purity rule picks). The
delta-ball graph is never stored: the purity rule makes a ball as large as the pseudo-label clusters
allow, so on well separated embeddings (a trained network's) each ball holds a sizeable share of its
class and the graph would have about N^2 / C edges (10^8 for 50,000 points of 10 classes). Instead
each point's count of uncovered neighbours is computed once, block by block, and when a pick covers
new points only the distances to those are computed to update the counts. Every point is newly
covered at most once, so the whole greedy costs at most two N x N distance passes (plus one for the
radius): quadratic time, as in the paper, but memory ``O(N + chunk_elements)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import QueryHeuristic, check_query_size, require
from .checks import finite_matrix
from .outputs import ModelOutputs
from .registry import register_heuristic
from .typiclust import cluster_labels

DEFAULT_PURITY = 0.95
DEFAULT_CHUNK_ELEMENTS = 1 << 24


def _prepared(points: Tensor | np.ndarray, what: str = "embeddings") -> Tensor:
    """Checked, centred float64 points: distances are translation-free, and centring shrinks the norms
    that the Gram-matrix form ``||x||^2 + ||y||^2 - 2 x.y`` cancels, so small radii stay exact."""
    matrix = finite_matrix(points, what).to(torch.float64)
    return matrix - matrix.mean(dim=0, keepdim=True) if matrix.shape[0] else matrix


def _zero_tolerance(points: Tensor) -> float:
    """Squared distances at or below this are rounding noise of the Gram form: treated as 0 (duplicates)."""
    scale = float(torch.linalg.vector_norm(points, dim=1).square().max()) if points.shape[0] else 0.0
    return 1e-12 * max(scale, 1e-300)


def _squared_distance_blocks(points: Tensor, chunk_elements: int):
    """``(start, stop, squared distances)`` for row blocks of the full distance matrix of prepared points."""
    count = points.shape[0]
    norms = torch.linalg.vector_norm(points, dim=1).square_()
    rows = max(1, chunk_elements // max(1, count))
    for start in range(0, count, rows):
        stop = min(count, start + rows)
        distances = torch.addmm(norms[None, :], points[start:stop], points.T, alpha=-2.0)
        distances.add_(norms[start:stop, None]).clamp_(min=0.0)
        own = torch.arange(start, stop, device=points.device)
        distances[own - start, own] = 0.0  # exactly: a point is in its own ball
        yield start, stop, distances


def _other_label_squared(points: Tensor, labels: Tensor, chunk_elements: int) -> Tensor:
    """Squared distance from each prepared point to the nearest point of another label (inf if none)."""
    result = torch.empty(points.shape[0], dtype=torch.float64, device=points.device)
    for start, stop, distances in _squared_distance_blocks(points, chunk_elements):
        distances.masked_fill_(labels[start:stop, None] == labels[None, :], float("inf"))
        result[start:stop] = distances.min(dim=1).values
    return result


def _purity_radius_squared(points: Tensor, labels: Tensor | np.ndarray, purity: float, chunk_elements: int) -> float:
    if isinstance(purity, bool) or not isinstance(purity, (int, float)) or not 0.0 < purity <= 1.0:
        raise ValueError(f"ProbCover purity must be in (0, 1], got {purity!r}")
    labels = torch.as_tensor(np.asarray(labels), device=points.device)
    count = points.shape[0]
    if labels.shape != (count,):
        raise ValueError(f"labels must give one pseudo-label per point ({count}), got {tuple(labels.shape)}")
    radii = torch.sort(_other_label_squared(points, labels, chunk_elements)).values
    needed = math.ceil(purity * count - 1e-9)
    delta_squared = float(radii[count - needed])
    if math.isinf(delta_squared):
        raise ValueError("no valid ProbCover radius: every ball is pure at any radius because the pseudo-labels "
                         "form a single cluster; give delta explicitly")
    tolerance = _zero_tolerance(points)
    if delta_squared <= tolerance:
        at_zero = int((radii <= tolerance).sum())
        raise ValueError(f"no valid ProbCover radius: {at_zero} of {count} points have a point of another "
                         f"pseudo-label at distance 0, so no delta > 0 reaches purity {purity:g}; lower the purity "
                         "or give delta explicitly")
    return delta_squared


def purity_radius(points: Tensor | np.ndarray, labels: Tensor | np.ndarray, purity: float = DEFAULT_PURITY,
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> float:
    """The largest ``delta`` at which at least ``purity`` of the open delta-balls are pseudo-label pure.

    Raises ValueError when no radius is valid: when too many points have a point of another label
    at distance zero (duplicates), or when there is only one label (every radius would be pure).
    """
    return math.sqrt(_purity_radius_squared(_prepared(points), labels, purity, chunk_elements))


def _squared_distances(rows: Tensor, row_norms: Tensor, columns: Tensor, column_norms: Tensor) -> Tensor:
    distances = torch.addmm(column_norms[None, :], rows, columns.T, alpha=-2.0)
    return distances.add_(row_norms[:, None]).clamp_(min=0.0)


def _count_within(rows: range, points: Tensor, norms: Tensor, delta_squared: float, columns: Tensor,
                  chunk_elements: int, *, per: str) -> Tensor:
    """How many points of the ``columns`` mask lie in the balls of the points ``rows``, in row blocks of at
    most ``chunk_elements`` distances: one count per row point (``per="row"``), or per point, the
    number of row points whose ball holds it (``per="column"``)."""
    counts = torch.zeros(len(rows) if per == "row" else points.shape[0], dtype=torch.int64, device=points.device)
    block = max(1, chunk_elements // max(1, points.shape[0]))
    for start in range(rows.start, rows.stop, block):
        stop = min(rows.stop, start + block)
        inside = _squared_distances(points[start:stop], norms[start:stop], points, norms) < delta_squared
        own = torch.arange(start, stop, device=points.device)
        inside[own - start, own] = True  # a point is in its own ball
        inside &= columns[None, :]
        if per == "row":
            counts[start - rows.start:stop - rows.start] = inside.sum(dim=1)
        else:
            counts += inside.sum(dim=0)
    return counts


def greedy_coverage(points: Tensor | np.ndarray, pool_size: int, delta: float, n: int, *,
                    rng: np.random.Generator | None = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                    stats: dict | None = None) -> np.ndarray:
    """Greedy max coverage of open ``delta``-balls over ``points``, the first ``pool_size`` the pool.

    The other points are labelled: their balls start covered. Returns ``n`` pool positions in pick
    order; once everything is covered the rest are drawn at random from the unpicked pool.
    """
    return _greedy(_prepared(points), pool_size, float(delta) ** 2, n, rng, chunk_elements, stats)


def _greedy(points: Tensor, pool_size: int, delta_squared: float, n: int, rng: np.random.Generator | None,
            chunk_elements: int, stats: dict | None) -> np.ndarray:
    check_query_size(n, pool_size)
    total, device = points.shape[0], points.device
    norms = torch.linalg.vector_norm(points, dim=1).square_()
    everything = torch.ones(total, dtype=torch.bool, device=device)
    covered = _count_within(range(pool_size, total), points, norms, delta_squared, everything, chunk_elements,
                            per="column") > 0
    degree = torch.full((total,), -1, dtype=torch.int64, device=device)  # labelled points are never picked
    degree[:pool_size] = _count_within(range(pool_size), points, norms, delta_squared, ~covered, chunk_elements,
                                       per="row")
    if stats is not None:
        stats.update(delta=math.sqrt(delta_squared), mean_ball=float(degree[:pool_size].float().mean()) if pool_size
                     else 0.0)
    picked = torch.zeros(pool_size, dtype=torch.bool, device=device)
    picks = np.empty(n, dtype=np.int64)
    for step in range(n):
        best = int(torch.argmax(degree))  # the first maximum: ties go to the lowest position
        if int(degree[best]) <= 0:
            remaining = torch.nonzero(~picked).flatten()
            generator = rng if rng is not None else np.random.default_rng(0)
            chosen = generator.choice(remaining.numel(), size=n - step, replace=False)
            picks[step:] = remaining[torch.as_tensor(chosen, device=device)].cpu().numpy()
            break
        picks[step] = best
        picked[best] = True
        ball = _squared_distances(points[best:best + 1], norms[best:best + 1], points, norms)[0] < delta_squared
        ball[best] = True
        newly = torch.nonzero(ball & ~covered).flatten()
        covered[newly] = True
        # Every pool point whose ball holds a newly covered point loses one uncovered neighbour per such point.
        degree[:pool_size] -= _holders(newly, points, norms, delta_squared, pool_size, chunk_elements)
        degree[best] = -1
    if stats is not None:
        stats["covered"] = float(covered.float().mean())
    return picks


def _holders(newly: Tensor, points: Tensor, norms: Tensor, delta_squared: float, pool_size: int,
             chunk_elements: int) -> Tensor:
    """For each pool point, how many of the ``newly`` covered points lie in its ball (blocked over ``newly``)."""
    counts = torch.zeros(pool_size, dtype=torch.int64, device=points.device)
    pool, pool_norms = points[:pool_size], norms[:pool_size]
    block = max(1, chunk_elements // max(1, pool_size))
    for start in range(0, newly.numel(), block):
        chosen = newly[start:start + block]
        inside = _squared_distances(pool, pool_norms, points[chosen], norms[chosen]) < delta_squared
        own = chosen < pool_size
        inside[chosen[own], torch.nonzero(own).flatten()] = True
        counts += inside.sum(dim=1)
    return counts


def probcover_select(
    pool: Tensor | np.ndarray,
    n: int,
    labelled: Tensor | np.ndarray | None = None,
    *,
    num_classes: int | None = None,
    delta: float | None = None,
    purity: float = DEFAULT_PURITY,
    rng: np.random.Generator | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    stats: dict | None = None,
) -> np.ndarray:
    """Pick ``n`` pool positions by ProbCover, in pick order.

    ``delta`` fixes the radius; by default it comes from the purity rule on k-means pseudo-labels
    with ``num_classes`` clusters (seeded from ``rng``). ``rng`` also draws the picks left over once
    everything is covered. ``stats``, when given, receives ``delta``, ``mean_ball`` (the mean number
    of uncovered points in a pool point's ball before the picks) and ``covered`` (the share of all
    points covered after them).
    """
    points = finite_matrix(pool, "pool embeddings")
    pool_size = points.shape[0]
    check_query_size(n, pool_size)
    known = (finite_matrix(labelled, "labelled embeddings", width=points.shape[1]).to(points.device)
             if labelled is not None else points[:0])
    if purity is not None and (isinstance(purity, bool) or not isinstance(purity, (int, float))
                               or not 0.0 < purity <= 1.0):
        raise ValueError(f"ProbCover purity must be in (0, 1], got {purity!r}")
    if chunk_elements < 1:
        raise ValueError(f"chunk_elements must be positive, got {chunk_elements}")
    if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float))
                              or not math.isfinite(delta) or delta <= 0):
        raise ValueError(f"ProbCover delta must be a positive finite radius, got {delta!r}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    rng = rng if rng is not None else np.random.default_rng(0)
    everything = torch.cat([points, known]) if known.shape[0] else points
    if delta is None:
        if num_classes is None or num_classes < 2:
            raise ValueError(f"the ProbCover purity rule needs the number of classes (>= 2) for its k-means "
                             f"pseudo-labels, got {num_classes!r}; or give delta explicitly")
        clusters = min(num_classes, everything.shape[0])
        labels = cluster_labels(everything, clusters, int(rng.integers(2**31 - 1)))
    prepared = _prepared(everything)
    if delta is not None:
        delta_squared = float(delta) ** 2
    else:
        # The rule's radius is the distance of one pair, which its open ball excludes; the balls are
        # computed with other block shapes than the radius was, so pull it in by a rounding margin
        # for that pair to stay out in every one of them.
        delta_squared = _purity_radius_squared(prepared, labels, purity, chunk_elements) * (1.0 - 1e-9)
    return _greedy(prepared, pool_size, delta_squared, n, rng, chunk_elements, stats)


@register_heuristic("probcover", "greedy max coverage of delta-balls, delta by the 0.95 purity rule on k-means "
                    "pseudo-labels (Yehuda et al.)")
class ProbCoverQuery(QueryHeuristic):
    """ProbCover: cover the embedding space with balls of a pure radius, densest uncovered ball first."""

    needs = frozenset({"probs", "embeddings"})  # probs only for the number of classes

    def __init__(self, delta: float | None = None, purity: float = DEFAULT_PURITY,
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        self.delta = delta
        self.purity = purity
        self.chunk_elements = chunk_elements
        self.last_stats: dict = {}  # delta, mean ball size and final coverage of the latest query

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        probs = outputs.probs
        num_classes = int(probs.shape[1]) if probs is not None else None
        return probcover_select(require(outputs, "pool_embeddings"), n, outputs.labelled_embeddings,
                                num_classes=num_classes, delta=self.delta, purity=self.purity, rng=rng,
                                chunk_elements=self.chunk_elements, stats=self.last_stats)
