"""iNAS, the incremental architecture search of the paper (Algorithm 1).

Split the labelled set S at random into S' (training) and V' (validation; read without random
augmentation where the data source has such a view). Starting from the
current architecture A, train every candidate of ``space.candidates(A)`` = {A, widen(A), deepen(A)}
(clipped to the space) on S' with "premature evaluation" -- ``premature_fraction`` of the trainer's
epochs, by one of two schedules (``options.premature_schedule``) -- and score it on V'. The best candidate becomes the new A
(ties go to the network with fewer parameters); stop when A does not change or after
``options.iterations`` iterations (the paper uses one). A candidate is trained at most once per search.

Two opt-in savings, both off by default:

* ``inherit_weights``: a candidate starts from the weights of the network it was grown from (see
  ``inas_plugins.training.inherit``) -- in the first iteration ``parent_model`` (the previous
  round's trained model), in later ones the trained model of the current architecture. V' must be
  unseen by every inherited weight, or a candidate that memorised V' scores above what it learned:
  the parent was trained on the previous labelled set, so V' is drawn only from the samples it
  did not see (``parent_seen``; with a doubling set, the newly labelled half; when fewer than
  ``val_fraction`` of S are new, V' is all of them), and later iterations' parents were trained on
  S' only. V' is then made of the last query's picks, not a random share of S: it measures the
  candidates where the query function looked. When the parent saw every sample the first
  iteration's candidates start fresh. Every inheriting candidate keeps a freshly initialised
  classifier (``get_classifier()``): the widened child's head cannot be copied (its input width
  doubles), so the deepened child and the current architecture do not keep theirs either, and no
  candidate starts with a head start on the parent's decision boundary.
* ``successive_halving``: with n candidates and E premature epochs, every candidate is trained to
  E / 2**H epochs (H = floor(log2 n), rounded, at least 1) and scored; the better half
  (floor(n/2), at least 1; ties to fewer parameters) continues to twice that budget, and so on
  until one is left, which is trained on to E. With three candidates: all three to E/2, the best
  one on to E -- 2E of SGD instead of 3E, and the winner ends exactly as the plain search would
  have trained it. Candidates carried over from an earlier iteration keep their scores per epoch
  and are only trained further when a rung needs it.

The two premature schedules, for E = ``premature_fraction`` x the trainer's epochs:

* ``"compressed"``: the whole recipe squeezed into E epochs (its lr milestones stay fractions, so
  the lr decays inside the short run); a candidate ends trained as a short full run would be.
* ``"early_stop"``: the paper's -- the full run's schedule, stopped after E epochs ("early-stopped
  after 50 epochs" of 200), so with the paper's milestones the lr is still the initial one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .models import count_parameters
from .records import CandidateRecord
from .space import Arch, SearchSpace
from .training.inherit import inherit_weights as copy_inherited_weights
from .training.recipe import TrainRecipe
from .settings import SearchOptions
from .training.sources import DataSource
from .training.trainer import Trainer, TrainingRun, derive_seed

if TYPE_CHECKING:
    from .parallel import CandidatePool

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The chosen architecture, every candidate trained on the way, and the search's wall time."""

    arch: Arch
    candidates: list[CandidateRecord]
    iterations: int
    seconds: float
    models: dict[Arch, nn.Module] = field(default_factory=dict, repr=False)
    train_size: int = 0
    val_size: int = 0
    premature_epochs: int = 0

    def record(self, arch: Arch) -> CandidateRecord:
        for candidate in self.candidates:
            if candidate.arch == arch:
                return candidate
        raise ValueError(f"architecture {arch} was not a candidate of this search")

    def to_dict(self) -> dict:
        return {"arch": self.arch.as_list(), "iterations": self.iterations, "seconds": self.seconds,
                "train_size": self.train_size, "val_size": self.val_size,
                "premature_epochs": self.premature_epochs,
                "candidates": [candidate.to_dict() for candidate in self.candidates]}


