"""``INASModelWrapper``: baal's ``ModelWrapper`` with the iNAS search inside ``train_on_dataset``.

A baal script trains with ``wrapper.train_on_dataset(al_dataset)`` and queries through
``wrapper.predict_on_dataset(pool, iterations)``. This wrapper keeps those calls, their return
shapes and devices; each ``train_on_dataset`` runs iNAS (paper Algorithm 1) from the current
architecture on the dataset it is given, then trains the chosen network on all of it, so the
architecture can grow at every active step. Prediction always uses the current network.

Data is streamed as baal streams it: the user's ``Dataset`` is read through a ``DataLoader`` on every
epoch of the final training and of every candidate's premature training, so per-sample random
transforms are drawn anew each epoch and memory is bounded by the batch size. Where the data is only
scored (the search's V', the training metrics, coreset's labelled embeddings) it is read without
random augmentation when the dataset says how: baal's ``ActiveLearningDataset(...,
pool_specifics={"transform": test_transform})`` -- the same attributes baal sets on its pool -- are
set on a shallow copy of the dataset for the labelled items (see :func:`evaluation_view`).

What is honoured from baal's ``TrainingArgs``: ``batch_size`` (training, prediction and reading the
dataset), ``epoch`` (epochs of the final training; the search trains candidates for
``premature_fraction`` of them), ``optimizer`` (lr, momentum and weight decay of an SGD optimizer; the
optimizer object itself is bound to one network and cannot follow a changing architecture),
``use_cuda``, ``workers``, ``collate_fn`` and ``criterion`` (for the test loss). Training always
minimises cross-entropy with SGD; ``regularizer`` and ``replicate_in_memory`` do not apply.

Inputs: float images are taken as already normalised by the dataset's transforms; uint8 images are
normalised with the per-channel statistics of the training set (see :class:`InputFormat`).
``predict_on_dataset(..., iterations=K)`` with ``K > 1`` is MC-dropout as defined in
:mod:`inas_plugins.inference`: the trunk runs once per batch and the classifier is sampled K times
with dropout at ``query.mc_dropout_rate`` (0.5 by default), whatever rate the network trained with.
"""

from __future__ import annotations

import copy
import logging
import numbers
import uuid
import warnings
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from baal.modelwrapper import ModelWrapper, TrainingArgs
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .baal_query import BaalQuery
from .device import memory_format, resolve_device
from .heuristics.outputs import ModelOutputs, check_needs
from .inference import MaskSampler, batch_outputs, iterate_outputs, run_model
from .models import INASResNet, build_inas_resnet
from .search import inas_search
from .settings import QueryOptions, SearchOptions
from .space import Arch, SearchSpace
from .training import TrainRecipe, Trainer
from .training.sources import InputFormat, LoaderSource, split_batch
from .training.trainer import derive_seed

logger = logging.getLogger(__name__)

ModelFactory = Callable[[Arch], nn.Module]

# Keys of INASModelWrapper.state_dict(); load_state_dict refuses anything without them.
STATE_KEYS = frozenset({"arch", "model", "input", "search_history", "rounds", "run_id"})


# -- reading a baal user's dataset ----------------------------------------------------------------

def evaluation_view(dataset: Dataset) -> Dataset:
    """The items of ``dataset``, in the same order, without random augmentation where it says how.

    For baal's ``ActiveLearningDataset`` with ``pool_specifics`` (e.g. ``{"transform": test_transform}``)
    those attributes are set on a shallow copy of the underlying dataset -- baal sets them on a deep
    copy for its pool; a shallow one is enough since the attributes are replaced, not mutated, and
    copies no image data -- restricted to the labelled items. Any other dataset is returned as it is:
    it is then scored through its own transforms.
    """
    specifics = getattr(dataset, "pool_specifics", None)
    inner = getattr(dataset, "_dataset", None)
    indices = getattr(dataset, "get_indices_for_active_step", None)
    if not specifics or inner is None or not callable(indices):
        return dataset
    view = copy.copy(inner)
    for attribute, value in specifics.items():
        if not hasattr(view, attribute):
            raise ValueError(f"pool_specifics names {attribute!r}, which the dataset {type(inner).__name__} does not have")
        setattr(view, attribute, value)
    return Subset(view, list(indices()))


