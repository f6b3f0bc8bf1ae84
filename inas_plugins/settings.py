"""The settings of the search and of the query, each one validated dataclass.

:class:`~inas_plugins.training.TrainRecipe` holds the training knobs, :class:`SearchOptions` the
iNAS search's, :class:`QueryOptions` the query's. The command line (``RunConfig``), the active loop,
``inas_search`` and ``INASModelWrapper`` all take these same objects, so a setting has one name,
one default and one range check wherever it is used. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional, TypeVar

T = TypeVar("T")

# How a candidate is trained for ``premature_fraction`` of the schedule (see inas_plugins.search):
# the whole recipe compressed into the short run, or the paper's early stop of the full run's schedule.
PREMATURE_SCHEDULES = ("compressed", "early_stop")

# The paper's MC-dropout (section 5.1): K = 100 samples of the head at dropout rate 0.5. QueryOptions'
# defaults, and those of every inference function that takes K and the rate (inas_plugins.inference).
DEFAULT_MC_SAMPLES = 100
DEFAULT_MC_DROPOUT_RATE = 0.5


class SettingError(ValueError):
    """Bad input whose one-line message names the settings it is about.

    The library names a setting by its field (``initial``, ``mc_samples``) or its path in a run's
    configuration (``query.mc_samples``); ``settings`` lists the names the message uses, each only as
    that setting, so a front end can name them its own way: the command line by its flags
    (``--mc-samples``), through the one table of them (``inas_plugins.config.RUN_FLAGS``).
    """

    def __init__(self, message: str, *settings: str) -> None:
        super().__init__(message)
        self.settings: tuple[str, ...] = settings


def setting_path(owner: str, name: str) -> str:
    """``"query", "mc_samples"`` -> ``"query.mc_samples"``; no owner: the bare name."""
    return f"{owner}.{name}" if owner else name


def check_positive_int(owner: str, name: str, value: Any, error: type[SettingError] = SettingError) -> int:
    """``value`` as an int if it is an integer >= 1 (numpy's included, bools refused), else a
    one-line ``error`` (a :class:`SettingError` or subclass) naming the setting ``owner.name``
    (``name`` alone without owner)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        path = setting_path(owner, name)
        raise error(f"{path} must be a positive integer, got {value!r}", path)
    return int(value)


def check_fraction(owner: str, name: str, value: Any, *, low_open: bool = True, high_closed: bool = False,
                   low: float = 0.0, high: float = 1.0) -> None:
    """One-line :class:`SettingError` naming ``owner.name`` unless ``value`` is a finite number in the interval."""
    path = setting_path(owner, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingError(f"{path} must be a number, got {value!r}", path)
    above = value > low if low_open else value >= low
    below = value <= high if high_closed else value < high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{']' if high_closed else ')'}"
        raise SettingError(f"{path} must be in {interval}, got {value!r}", path)


def settings_from_dict(cls: type[T], data: Any, what: str) -> T:
    """Build dataclass ``cls`` from a dict, refusing non-dicts and unknown keys with one line."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a mapping of settings, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; valid keys are {known}")
    return cls(**data)


@dataclass(frozen=True)
class SearchOptions:
    """How iNAS (paper Algorithm 1) searches in one active round.

    ``iterations``: the paper's T_iNAS, the most times the current architecture may grow per round
    (the search also stops when it does not change). ``val_fraction``: the share of the labelled set
    held out as V' to score candidates. ``premature_fraction``: the share of the training schedule a
    candidate is trained for (premature evaluation; the paper uses 1/4). ``premature_schedule``: how
    that short run is scheduled, ``"compressed"`` (the whole recipe, lr milestones included, squeezed
    into it; the default, which the cpu and quick presets were tuned with) or ``"early_stop"`` (the
    full run's schedule stopped early, the paper's and the ``paper`` preset's). ``inherit_weights`` and
    ``successive_halving`` are opt-in savings, see :mod:`inas_plugins.search`.
    """

    iterations: int = 1
    val_fraction: float = 0.2
    premature_fraction: float = 0.25
    premature_schedule: str = "compressed"
    inherit_weights: bool = False
    successive_halving: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "iterations", check_positive_int("search", "iterations", self.iterations))
        check_fraction("search", "val_fraction", self.val_fraction)
        check_fraction("search", "premature_fraction", self.premature_fraction, high_closed=True)
        if self.premature_schedule not in PREMATURE_SCHEDULES:
            raise SettingError(f"search.premature_schedule must be one of {', '.join(PREMATURE_SCHEDULES)}, "
                               f"got {self.premature_schedule!r}", "search.premature_schedule")
        for name in ("inherit_weights", "successive_halving"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"search.{name} must be true or false, got {getattr(self, name)!r}", f"search.{name}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "SearchOptions":
        return settings_from_dict(cls, data, "search")


@dataclass(frozen=True)
class QueryOptions:
    """How the pool is ranked each round.

    ``mc_samples`` (K) and ``mc_dropout_rate`` define MC-dropout everywhere in the toolkit: K
    samples of the classifier head with dropout at this rate applied to the penultimate features,
    whatever rate the network was trained with (the paper: K = 100, rate 0.5, dropout only at
    inference). ``pool_subset`` ranks only a random subset of the pool (speed on huge pools).
    """

    heuristic: str = "softmax_response"
    mc_samples: int = DEFAULT_MC_SAMPLES
    mc_dropout_rate: float = DEFAULT_MC_DROPOUT_RATE
    pool_subset: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.heuristic, str) or not self.heuristic:
            raise SettingError(f"query.heuristic must be a heuristic name, got {self.heuristic!r}", "query.heuristic")
        object.__setattr__(self, "mc_samples", check_positive_int("query", "mc_samples", self.mc_samples))
        check_fraction("query", "mc_dropout_rate", self.mc_dropout_rate, low_open=False)
        if self.pool_subset is not None:
            object.__setattr__(self, "pool_subset", check_positive_int("query", "pool_subset", self.pool_subset))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "QueryOptions":
        return settings_from_dict(cls, data, "query")
