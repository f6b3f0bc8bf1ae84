"""Training engine: the recipe, batched tensor augmentation, the SGD trainer and weight inheritance."""

from .augment import AugmentParams, BatchAugment
from .inherit import InheritReport, inherit_weights
from .recipe import TrainRecipe
from .trainer import Trainer, TrainingRun, TrainStats, resolve_device

__all__ = [
    "AugmentParams",
    "BatchAugment",
    "InheritReport",
    "TrainRecipe",
    "Trainer",
    "TrainingRun",
    "TrainStats",
    "inherit_weights",
    "resolve_device",
]
