"""baal's heuristics under their baal names, fed the way each of them expects.

* Each baal heuristic gets probabilities, never logits (baal's ``Certainty`` would rank raw logits):
  ``bald``, ``batch_bald`` and ``variance`` need the MC-dropout samples ``[n, classes, K]``;
  ``entropy``, ``margin`` and ``certainty`` are single-pass scores and get the deterministic
  ``[n, classes]`` probabilities; ``random`` needs nothing and is seeded from the query's ``rng``.
* The stochastic acquisitions of Kirsch et al. (``power_*``, ``gibbs_*``, ``rank_*`` over BALD and
  entropy) use :class:`SeededPowerSampling` and friends: baal's ``StochasticHeuristic`` defines a
  one-argument ``get_ranks`` (so baal's own ``ActiveLearningLoop``, which passes two, crashes), draws
  from numpy's global RNG and silently inverts heuristics ranked lowest-first. The subclasses here
  accept the loop's arguments, draw from a seeded generator and refuse lowest-first bases.
* baal's ``get_heuristic`` is a fixed dict, so it is not used; ``epig`` (needs predictions on a target
  set) and ``precomputed`` (not a query function) are not offered.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from baal.active.heuristics import (BALD, AbstractHeuristic, BatchBALD, Certainty, Entropy, Margin, Random,
                                    Variance)
from baal.active.heuristics.stochastics import GibbsSampling, PowerSampling, RankBasedSampling

# BaalHeuristic and wrap_baal_heuristic live in .baal_adapter (re-exported here) so that the registry,
# which wraps third-party baal heuristics from entry points, never has to import this module.
from .baal_adapter import BaalHeuristic, wrap_baal_heuristic  # noqa: F401
from ..memory import MEMORY_SHARE, format_bytes, memory_allowance
from ..settings import SettingError
from .base import QueryHeuristic, ScoreHeuristic, check_query_size, require
from .outputs import ModelOutputs
from .registry import register_heuristic

BAAL = "baal"


class PointwiseBaalHeuristic(ScoreHeuristic, BaalHeuristic):
    """A baal heuristic whose score of a point depends on that point's predictions only.

    Its ``scores`` are baal's uncertainties, signed so that higher is queried first, and its picks
    are :class:`ScoreHeuristic`'s ranking of them, so the active loop scores the pool batch by batch
    and never holds the whole ``(N, C, K)`` MC-dropout array
    (:func:`~inas_plugins.heuristics.outputs.pool_scores`).
    """

    def scores(self, outputs: ModelOutputs) -> np.ndarray:
        scorer = self.baal_class(**self.baal_kwargs)
        raw = np.asarray(scorer.get_uncertainties(self.predictions(outputs)), dtype=np.float64)
        return raw if scorer.reversed else -raw


# baal's single-score heuristics: name -> (baal class, the output it is fed, description). Each
# becomes a PointwiseBaalHeuristic named after its baal class (BALDQuery, ...), as the stochastic
# ones below come from their table.
POINTWISE: dict[str, tuple[type[AbstractHeuristic], str, str]] = {
    "bald": (BALD, "mc_probs", "mutual information between prediction and weights over MC-dropout samples"),
    "variance": (Variance, "mc_probs", "variance over MC-dropout samples, averaged over classes"),
    "entropy": (Entropy, "probs", "entropy of the deterministic softmax"),
    "margin": (Margin, "probs", "smallest gap between the two most probable classes"),
    "certainty": (Certainty, "probs", "lowest max softmax probability (same ranking as softmax_response)"),
}
POINTWISE_QUERIES: dict[str, type[PointwiseBaalHeuristic]] = {}


def _register_pointwise() -> None:
    for name, (baal_class, need, description) in POINTWISE.items():
        cls = type(f"{baal_class.__name__}Query", (PointwiseBaalHeuristic,), {
            "baal_class": baal_class, "needs": frozenset({need}), "__module__": __name__,
            "__doc__": f"baal's {baal_class.__name__}: {description}."})
        POINTWISE_QUERIES[name] = globals()[cls.__name__] = register_heuristic(name, description, source=BAAL)(cls)


_register_pointwise()


@register_heuristic("random", "uniformly random points (passive learning baseline)", source=BAAL)
class RandomQuery(BaalHeuristic):
    baal_class = Random
    needs = frozenset()

    def make_scorer(self, n: int, rng: np.random.Generator) -> AbstractHeuristic:
        return Random(seed=int(rng.integers(2**32 - 1)))


@register_heuristic("batch_bald", "BatchBALD: jointly informative batch over MC-dropout samples (slow on "
                    "large pools)", source=BAAL)
class BatchBALDQuery(BaalHeuristic):
    """BatchBALD's batch in (approximate) pick order; places it leaves empty are filled by BALD.

    baal's BatchBALD only returns one score per pick: the joint BALD of the batch so far, which grows
    as the batch grows, so ascending scores recover the pick order. It picks ``num_samples + 1``
    points, hence ``num_samples = n - 1``.
    """

    baal_class = BatchBALD
    needs = frozenset({"mc_probs"})

    def __init__(self, memory_limit: int | None = None, **baal_kwargs) -> None:
        super().__init__(**baal_kwargs)
        self.memory_limit = memory_limit

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        mc_probs = require(outputs, "mc_probs")
        check_query_size(n, outputs.pool_size)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        pool, classes, samples = mc_probs.shape
        draws = int(self.baal_kwargs.get("num_draw", BATCH_BALD_DRAWS))
        needed = batch_bald_bytes(pool, classes, samples, n, draws)
        allowed = memory_allowance(self.memory_limit)
        if allowed is not None and needed > allowed:
            share = "the limit" if self.memory_limit is not None else f"{int(MEMORY_SHARE * 100)}% of the available memory"
            raise SettingError(f"batch_bald would need about {format_bytes(needed)} for a batch of {n} from a pool of "
                               f"{pool} ({classes} classes, {samples} MC samples; baal's sampler holds batch x "
                               f"samples^2 x {draws} draws), more than {format_bytes(allowed)} ({share}); query smaller "
                               f"batches, fewer mc_samples or a pool_subset, or use bald", "mc_samples", "pool_subset")
        scorer = BatchBALD(num_samples=n - 1, **self.baal_kwargs)
        with torch.random.fork_rng(devices=[]):  # BatchBALD draws with torch.multinomial
            torch.manual_seed(int(rng.integers(2**63 - 1)))
            joint = np.asarray(scorer.get_uncertainties(mc_probs), dtype=np.float64)
        bald = np.asarray(BALD().get_uncertainties(mc_probs), dtype=np.float64)
        picked = joint != 0
        order = np.lexsort((-bald, np.where(picked, joint, 0.0), ~picked))
        return order[:n].astype(np.int64)


BATCH_BALD_DRAWS = 500  # baal's default num_draw


def batch_bald_bytes(pool: int, classes: int, samples: int, n: int, draws: int = BATCH_BALD_DRAWS) -> int:
    """Peak bytes of baal's ``BatchBALD`` picking ``n`` points (float64 throughout).

    Its last step draws from a history of ``n - 1`` picks: ``_sample_from_history`` gathers a
    (history, K, K, draws) array and takes its log (two of them); ``_joint_entropy`` then builds the
    (pool, K x draws, classes) expectation ``exp_y`` and, over chunks of 10,000 rows, two
    temporaries of that shape (``xlogy`` and the division). The larger of the two steps plus the
    (pool, classes, K) predictions, plus 10% for what the formula leaves out, is the estimate.
    """
    history = max(1, n - 1)
    sampler = 2 * 8 * history * samples * samples * draws
    expectation = 8 * samples * draws * classes  # one pool row of exp_y
    joint = expectation * pool + 2 * expectation * min(pool, 10_000)
    return (max(sampler, joint) + 8 * pool * classes * samples) * 11 // 10


class _SeededSampling:
    """Loop-safe replacement for baal's ``StochasticHeuristic.get_ranks`` (mixed in before it)."""

    def __init__(self, base_heuristic: AbstractHeuristic, query_size: int, temperature: float = 1.0,
                 seed: int | np.random.Generator | None = None) -> None:
        if not base_heuristic.reversed:
            raise ValueError(f"stochastic sampling needs a heuristic where higher scores mean more uncertain; "
                             f"{type(base_heuristic).__name__} ranks lowest first")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(base_heuristic=base_heuristic, query_size=query_size, temperature=temperature)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def get_ranks(self, predictions, target_predictions=None):
        scores = np.clip(np.asarray(self.get_scores(predictions), dtype=np.float64), 0.0, None)
        distribution = np.clip(self._make_distribution(scores), 0.0, None)
        size = min(self.query_size, len(distribution))
        total = distribution.sum()
        if not np.isfinite(total) or total <= 0 or np.count_nonzero(distribution) < size:
            distribution = np.full(len(distribution), 1.0 / max(1, len(distribution)))  # too few candidates
        else:
            distribution = distribution / total
        return self.rng.choice(len(distribution), size, replace=False, p=distribution), distribution


