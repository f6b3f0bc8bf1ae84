"""The training recipe: every knob of one SGD run, as a plain dataclass saved with the results.

Defaults are the paper's (section 5.1): SGD with momentum 0.9, learning rate 0.1 multiplied by 0.1
at 50% and 75% of training, weight decay 5e-4, batch 128, 200 epochs of 50,000 samples each. The
epoch size is fixed whatever the size of the labelled set, which is oversampled to reach it, so a
round with 1,000 labels costs as much SGD as a round with 20,000.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields


@dataclass
class TrainRecipe:
    """One training run. ``lr_milestones`` are fractions of the run, so a shortened run keeps its shape."""

    epochs: int = 200
    epoch_size: int = 50_000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        for name in ("epochs", "epoch_size", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"recipe {name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"recipe lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"recipe momentum must be in [0, 1), got {self.momentum!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"recipe weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"recipe lr_gamma must be in (0, 1], got {self.lr_gamma!r}")
        milestones = self.lr_milestones
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(set(milestones)):
            raise ValueError(
                f"recipe lr_milestones must be increasing fractions of training in (0, 1), got {milestones!r}"
            )

    # -- derived quantities -------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch; the last batch of an epoch may be smaller."""
        return len(batch_bounds(self.epoch_size, self.batch_size))

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def milestone_steps(self) -> list[int]:
        """The first optimizer step (0-based) at which each lr decay is in force.

        With the paper's recipe (200 epochs, milestones 0.5/0.75) these are the first steps of
        epochs 100 and 150, i.e. exactly the paper's epoch milestones.
        """
        return [round(fraction * self.total_steps) for fraction in self.lr_milestones]

    def lr_at(self, step: int) -> float:
        """Learning rate used for optimizer step ``step`` (0-based): lr * gamma ** (milestones passed)."""
        passed = sum(step >= milestone for milestone in self.milestone_steps())
        return self.lr * self.lr_gamma**passed

    # -- variants and persistence ---------------------------------------------------------------

    def scaled(self, fraction: float) -> "TrainRecipe":
        """Premature evaluation: the same recipe over ``epochs * fraction`` epochs (at least 1).

        The milestones stay fractions, so the short run is the full schedule compressed.
        """
        if not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"a recipe can only be scaled by a positive fraction, got {fraction!r}")
        return TrainRecipe.from_dict({**self.to_dict(), "epochs": max(1, round(self.epochs * fraction))})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainRecipe":
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys {unknown}; valid keys are {sorted(known)}")
        values = dict(data)
        if "lr_milestones" in values:
            values["lr_milestones"] = tuple(values["lr_milestones"])
        return cls(**values)


def batch_bounds(epoch_size: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch in an epoch of ``epoch_size`` samples.

    A trailing batch of a single sample is merged into the one before it: batch norm cannot
    normalise one sample whose features are 1x1, which the deepest stacks produce on small images.
    """
    bounds = [(start, min(start + batch_size, epoch_size)) for start in range(0, epoch_size, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], epoch_size)]
    return bounds
