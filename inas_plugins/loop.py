"""Active-iNAS (paper Algorithm 2) on baal's ActiveLearningDataset.

Each round: iNAS from the previous round's architecture on the labelled set (or a fixed
architecture for the baselines), train the chosen network on all labelled data, evaluate it on the
test set, then query the next batch with the heuristic, until the budget is spent or the pool is
empty. After every round the run directory gets a checkpoint and fresh results files.

A run may be killed at any instant, so the order of the writes is part of the design (each write
is atomic, :mod:`inas_plugins.atomic`):

* start-up: config.json first (from then on the directory *holds a run*, and everything needed
  to start it again is in it), then the round-0 checkpoint, then results.json/csv and the plots;
* after each round: the checkpoint first (the state to continue from), then the results files;
* on resume: config.json, the checkpoint when it is missing (a kill between config.json and the
  first checkpoint), and every results file are rewritten from the checkpoint *before* anything
  else happens, also when the run is already complete.

So every prefix of these writes either resumes to the same end as an uninterrupted run or, before
config.json exists, restarts cleanly; results files a kill left one round behind are made whole on
the next ``--resume``. The directory itself is owned by one process (``inas_plugins.rundir``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch
from baal.active.dataset import ActiveLearningDataset
from torch import nn
from torch.utils.data import Subset

from .active_round import Parent, pick, round_seed, search_and_train
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import RunConfig, identity_differences
from .data import LoadedDataset
from .error_text import first_line
from .heuristics import QueryHeuristic, create_heuristic
from .models import build_inas_resnet, count_parameters
from .records import RoundRecord
from .results import atomic_write_json, write_results
from .run_files import CHECKPOINT_NAME, CONFIG_NAME
from .space import Arch
from .training import Trainer
from .training.sources import InputFormat, TensorSource

if TYPE_CHECKING:
    from .parallel import CandidatePool
    from .tracking.tracker import Tracker


class InMemoryActiveDataset(ActiveLearningDataset):
    """baal's ActiveLearningDataset over immutable in-memory tensors.

    baal deep-copies the whole dataset on every ``pool`` access so it can switch off augmentation on
    the copy; our images carry no transforms, so the pool is a plain index view.
    """

    @property
    def pool(self) -> Subset:
        return Subset(self._dataset, self.pool_indices().tolist())

    def _warn_if_pool_stochastic(self) -> None:  # tensors are deterministic: nothing to check
        return None

    def labelled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_map > 0)

    def pool_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_map == 0)


def next_query_size(config: RunConfig, labelled: int, pool: int) -> int:
    """The schedule's batch for this labelled size, clipped to the budget and the pool."""
    return max(0, min(config.batch_size_at(labelled), config.budget - labelled, pool))


def select_from_pool(
    heuristic: QueryHeuristic,
    model: nn.Module,
    train_data: TensorSource,
    al_dataset: InMemoryActiveDataset,
    n: int,
    config: RunConfig,
    rng: np.random.Generator,
    progress: bool,
) -> np.ndarray:
    """Pool positions (baal's pool-relative indices) of the ``n`` points to label next
    (:func:`~inas_plugins.active_round.pick` on the pool and the labelled set)."""
    pool = train_data.subset(torch.from_numpy(al_dataset.pool_indices()))
    labelled = train_data.subset(torch.from_numpy(al_dataset.labelled_indices()))
    return pick(model, heuristic, pool, labelled, n, config.query, rng, progress=progress).positions


