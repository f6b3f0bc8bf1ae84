"""What a baal script hands ``INASModelWrapper(model, args, ...)``, in our terms: the network family
its model defines, the training recipe its ``TrainingArgs`` ask for, and baal's own argument checks.

What is honoured from baal's ``TrainingArgs``: ``batch_size`` (training, prediction and reading the
dataset), ``epoch`` (epochs of the final training; the search trains candidates for
``premature_fraction`` of them), ``optimizer`` (lr, momentum and weight decay of an SGD optimizer; the
optimizer object itself is bound to one network and cannot follow a changing architecture),
``use_cuda``, ``workers``, ``collate_fn`` and ``criterion`` (for the test loss). Training always
minimises cross-entropy with SGD; ``regularizer`` and ``replicate_in_memory`` do not apply.

The wrapper's recipe handling is all here (:func:`check_recipe`, :func:`recipe_from_args`), so a new
way to name a recipe changes this module only.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, Callable, Optional

import torch
from baal.modelwrapper import TrainingArgs
from torch import nn

from .models import INASResNet, build_inas_resnet
from .settings import QueryOptions, SearchOptions, check_positive_int
from .space import Arch, SearchSpace
from .training import TrainRecipe
from .training.trainer import derive_seed

ModelFactory = Callable[[Arch], nn.Module]


def resolve_model(model: INASResNet | ModelFactory, space: Optional[SearchSpace], start: Optional[Arch],
                  seed: int) -> tuple[SearchSpace, ModelFactory, Arch, nn.Module]:
    """The search space, the factory of the family's networks, the start and its network.

    An :class:`INASResNet` defines the family by its classes, channels, width, dropout and block type
    and is the start; a factory starts from ``start`` (default: the space's smallest architecture).
    """
    if isinstance(model, INASResNet):
        space = space or SearchSpace(block=model.block)
        if space.block != model.block:
            raise ValueError(f"the model has {model.block!r} blocks but the search space uses {space.block!r}")
        if start is not None and start != model.arch:
            raise ValueError(f"start={start} contradicts the model's architecture {model.arch}; pass one or the other")
        factory = partial(build_inas_resnet, num_classes=model.num_classes, in_chans=model.in_chans,
                          base_width=model.base_width, drop_rate=model.drop_rate, block=model.block)
        return space, factory, space.check(model.arch), model
    if isinstance(model, nn.Module) or not callable(model):
        raise ValueError(f"model must be an INASResNet (the start of the search) or a factory "
                         f"Callable[[Arch], nn.Module]; got {type(model).__name__}")
    space = space or SearchSpace()
    arch = space.check(start or space.smallest)
    return space, model, arch, build_seeded(model, arch, derive_seed(seed, 0))


def build_seeded(factory: ModelFactory, arch: Arch, seed: int) -> nn.Module:
    """A freshly initialised ``arch`` whose weights depend only on ``seed``, not on the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(arch)


def check_options(search: Any, query: Any) -> tuple[Optional[SearchOptions], QueryOptions]:
    """The search settings (None: a fixed architecture) and the query's, from the wrapper's arguments."""
    if not isinstance(search, (SearchOptions, bool)):
        raise ValueError(f"search must be SearchOptions(...), True (the defaults) or False (a fixed "
                         f"architecture), got {type(search).__name__}")
    if query is not None and not isinstance(query, QueryOptions):
        raise ValueError(f"query must be QueryOptions(...), got {type(query).__name__}")
    return (SearchOptions() if search is True else search) or None, query or QueryOptions()


def check_recipe(recipe: Any) -> Optional[TrainRecipe]:
    """The wrapper's ``recipe`` argument: None (train as baal's ``ModelWrapper`` does) or a TrainRecipe."""
    if recipe is not None and not isinstance(recipe, TrainRecipe):
        raise ValueError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
    return recipe


def sgd_hyperparameters(optimizer: Optional[torch.optim.Optimizer]) -> dict:
    """lr, momentum and weight decay of a baal user's SGD optimizer; nothing from other optimizers."""
    if not isinstance(optimizer, torch.optim.SGD):
        return {}
    group = optimizer.param_groups[0]
    return {"lr": float(group["lr"]), "momentum": float(group.get("momentum", 0.0)),
            "weight_decay": float(group.get("weight_decay", 0.0))}


def recipe_from_args(args: TrainingArgs, recipe: Optional[TrainRecipe], dataset_size: int) -> TrainRecipe:
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
    values.update(sgd_hyperparameters(args.optimizer))
    return TrainRecipe.from_dict(values)


def warn_about_ignored_args(args: TrainingArgs) -> None:
    """One warning for each TrainingArgs field the wrapper cannot honour."""
    if args.regularizer is not None:
        warnings.warn("TrainingArgs.regularizer is not used by INASModelWrapper", UserWarning, stacklevel=3)
    if args.criterion is not None and not isinstance(args.criterion, nn.CrossEntropyLoss):
        warnings.warn("INASModelWrapper trains with cross-entropy; TrainingArgs.criterion is used for the "
                      "test loss only", UserWarning, stacklevel=3)
    if args.optimizer is not None and not isinstance(args.optimizer, torch.optim.SGD):
        warnings.warn(f"INASModelWrapper trains every network with SGD; the {type(args.optimizer).__name__} in "
                      "TrainingArgs.optimizer is ignored (set lr etc. with recipe=TrainRecipe(...))", UserWarning,
                      stacklevel=3)


def check_iterations(iterations: Any) -> int:
    """``iterations`` as an int: any positive integer, numpy's included (baal accepts them too)."""
    return check_positive_int("", "iterations", iterations)
