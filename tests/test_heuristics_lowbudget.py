"""BADGE, TypiClust and ProbCover against brute-force references that build full matrices on 60 points."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from inas_plugins.heuristics import ModelOutputs, create_heuristic
from inas_plugins.heuristics import probcover
from inas_plugins.heuristics.badge import badge_seeding
from inas_plugins.heuristics.probcover import greedy_coverage, probcover_select, purity_radius
from inas_plugins.heuristics.typiclust import typiclust_select

CLASSES = 4


def blobs(n: int, width: int = 6, centres: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` float32 points around ``centres`` well separated centres, of uneven sizes and spreads."""
    rng = np.random.default_rng(seed)
    middles = rng.normal(scale=6.0, size=(centres, width))
    which = rng.choice(centres, size=n, p=np.arange(1, centres + 1) / np.arange(1, centres + 1).sum())
    spread = rng.uniform(0.5, 1.5, size=(n, 1))
    return (middles[which] + spread * rng.normal(size=(n, width))).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full Euclidean distance matrix in float64 by explicit differences."""
    return np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :].astype(np.float64)) ** 2).sum(-1))


# --------------------------------------------------------------------------- BADGE


def brute_force_badge(probs: np.ndarray, features: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """k-means++ seeding on the materialised (N, C*D) gradient embeddings, as BADGE's reference code."""
    residual = probs.astype(np.float64).copy()
    residual[np.arange(len(probs)), probs.argmax(1)] -= 1.0
    gradients = (residual[:, :, None] * features.astype(np.float64)[:, None, :]).reshape(len(probs), -1)
    distances = pairwise(gradients, gradients)
    picks = [int(np.argmax(np.linalg.norm(gradients, axis=1)))]
    while len(picks) < n:
        nearest = distances[:, picks].min(axis=1) ** 2
        picks.append(int(rng.choice(len(probs), p=nearest / nearest.sum())))
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_matches_k_means_plus_plus_on_materialised_gradient_embeddings(seed):
    data = np.random.default_rng(seed)
    features = blobs(60, width=8, seed=seed)
    probs = softmax(data.normal(scale=2.0, size=(60, CLASSES)))
    expected = brute_force_badge(probs, features, 15, np.random.default_rng(7))
    picks = badge_seeding(torch.from_numpy(probs), torch.from_numpy(features), 15, rng=np.random.default_rng(7))
    assert picks.tolist() == expected
    assert len(set(expected)) == 15


def test_badge_first_pick_is_the_largest_gradient_and_confident_duplicates_still_give_distinct_picks():
    features = np.ones((6, 3), dtype=np.float32)
    probs = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (6, 1))  # certain: every gradient is zero
    probs[4] = [0.6, 0.4]
    picks = badge_seeding(probs, features, 6, rng=np.random.default_rng(0))
    assert picks[0] == 4 and sorted(picks.tolist()) == list(range(6))


def test_badge_by_name_reads_probs_and_pool_embeddings():
    heuristic = create_heuristic("badge")
    assert heuristic.needs == {"probs", "embeddings"}
    features, probs = blobs(30), softmax(np.random.default_rng(0).normal(size=(30, CLASSES)))
    outputs = ModelOutputs(probs=probs, pool_embeddings=torch.from_numpy(features),
                           labelled_embeddings=torch.zeros(0, features.shape[1]))
    picks = heuristic.select(outputs, 5, np.random.default_rng(3))
    assert picks.tolist() == badge_seeding(probs, features, 5, rng=np.random.default_rng(3)).tolist()


# --------------------------------------------------------------------------- TypiClust


