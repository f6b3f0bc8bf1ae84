"""``INASModelWrapper``: baal's ``ModelWrapper`` with the iNAS search inside ``train_on_dataset``.

A baal script trains with ``wrapper.train_on_dataset(al_dataset)`` and queries through
``wrapper.predict_on_dataset(pool, iterations)``. This wrapper keeps those calls and their return
shapes; each ``train_on_dataset`` runs iNAS (paper Algorithm 1) from the current architecture on the
dataset it is given, then trains the chosen network on all of it, so the architecture can grow at
every active step. Prediction always uses the current network, ``wrapper.model``.

What is honoured from baal's ``TrainingArgs``: ``batch_size`` (training, prediction and reading the
dataset), ``epoch`` (epochs of the final training; the search trains candidates for
``premature_fraction`` of them), ``optimizer`` (lr, momentum and weight decay of an SGD optimizer; the
optimizer object itself is bound to one network and cannot follow a changing architecture),
``use_cuda``, ``workers``, ``collate_fn`` and ``criterion`` (for the test loss). Training always
minimises cross-entropy with SGD; ``regularizer`` and ``replicate_in_memory`` do not apply.

Inputs: the dataset's items are read once per call through a DataLoader and stacked. Float images
are taken as already normalised by the dataset's transforms; uint8 images are normalised with the
statistics of the training set (see :class:`InputFormat`). Augmentation is off by default because a
baal user's transforms usually augment already; ``augment=True`` adds the trainer's batched flips,
shifts and rotations per epoch. ``predict_on_dataset(..., iterations=K)`` with ``K > 1`` samples
MC dropout in the classifier head only, computing the trunk once per batch.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np
import torch
from baal.modelwrapper import ModelWrapper, TrainingArgs
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .models import INASResNet, build_inas_resnet
from .search import inas_search
from .space import Arch, SearchSpace
from .training import TrainRecipe, Trainer
from .training.trainer import derive_seed, resolve_device

logger = logging.getLogger(__name__)

ModelFactory = Callable[[Arch], nn.Module]

# Keys of INASModelWrapper.state_dict(); load_state_dict refuses anything without them.
STATE_KEYS = frozenset({"arch", "model", "input", "search_history", "rounds", "run_id"})


# -- reading a baal user's dataset ----------------------------------------------------------------

def _first(batch: Any) -> Tensor:
    """The inputs of a collated batch: ``(x, y, ...)`` -> x; a bare tensor is the inputs itself."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def stack_dataset(dataset: Dataset, *, batch_size: int, workers: int,
                  collate_fn: Callable = torch.utils.data.default_collate) -> tuple[Tensor, Tensor]:
    """Every ``(image, label)`` of a torch Dataset as two tensors, read once through a DataLoader.

    The dataset's transforms run here, once per call: random augmentations in them are drawn once per
    active step, not once per epoch (``augment=True`` adds per-epoch augmentation on the tensors).
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on an empty dataset; label some items first "
                         "(e.g. ActiveLearningDataset.label_randomly)")
    images, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_fn):
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise ValueError("the training dataset must yield (image, label) pairs")
        images.append(batch[0])
        labels.append(torch.as_tensor(batch[1]))
    return torch.cat(images), torch.cat(labels).long()


@dataclass(frozen=True)
class InputFormat:
    """How a dataset's image tensors become network input; it is saved with the network it trained.

    ``"normalised"``: float images that the dataset's transforms already normalised (ToTensor +
    Normalize) are used as they are. ``"uint8"``: raw 0..255 images are scaled to 0..1 and normalised
    with the per-channel ``mean``/``std`` of the images the network was trained on.
    """

    kind: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @staticmethod
    def _check(images: Tensor) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4:
            got = f"shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be tensors (C, H, W) per item, i.e. (N, C, H, W) batches; got {got}")
        if not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"images must be float (already normalised) or uint8 tensors, got {images.dtype}")

    @classmethod
    def fit(cls, images: Tensor) -> "InputFormat":
        """The format of a training set: its dtype and, for uint8 images, its channel statistics."""
        cls._check(images)
        if images.is_floating_point():
            return cls("normalised")
        pixels = images.transpose(0, 1).reshape(images.shape[1], -1).float().div_(255.0)
        return cls("uint8", tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist()))

    @classmethod
    def untrained(cls, images: Tensor) -> "InputFormat":
        """Before any training: floats as they are, uint8 only scaled to 0..1."""
        cls._check(images)
        if images.is_floating_point():
            return cls("normalised")
        return cls("uint8", (0.0,) * images.shape[1], (1.0,) * images.shape[1])

    def prepare(self, images: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """Normalised float32 network input on ``device``."""
        self._check(images)
        if (self.kind == "uint8") != (images.dtype == torch.uint8):
            raise ValueError(f"the network was trained on {self.kind} images but got {images.dtype} images; "
                             "predict on data prepared the same way as the training data")
        x = images.to(device=device, dtype=torch.float32)
        if self.kind == "normalised":
            return x
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x / 255.0 - mean) / std

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "InputFormat":
        return cls(data["kind"], tuple(data["mean"]), tuple(data["std"]))


class PrenormalisedTrainer(Trainer):
    """A :class:`Trainer` for float images that are already network input (identity normalisation).

    ``Trainer`` keeps uint8 images and normalises each batch itself; what a baal user's dataset
    hands out is usually already normalised floats, and :class:`InputFormat` turns uint8 images
    into such floats too, so this trainer takes them as they are.
    """

    def __init__(self, recipe: TrainRecipe, *, channels: int, **kwargs: Any) -> None:
        super().__init__(recipe, mean=[0.0] * channels, std=[1.0] * channels, **kwargs)

    def _check_images(self, images: Tensor) -> None:
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.dim() != 4:
            got = (f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor)
                   else type(images).__name__)
            raise ValueError(f"images must be a float tensor (N, C, H, W), got {got}")
        if images.shape[1] != self.channels:
            raise ValueError(f"images have {images.shape[1]} channels but the trainer expects {self.channels}")

    def _normalise(self, batch: Tensor) -> Tensor:
        return batch.to(device=self.device, dtype=torch.float32, non_blocking=True)


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
    ``recipe`` an epoch is one pass over the dataset, as in baal; with one, its ``epoch_size`` is kept.
    """
    values = (recipe or TrainRecipe()).to_dict()
    if recipe is None:
        values["epoch_size"] = dataset_size
        if args.epoch <= 0:
            raise ValueError("TrainingArgs.epoch is 0: set the epochs of each active step, e.g. "
                             "TrainingArgs(epoch=20), or pass recipe=TrainRecipe(epochs=...)")
    if args.epoch > 0:
        values["epochs"] = int(args.epoch)
    values["batch_size"] = int(args.batch_size)
    values.update(_sgd_hyperparameters(args.optimizer))
    return TrainRecipe.from_dict(values)


