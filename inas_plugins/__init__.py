"""inas-plugins: active learning with an incremental architecture search (active-iNAS) on baal.

Importing the package registers the A(B, i, j) networks with timm. The training, search and baal
pieces load on first use, so light commands (``inas space``) do not pay for importing baal.
"""

from importlib import import_module
from typing import Any

from .space import Arch, SearchSpace, deepen, widen
from .models import INASResNet, build_inas_resnet, count_parameters, timm_name

__version__ = "0.1.0"

_LAZY = {
    "Trainer": "training",
    "TrainRecipe": "training",
    "inas_search": "search",
    "INASModelWrapper": "wrapper",
}

__all__ = ["Arch", "SearchSpace", "deepen", "widen", "INASResNet", "build_inas_resnet", "count_parameters",
           "timm_name", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
