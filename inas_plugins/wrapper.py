"""``INASModelWrapper``: baal's ``ModelWrapper`` with the iNAS search inside ``train_on_dataset``.

A baal script trains with ``wrapper.train_on_dataset(al_dataset)`` and queries through
``wrapper.predict_on_dataset(pool, iterations)``. This wrapper keeps those calls, their return
shapes and devices; each ``train_on_dataset`` runs iNAS (paper Algorithm 1) from the current
architecture on the dataset it is given, then trains the chosen network on all of it, so the
architecture can grow at every active step. Prediction always uses the current network.

The round is :mod:`inas_plugins.active_round`'s, as for ``inas run`` and ``inas label``; this module
adapts it to baal's calls. Data is streamed as baal streams it: the user's ``Dataset`` is read
through a ``DataLoader`` on every epoch of the final training and of every candidate's premature
training, so per-sample random transforms are drawn anew each epoch and memory is bounded by the
batch size; where it is only scored it is read without random augmentation when the dataset says
how (:mod:`inas_plugins.baal_data`). The model and ``TrainingArgs`` are read in
:mod:`inas_plugins.baal_args`; registered heuristics query through :mod:`inas_plugins.baal_query`.

Progress follows the command line's rule (:mod:`inas_plugins.progress`): bars on a terminal, one line
per ``train_on_dataset`` step on stderr anywhere else. Inputs: float images are taken as already
normalised by the dataset's transforms; uint8 images are normalised with the per-channel statistics
of the training set (see :class:`InputFormat`).
``predict_on_dataset(..., iterations=K)`` with ``K > 1`` is MC-dropout as defined in
:mod:`inas_plugins.inference`: the trunk runs once per batch and the classifier is sampled K times
with dropout at ``query.mc_dropout_rate`` (0.5 by default), whatever rate the network trained with.
"""

from __future__ import annotations

import logging
import sys
import uuid
import weakref
from copy import deepcopy
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from baal.modelwrapper import ModelWrapper, TrainingArgs
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .active_round import Parent, TrainedRound, search_and_train
from .baal_args import (ModelFactory, build_seeded, check_iterations, check_options, check_recipe, recipe_from_args,
                        resolve_model, warn_about_ignored_args)
from .baal_data import evaluation_view, fit_input_format, labelled_oracle_indices, seen_before, untrained_format
from .baal_query import BaalQuery, PoolRecorder
from .device import memory_format, resolve_device
from .inference import MaskSampler, batch_outputs, iterate_outputs, run_model
from .models import INASResNet
from .progress import draw_bars
from .settings import QueryOptions, SearchOptions
from .space import Arch, SearchSpace
from .training import TrainRecipe, Trainer
from .training.sources import InputFormat, LoaderSource
from .training.trainer import derive_seed

logger = logging.getLogger(__name__)

# Keys of INASModelWrapper.state_dict(); load_state_dict refuses anything without them.
STATE_KEYS = frozenset({"arch", "model", "input", "search_history", "rounds", "run_id"})


