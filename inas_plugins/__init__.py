"""inas-plugins: active learning with an incremental architecture search (active-iNAS) on baal."""

from .space import Arch, SearchSpace, deepen, widen
from .models import INASResNet, build_inas_resnet, count_parameters, timm_name
from .training import Trainer, TrainRecipe
from .search import inas_search
from .wrapper import INASModelWrapper

__version__ = "0.1.0"

__all__ = ["Arch", "SearchSpace", "deepen", "widen", "INASResNet", "build_inas_resnet", "count_parameters", "timm_name",
           "Trainer", "TrainRecipe", "inas_search", "INASModelWrapper"]
