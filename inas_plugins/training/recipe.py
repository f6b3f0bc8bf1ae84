"""The training recipe: every knob of one SGD run, as a plain dataclass saved with the results.

Defaults are the paper's (section 5.1): SGD with momentum 0.9, learning rate 0.1 multiplied by 0.1
at 50% and 75% of training, weight decay 5e-4 on every parameter, batch 128, 200 epochs of 50,000
samples each, flips, 4-pixel shifts and 15-degree rotations. The epoch size is fixed whatever the
size of the labelled set, which is oversampled to reach it, so a round with 1,000 labels costs as
much SGD as a round with 20,000 -- unless ``epoch_size_exponent`` lets it follow the labelled size.

Named recipes (:data:`RECIPES`) are partial recipes for the settings that decide *how* a network
is trained (schedule, regularisation, augmentation, evaluation); how *much* it is trained (epochs,
epoch size, batch) belongs to the presets. ``paper`` is the paper's recipe; ``lowdata`` is tuned
for a few hundred to a few thousand labels (BENCHMARKS.md, "Training recipe").

Every value is checked here, once; each field is implemented with what torch has: the schedules
are ``torch.optim.lr_scheduler`` classes, smoothing is ``F.cross_entropy(label_smoothing=)`` and
the weight average is ``torch.optim.swa_utils.AveragedModel`` (see :mod:`.trainer`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from ..settings import SettingError, check_fraction, check_positive_int

#: Learning-rate schedules after the warmup: the paper's steps (x ``lr_gamma`` at each milestone),
#: a linear decay to zero, or a cosine decay to zero.
LR_SCHEDULES = ("step", "linear", "cosine")

#: How images are shifted: ``warp`` is the paper's (one bilinear warp with the rotation, zeros
#: -- the mean colour -- shifted in); ``reflect`` moves whole pixels over a reflected border, no
#: resampling blur (rotations, if any, are still warped).
SHIFT_MODES = ("warp", "reflect")


@dataclass
class TrainRecipe:
    """One training run. ``lr_milestones`` and ``warmup`` are fractions of the run, so a shortened
    run keeps its shape; ``shift`` and ``cutout`` are fractions of the image side, so one recipe
    fits 8x8 digits and 32x32 CIFAR alike (0.125 is 4 pixels on 32x32)."""

    epochs: int = 200
    epoch_size: int = 50_000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    eval_batch_size: int = 512
    # -- optimisation ----------------------------------------------------------------------------
    lr_schedule: str = "step"
    warmup: float = 0.0  # linear warmup from ~0 over this fraction of the run, then the schedule
    nesterov: bool = False
    decay_norms_and_biases: bool = True  # False: weight decay only on conv/linear weights
    label_smoothing: float = 0.0
    ema_decay: Optional[float] = None  # per-step decay of an exponential weight average; None: off
    # -- augmentation (when the trainer augments) ---------------------------------------------------
    shift: float = 0.125
    shift_mode: str = "warp"
    rotation: float = 15.0  # degrees, either way
    cutout: float = 0.0  # side of a zeroed square, as a fraction of the image side; 0: off
    # Batch mixing (torchvision's MixUp and CutMix, one Beta(alpha, alpha) draw per batch, soft targets):
    # the alpha of each; 0: off. With both on, each batch takes one of the two at random.
    mixup: float = 0.0
    cutmix: float = 0.0
    # Mix only while the labelled set holds at most this many images (None: at any size): mixing pays where
    # a short run shows each image hundreds of times and costs accuracy where it shows each a few dozen.
    mixing_max_labels: Optional[int] = None
    # -- evaluation ----------------------------------------------------------------------------------
    test_flips: bool = False  # average the logits of each image and its mirror (where flips are valid)
    # -- compute per round ----------------------------------------------------------------------------
    # A labelled set of n trains epoch_size * (n / epoch_size_reference) ** epoch_size_exponent samples
    # per epoch: 0 is the paper's fixed epoch; 0.5 grows it with the square root of the labelled size.
    epoch_size_exponent: float = 0.0
    epoch_size_reference: int = 1000

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(float(m) for m in self.lr_milestones)
        for name in ("epochs", "epoch_size", "batch_size", "eval_batch_size", "epoch_size_reference"):
            check_positive_int("train", name, getattr(self, name))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            raise SettingError(f"train.lr must be a positive number, got {self.lr!r}", "train.lr")
        check_fraction("train", "momentum", self.momentum, low_open=False)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise SettingError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}", "train.weight_decay")
        check_fraction("train", "lr_gamma", self.lr_gamma, high_closed=True)
        milestones = self.lr_milestones
        if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(set(milestones)):
            raise SettingError(f"train.lr_milestones must be increasing fractions of training in (0, 1), got "
                               f"{milestones!r}", "train.lr_milestones")
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("shift_mode", self.shift_mode, SHIFT_MODES)
        check_fraction("train", "warmup", self.warmup, low_open=False)  # [0, 1): a warmup shorter than the run
        for name in ("nesterov", "decay_norms_and_biases", "test_flips"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"train.{name} must be true or false, got {getattr(self, name)!r}", f"train.{name}")
        if self.nesterov and self.momentum == 0:
            raise SettingError("train.nesterov needs train.momentum > 0 (torch's SGD refuses Nesterov without momentum)",
                               "train.nesterov", "train.momentum")
        check_fraction("train", "label_smoothing", self.label_smoothing, low_open=False)
        if self.ema_decay is not None:
            check_fraction("train", "ema_decay", self.ema_decay)
        check_fraction("train", "shift", self.shift, low_open=False, high_closed=True, high=0.5)
        check_fraction("train", "rotation", self.rotation, low_open=False, high_closed=True, high=180.0)
        check_fraction("train", "cutout", self.cutout, low_open=False, high_closed=True)  # at most the whole image
        for name in ("mixup", "cutmix"):  # a Beta(alpha, alpha) parameter; above 10 every draw is ~0.5
            check_fraction("train", name, getattr(self, name), low_open=False, high_closed=True, high=10.0)
        if self.mixing_max_labels is not None:
            check_positive_int("train", "mixing_max_labels", self.mixing_max_labels)
        if isinstance(self.epoch_size_exponent, bool) or not isinstance(self.epoch_size_exponent, (int, float)) \
                or not 0.0 <= self.epoch_size_exponent <= 2.0:
            raise SettingError(f"train.epoch_size_exponent must be in [0, 2], got {self.epoch_size_exponent!r}",
                               "train.epoch_size_exponent")

    # -- derived quantities -------------------------------------------------------------------

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch; the last batch of an epoch may be smaller."""
        return len(batch_bounds(self.epoch_size, self.batch_size))

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def warmup_steps(self) -> int:
        """Optimizer steps of the linear warmup (0 without one); always fewer than the run's steps."""
        return min(self.total_steps - 1, round(self.warmup * self.total_steps))

    def milestone_steps(self) -> list[int]:
        """The first optimizer step (0-based) at which each lr decay is in force.

        With the paper's recipe (200 epochs, milestones 0.5/0.75) these are the first steps of
        epochs 100 and 150, i.e. exactly the paper's epoch milestones.
        """
        return [round(fraction * self.total_steps) for fraction in self.lr_milestones]

    def for_labels(self, labelled: int) -> "TrainRecipe":
        """The recipe a labelled set of ``labelled`` samples trains with: the epoch size scaled by
        ``(labelled / epoch_size_reference) ** epoch_size_exponent`` (unchanged at exponent 0), and
        no batch mixing above ``mixing_max_labels``. The result has no size-dependent rule left."""
        check_positive_int("train", "labelled set size", labelled)
        fitted = self
        if self.epoch_size_exponent != 0:
            factor = (labelled / self.epoch_size_reference) ** self.epoch_size_exponent
            fitted = replace(fitted, epoch_size=max(self.batch_size, round(self.epoch_size * factor)),
                             epoch_size_exponent=0.0)
        if self.mixing_max_labels is not None:
            mixes = labelled <= self.mixing_max_labels
            fitted = replace(fitted, mixup=self.mixup if mixes else 0.0, cutmix=self.cutmix if mixes else 0.0,
                             mixing_max_labels=None)
        return fitted

    # -- variants and persistence ---------------------------------------------------------------

    def scaled(self, fraction: float) -> "TrainRecipe":
        """Premature evaluation: the same recipe over ``epochs * fraction`` epochs (at least 1).

        The milestones and the warmup stay fractions, so the short run is the full schedule compressed.
        """
        if not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"a recipe can only be scaled by a positive fraction, got {fraction!r}")
        return replace(self, epochs=max(1, round(self.epochs * fraction)))

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

    @classmethod
    def named(cls, name: str, **overrides: Any) -> "TrainRecipe":
        """The named recipe (:data:`RECIPES`) with ``overrides`` on top, e.g. ``named("lowdata", epochs=30)``."""
        return cls.from_dict({**recipe_settings(name), **overrides})


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingError(f"train.{name} must be one of {', '.join(choices)}; got {value!r}", f"train.{name}")