def _labelled_oracle_indices(dataset: Dataset) -> np.ndarray | None:
    """The oracle indices of a baal ActiveLearningDataset's labelled items, in its item order; else None."""
    labelled_map = getattr(dataset, "labelled_map", None)
    return np.flatnonzero(np.asarray(labelled_map)) if labelled_map is not None else None


def _seen_before(dataset: Dataset, trained_on: np.ndarray | None) -> torch.Tensor | None:
    """Which items of ``dataset`` the last training set held (a mask), or None when that is unknown."""
    labelled = _labelled_oracle_indices(dataset)
    if labelled is None or trained_on is None:
        return None
    return torch.from_numpy(np.isin(labelled, trained_on))


def fit_input_format(dataset: Dataset, *, batch_size: int, workers: int, collate_fn: Callable) -> InputFormat:
    """The input format of a training set: float images as they are (decided by the first batch);
    uint8 images with their channel statistics, from one streamed pass."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn)
    return InputFormat.fit(split_batch(batch)[0] for batch in loader)


# -- baal's TrainingArgs -> our recipe ---------------------------------------------------------------

def _sgd_hyperparameters(optimizer: torch.optim.Optimizer | None) -> dict:
    """lr, momentum and weight decay of a baal user's SGD optimizer; nothing from other optimizers."""
    if not isinstance(optimizer, torch.optim.SGD):
        return {}
    group = optimizer.param_groups[0]
    return {"lr": float(group["lr"]), "momentum": float(group.get("momentum", 0.0)),
            "weight_decay": float(group.get("weight_decay", 0.0))}


def recipe_from_args(args: TrainingArgs, recipe: TrainRecipe | None, dataset_size: int) -> TrainRecipe:
    """The training recipe of one active step.

    ``epoch`` and ``batch_size`` come from the TrainingArgs (``epoch=0`` falls back to the recipe's),
    SGD hyperparameters from ``args.optimizer`` when it is an SGD optimizer. Without an explicit
    ``recipe`` the network trains as baal's ``ModelWrapper`` trains it: an epoch is one pass over the
    dataset and the learning rate stays constant. With one, its ``epoch_size`` and lr schedule are kept.
    """
    values = (recipe or TrainRecipe()).to_dict()
    if recipe is None:
        values["epoch_size"] = dataset_size
        values["lr_milestones"] = []
        if args.epoch <= 0:
            raise ValueError("TrainingArgs.epoch is 0: set the epochs of each active step, e.g. "
                             "TrainingArgs(epoch=20), or pass recipe=TrainRecipe(epochs=...)")
    if args.epoch > 0:
        values["epochs"] = int(args.epoch)
    values["batch_size"] = int(args.batch_size)
    values.update(_sgd_hyperparameters(args.optimizer))
    return TrainRecipe.from_dict(values)


def check_iterations(iterations: Any) -> int:
    """``iterations`` as an int: any positive integer, numpy's included (baal accepts them too)."""
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)