def split_labelled(n: int, val_fraction: float, seed: int, *, eligible: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Random S'/V' split of ``n`` indices: ``round(n * val_fraction)`` (at least 1) go to V'.

    ``eligible`` (a boolean mask of length ``n``) limits V' to those indices, e.g. the samples an
    inherited network was not trained on; when fewer are eligible than V' should hold, V' is all of
    them. Without it the split is the same as before the mask existed (same seed, same split).
    """
    if n < 2:
        raise ValueError(f"iNAS needs at least 2 labelled samples to split into S' and V', got {n}")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if eligible is None:
        return order[n_val:], order[:n_val]
    eligible = torch.as_tensor(eligible, dtype=torch.bool).flatten()
    if eligible.numel() != n:
        raise ValueError(f"the V' mask must have one entry per labelled sample ({n}), got {eligible.numel()}")
    candidates = order[eligible[order]]
    if candidates.numel() == 0:
        raise ValueError("no labelled sample is eligible for V'")
    val = candidates[:min(n_val, candidates.numel())]
    in_val = torch.zeros(n, dtype=torch.bool)
    in_val[val] = True
    return order[~in_val[order]], val


def _inherit_all_but_the_classifier(model: nn.Module, parent: nn.Module) -> bool:
    """Copy ``parent``'s matching units into ``model``, keeping ``model``'s fresh classifier; any copied?"""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    fresh = {k: v.detach().clone() for k, v in classifier.state_dict().items()} if classifier is not None else None
    report = copy_inherited_weights(model, parent)
    if classifier is not None:
        classifier.load_state_dict(fresh)
    return report.any


def halving_rungs(num_candidates: int, epochs: int) -> list[int]:
    """Epoch budgets of the successive-halving rungs: E / 2**H, ..., E / 2, E with H = floor(log2 n)."""
    halvings = int(math.floor(math.log2(num_candidates))) if num_candidates > 1 else 0
    rungs = [max(1, round(epochs / 2 ** (halvings - k))) for k in range(halvings + 1)]
    return sorted(set(rungs))


class _Contender:
    """A candidate's model, its paused training run and its validation score after each rung."""

    def __init__(self, arch: Arch, model: nn.Module, run: TrainingRun, iteration: int, inherited: bool,
                 setup_seconds: float) -> None:
        self.arch = arch
        self.model = model
        self.run = run
        self.iteration = iteration
        self.inherited = inherited
        self.params = count_parameters(model)
        self.seconds = setup_seconds
        self.scores: dict[int, float] = {}

    def score_at(self, epochs: int, trainer: Trainer, validation: DataSource) -> float:
        """Validation accuracy after ``epochs`` epochs, training on first if needed."""
        if self.run.epochs_done < epochs:
            began = time.perf_counter()
            self.run.train_until(epochs)
            self.scores[epochs] = trainer.evaluate(self.run.evaluation_model, validation)
            self.seconds += time.perf_counter() - began
            return self.scores[epochs]
        # Trained before: use the score of the first rung at or beyond this budget.
        return self.scores[min(e for e in self.scores if e >= epochs)]

    def record(self) -> CandidateRecord:
        last = max(self.scores)
        return CandidateRecord(arch=self.arch, params=self.params, val_accuracy=self.scores[last],
                               seconds=self.seconds, iteration=self.iteration, epochs=last,
                               inherited=self.inherited)


def _ranking_key(contender: _Contender, score: float) -> tuple:
    """Best first: higher accuracy, then fewer parameters, then the smaller architecture."""
    return (-score, contender.params, contender.arch)


class _Race:
    """One search's candidates: built once each, trained on S' by premature evaluation and scored on V'.

    ``recipe.epochs`` is the premature budget E in both schedules; ``schedule`` is what the runs follow.
    """

    def __init__(self, trainer: Trainer, model_factory: Callable[[Arch], nn.Module], train_data: DataSource,
                 validation: DataSource, options: SearchOptions, seed: int,
                 candidate_pool: "CandidatePool | None", progress: bool) -> None:
        self.trainer, self.model_factory, self.options, self.seed = trainer, model_factory, options, seed
        self.train_data, self.validation, self.candidate_pool = train_data, validation, candidate_pool
        self.recipe: TrainRecipe = trainer.recipe.scaled(options.premature_fraction)
        self.schedule = self.recipe if options.premature_schedule == "compressed" else trainer.recipe
        self.contenders: dict[Arch, _Contender] = {}
        self.bar = tqdm(desc="iNAS", unit="candidate", total=0, disable=not progress, dynamic_ncols=True)

    def enter(self, arch: Arch, iteration: int, parent: nn.Module | None) -> _Contender:
        """A candidate's network (seeded from (seed, arch), so independent of search order), inheriting
        from ``parent`` when asked, and its paused training run."""
        if arch not in self.contenders:
            began = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, arch.blocks, arch.stacks))
                model = self.model_factory(arch)
            inherited = (self.options.inherit_weights and parent is not None
                         and _inherit_all_but_the_classifier(model, parent))
            run = self.trainer.start(model, self.train_data, recipe=self.schedule, desc=f"iNAS {arch}",
                                     run_seed=derive_seed(self.trainer.seed, self.seed, arch.blocks, arch.stacks))
            self.contenders[arch] = _Contender(arch, model, run, iteration, inherited, time.perf_counter() - began)
            self.bar.total += 1
            self.bar.refresh()
        return self.contenders[arch]

    def best_of(self, archs: list[Arch], iteration: int, parent: nn.Module | None) -> Arch:
        """The best of ``archs`` on V': each trained to E, or by successive halving's rungs."""
        alive = [self.enter(arch, iteration, parent) for arch in archs]
        rungs = halving_rungs(len(alive), self.recipe.epochs) if self.options.successive_halving else [self.recipe.epochs]
        for rung, epochs in enumerate(rungs):
            scored = sorted(self._scores(alive, epochs), key=lambda item: _ranking_key(*item))
            keep = 1 if rung == len(rungs) - 1 else max(1, len(scored) // 2)
            alive = [contender for contender, _ in scored[:keep]]
        self.bar.set_postfix(iteration=iteration, best=str(alive[0].arch))
        return alive[0].arch

    def _scores(self, alive: list[_Contender], epochs: int) -> list[tuple[_Contender, float]]:
        if self.candidate_pool is not None:  # train the rung's candidates in parallel; score_at reads the cache
            self.bar.update(self.candidate_pool.train(alive, epochs, self.trainer, self.train_data, self.validation))
        scored = []
        for contender in alive:
            trained_before = contender.run.epochs_done > 0
            scored.append((contender, contender.score_at(epochs, self.trainer, self.validation)))
            if not trained_before and contender.run.epochs_done > 0:
                self.bar.update(1)
        return scored


def inas_search(
    data: DataSource,
    start: Arch,
    space: SearchSpace,
    trainer: Trainer,
    model_factory: Callable[[Arch], nn.Module],
    *,
    options: SearchOptions = SearchOptions(),
    seed: int = 0,
    parent_model: nn.Module | None = None,
    parent_seen: Tensor | None = None,
    progress: bool = True,
    candidate_pool: "CandidatePool | None" = None,
) -> SearchResult:
    """Algorithm 1: grow ``start`` within ``space`` by validation accuracy on a random split of S.

    ``data`` is the labelled set S as a data source (``trainer.source(images, labels)`` for
    tensors). ``model_factory(arch)`` builds a fresh network; it is called once per candidate,
    under a seed derived from ``(seed, arch)`` so a candidate's initial weights do not depend on
    search order. ``candidate_pool`` (:class:`inas_plugins.parallel.CandidatePool`) trains the candidates as
    parallel Ray tasks, with the same results. ``parent_model`` is only used when ``options.inherit_weights`` is on, and then
    ``parent_seen`` is required: a boolean mask (or the positions) of the samples of ``data`` the
    parent was trained on, so V' can be drawn from the others (see the module docstring).
    """
    if not isinstance(options, SearchOptions):
        raise ValueError(f"options must be SearchOptions, got {type(options).__name__}")
    data = trainer.source(data)
    current = space.check(start)
    began = time.perf_counter()
    parent_model, eligible = _parent_and_eligible(options, parent_model, parent_seen, len(data))
    train_index, val_index = split_labelled(len(data), options.val_fraction, seed, eligible=eligible)
    race = _Race(trainer, model_factory, data.subset(train_index), data.subset(val_index).evaluation(), options, seed,
                 candidate_pool, progress)
    iterations = 0
    try:
        for iterations in range(1, options.iterations + 1):
            parent = parent_model if iterations == 1 else race.contenders[current].model
            best = race.best_of(space.candidates(current), iterations, parent)
            if best == current:
                break
            current = best
    finally:
        race.bar.close()
    records = sorted((c.record() for c in race.contenders.values()), key=lambda r: (r.iteration, r.params, r.arch))
    return SearchResult(arch=current, candidates=records, iterations=iterations, seconds=time.perf_counter() - began,
                        models={arch: c.model for arch, c in race.contenders.items()},
                        train_size=int(train_index.numel()), val_size=int(val_index.numel()),
                        premature_epochs=race.recipe.epochs)


def _parent_and_eligible(options: SearchOptions, parent_model: nn.Module | None, parent_seen: Tensor | None,
                         n: int) -> tuple[nn.Module | None, Tensor | None]:
    """The parent to inherit from (None: none, or it saw every sample) and the samples V' may hold."""
    if not (options.inherit_weights and parent_model is not None):
        return parent_model, None
    eligible = _unseen_mask(parent_seen, n)
    if not eligible.any():
        logger.info("iNAS: the parent was trained on all %d labelled samples; no V' would be unseen by it, "
                    "so the first iteration's candidates start fresh", n)
        return None, None
    return parent_model, eligible


def _unseen_mask(parent_seen: Tensor | None, n: int) -> Tensor:
    """The samples of S the parent was *not* trained on, from a mask or positions of those it was."""
    if parent_seen is None:
        raise ValueError("inheriting weights from parent_model needs parent_seen (which labelled samples the parent "
                         "was trained on), so that V' is unseen by every inherited weight")
    seen = torch.as_tensor(parent_seen)
    if seen.dtype == torch.bool:
        if seen.numel() != n:
            raise ValueError(f"parent_seen must have one entry per labelled sample ({n}), got {seen.numel()}")
        return ~seen.flatten().cpu()
    positions = seen.flatten().long().cpu()
    if positions.numel() and (positions.min() < 0 or positions.max() >= n):
        raise ValueError(f"parent_seen positions must be in [0, {n}), got {positions.min()}..{positions.max()}")
    unseen = torch.ones(n, dtype=torch.bool)
    unseen[positions] = False
    return unseen
