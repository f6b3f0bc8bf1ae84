"""ProbCover (Yehuda, Dekel, Hacohen and Weinshall, NeurIPS 2022): greedy maximum coverage of delta-balls.

Every point ``x`` (labelled or pool) owns the open ball ``B(x) = {y : ||x - y|| < delta}`` in
embedding space. The labelled points' balls count as covered; each pick is the pool point whose ball
covers the most still-uncovered points (ties: a random one; in ``greedy_coverage``, the lowest
position), until every point is covered, after which the remaining picks are drawn at random from
the unpicked pool, as in the authors' code.

The radius follows the paper's purity rule: cluster all points with k-means into as many clusters
as there are classes (pseudo-labels); a ball is pure when every point in it has its centre's
pseudo-label; ``delta`` is the largest radius at which at least ``purity`` (0.95) of the balls are
pure. With open balls, ``B(x)`` is pure exactly when ``delta <= r(x)``, ``r(x)`` the distance from ``x``
to the nearest point of another pseudo-label, so the rule has a closed form: ``delta`` is the
``ceil(purity * N)``-th largest ``r(x)``. No grid of radii is tried.

Exact answers from float32 products. Distances are defined as float64 differences ``sum((x - y)^2)``
of the centred points, and every decision (is a pair inside a ball, which r(x) is the order
statistic) is that of those exact distances. The bulk of the N^2 distances comes from the float32
Gram form ``||x||^2 + ||y||^2 - 2 x.y`` (matrix products at about twice float64's rate), whose rounding
error is bounded (``_Points.band``: a multiple of ``D u (||x||^2 + ||y||^2 + delta^2)``, u = 2^-24): a
pair whose float32 distance lies outside that band around delta^2 is decided by it, and the few
inside are recomputed exactly. For the radius, the float32 minima bracket every r(x), and only the
points whose bracket overlaps the bracket of the order statistic get their exact r(x). Where float32
products may not round as IEEE float32 (TF32 or bfloat16 allowed for them) or the norms are beyond
float32's range, the bulk runs in float64, with the band of float64's rounding.

Passes. The radius pass visits each pair of points of different pseudo-labels once, grouped by
label, in cache-sized tiles whose row and column minima give the r(x). Meanwhile the tiles, and then
those of each label with itself, collect every pair closer than a reach that delta stays under with
high probability (an upper confidence quantile of the exact r(x) of 1,024 evenly spaced points), as
long as there are at most ``max_edges`` of them; cut to delta, they are the ball graph, so the radius
and the graph cost one pass over the N^2 / 2 pairs. With a fixed delta, or when delta is beyond the
reach or the pairs exceed ``max_edges``, a second pass finds the labelled balls' cover and then the
pairs with an uncovered point (only they count: a triangle and a strip of the matrix, not all of
it). The greedy then runs on the graph (compressed neighbour lists: each pick costs its ball and the
balls of the points it newly covers), or, when the graph would exceed ``max_edges`` (balls as large
as a class, as on a supervised network's embeddings), on balls recomputed per pick from the points:
each point is newly covered at most once, so that costs at most one more N x N pass.

Time is quadratic, as in the paper. Memory is linear in the pool: the points in float64 and float32
(and one reordered copy of them per pass), one tile of at most ``min(chunk_elements, 2^20)`` distances
at a time, row blocks of at most ``chunk_elements``, and the graph or its candidate pairs, at most
``max_edges`` (default 4 million) of them; never an N x N matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import QueryHeuristic, check_query_size, require
from .checks import finite_matrix, pool_and_labelled
from .outputs import ModelOutputs
from .registry import register_heuristic
from .typiclust import cluster_labels

DEFAULT_PURITY = 0.95
DEFAULT_CHUNK_ELEMENTS = 1 << 24
DEFAULT_MAX_EDGES = 1 << 22
CACHE_TILE_ELEMENTS = 1 << 20  # bulk tiles of 4 MiB stay in cache while they are scanned
PILOT_POINTS = 1024  # whose exact r(x) give the reach of the radius pass's candidate pairs


def _ieee_float32_products(device: torch.device) -> bool:
    """Whether float32 matrix products on ``device`` round as IEEE float32 does (not through TF32 or
    bfloat16 inputs): the rounding band below assumes it."""
    backend = getattr(torch.backends.cuda if device.type == "cuda" else torch.backends.mkldnn, "matmul", None)
    setting = getattr(backend, "fp32_precision", None)
    if setting is None:  # torch before 2.9: only the global setting
        return torch.get_float32_matmul_precision() == "highest"
    if setting == "none":  # inherits the global one
        setting = torch.backends.fp32_precision
    return setting in ("none", "ieee")


@dataclass(frozen=True)
class _Points:
    """Checked, centred points in two precisions: ``fast`` for the bulk matrix products (float32 where its
    rounding can be bounded, else float64), ``exact`` (float64) for the pairs the bulk cannot decide."""

    fast: Tensor
    fast_norms: Tensor  # squared norms of ``fast``, in its dtype
    exact: Tensor
    norms: Tensor  # float64 squared norms of ``exact``
    unit: float  # unit roundoff of ``fast``

    def __len__(self) -> int:
        return self.exact.shape[0]

    def __getitem__(self, index: slice | Tensor) -> _Points:
        return _Points(self.fast[index], self.fast_norms[index], self.exact[index], self.norms[index], self.unit)

    def band(self, other_norm: float, delta_squared: float) -> Tensor:
        """Per point, a bound on how far its bulk squared distance to a point of squared norm at most
        ``other_norm``, and the bulk threshold for ``delta_squared``, can be from the exact values.

        With unit roundoff u, the bulk Gram form errs by at most (3D + 8) u (||x||^2 + ||y||^2): a D-term
        dot product and two D-term norms, in any summation order, the rounding of the points to ``fast``
        and of the two additions; a threshold rounds by u (|delta^2| + ||x||^2). The band is more than
        twice that, plus a floor for products that underflow."""
        width = self.exact.shape[1]
        relative = (8 * width + 64) * self.unit
        underflow = 64 * width * torch.finfo(self.fast.dtype).tiny
        return relative * (self.norms + (other_norm + abs(delta_squared))) + underflow


def _prepared(points: Tensor | np.ndarray, what: str = "embeddings") -> _Points:
    """Centring makes distances translation-free and shrinks the norms that the Gram form
    ``||x||^2 + ||y||^2 - 2 x.y`` cancels, and with them the rounding band around delta."""
    exact = finite_matrix(points, what).to(torch.float64)
    if exact.shape[0]:
        exact = exact - exact.mean(dim=0, keepdim=True)
    norms = exact.square().sum(dim=1)
    in_range = not norms.numel() or float(norms.max()) <= 2.0**60  # float32 sums stay far from overflow
    fast = exact.to(torch.float32) if in_range and _ieee_float32_products(exact.device) else exact
    unit = 2.0**-24 if fast.dtype == torch.float32 else 2.0**-53
    return _Points(fast, fast.square().sum(dim=1), exact, norms, unit)


def _exact_squared(rows: Tensor, columns: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """Squared distances of the pairs ``(rows[i], columns[j])`` of float64 points by differences: the
    reference every bulk result is held to. In blocks, so that many pairs never gather many rows."""
    result = torch.empty(i.numel(), dtype=torch.float64, device=rows.device)
    block = max(1, CACHE_TILE_ELEMENTS // max(1, rows.shape[1]))
    for start, stop in _spans(0, i.numel(), block):
        result[start:stop] = (rows[i[start:stop]] - columns[j[start:stop]]).square_().sum(dim=1)
    return result


def _tile_side(chunk_elements: int) -> int:
    return max(1, math.isqrt(min(chunk_elements, CACHE_TILE_ELEMENTS)))


def _spans(start: int, stop: int, step: int) -> Iterator[tuple[int, int]]:
    for low in range(start, stop, step):
        yield low, min(stop, low + step)


def _row_block(chunk_elements: int, columns: int) -> int:
    """Rows per block when each row spans all ``columns``: at most ``chunk_elements`` distances (at least
    one row). Wide blocks, so that each read of the columns serves many rows."""
    return max(1, chunk_elements // max(1, columns))


def _below(values: Tensor, ceilings: Tensor) -> tuple[Tensor, Tensor]:
    """Positions ``(i, j)`` of the entries below their row's ceiling. Small balls leave most rows of a
    tile without one, so the rows are screened by their minima first and only the hits are searched
    (unless they are most rows, when gathering them would cost more than it saves)."""
    hit = torch.nonzero(values.amin(dim=1) < ceilings).flatten()
    if 2 * hit.numel() > values.shape[0]:
        return torch.nonzero(values < ceilings[:, None]).unbind(1)
    i, j = torch.nonzero(values[hit] < ceilings[hit, None]).unbind(1)
    return hit[i], j


def _scratch(points: _Points, elements: int) -> Tensor:
    """A buffer for every distance tile of a pass. A fresh multi-megabyte tile per step lets glibc's heap
    fragment: in some runs a 50,000-point pass grew the process by 2.5 GB."""
    return torch.empty(elements, dtype=points.fast.dtype, device=points.fast.device)


def _partial_squared(rows: _Points, columns: _Points, scratch: Tensor) -> Tensor:
    """``||y||^2 - 2 x.y`` in bulk precision, in the scratch buffer."""
    out = scratch[:len(rows) * len(columns)].view(len(rows), len(columns))
    return torch.addmm(columns.fast_norms[None, :], rows.fast, columns.fast.T, alpha=-2.0, out=out)


def _within(rows: _Points, columns: _Points, delta_squared: float, scratch: Tensor) -> tuple[Tensor, Tensor]:
    """Positions ``(i, j)`` of the pairs of ``rows`` x ``columns`` closer than delta by exact distance.
    The bulk product settles every pair outside the rounding band around delta; only the pairs inside
    it are recomputed."""
    partial = _partial_squared(rows, columns, scratch)
    band = rows.band(float(columns.norms.max()), delta_squared)
    ceiling = delta_squared - rows.norms
    i, j = _below(partial, (ceiling + band).to(partial.dtype))
    unsure = torch.nonzero(partial[i, j] >= (ceiling - band).to(partial.dtype)[i]).flatten()
    inside = torch.ones_like(i, dtype=torch.bool)
    inside[unsure] = _exact_squared(rows.exact, columns.exact, i[unsure], j[unsure]) < delta_squared
    return i[inside], j[inside]


def _bulk_squared(rows: _Points, columns: _Points, scratch: Tensor) -> Tensor:
    """Bulk-precision squared distances, each within ``rows.band(max column norm, 0)`` of the exact one."""
    return _partial_squared(rows, columns, scratch).add_(rows.fast_norms[:, None])


def _label_tiles(bounds: list[int], side: int, *, cross: bool) -> Iterator[tuple[int, int, int, int]]:
    """Tiles ``(r0, r1, c0, c1)`` of the distance matrix of points grouped by label (group ``g`` at
    ``bounds[g]:bounds[g + 1]``): each pair of labels once (``cross``), or each label with itself,
    its tiles on and above the diagonal."""
    groups = len(bounds) - 1
    for first in range(groups):
        for second in range(first + 1, groups) if cross else (first,):
            for r0, r1 in _spans(bounds[first], bounds[first + 1], side):
                for c0, c1 in _spans(bounds[second] if cross else r0, bounds[second + 1], side):
                    yield r0, r1, c0, c1


@dataclass(frozen=True)
class _Candidates:
    """Pairs of points (positions, each pair once) that hold every pair closer than ``sqrt(reach)``."""

    first: Tensor
    second: Tensor
    reach: float

    def within(self, points: _Points, delta_squared: float) -> tuple[Tensor, Tensor] | None:
        """The pairs closer than delta by exact distance; None if delta is beyond the reach."""
        if delta_squared > self.reach:
            return None
        inside = _exact_squared(points.exact, points.exact, self.first, self.second) < delta_squared
        return self.first[inside], self.second[inside]


class _Collector:
    """Gathers the pairs of a tile pass whose bulk distance is below ``reach`` plus its band, until
    there are more than ``limit`` of them (then it gives up: ``result`` is None)."""

    def __init__(self, order: Tensor, reach: float | None, limit: int) -> None:
        self.order, self.reach, self.limit = order, reach, limit
        self.firsts: list[Tensor] = []
        self.seconds: list[Tensor] = []
        self.count = 0

    @property
    def active(self) -> bool:
        return self.reach is not None and self.count <= self.limit

    def add(self, distances: Tensor, rows: _Points, columns: _Points, r0: int, c0: int) -> None:
        ceilings = (self.reach + rows.band(float(columns.norms.max()), self.reach)).to(distances.dtype)
        i, j = _below(distances, ceilings)
        later = r0 + i < c0 + j  # each pair once, no point with itself
        self.firsts.append(self.order[r0 + i[later]])
        self.seconds.append(self.order[c0 + j[later]])
        self.count += int(later.sum())
        if self.count > self.limit:
            self.firsts, self.seconds = [], []

    def result(self) -> _Candidates | None:
        if not self.active:
            return None
        return _Candidates(torch.cat(self.firsts), torch.cat(self.seconds), self.reach)


def _other_label_estimates(points: _Points, labels: Tensor, side: int, collector: _Collector) -> Tensor:
    """Bulk squared distance from each point to the nearest point of another label.

    The points are grouped by label (in the collector's order) and each pair of labels is visited
    once, in tiles whose row and column minima both count: half the cross-label products, and no
    label masks. While the collector is active, the same tiles feed it, and then the tiles of each
    label with itself: one pass finds the radius and the ball graph's candidate pairs."""
    order = collector.order
    grouped = points[order]
    counts = torch.unique_consecutive(labels[order], return_counts=True)[1].tolist()
    bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()
    estimates = torch.full((len(points),), math.inf, dtype=torch.float64, device=points.exact.device)
    scratch = _scratch(points, side * side)
    for r0, r1, c0, c1 in _label_tiles(bounds, side, cross=True):
        rows, columns = grouped[r0:r1], grouped[c0:c1]
        distances = _bulk_squared(rows, columns, scratch)
        estimates[r0:r1] = torch.minimum(estimates[r0:r1], distances.amin(dim=1))
        estimates[c0:c1] = torch.minimum(estimates[c0:c1], distances.amin(dim=0))
        if collector.active:
            collector.add(distances, rows, columns, r0, c0)
    if collector.active:
        for r0, r1, c0, c1 in _label_tiles(bounds, side, cross=False):
            rows, columns = grouped[r0:r1], grouped[c0:c1]
            collector.add(_bulk_squared(rows, columns, scratch), rows, columns, r0, c0)
            if not collector.active:
                break
    result = torch.empty_like(estimates)
    result[order] = estimates
    return result


def _exact_other_label(points: _Points, labels: Tensor, rows: Tensor, chunk_elements: int) -> Tensor:
    """Exact squared distance from each of the points ``rows`` to the nearest point of another label:
    the bulk finds the candidates within twice the band of its minimum, and only those are recomputed."""
    result = torch.empty(rows.numel(), dtype=torch.float64, device=points.exact.device)
    largest = float(points.norms.max())
    block = _row_block(chunk_elements, len(points))
    scratch = _scratch(points, min(block, rows.numel()) * len(points))
    for start, stop in _spans(0, rows.numel(), block):
        chosen = rows[start:stop]
        part = points[chosen]
        distances = _bulk_squared(part, points, scratch)
        distances.masked_fill_(labels[chosen, None] == labels[None, :], math.inf)
        reach = distances.amin(dim=1) + 2 * part.band(largest, 0.0)
        i, j = torch.nonzero(distances <= reach.to(distances.dtype)[:, None]).unbind(1)
        nearest = torch.full((stop - start,), math.inf, dtype=torch.float64, device=result.device)
        result[start:stop] = nearest.scatter_reduce_(0, i, _exact_squared(part.exact, points.exact, i, j), "amin")
    return result


def _pilot_reach(points: _Points, labels: Tensor, share: float, chunk_elements: int) -> float:
    """A squared radius that the purity rule's ``delta^2`` (the ``share`` quantile of r(x)^2) stays under
    with high probability: an upper confidence quantile of the exact r(x)^2 of evenly spaced points.
    Too small a reach costs only a second pass for the graph."""
    size = min(len(points), PILOT_POINTS)
    sample = torch.arange(size, device=points.exact.device) * len(points) // size
    radii = torch.sort(_exact_other_label(points, labels, sample, chunk_elements)).values
    level = share + 4 * math.sqrt(share * (1 - share) / size) + 1 / size
    return float(radii[min(size - 1, math.ceil(level * size))])


def _check_purity(purity: float) -> None:
    if isinstance(purity, bool) or not isinstance(purity, (int, float)) or not 0.0 < purity <= 1.0:
        raise ValueError(f"ProbCover purity must be in (0, 1], got {purity!r}")


def _purity_radius_squared(points: _Points, labels: Tensor | np.ndarray, purity: float, chunk_elements: int,
                           max_pairs: int | None = None) -> tuple[float, _Candidates | None]:
    """The ``ceil(purity * N)``-th largest exact r(x)^2, and with ``max_pairs``, at most that many candidate
    pairs for the ball graph from the same pass (None when there were more).

    Bulk estimates bracket every r(x); only the points whose bracket overlaps the bracket of that
    order statistic get their exact r(x)."""
    _check_purity(purity)
    labels = torch.as_tensor(np.asarray(labels), device=points.exact.device)
    count = len(points)
    if labels.shape != (count,):
        raise ValueError(f"labels must give one pseudo-label per point ({count}), got {tuple(labels.shape)}")
    if torch.unique(labels).numel() < 2:  # else every point has a nearest point of another label
        raise ValueError("no valid ProbCover radius: every ball is pure at any radius because the pseudo-labels "
                         "form a single cluster; give delta explicitly")
    side = _tile_side(chunk_elements)
    reach = _pilot_reach(points, labels, 1.0 - purity, chunk_elements) if max_pairs else None
    collector = _Collector(torch.argsort(labels, stable=True), reach, max_pairs or 0)
    estimates = _other_label_estimates(points, labels, side, collector)
    rank = count - math.ceil(purity * count - 1e-9) + 1  # of delta^2 among the r(x)^2, smallest first
    spread = points.band(float(points.norms.max()), 0.0)
    lower, upper = estimates - spread, estimates + spread
    low, high = float(torch.kthvalue(lower, rank).values), float(torch.kthvalue(upper, rank).values)
    below = int((upper < low).sum())  # these rank before delta^2, those above ``high`` after it
    unsure = torch.nonzero((lower <= high) & (upper >= low)).flatten()
    delta_squared = float(torch.kthvalue(_exact_other_label(points, labels, unsure, chunk_elements),
                                         rank - below).values)
    tolerance = 1e-12 * max(float(points.norms.max()), 1e-300)  # rounding noise of a zero distance
    if delta_squared <= tolerance:
        near_zero = torch.nonzero(lower <= tolerance).flatten()
        at_zero = int((_exact_other_label(points, labels, near_zero, chunk_elements) <= tolerance).sum())
        raise ValueError(f"no valid ProbCover radius: {at_zero} of {count} points have a point of another "
                         f"pseudo-label at distance 0, so no delta > 0 reaches purity {purity:g}; lower the purity "
                         "or give delta explicitly")
    return delta_squared, collector.result()


def purity_radius(points: Tensor | np.ndarray, labels: Tensor | np.ndarray, purity: float = DEFAULT_PURITY,
                  chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> float:
    """The largest ``delta`` at which at least ``purity`` of the open delta-balls are pseudo-label pure.

    Raises ValueError when no radius is valid: when too many points have a point of another label
    at distance zero (duplicates), or when there is only one label (every radius would be pure).
    """
    return math.sqrt(_purity_radius_squared(_prepared(points), labels, purity, chunk_elements)[0])


def _covered(pool: _Points, labelled: _Points, delta_squared: float, side: int) -> Tensor:
    """Which pool points lie in the ball of a labelled point."""
    covered = torch.zeros(len(pool), dtype=torch.bool, device=pool.exact.device)
    scratch = _scratch(pool, side * side)
    for r0, r1 in _spans(0, len(labelled), side):
        for c0, c1 in _spans(0, len(pool), side):
            covered[c0 + _within(labelled[r0:r1], pool[c0:c1], delta_squared, scratch)[1]] = True
    return covered


def _uncovered_pairs(pool: _Points, covered: Tensor, delta_squared: float,
                     side: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Every pair of pool positions ``(a, b)`` closer than delta with an uncovered point among them, once.

    Only those pairs ever count. With the uncovered points ordered first, they are the pairs ``i < j``
    with ``i`` uncovered: the tiles span the rows of the uncovered points and, of each row tile, only
    the columns from its own start (a triangle and a strip of the distance matrix)."""
    order = torch.cat([torch.nonzero(~covered).flatten(), torch.nonzero(covered).flatten()])
    arranged = pool[order]
    scratch = _scratch(pool, side * side)
    for r0, r1 in _spans(0, int((~covered).sum()), side):
        for c0, c1 in _spans(r0, len(pool), side):
            i, j = _within(arranged[r0:r1], arranged[c0:c1], delta_squared, scratch)
            later = r0 + i < c0 + j
            yield order[r0 + i[later]], order[c0 + j[later]]


def _coverage_from(near: tuple[Tensor, Tensor], pool_size: int) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """From every pair closer than delta (point positions, pool first): which pool points a labelled
    point covers, and the pool pairs."""
    first, second = near
    covered = torch.zeros(pool_size, dtype=torch.bool, device=first.device)
    for this, other in ((first, second), (second, first)):
        covered[this[(this < pool_size) & (other >= pool_size)]] = True
    both = (first < pool_size) & (second < pool_size)
    return covered, (first[both], second[both])


class _Graph:
    """The stored pairs as pool neighbour lists (compressed rows), each pair in both directions."""

    def __init__(self, first: np.ndarray, second: np.ndarray, size: int) -> None:
        sources = np.concatenate([first, second])
        self.targets = np.concatenate([second, first])[np.argsort(sources, kind="stable")]
        self.offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(sources, minlength=size), out=self.offsets[1:])

    def neighbours(self, points: np.ndarray) -> np.ndarray:
        """The neighbours of each of ``points``, concatenated (a point is not its own neighbour)."""
        starts = self.offsets[points]
        lengths = self.offsets[points + 1] - starts
        return self.targets[np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - starts, lengths)]


class _Streamed:
    """Pool neighbours recomputed from the points, a pass over the pool per call: memory ``O(tile)``."""

    def __init__(self, pool: _Points, delta_squared: float, chunk_elements: int) -> None:
        self.pool, self.delta_squared, self.block = pool, delta_squared, _row_block(chunk_elements, len(pool))
        self.scratch = _scratch(pool, self.block * len(pool))

    def neighbours(self, points: np.ndarray) -> np.ndarray:
        index = torch.as_tensor(points, device=self.pool.exact.device)
        found = [np.empty(0, dtype=np.int64)]
        for start, stop in _spans(0, index.numel(), self.block):
            chosen = index[start:stop]
            i, j = _within(self.pool[chosen], self.pool, self.delta_squared, self.scratch)
            found.append(j[j != chosen[i]].cpu().numpy())
        return np.concatenate(found)


def _ball_graph(pool: _Points, covered: Tensor, pairs: Iterator[tuple[Tensor, Tensor]], delta_squared: float,
                chunk_elements: int, max_edges: int) -> tuple[np.ndarray, _Graph | _Streamed]:
    """Each pool point's count of uncovered points in its ball, from the pool ``pairs`` closer than delta
    (all those with an uncovered point), and the neighbours: stored as a graph while the pairs number
    at most ``max_edges``, else recomputed on demand."""
    uncovered = (~covered).to(torch.int64)
    degree = uncovered.clone()  # a point is in its own ball
    firsts, seconds, edges = [], [], 0
    for first, second in pairs:
        degree.index_add_(0, first, uncovered[second]).index_add_(0, second, uncovered[first])
        edges += first.numel()
        if edges <= max_edges:
            firsts.append(first.to(torch.int32).cpu())
            seconds.append(second.to(torch.int32).cpu())
        else:
            firsts, seconds = [], []
    if edges > max_edges:
        return degree.cpu().numpy(), _Streamed(pool, delta_squared, chunk_elements)
    ends = [torch.cat(part).numpy() if part else np.empty(0, dtype=np.int32) for part in (firsts, seconds)]
    return degree.cpu().numpy(), _Graph(*ends, len(pool))


def greedy_coverage(points: Tensor | np.ndarray, pool_size: int, delta: float, n: int, *,
                    rng: np.random.Generator | None = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                    max_edges: int = DEFAULT_MAX_EDGES, stats: dict | None = None) -> np.ndarray:
    """Greedy max coverage of open ``delta``-balls over ``points``, the first ``pool_size`` the pool.

    The other points are labelled: their balls start covered. Returns ``n`` pool positions in pick
    order; once everything is covered the rest are drawn at random from the unpicked pool.
    """
    return _greedy(_prepared(points), pool_size, float(delta) ** 2, n, rng, chunk_elements, max_edges, stats)


def _greedy(points: _Points, pool_size: int, delta_squared: float, n: int, rng: np.random.Generator | None,
            chunk_elements: int, max_edges: int, stats: dict | None,
            near: tuple[Tensor, Tensor] | None = None) -> np.ndarray:
    """The greedy; ``near``, when given, holds every pair of points closer than delta, and saves the passes."""
    check_query_size(n, pool_size)
    side = _tile_side(chunk_elements)
    pool = points[:pool_size]
    if near is None:
        covered = _covered(pool, points[pool_size:], delta_squared, side)
        pairs = _uncovered_pairs(pool, covered, delta_squared, side)
    else:
        covered, pool_pairs = _coverage_from(near, pool_size)
        pairs = iter([pool_pairs])
    degree, graph = _ball_graph(pool, covered, pairs, delta_squared, chunk_elements, max_edges)
    covered = covered.cpu().numpy()
    if stats is not None:
        stats.update(delta=math.sqrt(delta_squared), mean_ball=float(degree.mean()) if pool_size else 0.0)
    picked = np.zeros(pool_size, dtype=bool)
    picks = np.empty(n, dtype=np.int64)
    for step in range(n):
        best = int(np.argmax(degree))  # the first maximum: ties go to the lowest position
        if degree[best] <= 0:
            remaining = np.flatnonzero(~picked)
            generator = rng if rng is not None else np.random.default_rng(0)
            picks[step:] = remaining[generator.choice(remaining.size, size=n - step, replace=False)]
            break
        picks[step] = best
        picked[best] = True
        ball = np.append(graph.neighbours(np.array([best])), best)
        newly = ball[~covered[ball]]
        covered[newly] = True
        # Every pool point whose ball holds a newly covered point loses one uncovered point per such point.
        np.subtract.at(degree, graph.neighbours(newly), 1)
        degree[newly] -= 1
        degree[best] = -1
    if stats is not None:
        stats["covered"] = float((covered.sum() + len(points) - pool_size) / max(1, len(points)))
    return picks


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
    max_edges: int = DEFAULT_MAX_EDGES,
    stats: dict | None = None,
) -> np.ndarray:
    """Pick ``n`` pool positions by ProbCover, in pick order.

    ``delta`` fixes the radius; by default it comes from the purity rule on k-means pseudo-labels
    with ``num_classes`` clusters (seeded from ``rng``). ``rng`` also draws the order in which ties
    are broken (a random permutation of the pool) and the picks left over once everything is covered. ``chunk_elements`` caps the distances computed at once, ``max_edges`` the
    pairs kept as the ball graph (beyond it, balls are recomputed per pick). ``stats``, when given,
    receives ``delta``, ``mean_ball`` (the mean number of uncovered points in a pool point's ball
    before the picks) and ``covered`` (the share of all points covered after them).
    """
    points, known = pool_and_labelled(pool, n, labelled, chunk_elements)
    pool_size = points.shape[0]
    _check_purity(purity)  # before the k-means, which costs more than the check
    if max_edges < 0:
        raise ValueError(f"max_edges must be non-negative, got {max_edges}")
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
    # The greedy breaks ties by position. Pools often come in class order (an image folder lists
    # class by class), and on poor embeddings the purity rule makes balls so small that nearly every
    # degree ties: ties by pool position then label the first classes and skip the last (measured:
    # airplane 28% and truck 3% of 3,200 labels). So the greedy runs on the pool in a random order
    # drawn from ``rng``: ties go to a random point, and the picks are mapped back.
    order = rng.permutation(pool_size)
    everything = everything[_with_labelled(order, everything.shape[0], everything.device)]
    if delta is None:
        labels = np.asarray(labels)[_with_labelled(order, everything.shape[0], "cpu").numpy()]
    prepared = _prepared(everything)
    if delta is not None:
        delta_squared, near = float(delta) ** 2, None
    else:
        # The rule's radius is the distance of one pair, which its open ball excludes; pull it in by
        # a margin far above rounding, so that pair stays out however a later pass computes it.
        radius_squared, candidates = _purity_radius_squared(prepared, labels, purity, chunk_elements, max_edges)
        delta_squared = radius_squared * (1.0 - 1e-9)
        near = candidates.within(prepared, delta_squared) if candidates is not None else None
    return order[_greedy(prepared, pool_size, delta_squared, n, rng, chunk_elements, max_edges, stats, near)]


def _with_labelled(order: np.ndarray, total: int, device) -> Tensor:
    """Row indices that put the pool (the first ``len(order)`` rows) in ``order`` and keep the labelled rows."""
    return torch.cat([torch.as_tensor(order, dtype=torch.int64), torch.arange(len(order), total)]).to(device)


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
