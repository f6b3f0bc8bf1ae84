"""Write a query heuristic, register it, list it, and run it on fake model outputs.

    python examples/custom_heuristic.py

The heuristic below is "diversity-weighted entropy": it ranks by predictive entropy, but each pick
down-weights the points whose embeddings lie close to what was already picked, so a batch does not
fill up with near-duplicates. It declares ``needs = {"probs", "embeddings"}``; the active loop reads
that and computes only those outputs (``collect_outputs``), so no MC-dropout passes are spent on it.

Registering with the decorator works for code you run yourself. A third-party package makes its
heuristic appear in ``inas heuristics`` and ``inas run --heuristic NAME`` without touching this
project, through an entry point in its ``pyproject.toml``::

    [project.entry-points."inas_plugins.heuristics"]
    diversity_entropy = "my_package.heuristics:DiversityWeightedEntropy"

The entry point's name becomes the heuristic's name, and the distribution's name is listed as its
source. It may also point at a baal ``AbstractHeuristic`` subclass, which is then fed MC-dropout
predictions ``[n, classes, K]`` (or what its class attribute ``needs`` asks for).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import entropy

from inas_plugins.heuristics import (ModelOutputs, QueryHeuristic, check_query_size, create_heuristic,
                                     list_heuristics, register_heuristic, require)


@register_heuristic("diversity_entropy", "entropy, discounted near points already picked in the batch")
class DiversityWeightedEntropy(QueryHeuristic):
    """Entropy times (1 - similarity to the nearest pick so far), picked greedily."""

    needs = frozenset({"probs", "embeddings"})

    def __init__(self, bandwidth: float = 1.0) -> None:
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        self.bandwidth = bandwidth

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        check_query_size(n, outputs.pool_size)
        uncertainty = entropy(require(outputs, "probs"), axis=1)
        embeddings = require(outputs, "pool_embeddings").float().cpu()
        closeness = torch.zeros(len(embeddings))  # similarity to the nearest pick, in [0, 1]
        picks: list[int] = []
        for _ in range(n):
            score = uncertainty * (1.0 - closeness.numpy())
            score[picks] = -np.inf
            pick = int(np.argmax(score))
            picks.append(pick)
            distance = torch.cdist(embeddings, embeddings[pick:pick + 1])[:, 0]
            closeness = torch.maximum(closeness, torch.exp(-(distance / self.bandwidth) ** 2))
        return np.asarray(picks, dtype=np.int64)


def fake_outputs(pool_size: int = 200, classes: int = 10, width: int = 16, seed: int = 0):
    """What ``collect_outputs`` would return, made up: 8 embedding clusters, one of them (cluster 0)
    where the model is unsure about everything. Returns the outputs and each point's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(8, width))
    cluster = rng.integers(len(centres), size=pool_size)
    embeddings = centres[cluster] + rng.normal(scale=0.5, size=(pool_size, width))
    sharpness = np.where(cluster == 0, 0.3, 3.0)[:, None]  # flat softmax in cluster 0
    logits = rng.normal(size=(pool_size, classes)) * sharpness
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    outputs = ModelOutputs(probs=probs.astype(np.float32),
                           pool_embeddings=torch.tensor(embeddings, dtype=torch.float32),
                           labelled_embeddings=torch.empty(0, width))
    return outputs, cluster


def main() -> None:
    info = next(info for info in list_heuristics() if info.name == "diversity_entropy")
    print(f"registered: {info.name} (source: {info.source}) - {info.description}")

    outputs, cluster = fake_outputs()
    rng = np.random.default_rng(0)
    heuristic = create_heuristic("diversity_entropy", bandwidth=4.0)
    print(f"needs: {sorted(heuristic.needs)}")
    for name, picks in (("diversity_entropy", heuristic.select(outputs, 10, rng)),
                        ("entropy", create_heuristic("entropy").select(outputs, 10, rng))):
        touched = len(set(cluster[picks].tolist()))
        print(f"{name:>17}: picks {picks.tolist()}, {touched} of 8 clusters")


if __name__ == "__main__":
    main()