class INASModelWrapper(ModelWrapper):
    """A drop-in for baal's ``ModelWrapper`` whose network is chosen by iNAS at every training call.

    ``model`` is either the starting network, an :class:`INASResNet` (its architecture, classes,
    channels, width, dropout and block type define the family the search builds), or a factory
    ``Callable[[Arch], nn.Module]`` together with ``start``. ``search`` takes the search settings
    (:class:`SearchOptions`; ``True`` for the defaults) or ``False`` to keep the architecture fixed
    (the paper's fixed-architecture baselines). ``query`` sets MC-dropout's rate
    (``query.mc_dropout_rate``) for ``predict_on_dataset(..., iterations=K)``. ``recipe`` replaces
    baal's one-pass epochs by fixed-size, oversampled ones. ``augment=True`` adds the trainer's
    batched flips, shifts and rotations per batch (off by default: your dataset usually augments).
    ``progress=False`` is silent. ``search_history`` holds one record per search:
    ``{"round", "labelled", **SearchResult.to_dict()}``.

    ``wrapper.model`` is replaced by every ``train_on_dataset`` call; read it after training.
    """

    def __init__(
        self,
        model: INASResNet | ModelFactory,
        args: TrainingArgs,
        *,
        space: SearchSpace | None = None,
        start: Arch | None = None,
        search: SearchOptions | bool = True,
        query: QueryOptions | None = None,
        recipe: TrainRecipe | None = None,
        augment: bool = False,
        flips: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.search_options, self.query = check_options(search, query)
        self.recipe = check_recipe(recipe)
        self.seed = int(seed)
        self.space, self.model_factory, self._arch, network = resolve_model(model, space, start, self.seed)
        super().__init__(network, args)
        self.device = resolve_device("cuda" if args.use_cuda else "cpu")
        self.augment = augment
        self.flips = flips
        self.progress = progress
        self.search_history: list[dict] = []
        self.rounds = 0  # train_on_dataset calls so far
        self._input: InputFormat | None = None
        self._labelled: LoaderSource | None = None  # the last training set, for labelled embeddings
        self._trained_on: np.ndarray | None = None  # its oracle indices, when it was a baal ActiveLearningDataset
        self._recorders: weakref.WeakSet[PoolRecorder] = weakref.WeakSet()  # of the BaalQuery objects alive
        self._predictions = 0  # seeds the MC masks of successive predictions
        self._run_id = uuid.uuid4().hex
        warn_about_ignored_args(args)

    @property
    def arch(self) -> Arch:
        """The architecture of the current network."""
        return self._arch

    @property
    def search(self) -> bool:
        """Whether ``train_on_dataset`` searches the architecture (False: a fixed-architecture baseline)."""
        return self.search_options is not None

    @property
    def num_classes(self) -> Optional[int]:
        classes = getattr(self.model, "num_classes", None)
        if classes is None and hasattr(self.model, "get_classifier"):
            classes = getattr(self.model.get_classifier(), "out_features", None)
        return classes

    @property
    def _bars(self) -> bool:
        return draw_bars(self.progress)

    # -- data ------------------------------------------------------------------------------------

    def _loader_kwargs(self) -> dict:
        return {"workers": self.args.workers, "collate_fn": self.args.collate_fn}

    def _source(self, dataset: Dataset, *, with_labels: bool = True) -> LoaderSource:
        fmt = self._input or untrained_format(dataset, self.args.collate_fn)
        return LoaderSource(dataset, fmt, num_classes=self.num_classes, with_labels=with_labels,
                            **self._loader_kwargs())

    def _network_input(self, data: Tensor) -> Tensor:
        fmt = self._input or InputFormat.untrained(data)
        return fmt.prepare(data, self.device).contiguous(memory_format=memory_format(self.device))

    # -- training --------------------------------------------------------------------------------

    def train_on_dataset(self, dataset: Dataset) -> list[float]:
        """Search from the current architecture on ``dataset``, then train the winner on all of it.

        Returns the training loss after each epoch of the final training (baal's history). The
        ``train_*`` metrics are running averages over the final training's batches, as
        ``ModelWrapper`` computes them.
        """
        size = len(dataset)
        if size == 0:
            raise ValueError("cannot train on an empty labelled set; label some items first "
                             "(e.g. ActiveLearningDataset.label_randomly(100))")
        self.set_dataset_size(size)
        evaluation = evaluation_view(dataset)
        fmt = fit_input_format(evaluation, batch_size=self.args.batch_size, **self._loader_kwargs())
        source = LoaderSource(dataset, fmt, evaluation_dataset=evaluation, num_classes=self.num_classes,
                              **self._loader_kwargs())
        round_index = self.rounds
        trainer = Trainer(recipe_from_args(self.args, self.recipe, size), augment=self.augment, flips=self.flips,
                          device=self.device, seed=derive_seed(self.seed, round_index), progress=self._bars)
        self._reset_metrics("train")
        trained = search_and_train(
            source, self._arch, trainer, space=self.space, search=self.search_options, build=self.model_factory,
            final=lambda arch: build_seeded(self.model_factory, arch, derive_seed(self.seed, round_index, 2)),
            seed=derive_seed(self.seed, round_index, 1), parent=self._parent(dataset), progress=self._bars,
            on_batch=self._train_metrics_hook(), epoch_losses=True)
        if trained.search is not None:
            self.search_history.append({"round": round_index, "labelled": size, **trained.search.to_dict()})
        self._step_line(round_index, size, trained)
        self.model, self._arch, self._input = trained.model, trained.arch, fmt
        self._labelled, self._trained_on = source, labelled_oracle_indices(dataset)
        self.rounds += 1
        self.active_step(size, self.get_metrics("train"))
        return trained.losses

    def _parent(self, dataset: Dataset) -> Optional[Parent]:
        """The current network for weight inheritance. V' must be unseen by the inherited weights, and
        only a baal ActiveLearningDataset says which of its items the last network was trained on:
        with any other dataset nothing is inherited."""
        if self.search_options is None or not self.search_options.inherit_weights:
            return None
        seen = seen_before(dataset, self._trained_on)
        return Parent(self.model, seen) if seen is not None else None

    def _train_metrics_hook(self) -> Callable[[Tensor, Tensor, Tensor], None]:
        """As ModelWrapper: running metrics over every training batch, no extra pass over the data."""
        criterion = self._criterion()

        def update(logits: Tensor, target: Tensor, loss: Tensor) -> None:
            self._update_metrics(logits, target, criterion(logits, target) if self.args.criterion else loss,
                                 filter="train")
        return update

    def _step_line(self, round_index: int, size: int, trained: TrainedRound) -> None:
        """Off a terminal, one line per step on stderr instead of the bars (:mod:`inas_plugins.progress`)."""
        search = trained.search
        chosen = (f"iNAS chose {trained.arch} from {self._arch} ({len(search.candidates)} candidates, "
                  f"{search.seconds:.1f}s)" if search is not None else f"fixed {trained.arch}")
        logger.info("step %d: %s on %d samples", round_index, chosen, size)
        if self.progress and not self._bars:
            print(f"step {round_index}: {size} labelled, {chosen}, trained {trained.stats.epochs} epochs in "
                  f"{trained.stats.seconds:.1f}s, loss {trained.stats.final_loss:.4f}", file=sys.stderr, flush=True)

    def train_on_batch(self, data: Tensor, target: Tensor) -> Tensor:
        """Not available: the search and the final training need the whole labelled set at once."""
        raise ValueError("INASModelWrapper trains on whole datasets (the iNAS search splits them); "
                         "use train_on_dataset(dataset)")

    def _criterion(self) -> Callable[[Tensor, Tensor], Tensor]:
        return self.args.criterion or nn.functional.cross_entropy

    def _update_metrics_over(self, source: LoaderSource, filter: str, iterations: int = 1) -> None:
        """Feed baal's metrics batch by batch, as ModelWrapper does, so their averages match."""
        criterion = self._criterion()
        self.model.to(self.device)
        wants = {"logits"} if iterations == 1 else {"mc_logits"}
        batches = source.batches(self.device, batch_size=self.args.batch_size)
        for outputs, target in iterate_outputs(self.model, batches, wants, mc_samples=iterations,
                                               mc_dropout_rate=self.query.mc_dropout_rate, seed=self._next_seed()):
            logits = outputs["logits"] if iterations == 1 else outputs["mc_logits"].mean(-1)
            self._update_metrics(logits, target, criterion(logits, target), filter=filter)

    def test_on_dataset(self, dataset: Dataset, average_predictions: int = 1) -> float:
        """Test loss of the current network (logits averaged over ``average_predictions`` MC samples)."""
        iterations = check_iterations(average_predictions)
        self.eval()
        self._reset_metrics("test")
        if len(dataset):
            self._update_metrics_over(self._source(dataset), "test", iterations)
        metrics = self.get_metrics("test")
        self.active_step(None, metrics)
        return metrics["test_loss"]

    def train_and_test_on_datasets(self, train_dataset: Dataset, test_dataset: Dataset,
                                   return_best_weights: bool = False, patience: int | None = None,
                                   min_epoch_for_es: int = 0, skip_epochs: int = 1):
        """One search-and-train step, then one evaluation.

        baal's version calls ``train_on_dataset`` once per epoch; here one call already trains all
        ``args.epoch`` epochs (after a search), so early stopping (``patience``,
        ``min_epoch_for_es``) and ``skip_epochs`` do not apply and are ignored.
        """
        self.train_on_dataset(train_dataset)
        self.test_on_dataset(test_dataset)
        history = [self.get_metrics()]
        return (history, deepcopy(self.state_dict())) if return_best_weights else history

    # -- prediction ------------------------------------------------------------------------------

    def _next_seed(self) -> int:
        self._predictions += 1
        return derive_seed(self.seed, self.rounds, 4, self._predictions)

    def predict_on_batch(self, data: Tensor, iterations: int = 1) -> Tensor:
        """Logits ``(batch, classes, iterations)`` on the model's device; MC dropout when ``iterations > 1``."""
        iterations = check_iterations(iterations)
        model = self.model.to(self.device)
        model.eval()
        wants = frozenset({"logits"} if iterations == 1 else {"mc_logits"})
        with torch.no_grad():
            outputs = batch_outputs(model, self._network_input(data), wants, mc_samples=iterations,
                                    mc_dropout_rate=self.query.mc_dropout_rate,
                                    masks=MaskSampler(self._next_seed(), self.device))
        return outputs["logits"].unsqueeze(-1) if iterations == 1 else outputs["mc_logits"]

    def predict_on_dataset_generator(self, dataset: Dataset, iterations: int = 1, half: bool = False,
                                     verbose: bool = True) -> Iterator[np.ndarray]:
        """Yield ``[batch, classes, iterations]`` logit arrays batch by batch, like baal.

        What the heuristics made with :meth:`heuristic` need beside them (the deterministic
        probabilities, the embeddings) is recorded from the same pass, for those very predictions.
        """
        iterations = check_iterations(iterations)
        self.eval()
        self.model.to(self.device)
        recorders = list(self._recorders)
        passes = [recorder.begin() for recorder in recorders]
        batches = self._prediction_batches(dataset, iterations, half, verbose,
                                           frozenset().union(*(r.wants for r in recorders)), passes)
        for recorded in passes:
            recorded.source = weakref.ref(batches)
        return batches

    def _prediction_batches(self, dataset: Dataset, iterations: int, half: bool, verbose: bool,
                            extra: frozenset[str], passes: list) -> Iterator[np.ndarray]:
        wants = {"logits"} if iterations == 1 else {"mc_logits"}
        batches = self._source(dataset, with_labels=False).batches(self.device, batch_size=self.args.batch_size)
        outputs_iter = iterate_outputs(self.model, batches, wants | extra, mc_samples=iterations,
                                       mc_dropout_rate=self.query.mc_dropout_rate, seed=self._next_seed())
        for outputs, _ in tqdm(outputs_iter, total=-(-len(dataset) // self.args.batch_size), desc="predict",
                               disable=not (verbose and self._bars), leave=False):
            logits = outputs["logits"].unsqueeze(-1) if iterations == 1 else outputs["mc_logits"]
            predictions = (logits.half() if half else logits).cpu().numpy()
            for recorded in passes:
                recorded.add(predictions, outputs)
            yield predictions

    def predict_on_dataset(self, dataset: Dataset, iterations: int = 1, half: bool = False,
                           verbose: bool = True) -> np.ndarray:
        """Logits ``[n, classes, iterations]`` for every item of ``dataset`` (baal's heuristics softmax them)."""
        predictions = list(self.predict_on_dataset_generator(dataset, iterations, half=half, verbose=verbose))
        if not predictions:
            return np.zeros((0, self.num_classes or 0, check_iterations(iterations)),
                            dtype=np.float16 if half else np.float32)
        return np.vstack(predictions)

    # -- registered heuristics in baal's loop ----------------------------------------------------

    def heuristic(self, name: str, query_size: int, *, seed: int | None = None, **kwargs: Any) -> BaalQuery:
        """Any registered heuristic (``inas heuristics``) as a baal ``AbstractHeuristic`` bound to this
        wrapper, for baal's ``ActiveLearningLoop`` and ``ActiveLearningExperiment``."""
        return BaalQuery(name, self, query_size=query_size, seed=self.seed if seed is None else seed, **kwargs)

    def add_recorder(self, recorder: PoolRecorder) -> None:
        """Keep what ``recorder`` (a :class:`BaalQuery`'s) wants from each predict pass, while it lives."""
        self._recorders.add(recorder)

    def labelled_embeddings(self) -> Tensor:
        """Embeddings of the set the network was last trained on (baal's labelled set until the next
        query), read without random augmentation."""
        if self._labelled is None:
            raise ValueError("the labelled set's embeddings are needed (an embedding heuristic): train first")
        batches = self._labelled.evaluation().batches(self.device, batch_size=self.args.batch_size)
        return run_model(self.model.to(self.device), batches, {"embeddings"})["embeddings"]

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Architecture, weights, input format and search history; loadable with ``weights_only=True``."""
        return {
            "arch": self._arch.as_list(),
            "model": self.model.state_dict(),
            "input": self._input.to_dict() if self._input else None,
            "search_history": deepcopy(self.search_history),
            "rounds": self.rounds,
            "run_id": self._run_id,
        }

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Restore a ``state_dict()``: the architecture (rebuilt), its weights and the search state.

        One exception keeps baal's ``ActiveLearningExperiment`` working: its ``ModelWrapperAdapter``
        snapshots ``state_dict()`` once and loads it back before every training call to reset the
        weights. A state taken from this same wrapper at an earlier round is therefore treated as a
        weight reset: the architecture the search reached and the search history stay, and the
        network gets the snapshot's weights if it has the snapshot's architecture, else a fresh
        initialisation (training starts from a fresh network anyway). To roll back to an earlier
        round, load its state into a new wrapper.
        """
        missing = STATE_KEYS - set(state_dict)
        if missing:
            raise ValueError(f"not an INASModelWrapper state dict: missing {sorted(missing)}; it needs "
                             f"{sorted(STATE_KEYS)} (plain network weights go to wrapper.model.load_state_dict)")
        arch = self.space.check(Arch(*state_dict["arch"]))
        if state_dict["run_id"] == self._run_id and int(state_dict["rounds"]) < self.rounds:
            if arch == self._arch:
                self.model.load_state_dict(state_dict["model"], strict=strict)
            else:
                self.model = build_seeded(self.model_factory, self._arch, derive_seed(self.seed, self.rounds, 3))
            return
        model = build_seeded(self.model_factory, arch, derive_seed(self.seed, int(state_dict["rounds"]), 3))
        model.load_state_dict(state_dict["model"], strict=strict)
        self.model, self._arch = model, arch
        self._input = InputFormat.from_dict(state_dict["input"]) if state_dict["input"] else None
        self.search_history = deepcopy(list(state_dict["search_history"]))
        self.rounds = int(state_dict["rounds"])