class SeededPowerSampling(_SeededSampling, PowerSampling):
    """baal's PowerSampling (sample with probability proportional to score^(1/T)), loop-safe and seeded."""


class SeededGibbsSampling(_SeededSampling, GibbsSampling):
    """baal's GibbsSampling (softmax of score/T), loop-safe and seeded."""


class SeededRankBasedSampling(_SeededSampling, RankBasedSampling):
    """baal's RankBasedSampling (rank^(-1/T)), loop-safe and seeded."""


class StochasticQuery(QueryHeuristic):
    """Draw the batch from a distribution over a base heuristic's scores (Kirsch et al., 2022)."""

    sampler: ClassVar[type[_SeededSampling]]
    base: ClassVar[type[BaalHeuristic]]

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        check_query_size(n, outputs.pool_size)
        base = self.base()
        sampler = self.sampler(base.make_scorer(n, rng), query_size=n, temperature=self.temperature, seed=rng)
        ranks, _ = sampler.get_ranks(base.predictions(outputs))
        return np.asarray(ranks, dtype=np.int64)


_SAMPLERS = {
    "power": (SeededPowerSampling, "probability proportional to {base}^(1/T)"),
    "gibbs": (SeededGibbsSampling, "probability proportional to exp({base}/T)"),
    "rank": (SeededRankBasedSampling, "probability proportional to rank^(-1/T), ranked by {base}"),
}
_STOCHASTIC_BASES = {name: POINTWISE_QUERIES[name] for name in ("bald", "entropy")}


def _register_stochastic() -> None:
    module_globals = globals()
    for prefix, (sampler, formula) in _SAMPLERS.items():
        for base_name, base in _STOCHASTIC_BASES.items():
            class_name = f"{prefix.capitalize()}{base.__name__}"
            cls = type(class_name, (StochasticQuery,), {"sampler": sampler, "base": base, "needs": base.needs,
                                                         "__module__": __name__})
            description = f"stochastic batch: sample without replacement, {formula.format(base=base_name)}"
            module_globals[class_name] = register_heuristic(f"{prefix}_{base_name}", description, source=BAAL)(cls)


_register_stochastic()