@dataclass
class ActiveRun:
    """One active-learning run writing into ``run_dir``; ``run()`` executes or resumes it."""

    config: RunConfig
    dataset: LoadedDataset
    run_dir: Path
    progress: bool = True
    log: Callable[[str], None] = print
    # Trains the search's candidates as parallel Ray tasks (inas_plugins.parallel); None: one by one.
    candidate_pool: Optional["CandidatePool"] = None
    # Told (``update()``) whenever the results files were written, at start-up and after each round, to
    # mirror the directory into MLflow (inas_plugins.tracking); None: not tracked.
    tracker: Optional["Tracker"] = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        found = self.dataset.identity()
        if self.config.data_identity is None:
            self.config = dataclasses.replace(self.config, data_identity=found)
        else:
            differences = identity_differences(self.config.data_identity, found)
            if differences:
                raise ValueError(f"the data is not the run's: {'; '.join(differences)}")
            self.config = dataclasses.replace(self.config, data_identity={**self.config.data_identity,
                                                                           "path": found["path"]})
        self.space = self.config.space
        self.heuristic = create_heuristic(self.config.query.heuristic)
        self.recipe = self.config.train
        self.train_data = TensorSource(self.dataset.train.images, self.dataset.train.labels,
                                       InputFormat.uint8(self.dataset.mean, self.dataset.std))
        self.test_data = TensorSource(self.dataset.test.images, self.dataset.test.labels, self.train_data.fmt)
        # Augmentation (the recipe's) defaults to on; flips only where the dataset allows them.
        self._augment = True if self.config.augment is None else self.config.augment
        self._flips = self.dataset.flips_valid

    # --- building blocks --------------------------------------------------------------------
    def build_model(self, arch: Arch) -> nn.Module:
        return build_inas_resnet(
            arch, num_classes=self.dataset.num_classes, in_chans=self.dataset.channels,
            base_width=self.config.base_width, drop_rate=self.config.drop_rate, block=self.config.block,
        )

    def make_trainer(self, seed: int) -> Trainer:
        return Trainer(
            self.recipe, augment=self._augment,
            flips=self._flips, device=self.config.device, seed=seed, progress=self.progress,
        )

    def _new_state(self) -> Checkpoint:
        al_dataset = InMemoryActiveDataset(self.dataset.train, random_state=self.config.seed)
        al_dataset.label_randomly(min(self.config.initial, len(self.dataset.train)))
        start = self.config.fixed_arch or self.space.check(Arch.parse(self.config.start_arch))
        return Checkpoint(next_round=0, labelled_map=al_dataset.labelled_map.copy(), arch=start.as_list(),
                          rounds=[], model_state=None)

    def start_state(self, resume: bool = False) -> Checkpoint:
        """The state the run starts from: a new one, or (``resume``) the checkpoint checked against
        this configuration and data. A directory whose run was killed before its first checkpoint
        resumes from the new state, which is the same (seeded). One-line ValueError when the
        checkpoint does not belong to this run."""
        if not resume or not (self.run_dir / CHECKPOINT_NAME).exists():
            return self._new_state()
        state = load_checkpoint(self.run_dir)
        self._check_state(state)
        return state

    def _check_state(self, state: Checkpoint) -> None:
        where = f"checkpoint {self.run_dir / CHECKPOINT_NAME}"
        pool = len(self.dataset.train)
        if len(state.labelled_map) != pool:
            raise ValueError(f"{where} labels a pool of {len(state.labelled_map)} images, but the data has {pool}")
        if (state.labelled_map < 0).any():
            raise ValueError(f"{where} is malformed: negative entries in its labelled map")
        labelled = int((state.labelled_map > 0).sum())
        expected = min(self.config.initial, pool) + sum(int(row.get("queried") or 0) for row in state.rounds)
        if labelled != expected:
            raise ValueError(f"{where} holds {labelled} labels, but its configuration and rounds account for {expected}")
        try:
            arch = self.space.check(Arch(*state.arch))
            if self.config.fixed_arch is not None and arch != self.config.fixed_arch:
                raise ValueError(f"architecture {arch} is not the run's fixed --arch {self.config.fixed_arch}")
        except ValueError as error:
            raise ValueError(f"{where} does not fit the run's configuration: {error}") from None
        if state.model_state is not None:
            model = self.build_model(arch)
            try:
                model.load_state_dict(state.model_state)
            except RuntimeError as error:
                raise ValueError(f"{where} holds weights that do not fit {arch}: {first_line(error)}") from None
            self._parent = (arch, model)

    # --- the loop ---------------------------------------------------------------------------
    def run(self, resume: bool = False, state: Optional[Checkpoint] = None) -> list[dict]:
        """Execute the run, or continue it (``resume``) from ``state`` (default: :meth:`start_state`)."""
        if state is None:
            state = self.start_state(resume)
        config = self.config.to_dict()
        if resume:
            atomic_write_json(self.run_dir / CONFIG_NAME, config)  # a moved --data-dir, a new device
            if not (self.run_dir / CHECKPOINT_NAME).exists():
                save_checkpoint(self.run_dir, state)
            write_results(self.run_dir, config, state.rounds, status="complete" if state.finished else "running")
        else:
            atomic_write_json(self.run_dir / CONFIG_NAME, config)
            save_checkpoint(self.run_dir, state)
            write_results(self.run_dir, config, [], status="running")
        if self.tracker is not None:
            self.tracker.update()
        if state.finished:
            self.log(f"run in {self.run_dir} is already complete ({len(state.rounds)} rounds)")
            return state.rounds
        al_dataset = InMemoryActiveDataset(self.dataset.train, labelled=state.labelled_map.copy(),
                                           random_state=self.config.seed)
        arch = Arch(*state.arch)
        parent = None
        if state.model_state is not None:
            cached = getattr(self, "_parent", None)
            if cached is not None and cached[0] == arch:
                parent = cached[1]
            else:
                parent = self.build_model(arch)
                parent.load_state_dict(state.model_state)
            self._parent = None
        rounds = list(state.rounds)
        round_index = state.next_round
        while True:
            record, model = self._run_round(round_index, al_dataset, arch, parent)
            arch, parent = record.arch, model
            labelled, pool = len(al_dataset.labelled_indices()), len(al_dataset.pool_indices())
            n = next_query_size(self.config, labelled, pool)
            if n > 0:
                started = time.perf_counter()
                rng = np.random.default_rng(round_seed(self.config.seed, round_index) + 1)
                picks = select_from_pool(self.heuristic, model, self.train_data, al_dataset,
                                         n, self.config, rng, self.progress)
                al_dataset.label(picks.tolist())
                record.query_seconds = time.perf_counter() - started
                record.queried = n
            rounds.append(record.to_dict())
            self.log(_summary(record))
            finished = n == 0
            state = Checkpoint(next_round=round_index + 1, labelled_map=al_dataset.labelled_map.copy(),
                               arch=arch.as_list(), rounds=rounds, finished=finished,
                               model_state={k: v.detach().cpu() for k, v in model.state_dict().items()})
            save_checkpoint(self.run_dir, state)
            write_results(self.run_dir, config, rounds, status="complete" if finished else "running")
            if self.tracker is not None:
                self.tracker.update()
            if finished:
                return rounds
            round_index += 1

    def _run_round(self, round_index: int, al_dataset: InMemoryActiveDataset, arch: Arch,
                   parent: Optional[nn.Module]) -> tuple[RoundRecord, nn.Module]:
        seed = round_seed(self.config.seed, round_index)
        torch.manual_seed(seed)  # the final network is built from the global RNG, seeded per round
        trainer = self.make_trainer(seed)
        labelled = al_dataset.labelled_indices()
        # baal's labelled_map holds the step each sample was labelled at: the parent (last round's
        # model) was trained on every step before the latest query, so V' comes from that query.
        seen = torch.from_numpy(al_dataset.labelled_map[labelled] < al_dataset.current_al_step)
        trained = search_and_train(
            self.train_data.subset(torch.from_numpy(labelled)), arch, trainer, space=self.space,
            search=self.config.search if self.config.uses_search else None, build=self.build_model,
            final=self.build_model, seed=seed, parent=Parent(parent, seen) if parent is not None else None,
            candidate_pool=self.candidate_pool, progress=self.progress, desc=f"round {round_index} train")
        record = RoundRecord(round=round_index, labelled=int(len(labelled)), arch=trained.arch,
                             params=count_parameters(trained.model), depth=self.space.depth(trained.arch),
                             test_accuracy=float(trainer.evaluate(trained.model, self.test_data)),
                             candidates=trained.candidates, search_seconds=trained.search_seconds,
                             train_seconds=trained.stats.seconds)
        return record, trained.model


def _summary(record: RoundRecord) -> str:
    return (f"round {record.round:>2}  labelled {record.labelled:>6}  arch {str(record.arch):>5} "
            f"({record.params:,} params)  test acc {record.test_accuracy:.4f}  "
            f"search {record.search_seconds:.1f}s  train {record.train_seconds:.1f}s  "
            f"query {record.query_seconds:.1f}s")