# How a network is trained, by name. Neither sets epochs, epoch_size or batch_size: those are the
# compute a preset (or the caller) chooses. "paper" spells out the dataclass defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "step", "lr_milestones": (0.5, 0.75),
        "lr_gamma": 0.1, "warmup": 0.0, "nesterov": False, "decay_norms_and_biases": True, "label_smoothing": 0.0,
        "ema_decay": None, "shift": 0.125, "shift_mode": "warp", "rotation": 15.0, "cutout": 0.0,
        "mixup": 0.0, "cutmix": 0.0, "mixing_max_labels": None, "test_flips": False, "epoch_size_exponent": 0.0,
        "epoch_size_reference": 1000,
    },
    # Tuned on CIFAR-10 at 200-3,200 labels (benchmarks/recipe_study.py; BENCHMARKS.md, "Training recipe"):
    # the airbench-style draft of issue 21 with the three changes that each raised its accuracy
    # (lr 0.1 -> 0.4, weight decay 5e-4 -> 2e-3, label smoothing 0.2 -> 0.1), then MixUp (alpha 1) up to
    # 1,000 labels, where it raised A(1,2), A(2,4) and A(3,4) by 3.1 to 6.9 points; at 1,600 labels it cost
    # A(1,2) 2.4 and at 3,200 A(2,4) 3.0 (stages "mixing_check", "mixing_networks").
    "lowdata": {
        "lr": 0.4, "momentum": 0.9, "weight_decay": 2e-3, "lr_schedule": "linear", "lr_milestones": (),
        "lr_gamma": 0.1, "warmup": 0.1, "nesterov": True, "decay_norms_and_biases": False, "label_smoothing": 0.1,
        "ema_decay": None, "shift": 0.125, "shift_mode": "reflect", "rotation": 0.0, "cutout": 0.0,
        "mixup": 1.0, "cutmix": 0.0, "mixing_max_labels": 1000, "test_flips": True, "epoch_size_exponent": 0.0,
        "epoch_size_reference": 1000,
    },
}


def recipe_settings(name: str) -> dict[str, Any]:
    """The settings of the named recipe; one line listing the names for an unknown one."""
    if name not in RECIPES:
        raise SettingError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}", "recipe")
    return dict(RECIPES[name])


def batch_bounds(epoch_size: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch in an epoch of ``epoch_size`` samples.

    A trailing batch of a single sample is merged into the one before it: batch norm cannot
    normalise one sample whose features are 1x1, which the deepest stacks produce on small images.
    """
    bounds = [(start, min(start + batch_size, epoch_size)) for start in range(0, epoch_size, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], epoch_size)]
    return bounds
