"""Run configuration for active-iNAS: one flat dataclass, named presets, and validation.

A configuration is resolved as defaults <- preset <- explicit overrides, printed, and saved with
the results so every run can be reproduced from its ``config.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from .space import Arch, SearchSpace
from .training.recipe import TrainRecipe


@dataclass
class RunConfig:
    """Everything that defines one active-learning run (paper Algorithm 2 plus its training recipe)."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    heuristic: str = "softmax_response"
    arch: Optional[str] = None  # a fixed architecture such as "2x4"; None runs the iNAS search
    start_arch: str = "1x1"
    max_blocks: int = 12
    max_stacks: int = 5
    block: str = "basic"
    # Labelling protocol: k random labels, then batches from the schedule until the budget.
    initial: int = 2000
    query_schedule: list[list[int]] = field(default_factory=lambda: [[0, 2000], [10_000, 5000]])
    budget: int = 50_000
    pool_subset: Optional[int] = None  # rank only a random subset of the pool each round (speed)
    # Training recipe (paper section 5.1).
    epochs: int = 200
    epoch_size: int = 50_000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: Optional[bool] = None  # None: the dataset's own default
    base_width: int = 64
    drop_rate: float = 0.0  # dropout while training; MC-dropout applies its own rate at inference
    # iNAS (Algorithm 1).
    val_fraction: float = 0.2
    premature_fraction: float = 0.25
    search_iterations: int = 1
    inherit_weights: bool = False
    successive_halving: bool = False
    # Query functions.
    mc_samples: int = 100
    mc_dropout_rate: float = 0.5
    # Data size limits (the cpu preset shrinks CIFAR) and run control.
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    seed: int = 0
    data_seed: int = 0  # fixed across run seeds, so every seed sees the same train/test split
    device: str = "auto"
    preset: Optional[str] = None

    # --- derived values -------------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.max_blocks, self.max_stacks, self.block)

    @property
    def fixed_arch(self) -> Optional[Arch]:
        return Arch.parse(self.arch) if self.arch else None

    @property
    def search(self) -> bool:
        return self.arch is None

    def train_recipe(self) -> TrainRecipe:
        """The training recipe of the final training; candidates use ``premature_fraction`` of it."""
        return TrainRecipe(epochs=self.epochs, epoch_size=self.epoch_size, batch_size=self.batch_size, lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay)

    def batch_size_at(self, labelled: int) -> int:
        """Query batch for a labelled-set size: the last schedule step whose threshold is reached."""
        size = self.query_schedule[0][1]
        for threshold, batch in self.query_schedule:
            if labelled >= threshold:
                size = batch
        return size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)

    def validate(self) -> "RunConfig":
        """Raise ValueError with one line naming the first problem."""
        space = self.space  # validates max_blocks, max_stacks, block
        space.check(Arch.parse(self.start_arch))
        if self.fixed_arch is not None:
            space.check(self.fixed_arch)
        if self.initial < 1:
            raise ValueError(f"--initial must be at least 1, got {self.initial}")
        if self.budget < self.initial:
            raise ValueError(f"--budget ({self.budget}) is below the initial labelled set (--initial {self.initial})")
        if not self.query_schedule or any(len(step) != 2 or step[1] < 1 or step[0] < 0 for step in self.query_schedule):
            raise ValueError("the query schedule needs steps FROM:BATCH with FROM >= 0 and BATCH >= 1, e.g. 0:2000,10000:5000")
        if self.pool_subset is not None and self.pool_subset < 1:
            raise ValueError(f"--pool-subset must be positive, got {self.pool_subset}")
        self.train_recipe()  # epochs, epoch size, batch size, lr, momentum, weight decay
        for name in ("base_width", "search_iterations", "mc_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val-fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.premature_fraction <= 1.0:
            raise ValueError(f"premature-fraction must be in (0, 1], got {self.premature_fraction}")
        for name in ("drop_rate", "mc_dropout_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        return self


def parse_schedule(text: str) -> list[list[int]]:
    """``"0:2000,10000:5000"`` -> [[0, 2000], [10000, 5000]] (from-labelled : batch), sorted."""
    steps = []
    for part in text.split(","):
        pieces = part.strip().split(":")
        if len(pieces) != 2 or not all(p.strip().isdigit() for p in pieces):
            raise ValueError(f"query schedule step {part.strip()!r} is not FROM:BATCH, e.g. 0:2000,10000:5000")
        steps.append([int(pieces[0]), int(pieces[1])])
    return sorted(steps)


# Presets: partial configurations. "paper" is the paper's protocol (for a GPU); "cpu" scales it so
# one CIFAR-10 run finishes on 2 CPU cores in about 3-10 minutes: 200 -> 3,200 labels, doubling each
# round, 24 epochs of 4,000 samples per training (BENCHMARKS.md, "How the cpu preset was chosen"), and
# candidates trained for 1/8 of that instead of the paper's 1/4: half the search time and no loss of
# AUC on 3 seeds (BENCHMARKS.md, "The cost of the search"); "quick" is the offline digits default.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        initial=2000, query_schedule=[[0, 2000], [10_000, 5000]], budget=50_000,
        epochs=200, epoch_size=50_000, batch_size=128, base_width=64, limit_train=None, limit_test=None,
        mc_samples=100,
    ),
    "cpu": dict(
        initial=200, query_schedule=[[0, 200], [400, 400], [800, 800], [1600, 1600]], budget=3200,
        epochs=24, epoch_size=4000, batch_size=128, base_width=16, limit_train=10_000, limit_test=2000,
        max_blocks=4, max_stacks=4, mc_samples=50, pool_subset=None, premature_fraction=0.125,
    ),
    "quick": dict(
        initial=50, query_schedule=[[0, 50], [300, 150]], budget=600,
        epochs=20, epoch_size=2000, batch_size=64, base_width=8, limit_train=None, limit_test=None,
        max_blocks=4, max_stacks=3, mc_samples=50,
    ),
}

SMALL_DATASETS = ("digits", "synthetic")


def default_preset(dataset: str, device: str) -> str:
    """``quick`` for the bundled small sets, ``paper`` on a GPU, ``cpu`` otherwise."""
    if dataset in SMALL_DATASETS:
        return "quick"
    if device == "cuda" or (device == "auto" and _cuda_available()):
        return "paper"
    return "cpu"


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_config(overrides: dict[str, Any], preset: Optional[str] = None) -> RunConfig:
    """defaults <- preset <- explicit overrides (keys with value None are ignored)."""
    explicit = {key: value for key, value in overrides.items() if value is not None}
    dataset = explicit.get("dataset", RunConfig.dataset)
    device = explicit.get("device", RunConfig.device)
    name = preset or default_preset(dataset, device)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **explicit, "preset": name}
    # A pool schedule that starts above the initial set still needs a first step.
    config = RunConfig.from_dict(values)
    return config.validate()