# -- inference -----------------------------------------------------------------------------------

@contextmanager
def dropout_enabled(model: nn.Module) -> Iterator[None]:
    """Switch every dropout layer of an eval-mode ``model`` on (MC dropout), and back off after."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    states = [m.training for m in layers]
    for layer in layers:
        layer.train()
    try:
        yield
    finally:
        for layer, state in zip(layers, states):
            layer.train(state)


def sample_logits(model: nn.Module, x: Tensor, iterations: int) -> Tensor:
    """Logits ``(batch, classes, iterations)`` of an eval-mode ``model``, baal's layout.

    One deterministic pass when ``iterations == 1``. Otherwise MC dropout: for networks with
    ``embed``/``classify`` (an INASResNet, whose only dropout is in the head) the trunk runs once
    and only the head is sampled; other networks run ``iterations`` full passes with dropout on.
    """
    if iterations == 1:
        return model(x).unsqueeze(-1)
    with dropout_enabled(model):
        if hasattr(model, "embed") and hasattr(model, "classify"):
            embedding = model.embed(x)
            logits = model.classify(embedding.repeat(iterations, *[1] * (embedding.dim() - 1)))
            return logits.view(iterations, x.shape[0], *logits.shape[1:]).movedim(0, -1)
        return torch.stack([model(x) for _ in range(iterations)], dim=-1)


def _check_fraction(name: str, value: float, *, closed_right: bool) -> None:
    ok = 0.0 < value <= 1.0 if closed_right else 0.0 < value < 1.0
    if not ok:
        raise ValueError(f"{name} must be in (0, 1{']' if closed_right else ')'}, got {value}")


class INASModelWrapper(ModelWrapper):
    """A drop-in for baal's ``ModelWrapper`` whose network is chosen by iNAS at every training call.

    ``model`` is either the starting network, an :class:`INASResNet` (its architecture, classes,
    channels, width, dropout and block type define the family the search builds), or a factory
    ``Callable[[Arch], nn.Module]`` together with ``start``. ``search=False`` keeps the architecture
    fixed (the paper's fixed-architecture baselines). ``search_history`` holds one record per search:
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
        search: bool = True,
        recipe: TrainRecipe | None = None,
        max_iterations: int = 1,
        val_fraction: float = 0.2,
        premature_fraction: float = 0.25,
        inherit_weights: bool = False,
        successive_halving: bool = False,
        augment: bool = False,
        flips: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        _check_fraction("val_fraction", val_fraction, closed_right=False)
        _check_fraction("premature_fraction", premature_fraction, closed_right=True)
        if recipe is not None and not isinstance(recipe, TrainRecipe):
            raise ValueError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
        self.seed = int(seed)
        self.space, self.model_factory, arch, network = self._resolve_model(model, space, start)
        super().__init__(network, args)
        self._arch = arch
        self.device = resolve_device("cuda" if args.use_cuda else "cpu")
        self.search = search
        self.recipe = recipe
        self.max_iterations = max_iterations
        self.val_fraction = val_fraction
        self.premature_fraction = premature_fraction
        self.inherit_weights = inherit_weights
        self.successive_halving = successive_halving
        self.augment = augment
        self.flips = flips
        self.progress = progress
        self.search_history: list[dict] = []
        self.rounds = 0  # train_on_dataset calls so far
        self._input: InputFormat | None = None
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

    # -- data ------------------------------------------------------------------------------------

    def _loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.args.batch_size, shuffle=False, num_workers=self.args.workers,
                          collate_fn=self.args.collate_fn)

    def _network_input(self, images: Tensor) -> Tensor:
        fmt = self._input or InputFormat.untrained(images)
        x = fmt.prepare(images, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def _make_trainer(self, recipe: TrainRecipe, channels: int, seed: int) -> PrenormalisedTrainer:
        return PrenormalisedTrainer(recipe, channels=channels, augment=self.augment, flips=self.flips,
                                    device=self.device, seed=seed, progress=self.progress)

    # -- training --------------------------------------------------------------------------------

    def train_on_dataset(self, dataset: Dataset) -> list[float]:
        """Search from the current architecture on ``dataset``, then train the winner on all of it.

        Returns the training loss after each epoch of the final training (baal's history). The
        ``train_*`` metrics are measured on ``dataset`` after training, in eval mode.
        """
        size = len(dataset)
        self.set_dataset_size(size)
        raw_images, labels = stack_dataset(dataset, batch_size=self.args.batch_size, workers=self.args.workers,
                                           collate_fn=self.args.collate_fn)
        fmt = InputFormat.fit(raw_images)
        images = fmt.prepare(raw_images)
        round_index = self.rounds
        recipe = recipe_from_args(self.args, self.recipe, size)
        trainer = self._make_trainer(recipe, images.shape[1], derive_seed(self.seed, round_index))

        arch = self._arch
        if self.search:
            result = inas_search(
                images, labels, arch, self.space, trainer, self.model_factory,
                max_iterations=self.max_iterations, val_fraction=self.val_fraction,
                premature_fraction=self.premature_fraction, seed=derive_seed(self.seed, round_index, 1),
                inherit_weights=self.inherit_weights, successive_halving=self.successive_halving,
                parent_model=self.model if self.inherit_weights else None, progress=self.progress,
            )
            arch = result.arch
            self.search_history.append({"round": round_index, "labelled": size, **result.to_dict()})
            logger.info("round %d: iNAS chose %s from %s on %d samples", round_index, arch, self._arch, size)

        model = self._build(self.model_factory, arch, derive_seed(self.seed, round_index, 2))
        run = trainer.start(model, images, labels, desc=f"train {arch}")
        history = [run.train_until(epoch).final_loss for epoch in range(1, recipe.epochs + 1)]
        self.model, self._arch, self._input = model, arch, fmt
        self.rounds += 1

        self._reset_metrics("train")
        self._update_metrics_in_batches(trainer.predict_logits(model, images), labels, "train")
        self.active_step(size, self.get_metrics("train"))
        return history

    def train_on_batch(self, data: Tensor, target: Tensor) -> Tensor:
        """Not available: the search and the final training need the whole labelled set at once."""
        raise ValueError("INASModelWrapper trains on whole datasets (the iNAS search splits them); "
                         "use train_on_dataset(dataset)")

    def _criterion(self) -> Callable[[Tensor, Tensor], Tensor]:
        return self.args.criterion or nn.functional.cross_entropy

    def _update_metrics_in_batches(self, logits: Tensor, labels: Tensor, filter: str) -> None:
        """Feed baal's metrics batch by batch, as ModelWrapper does, so their averages match."""
        criterion = self._criterion()
        for start in range(0, logits.shape[0], self.args.batch_size):
            out, target = logits[start:start + self.args.batch_size], labels[start:start + self.args.batch_size]
            self._update_metrics(out, target, criterion(out, target), filter=filter)

    def test_on_dataset(self, dataset: Dataset, average_predictions: int = 1) -> float:
        """Test loss of the current network (logits averaged over ``average_predictions`` MC samples)."""
        self.eval()
        self._reset_metrics("test")
        criterion = self._criterion()
        for batch in self._loader(dataset):
            data, target = batch[0], torch.as_tensor(batch[1]).long()
            logits = self.predict_on_batch(data, iterations=average_predictions).mean(-1)
            self._update_metrics(logits, target, criterion(logits, target), filter="test")
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

    def predict_on_batch(self, data: Tensor, iterations: int = 1) -> Tensor:
        """Logits ``(batch, classes, iterations)`` on the CPU; MC dropout when ``iterations > 1``."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        model = self.model.to(self.device)
        model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            logits = sample_logits(model, self._network_input(data), iterations)
        return logits.float().cpu()

    def predict_on_dataset_generator(self, dataset: Dataset, iterations: int, half: bool = False,
                                     verbose: bool = True) -> Iterator[np.ndarray]:
        """Yield ``[batch, classes, iterations]`` logit arrays batch by batch, like baal."""
        self.eval()
        loader = self._loader(dataset)
        for batch in tqdm(loader, desc="predict", disable=not (verbose and self.progress), leave=False):
            logits = self.predict_on_batch(_first(batch), iterations)
            yield (logits.half() if half else logits).numpy()

    def predict_on_dataset(self, dataset: Dataset, iterations: int, half: bool = False,
                           verbose: bool = True) -> np.ndarray:
        """Logits ``[n, classes, iterations]`` for every item of ``dataset`` (baal's heuristics softmax them)."""
        predictions = list(self.predict_on_dataset_generator(dataset, iterations, half=half, verbose=verbose))
        if not predictions:
            classes = getattr(self.model, "num_classes", 0)
            return np.zeros((0, classes, iterations), dtype=np.float16 if half else np.float32)
        return np.vstack(predictions)

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
