"""One active round for every entry point: search and train on the labelled set; score the pool and pick.

``inas run`` (:class:`~inas_plugins.loop.ActiveRun`), ``inas label``
(:func:`inas_plugins.labelling.rounds.run_round`) and :class:`~inas_plugins.wrapper.INASModelWrapper`
all train through :func:`search_and_train`; the first two pick through :func:`pick`, and baal's loops
pick through :class:`~inas_plugins.baal_query.BaalQuery`, which checks its picks with the same
:func:`checked_picks`. What stays with each entry point is its own: where the labels and the pool
come from, how its networks are seeded, and what it stores afterwards. So every search option
(weight inheritance included), the pick checks, chunked scoring and the pool subset mean the same
whichever way a user comes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from .heuristics import QueryHeuristic, ScoreHeuristic, collect_outputs
from .heuristics.base import check_picks
from .heuristics.outputs import ModelOutputs, pool_scores, scores_in_chunks
from .records import CandidateRecord
from .search import SearchResult, inas_search
from .settings import QueryOptions, SearchOptions
from .space import Arch, SearchSpace
from .training.sources import DataSource
from .training.trainer import BatchHook, Trainer, TrainStats

if TYPE_CHECKING:
    from .parallel import CandidatePool

ModelFactory = Callable[[Arch], nn.Module]


def round_seed(seed: int, round_index: int) -> int:
    """Each round draws from its own seed, so a resumed run replays an uninterrupted one exactly."""
    return int(np.random.SeedSequence([seed, round_index]).generate_state(1)[0])


# --- search and train ---------------------------------------------------------------------------


@dataclass
class Parent:
    """The previous round's trained network, which weight inheritance starts the candidates from.

    ``seen`` marks (one boolean per sample of this round's labelled set) what it was trained on: V'
    is drawn from the other samples, so no inherited weight has seen what scores the candidates.
    """

    model: nn.Module
    seen: Tensor


@dataclass
class TrainedRound:
    """The round's network: its architecture, the search that chose it (None: a fixed architecture),
    what its training cost, and the loss after each epoch when they were asked for."""

    arch: Arch
    model: nn.Module
    search: Optional[SearchResult]
    stats: TrainStats
    losses: list[float] = field(default_factory=list)

    @property
    def candidates(self) -> list[CandidateRecord]:
        return list(self.search.candidates) if self.search is not None else []

    @property
    def search_seconds(self) -> float:
        return self.search.seconds if self.search is not None else 0.0


def search_and_train(
    labelled: DataSource,
    start: Arch,
    trainer: Trainer,
    *,
    space: SearchSpace,
    search: Optional[SearchOptions],
    build: ModelFactory,
    final: ModelFactory,
    seed: int,
    parent: Optional[Parent] = None,
    candidate_pool: Optional["CandidatePool"] = None,
    progress: bool = False,
    desc: str = "train",
    on_batch: Optional[BatchHook] = None,
    epoch_losses: bool = False,
) -> TrainedRound:
    """iNAS from ``start`` on the labelled set (``search=None``: keep ``start``), then train the winner on all of it.

    ``build(arch)`` makes the search's candidates (:func:`~inas_plugins.search.inas_search` seeds each
    from ``(seed, arch)``); ``final(arch)`` makes the network that is trained on every label, seeded as
    the entry point decides. ``parent`` is used when ``search.inherit_weights`` is on. ``on_batch``
    sees every training step (baal's running metrics); ``epoch_losses`` trains epoch by epoch and
    returns each epoch's loss (baal's history), otherwise the training runs in one piece.
    """
    arch, result = start, None
    if search is not None:
        result = inas_search(labelled, start, space, trainer, build, options=search, seed=seed,
                             parent_model=parent.model if parent is not None else None,
                             parent_seen=parent.seen if parent is not None else None,
                             progress=progress, candidate_pool=candidate_pool)
        arch = result.arch
    model = final(arch)
    run = trainer.start(model, labelled, desc=f"{desc} {arch}", on_batch=on_batch)
    losses = [run.train_until(epoch).final_loss for epoch in range(1, run.recipe.epochs + 1)] if epoch_losses else []
    return TrainedRound(arch=arch, model=model, search=result, stats=run.finish(), losses=losses)


# --- score the pool and pick --------------------------------------------------------------------


@dataclass
class Picks:
    """The pool positions to label next, most wanted first; with ``describe``, also per pick the
    heuristic's score (higher = wanted first; for heuristics that pick a set, the pick order n..1)
    and the network's softmax without dropout (its guess, shown to the people labelling)."""

    positions: np.ndarray
    scores: Optional[np.ndarray] = None
    probs: Optional[np.ndarray] = None


def checked_picks(heuristic: QueryHeuristic, n: int, pool_size: int, name: str, *,
                  scores: Optional[np.ndarray] = None, outputs: Optional[ModelOutputs] = None,
                  rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """The heuristic's ``n`` picks, from the pool's pointwise ``scores`` (computed chunk by chunk) or from
    its whole ``outputs``; checked (:func:`~inas_plugins.heuristics.base.check_picks`) before anything
    is labelled, an error naming the heuristic as ``name``."""
    if scores is not None:
        picks = heuristic.select_by_scores(scores, n)  # type: ignore[attr-defined]
    else:
        picks = heuristic.select(outputs, n, rng)
    return check_picks(picks, n, pool_size, name)


def pick(model: nn.Module, heuristic: QueryHeuristic, pool: DataSource, labelled: DataSource, n: int,
         query: QueryOptions, rng: np.random.Generator, *, progress: bool = False, describe: bool = False) -> Picks:
    """The ``n`` positions of ``pool`` the heuristic wants labelled next.

    With ``query.pool_subset`` only a random subset of the pool is ranked; the picks are mapped back
    from subset positions to pool positions (baal's ActiveLearningExperiment forgets this step). A
    pointwise heuristic is scored batch by batch, so the pool's ``(N, C, K)`` MC-dropout array never
    exists; any other gets the whole pool's outputs (and ``labelled`` for embeddings). ``rng`` draws
    the subset, then the dropout masks' seed, then whatever the heuristic draws.
    """
    candidates = np.arange(len(pool))
    if query.pool_subset is not None and query.pool_subset < len(pool):
        candidates = np.sort(rng.choice(len(pool), size=max(query.pool_subset, n), replace=False))
    ranked = pool.subset(torch.from_numpy(candidates))
    mc = dict(mc_samples=query.mc_samples, mc_dropout_rate=query.mc_dropout_rate, seed=int(rng.integers(2**31)),
              progress=progress)
    scores = None
    if scores_in_chunks(heuristic):
        scores = pool_scores(model, ranked, heuristic, **mc)
        chosen = checked_picks(heuristic, n, len(candidates), query.heuristic, scores=scores)
    else:
        outputs = collect_outputs(model, ranked, labelled, heuristic.needs, **mc)
        chosen = checked_picks(heuristic, n, len(candidates), query.heuristic, outputs=outputs, rng=rng)
        if describe and isinstance(heuristic, ScoreHeuristic):
            scores = np.asarray(heuristic.scores(outputs), dtype=np.float64)
    if not describe:
        return Picks(candidates[chosen])
    per_pick = scores[chosen] if scores is not None else np.arange(n, 0, -1, dtype=np.float64)
    guesses = collect_outputs(model, ranked.subset(torch.from_numpy(chosen)), None, {"probs"}).probs
    return Picks(candidates[chosen], np.asarray(per_pick, dtype=np.float64), guesses)
