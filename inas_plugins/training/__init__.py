"""Training engine: the recipe, batched tensor augmentation, the SGD trainer and weight inheritance.

The names load on first use (PEP 562), so importing :mod:`.recipe` -- a plain dataclass the run
configuration needs -- does not import torch.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "AugmentParams": "augment", "BatchAugment": "augment",
    "InheritReport": "inherit", "inherit_weights": "inherit",
    "TrainRecipe": "recipe",
    "Trainer": "trainer", "TrainingRun": "trainer", "TrainStats": "trainer", "resolve_device": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
