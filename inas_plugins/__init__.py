"""inas-plugins: active learning with an incremental architecture search (active-iNAS) on baal.

Importing the package registers the A(B, i, j) networks with timm -- as soon as timm is imported:
at once when it already is, else by a one-shot import hook the moment anything imports timm
(``import inas_plugins, timm; timm.create_model("inas_resnet_i2_j4")`` works in either order).
Torch, timm, the training, search and baal pieces load on first use, so light commands
(``inas --help``, ``inas space``) start in a fraction of a second.
"""

import importlib.abc
import importlib.util
import sys
from importlib import import_module
from typing import Any

from .space import Arch, SearchSpace, deepen, widen

__version__ = "0.1.0"


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Import ``inas_plugins.models`` (which registers the networks) right after timm is imported."""

    def find_spec(self, name, path=None, target=None):  # noqa: D102 - the MetaPathFinder protocol
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding us again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            import_module(".models", __name__)

        spec.loader.exec_module = exec_and_register
        return spec


if "timm" in sys.modules:
    import_module(".models", __name__)
elif not any(isinstance(finder, _RegisterWhenTimmLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())

# Loaded on first use (torch, timm and baal come with them): name -> the module that defines it.
_LAZY = {
    "INASResNet": "models",
    "build_inas_resnet": "models",
    "count_parameters": "models",
    "timm_name": "models",
    "Trainer": "training",
    "TrainRecipe": "training",
    "SearchOptions": "settings",
    "QueryOptions": "settings",
    "RunConfig": "config",
    "inas_search": "search",
    "INASModelWrapper": "wrapper",
    # The heuristics: the classes to subclass, the registry, and every registered heuristic class.
    **{name: "heuristics" for name in (
        "QueryHeuristic", "ScoreHeuristic", "ModelOutputs", "register_heuristic", "create_heuristic",
        "SoftmaxResponse", "MCDropoutVariance",
        "SoftmaxResponseQuery", "MCDropoutQuery", "CoresetQuery", "BadgeQuery", "TypiClustQuery", "ProbCoverQuery",
        "BALDQuery", "VarianceQuery", "EntropyQuery", "MarginQuery", "CertaintyQuery", "RandomQuery",
        "BatchBALDQuery", "PowerBALDQuery", "PowerEntropyQuery", "GibbsBALDQuery", "GibbsEntropyQuery",
        "RankBALDQuery", "RankEntropyQuery")},
}

__all__ = ["Arch", "SearchSpace", "deepen", "widen", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