def brute_force_typiclust(pool: np.ndarray, labelled: np.ndarray, n: int, labels: np.ndarray) -> list[int]:
    """TypiClust as the authors' code reads, with a full distance matrix per cluster."""
    everything = np.concatenate([pool, labelled])
    sizes = np.bincount(labels)
    existing = np.bincount(labels[len(pool):], minlength=len(sizes))
    order = sorted(range(len(sizes)), key=lambda c: (existing[c], -sizes[c], c))
    order = [c for c in order if sizes[c] > 5] + [c for c in order if sizes[c] <= 5]
    remaining = labels.copy()
    remaining[len(pool):] = -1
    picks: list[int] = []
    large = [c for c in order if sizes[c] > 5]
    for tier in (large, [c for c in order if sizes[c] <= 5]):
        while len(picks) < n and any((remaining == c).any() for c in tier):
            for cluster in tier:
                members = np.flatnonzero(remaining == cluster)
                if len(picks) == n or len(members) == 0:
                    continue
                k = min(20, len(members) // 2)
                if k == 0:
                    best = members[0]
                else:
                    distances = pairwise(everything[members], everything[members])
                    np.fill_diagonal(distances, np.inf)
                    mean = np.sort(distances, axis=1)[:, :k].mean(axis=1)
                    best = members[int(np.argmax(1.0 / (mean + 1e-5)))]
                picks.append(int(best))
                remaining[best] = -1
    return picks


@pytest.mark.parametrize("num_labelled, n", [(0, 8), (12, 6), (5, 30)])
def test_typiclust_matches_brute_force_with_sklearn_kmeans(num_labelled, n):
    points = blobs(60, seed=num_labelled)
    pool, labelled = points[:60 - num_labelled], points[60 - num_labelled:]
    seed = int(np.random.default_rng(5).integers(2**31 - 1))  # the k-means seed typiclust draws from its rng
    clusters = min(num_labelled + n, 60)
    labels = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit_predict(points)
    expected = brute_force_typiclust(pool, labelled, n, labels)
    picks = typiclust_select(torch.from_numpy(pool), n, torch.from_numpy(labelled), rng=np.random.default_rng(5))
    assert picks.tolist() == expected and len(set(expected)) == n


def test_typiclust_takes_the_dense_centre_of_the_largest_uncovered_cluster_and_chunks_agree():
    rng = np.random.default_rng(0)
    dense = rng.normal(scale=0.1, size=(30, 2))
    sparse = np.array([[10.0, 10.0]]) + rng.normal(scale=2.0, size=(20, 2))
    pool = np.concatenate([dense, sparse]).astype(np.float32)
    labels = np.array([0] * 30 + [1] * 20 + [1])  # one labelled point, in the sparse cluster
    labelled = np.array([[10.0, 10.0]], dtype=np.float32)
    picks = typiclust_select(pool, 2, labelled, labels=labels)
    distances = pairwise(dense, dense)
    np.fill_diagonal(distances, np.inf)
    assert picks[0] == int(np.argmin(np.sort(distances, axis=1)[:, :15].mean(1)))  # uncovered cluster first
    assert 30 <= picks[1] < 50
    assert typiclust_select(pool, 2, labelled, labels=labels, chunk_elements=7).tolist() == picks.tolist()


# --------------------------------------------------------------------------- ProbCover


def brute_force_purity_delta(points: np.ndarray, labels: np.ndarray, purity: float) -> float:
    """The largest radius with purity >= ``purity``, by trying every pairwise distance (open balls)."""
    distances = pairwise(points, points)
    for delta in sorted(set(distances.ravel().tolist()), reverse=True):
        if delta == 0:
            break
        balls = distances < delta
        pure = np.array([(labels[ball] == labels[i]).all() for i, ball in enumerate(balls)])
        if pure.mean() >= purity:
            return delta
    raise AssertionError("no valid radius")


def brute_force_coverage(pool: np.ndarray, labelled: np.ndarray, n: int, delta: float,
                         rng: np.random.Generator) -> list[int]:
    everything = np.concatenate([pool, labelled])
    balls = pairwise(everything, everything) < delta
    covered = balls[len(pool):].any(axis=0)
    picks: list[int] = []
    while len(picks) < n:
        degrees = (balls[:len(pool)] & ~covered).sum(axis=1)
        degrees[picks] = -1
        if degrees.max() <= 0:
            remaining = np.setdiff1d(np.arange(len(pool)), picks)
            picks += remaining[rng.choice(len(remaining), size=n - len(picks), replace=False)].tolist()
            break
        best = int(np.argmax(degrees))
        picks.append(best)
        covered |= balls[best]
    return picks


def probcover_reference(pool: np.ndarray, labelled: np.ndarray, n: int, delta: float,
                        rng: np.random.Generator) -> list[int]:
    """ProbCover's picks by brute force, as ``probcover_select`` draws them: the pool in a random order
    from ``rng`` (ties then go to a random point), the greedy on it, the picks mapped back."""
    order = rng.permutation(len(pool))
    return order[brute_force_coverage(pool[order], labelled, n, delta, rng)].tolist()


@pytest.mark.parametrize("num_labelled", [0, 10])
def test_probcover_purity_rule_and_greedy_match_brute_force(num_labelled):
    points = blobs(60, seed=3 + num_labelled)
    pool, labelled = points[:60 - num_labelled], points[60 - num_labelled:]
    rng = np.random.default_rng(9)
    seed = int(rng.integers(2**31 - 1))  # drawn by probcover_select for its k-means
    labels = KMeans(n_clusters=CLASSES, n_init=1, random_state=seed).fit_predict(points)
    delta = brute_force_purity_delta(points, labels, 0.95)
    assert purity_radius(points, labels, 0.95) == pytest.approx(delta, rel=1e-5)
    expected = probcover_reference(pool, labelled, 25, delta, rng)
    picks = probcover_select(pool, 25, labelled, num_classes=CLASSES, rng=np.random.default_rng(9))
    assert picks.tolist() == expected and len(set(expected)) == 25


def test_probcover_greedy_with_a_fixed_radius_is_chunk_independent():
    points = blobs(60, seed=11)
    pool, labelled = points[:50], points[50:]
    expected = probcover_reference(pool, labelled, 50, 2.3, np.random.default_rng(4))  # runs out: random tail
    for chunk in (1 << 24, 13):
        picks = probcover_select(pool, 50, labelled, delta=2.3, rng=np.random.default_rng(4), chunk_elements=chunk)
        assert picks.tolist() == expected
    stats = {}
    picks = greedy_coverage(points, 50, 2.3, 10, rng=np.random.default_rng(4), chunk_elements=13, stats=stats)
    assert picks.tolist() == brute_force_coverage(pool, labelled, 10, 2.3, np.random.default_rng(4))
    balls = pairwise(points, points) < 2.3
    assert stats["covered"] == pytest.approx(balls[np.concatenate([picks, np.arange(50, 60)])].any(0).mean())
    assert greedy_coverage(points, 50, 2.3, 0).tolist() == []


PATHS = ("one pass", "second pass", "streamed")


def forced(monkeypatch, path: str) -> tuple[dict, set]:
    """Options that send ``probcover_select`` down ``path``, and the set that records which ball
    searches ran: "one pass" keeps the radius pass's candidate pairs as the graph; "second pass" gets
    no candidates (its pilot reach is 0) and searches the graph after the radius; "streamed" may keep
    no graph (``max_edges=0``) and recomputes balls per pick."""
    taken = set()
    search, neighbours = probcover._uncovered_pairs, probcover._Streamed.neighbours

    def searched(*args):
        taken.add("second pass")
        return search(*args)

    def streamed(self, points):
        taken.add("streamed")
        return neighbours(self, points)

    monkeypatch.setattr(probcover, "_uncovered_pairs", searched)
    monkeypatch.setattr(probcover._Streamed, "neighbours", streamed)
    if path == "second pass":
        monkeypatch.setattr(probcover, "_pilot_reach", lambda *args: 0.0)
    return {"max_edges": 0} if path == "streamed" else {}, taken


def expected_taken(path: str) -> set:
    return {"one pass": set(), "second pass": {"second pass"}, "streamed": {"second pass", "streamed"}}[path]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("num_labelled", [0, 10])
def test_probcover_each_path_matches_brute_force(monkeypatch, path, num_labelled):
    options, taken = forced(monkeypatch, path)
    points = blobs(60, seed=3 + num_labelled)
    pool, labelled = points[:60 - num_labelled], points[60 - num_labelled:]
    rng = np.random.default_rng(9)
    labels = KMeans(n_clusters=CLASSES, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit_predict(points)
    expected = probcover_reference(pool, labelled, 25, brute_force_purity_delta(points, labels, 0.95), rng)
    for chunk in (1 << 24, 13):
        taken.clear()
        picks = probcover_select(pool, 25, labelled, num_classes=CLASSES, rng=np.random.default_rng(9),
                                 chunk_elements=chunk, **options)
        assert picks.tolist() == expected and taken == expected_taken(path)


def lattice(seed: int, side: int = 4, width: int = 8, spacing: float = 0.1) -> np.ndarray:
    """A cubic lattice, randomly rotated into ``width`` dimensions and offset, in float32: neighbours sit at
    distance ``spacing`` up to the rounding of their coordinates, inside the float32 rounding band of
    a radius ``spacing``, so only exact distances put them on the right side of it."""
    rng = np.random.default_rng(seed)
    grid = np.array(list(itertools.product(range(side), repeat=3)), dtype=np.float64) * spacing
    rotation = np.linalg.qr(rng.normal(size=(width, width)))[0][:3]
    return (grid @ rotation + 3.0).astype(np.float32)


@pytest.mark.parametrize("path", PATHS)
def test_probcover_pairs_inside_the_float32_band_are_decided_exactly(monkeypatch, path):
    points = lattice(seed=0)
    exact = pairwise(points, points)
    centred = torch.from_numpy(points).double()
    centred = (centred - centred.mean(0)).float()
    norms = centred.square().sum(1)
    float32_gram = (norms[:, None] + norms[None, :] - 2 * centred @ centred.T).numpy()
    assert ((float32_gram < 0.1**2) != (exact < 0.1)).sum() > 0  # float32 alone gets some neighbours wrong

    options, taken = forced(monkeypatch, path)
    pool, labelled = points[:54], points[54:]
    expected = probcover_reference(pool, labelled, 54, 0.1, np.random.default_rng(4))
    picks = probcover_select(pool, 54, labelled, delta=0.1, rng=np.random.default_rng(4), **options)
    assert picks.tolist() == expected

    # The purity rule: nearest points of another label at the lattice spacing, equal up to rounding.
    rng = np.random.default_rng(9)
    labels = KMeans(n_clusters=CLASSES, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit_predict(points)
    delta = brute_force_purity_delta(points, labels, 0.95)
    assert np.isclose(exact, delta, rtol=1e-5).sum() > 2  # near-ties at the radius
    assert purity_radius(points, labels, 0.95) == pytest.approx(delta, rel=1e-12)
    pulled_in = delta * math.sqrt(1.0 - 1e-9)  # as probcover_select: the radius pair's own ball excludes it
    expected = probcover_reference(pool, labelled, 30, pulled_in, rng)
    taken.clear()
    picks = probcover_select(pool, 30, labelled, num_classes=CLASSES, rng=np.random.default_rng(9), **options)
    assert picks.tolist() == expected and taken == expected_taken(path)


def test_probcover_breaks_ties_at_random_not_by_pool_order():
    """A pool in class order (as an image folder lists it) whose balls hold only their centre: every
    degree ties. Ties by position would label the first class only; ProbCover's picks spread."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=100.0, size=(CLASSES, 8))
    pool = np.repeat(centres, 40, axis=0) + rng.normal(size=(CLASSES * 40, 8))  # 40 per class, in class order
    classes = np.repeat(np.arange(CLASSES), 40)
    picks = probcover_select(pool, 40, delta=1e-3, rng=np.random.default_rng(1))
    assert len(set(picks.tolist())) == 40
    assert np.bincount(classes[picks], minlength=CLASSES).min() >= 3  # every class drawn, none only
    assert greedy_coverage(pool, len(pool), 1e-3, 40).tolist() == list(range(40))  # the bare greedy: by position


def test_probcover_bulk_runs_in_float64_where_float32_products_are_not_ieee(monkeypatch):
    points = lattice(seed=1)
    assert probcover._prepared(points).fast.dtype == torch.float32
    expected = probcover_select(points[:54], 30, points[54:], num_classes=CLASSES, rng=np.random.default_rng(9))
    monkeypatch.setattr(probcover, "_ieee_float32_products", lambda device: False)  # as with TF32 allowed
    assert probcover._prepared(points).fast.dtype == torch.float64
    picks = probcover_select(points[:54], 30, points[54:], num_classes=CLASSES, rng=np.random.default_rng(9))
    assert picks.tolist() == expected.tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", PATHS)
def test_probcover_on_cuda_picks_as_on_the_cpu(monkeypatch, path):
    options, taken = forced(monkeypatch, path)
    points = lattice(seed=0)
    expected = probcover_select(points[:54], 30, points[54:], num_classes=CLASSES, rng=np.random.default_rng(9),
                                **options)
    on_cuda = torch.from_numpy(points).cuda()
    taken.clear()
    picks = probcover_select(on_cuda[:54], 30, on_cuda[54:], num_classes=CLASSES, rng=np.random.default_rng(9),
                             **options)
    assert picks.tolist() == expected.tolist() and taken == expected_taken(path)


def test_probcover_by_name_takes_the_number_of_classes_from_the_probabilities():
    heuristic = create_heuristic("probcover")
    assert heuristic.needs == {"probs", "embeddings"}
    points = blobs(60, seed=2)
    outputs = ModelOutputs(probs=np.full((50, CLASSES), 1 / CLASSES, dtype=np.float32),
                           pool_embeddings=torch.from_numpy(points[:50]), labelled_embeddings=torch.from_numpy(points[50:]))
    picks = heuristic.select(outputs, 7, np.random.default_rng(1))
    assert picks.tolist() == probcover_select(points[:50], 7, points[50:], num_classes=CLASSES,
                                              rng=np.random.default_rng(1)).tolist()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["badge", "typiclust", "probcover"])
def test_more_picks_than_the_pool_is_one_clear_error(name):
    points = blobs(20)
    outputs = ModelOutputs(probs=softmax(np.zeros((20, CLASSES))), pool_embeddings=torch.from_numpy(points),
                           labelled_embeddings=torch.zeros(0, points.shape[1]))
    with pytest.raises(ValueError, match=r"cannot query 21 points from a pool of 20"):
        create_heuristic(name).select(outputs, 21, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["badge", "typiclust", "probcover", "coreset"])
@pytest.mark.parametrize("where", ["pool", "labelled"])
def test_embeddings_with_nans_are_one_clear_error(name, where):
    points = torch.from_numpy(blobs(30))
    pool, labelled = points[:25].clone(), points[25:].clone()
    (pool if where == "pool" else labelled)[2, 1] = math.nan
    outputs = ModelOutputs(probs=softmax(np.zeros((25, CLASSES))), pool_embeddings=pool, labelled_embeddings=labelled)
    if name == "badge" and where == "labelled":
        assert len(create_heuristic(name).select(outputs, 3, np.random.default_rng(0))) == 3  # BADGE reads no labelled
        return
    with pytest.raises(ValueError, match=rf"{where} embeddings contain NaN or infinite values in 1 of"):
        create_heuristic(name).select(outputs, 3, np.random.default_rng(0))


def test_probabilities_with_nans_are_one_clear_error():
    probs = softmax(np.zeros((10, CLASSES)))
    probs[3, 0] = math.nan
    with pytest.raises(ValueError, match="pool probabilities contain NaN"):
        badge_seeding(probs, blobs(10), 2)


def test_probcover_radius_with_no_valid_choice_is_one_clear_error():
    # Half the points sit on top of a point of another pseudo-label: those balls are impure at any radius.
    points = np.repeat(blobs(20), 2, axis=0)
    labels = np.tile([0, 1], 20)
    labels[20:] = 0  # the last ten pairs agree: 20 of 40 points have another label at distance 0
    with pytest.raises(ValueError, match=r"no valid ProbCover radius: 20 of 40 points .* distance 0"):
        purity_radius(points, labels, 0.95)
    with pytest.raises(ValueError, match="single cluster"):
        purity_radius(blobs(10), np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="purity must be in"):
        purity_radius(blobs(10), np.arange(10) % 2, 1.5)
    for delta in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="delta must be a positive finite radius"):
            probcover_select(blobs(10), 2, delta=delta)
    with pytest.raises(ValueError, match="number of classes"):
        probcover_select(blobs(10), 2)
