"""TypiClust (Hacohen, Dekel and Weinshall, ICML 2022): the most typical point of each uncovered cluster.

For low budgets the best points to label are typical ones (in dense regions) that are also
diverse. TypiClust clusters the embeddings of all points (labelled and pool) into
``K = labelled + budget`` clusters with k-means, orders the clusters by how few labelled points
they hold and then by size (largest first), and takes from each in turn its most *typical* pool
point, where typicality is the inverse mean Euclidean distance to the ``K_NN = 20`` nearest
neighbours within the cluster (``min(20, size // 2)`` in small clusters). As in the authors' code:
clusters of at most 5 points are used only once the others are exhausted, the number of clusters
is capped at 500 (``max_clusters``; their ``MAX_NUM_CLUSTERS``), so with a larger budget the order
is cycled, and typicality is recomputed among a cluster's remaining pool points after each pick.

k-means is scikit-learn's (``KMeans`` up to 50 clusters, ``MiniBatchKMeans`` beyond, as the authors
do), on the CPU. The neighbour distances run in torch on the embeddings' device, cluster by cluster
in row blocks of at most ``chunk_elements`` distances, so memory stays linear in the pool even for
one huge cluster; they are float64 so near ties are ranked exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..settings import check_positive_int
from .base import QueryHeuristic, require
from .checks import pool_and_labelled
from .outputs import ModelOutputs
from .registry import register_heuristic

NEIGHBOURS = 20  # K_NN of the paper
MIN_CLUSTER_SIZE = 5  # clusters of at most this many points come last (the authors drop them)
MAX_CLUSTERS = 500  # the authors' cap on k-means clusters
SMALL_KMEANS = 50  # up to this many clusters plain KMeans, beyond it MiniBatchKMeans (the authors' rule)
DEFAULT_CHUNK_ELEMENTS = 1 << 24


def cluster_labels(points: Tensor | np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """k-means cluster of each point (scikit-learn, CPU), ``clusters`` clusters, reproducible from ``seed``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    data = torch.as_tensor(points).detach().to("cpu", torch.float32).numpy()
    if not 1 <= clusters <= data.shape[0]:
        raise ValueError(f"cannot form {clusters} clusters from {data.shape[0]} points")
    if clusters <= SMALL_KMEANS:
        model = KMeans(n_clusters=clusters, n_init=1, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=clusters, batch_size=5000, n_init=1, random_state=seed)
    return model.fit_predict(data).astype(np.int64)


def mean_neighbour_distance(points: Tensor, neighbours: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    """Mean Euclidean distance of each point to its ``neighbours`` nearest others (itself excluded), float64."""
    count = points.shape[0]
    if not 1 <= neighbours < count:
        raise ValueError(f"need 1 <= neighbours < points, got {neighbours} neighbours for {count} points")
    points = points.to(torch.float64)
    norms = torch.linalg.vector_norm(points, dim=1).square_()
    result = torch.empty(count, dtype=torch.float64, device=points.device)
    rows = max(1, chunk_elements // count)
    for start in range(0, count, rows):
        stop = min(count, start + rows)
        distances = torch.addmm(norms[None, :], points[start:stop], points.T, alpha=-2.0)
        distances.add_(norms[start:stop, None]).clamp_(min=0.0)
        own = torch.arange(start, stop, device=points.device)
        distances[own - start, own] = float("inf")
        nearest = torch.topk(distances, neighbours, dim=1, largest=False).values.sqrt_()
        result[start:stop] = nearest.mean(dim=1)
    return result


def most_typical(points: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Position of the most typical of ``points`` (the lowest on ties); a single point is its own answer."""
    neighbours = min(NEIGHBOURS, points.shape[0] // 2)
    if neighbours < 1:
        return 0
    # typicality = 1 / (mean distance + 1e-5), so the most typical point has the smallest mean distance.
    return int(torch.argmin(mean_neighbour_distance(points, neighbours, chunk_elements)))


def typiclust_select(
    pool: Tensor | np.ndarray,
    n: int,
    labelled: Tensor | np.ndarray | None = None,
    *,
    labels: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    max_clusters: int | None = MAX_CLUSTERS,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> np.ndarray:
    """Pick ``n`` pool positions by TypiClust, in pick order.

    Args:
        pool: ``(N, D)`` embeddings of the pool; labelled: ``(M, D)`` of the labelled set.
        n: how many to pick (``0 <= n <= N``).
        labels: cluster of each of the ``N + M`` points (pool first); by default k-means with
            ``min(M + n, max_clusters, N + M)`` clusters, seeded from ``rng``.
        rng: seeds k-means (default: a generator seeded with 0).
        max_clusters: cap on the number of clusters (None: no cap, the paper's ``M + n``).
        chunk_elements: bound on the temporary block of neighbour distances.
    """
    points, known = pool_and_labelled(pool, n, labelled, chunk_elements)
    num_pool = points.shape[0]
    if max_clusters is not None:
        check_positive_int("", "max_clusters", max_clusters)
    picks = np.empty(n, dtype=np.int64)
    if n == 0:
        return picks
    everything = torch.cat([points, known]) if known.shape[0] else points
    if labels is None:
        clusters = min(known.shape[0] + n, everything.shape[0], max_clusters or everything.shape[0])
        seed = int((rng if rng is not None else np.random.default_rng(0)).integers(2**31 - 1))
        labels = cluster_labels(everything, clusters, seed)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (everything.shape[0],) or labels.min() < 0:
        raise ValueError(f"labels must give one cluster id >= 0 per point ({everything.shape[0]}), got shape "
                         f"{labels.shape}, smallest {labels.min()}")

    num_clusters = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=num_clusters)
    covered = np.bincount(labels[num_pool:], minlength=num_clusters)
    grouped = np.argsort(labels[:num_pool], kind="stable")  # pool positions by cluster, ascending within
    available = np.split(grouped, np.cumsum(np.bincount(labels[:num_pool], minlength=num_clusters))[:-1])
    by_need = sorted(range(len(available)), key=lambda c: (covered[c], -sizes[c], c))
    order = ([c for c in by_need if sizes[c] > MIN_CLUSTER_SIZE] + [c for c in by_need if sizes[c] <= MIN_CLUSTER_SIZE])
    large = sum(sizes[c] > MIN_CLUSTER_SIZE for c in order)
    step = 0
    for tier in (order[:large], order[large:]):
        while step < n and any(len(available[c]) for c in tier):
            for cluster in tier:
                if step == n:
                    break
                members = available[cluster]
                if len(members) == 0:
                    continue
                choice = most_typical(points[torch.as_tensor(members, device=points.device)], chunk_elements)
                picks[step] = members[choice]
                available[cluster] = np.delete(members, choice)
                step += 1
    return picks


@register_heuristic("typiclust", "the most typical pool point of each uncovered k-means cluster, largest first "
                    "(Hacohen et al.)")
class TypiClustQuery(QueryHeuristic):
    """TypiClust: typical and diverse points for low budgets, from k-means clusters of the embeddings."""

    needs = frozenset({"embeddings"})

    def __init__(self, max_clusters: int | None = MAX_CLUSTERS, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        self.max_clusters = max_clusters
        self.chunk_elements = chunk_elements

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        return typiclust_select(require(outputs, "pool_embeddings"), n, outputs.labelled_embeddings, rng=rng,
                                max_clusters=self.max_clusters, chunk_elements=self.chunk_elements)
