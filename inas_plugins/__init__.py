"""inas-plugins: active learning with an incremental architecture search (active-iNAS) on baal."""

from .space import Arch, SearchSpace, deepen, widen
from .models import INASResNet, build_inas_resnet, count_parameters, timm_name

__version__ = "0.1.0"

__all__ = ["Arch", "SearchSpace", "deepen", "widen", "INASResNet", "build_inas_resnet", "count_parameters", "timm_name"]
