"""baal's ``TrainingArgs`` in our terms: the training recipe of one active step, and baal's own checks.

The wrapper's recipe handling is all here (:func:`check_recipe`, :func:`recipe_from_args`), so a new
way to name a recipe changes this module only.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Optional

import torch
from baal.modelwrapper import TrainingArgs
from torch import nn

from .training import TrainRecipe


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
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)