@dataclass
class _PoolOutputs:
    """What the last ``predict_on_dataset`` computed beside the logits, for registered heuristics
    used through :class:`~inas_plugins.baal_query.BaalQuery` (coreset's embeddings, the
    deterministic probabilities): no second pass over the pool."""

    size: int
    probs: Optional[np.ndarray]
    embeddings: Optional[Tensor]


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
    ``search_history`` holds one record per search: ``{"round", "labelled", **SearchResult.to_dict()}``.

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
        if recipe is not None and not isinstance(recipe, TrainRecipe):
            raise ValueError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
        if not isinstance(search, (SearchOptions, bool)):
            raise ValueError(f"search must be SearchOptions(...), True (the defaults) or False (a fixed "
                             f"architecture), got {type(search).__name__}")
        if query is not None and not isinstance(query, QueryOptions):
            raise ValueError(f"query must be QueryOptions(...), got {type(query).__name__}")
        self.seed = int(seed)
        self.space, self.model_factory, arch, network = self._resolve_model(model, space, start)
        super().__init__(network, args)
        self._arch = arch
        self.device = resolve_device("cuda" if args.use_cuda else "cpu")
        self.search_options: SearchOptions | None = (SearchOptions() if search is True else search) or None
        self.query = query or QueryOptions()
        self.recipe = recipe
        self.augment = augment
        self.flips = flips
        self.progress = progress
        self.search_history: list[dict] = []
        self.rounds = 0  # train_on_dataset calls so far
        self._input: InputFormat | None = None
        self._labelled: LoaderSource | None = None  # the last training set, for labelled embeddings
        self._trained_on: np.ndarray | None = None  # its oracle indices, when it was a baal ActiveLearningDataset
        self._record: frozenset[str] = frozenset()  # extra pool outputs predict_on_dataset keeps
        self._last_pool: _PoolOutputs | None = None
        self._predictions = 0  # seeds the MC masks of successive predictions
        self._run_id = uuid.uuid4().hex
        self._warn_about_ignored_args(args)

    # -- construction --------------------------------------------------------------------------

    def _resolve_model(self, model: INASResNet | ModelFactory, space: SearchSpace | None,
                       start: Arch | None) -> tuple[SearchSpace, ModelFactory, Arch, nn.Module]:
        if isinstance(model, INASResNet):
            space = space or SearchSpace(block=model.block)
            if space.block != model.block:
                raise ValueError(f"the model has {model.block!r} blocks but the search space uses {space.block!r}")
            if start is not None and start != model.arch:
                raise ValueError(f"start={start} contradicts the model's architecture {model.arch}; "
                                 "pass one or the other")
            factory = partial(build_inas_resnet, num_classes=model.num_classes, in_chans=model.in_chans,
                              base_width=model.base_width, drop_rate=model.drop_rate, block=model.block)
            return space, factory, space.check(model.arch), model
        if isinstance(model, nn.Module) or not callable(model):
            raise ValueError(f"model must be an INASResNet (the start of the search) or a factory "
                             f"Callable[[Arch], nn.Module]; got {type(model).__name__}")
        space = space or SearchSpace()
        arch = space.check(start or space.smallest)
        return space, model, arch, self._build(model, arch, derive_seed(self.seed, 0))

    @staticmethod
    def _build(factory: ModelFactory, arch: Arch, seed: int) -> nn.Module:
        """A freshly initialised ``arch`` whose weights depend only on ``seed``, not on the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return factory(arch)

    @staticmethod
    def _warn_about_ignored_args(args: TrainingArgs) -> None:
        if args.regularizer is not None:
            warnings.warn("TrainingArgs.regularizer is not used by INASModelWrapper", UserWarning, stacklevel=3)
        if args.criterion is not None and not isinstance(args.criterion, nn.CrossEntropyLoss):
            warnings.warn("INASModelWrapper trains with cross-entropy; TrainingArgs.criterion is used for the "
                          "test loss only", UserWarning, stacklevel=3)
        if args.optimizer is not None and not isinstance(args.optimizer, torch.optim.SGD):
            warnings.warn(f"INASModelWrapper trains every network with SGD; the {type(args.optimizer).__name__} in "
                          "TrainingArgs.optimizer is ignored (set lr etc. with recipe=TrainRecipe(...))", UserWarning,
                          stacklevel=3)

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

    # -- data ------------------------------------------------------------------------------------

    def _loader_kwargs(self) -> dict:
        return {"workers": self.args.workers, "collate_fn": self.args.collate_fn}

    def _source(self, dataset: Dataset, *, with_labels: bool = True, evaluation: Dataset | None = None) -> LoaderSource:
        fmt = self._input or self._untrained_format(dataset)
        return LoaderSource(dataset, fmt, evaluation_dataset=evaluation, num_classes=self.num_classes,
                            with_labels=with_labels, **self._loader_kwargs())

    def _untrained_format(self, dataset: Dataset) -> InputFormat:
        """Before any training: the format :meth:`InputFormat.untrained` gives the first item."""
        first = next(iter(DataLoader(dataset, batch_size=1, collate_fn=self.args.collate_fn)), None)
        if first is None:
            return InputFormat.normalised()
        return InputFormat.untrained(split_batch(first, with_labels=False)[0])

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
        recipe = recipe_from_args(self.args, self.recipe, size)
        trainer = Trainer(recipe, augment=self.augment, flips=self.flips, device=self.device,
                          seed=derive_seed(self.seed, round_index), progress=self.progress)

        arch = self._arch
        if self.search_options is not None:
            # V' must be unseen by the inherited weights: only a baal ActiveLearningDataset says which of
            # its items the last model was trained on; with any other dataset nothing is inherited.
            seen = _seen_before(dataset, self._trained_on)
            result = inas_search(source, arch, self.space, trainer, self.model_factory, options=self.search_options,
                                 seed=derive_seed(self.seed, round_index, 1),
                                 parent_model=self.model if self.search_options.inherit_weights and seen is not None
                                 else None, parent_seen=seen, progress=self.progress)
            arch = result.arch
            self.search_history.append({"round": round_index, "labelled": size, **result.to_dict()})
            logger.info("round %d: iNAS chose %s from %s on %d samples", round_index, arch, self._arch, size)

        model = self._build(self.model_factory, arch, derive_seed(self.seed, round_index, 2))
        self._reset_metrics("train")
        criterion = self._criterion()

        def update_train_metrics(logits: Tensor, target: Tensor, loss: Tensor) -> None:
            # As ModelWrapper: running metrics over every training batch, no extra pass over the data.
            self._update_metrics(logits, target, criterion(logits, target) if self.args.criterion else loss,
                                 filter="train")

        run = trainer.start(model, source, desc=f"train {arch}", on_batch=update_train_metrics)
        history = [run.train_until(epoch).final_loss for epoch in range(1, recipe.epochs + 1)]
        self.model, self._arch, self._input = model, arch, fmt
        self._labelled, self._last_pool = source, None
        self._trained_on = _labelled_oracle_indices(dataset)
        self.rounds += 1
        self.active_step(size, self.get_metrics("train"))
        return history

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

        When a :class:`~inas_plugins.baal_query.BaalQuery` asked for them, the deterministic
        probabilities and the embeddings of the same pass are kept for it (no second pass).
        """
        iterations = check_iterations(iterations)
        self.eval()
        self.model.to(self.device)
        wants = {"logits"} if iterations == 1 else {"mc_logits"}
        if "probs" in self._record:
            wants.add("logits")
        if "embeddings" in self._record:
            wants.add("embeddings")
        kept: dict[str, list] = {"logits": [], "embeddings": []}
        self._last_pool = None
        source = self._source(dataset, with_labels=False)
        batches = source.batches(self.device, batch_size=self.args.batch_size)
        total = -(-len(dataset) // self.args.batch_size)
        outputs_iter = iterate_outputs(self.model, batches, wants, mc_samples=iterations,
                                       mc_dropout_rate=self.query.mc_dropout_rate, seed=self._next_seed())
        for outputs, _ in tqdm(outputs_iter, total=total, desc="predict", disable=not (verbose and self.progress),
                               leave=False):
            logits = outputs["logits"].unsqueeze(-1) if iterations == 1 else outputs["mc_logits"]
            if "probs" in self._record:
                kept["logits"].append(outputs["logits"].cpu())
            if "embeddings" in self._record:
                kept["embeddings"].append(outputs["embeddings"])
            yield (logits.half() if half else logits).cpu().numpy()
        self._last_pool = _PoolOutputs(
            size=len(dataset),
            probs=torch.softmax(torch.cat(kept["logits"]), dim=1).numpy() if kept["logits"] else None,
            embeddings=torch.cat(kept["embeddings"]) if kept["embeddings"] else None,
        )

    def predict_on_dataset(self, dataset: Dataset, iterations: int = 1, half: bool = False,
                           verbose: bool = True) -> np.ndarray:
        """Logits ``[n, classes, iterations]`` for every item of ``dataset`` (baal's heuristics softmax them)."""
        predictions = list(self.predict_on_dataset_generator(dataset, iterations, half=half, verbose=verbose))
        if not predictions:
            return np.zeros((0, self.num_classes or 0, check_iterations(iterations)),
                            dtype=np.float16 if half else np.float32)
        return np.vstack(predictions)

    # -- registered heuristics in baal's loop ----------------------------------------------------

    def record_for_query(self, needs: frozenset[str]) -> None:
        """Keep what ``needs`` asks for from each ``predict_on_dataset`` pass (see :class:`BaalQuery`)."""
        self._record = self._record | check_needs(needs)

    def query_outputs(self, predictions: np.ndarray, needs: frozenset[str], heuristic: str) -> ModelOutputs:
        """The :class:`ModelOutputs` a registered heuristic needs, for the pool baal just predicted on.

        ``predictions`` is what baal hands its heuristic (``predict_on_dataset``'s logits); the
        deterministic probabilities and pool embeddings come from the same pass, the labelled
        embeddings from the set the network was last trained on (baal's labelled set until the
        next query), read without random augmentation.
        """
        predictions = np.asarray(predictions)
        if predictions.ndim != 3:
            raise ValueError(f"heuristic {heuristic!r} expects predict_on_dataset's [n, classes, iterations] output, "
                             f"got shape {predictions.shape}")
        size = predictions.shape[0]
        outputs = ModelOutputs(n_pool=size)
        if "mc_probs" in needs:
            if predictions.shape[2] < 2:
                raise ValueError(f"heuristic {heuristic!r} needs MC-dropout samples: predict with iterations > 1, "
                                 "e.g. ActiveLearningLoop(..., iterations=20) or ActiveLearningExperiment(..., "
                                 "iterations=20)")
            outputs.mc_probs = torch.softmax(torch.from_numpy(predictions).float(), dim=1).numpy()
        recorded = self._last_pool if self._last_pool is not None and self._last_pool.size == size else None
        if "probs" in needs:
            if recorded is not None and recorded.probs is not None:
                outputs.probs = recorded.probs
            elif predictions.shape[2] == 1:
                outputs.probs = torch.softmax(torch.from_numpy(predictions[..., 0]).float(), dim=1).numpy()
            else:
                raise ValueError(f"heuristic {heuristic!r} needs the deterministic predictions of the pool; make it "
                                 "with wrapper.heuristic(...) before predicting so they are kept")
        if "embeddings" in needs:
            if recorded is None or recorded.embeddings is None:
                raise ValueError(f"heuristic {heuristic!r} needs pool embeddings from the last predict_on_dataset "
                                 "call; make it with wrapper.heuristic(...) before predicting on the pool")
            if self._labelled is None:
                raise ValueError(f"heuristic {heuristic!r} needs the labelled set's embeddings: train first")
            outputs.pool_embeddings = recorded.embeddings
            outputs.labelled_embeddings = run_model(
                self.model.to(self.device), self._labelled.evaluation().batches(self.device,
                                                                                batch_size=self.args.batch_size),
                {"embeddings"})["embeddings"]
        return outputs

    def heuristic(self, name: str, query_size: int, *, seed: int | None = None, **kwargs: Any):
        """Any registered heuristic (``inas heuristics``) as a baal ``AbstractHeuristic`` bound to this
        wrapper, for baal's ``ActiveLearningLoop`` and ``ActiveLearningExperiment``."""
        return BaalQuery(name, self, query_size=query_size, seed=self.seed if seed is None else seed, **kwargs)

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
                self.model = self._build(self.model_factory, self._arch, derive_seed(self.seed, self.rounds, 3))
            return
        model = self._build(self.model_factory, arch, derive_seed(self.seed, int(state_dict["rounds"]), 3))
        model.load_state_dict(state_dict["model"], strict=strict)
        self.model, self._arch = model, arch
        self._input = InputFormat.from_dict(state_dict["input"]) if state_dict["input"] else None
        self.search_history = deepcopy(list(state_dict["search_history"]))
        self.rounds = int(state_dict["rounds"])
