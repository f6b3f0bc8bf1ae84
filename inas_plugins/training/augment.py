"""Batched data augmentation on tensors: flips, shifts, rotations and cutout, one batch at a time.

Everything runs on the *normalised* float batch on the training device, so augmentation costs a
fraction of a forward pass instead of a PIL round trip per image, and "zero" is the dataset's
mean colour. Two ways to shift (:data:`~.recipe.SHIFT_MODES`):

* ``warp`` (the paper's recipe): flips, shifts and rotations in one ``affine_grid`` /
  ``grid_sample`` call; pixels moved in from outside the image are zeros, and the bilinear
  resampling blurs every rotated image a little.
* ``reflect``: whole-pixel shifts over a reflected border and flips, done by indexing (no
  resampling at all: the random-crop-with-reflect-padding of the modern CIFAR recipes); a
  rotation, when asked for, is warped first with a reflected border.

``cutout`` (DeVries & Taylor, 2017) then zeroes one square per image, centred anywhere in it
(clipped at the border).

Batch mixing (:func:`batch_mixing`) comes last and changes the labels too: torchvision's ``MixUp``
(Zhang et al., 2018) and ``CutMix`` (Yun et al., 2019) blend each batch with itself rolled by one,
with one Beta(alpha, alpha) draw per batch, and return soft targets for the cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .recipe import SHIFT_MODES, TrainRecipe


@dataclass(frozen=True)
class AugmentParams:
    """The random draw for one batch: per sample a flip flag, integer pixel shifts, an angle and
    the centre of the cutout square (``None`` without cutout)."""

    flip: Tensor  # bool (N,)
    shift_x: Tensor  # int64 (N,), pixels, positive moves content right
    shift_y: Tensor  # int64 (N,), pixels, positive moves content down
    angle: Tensor  # float32 (N,), degrees, counter-clockwise
    cut_x: Optional[Tensor] = None  # int64 (N,), column of the cutout square's centre
    cut_y: Optional[Tensor] = None  # int64 (N,), row of the cutout square's centre


def pixels(fraction: float, side: int) -> int:
    """A fraction of an image side in whole pixels: 0 stays 0, anything else is at least 1."""
    return 0 if fraction == 0 else max(1, round(fraction * side))


@dataclass(frozen=True)
class BatchAugment:
    """Random horizontal flip (when ``flips``), shifts of up to ``max_shift`` pixels, rotations of up to
    ``max_rotation`` degrees and a ``cutout`` x ``cutout`` zeroed square. Datasets where a mirrored
    image changes its meaning (digits, house numbers) set ``flips=False`` and keep the rest."""

    flips: bool = True
    max_shift: int = 4
    max_rotation: float = 15.0
    shift_mode: str = "warp"
    cutout: int = 0

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels, got {self.max_shift}")
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ValueError(f"max_rotation must be in [0, 180] degrees, got {self.max_rotation}")
        if self.shift_mode not in SHIFT_MODES:
            raise ValueError(f"shift_mode must be one of {', '.join(SHIFT_MODES)}; got {self.shift_mode!r}")
        if self.cutout < 0:
            raise ValueError(f"cutout must be >= 0 pixels, got {self.cutout}")

    @classmethod
    def for_images(cls, recipe: TrainRecipe, height: int, width: int, *, flips: bool = True) -> "BatchAugment":
        """The recipe's augmentation in pixels of ``height`` x ``width`` images (its sizes are fractions)."""
        side = min(height, width)
        return cls(flips=flips, max_shift=pixels(recipe.shift, side), max_rotation=recipe.rotation,
                   shift_mode=recipe.shift_mode, cutout=pixels(recipe.cutout, side))

    @property
    def is_identity(self) -> bool:
        return not self.flips and self.max_shift == 0 and self.max_rotation == 0.0 and self.cutout == 0

    def sample(self, n: int, device: torch.device, generator: torch.Generator | None = None,
               size: tuple[int, int] | None = None) -> AugmentParams:
        """Draw the parameters for ``n`` images with ``generator`` (which must live on ``device``);
        ``size`` (height, width) places the cutout squares and is needed only with cutout."""
        flip = torch.rand(n, device=device, generator=generator) < 0.5
        if not self.flips:
            flip = torch.zeros_like(flip)
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (2, n), device=device, generator=generator)
        angle = (torch.rand(n, device=device, generator=generator) * 2.0 - 1.0) * self.max_rotation
        cut_x = cut_y = None
        if self.cutout:
            if size is None:
                raise ValueError("cutout needs the image size to place its squares: sample(..., size=(height, width))")
            cut_y = torch.randint(0, size[0], (n,), device=device, generator=generator)
            cut_x = torch.randint(0, size[1], (n,), device=device, generator=generator)
        return AugmentParams(flip=flip, shift_x=shifts[0], shift_y=shifts[1], angle=angle, cut_x=cut_x, cut_y=cut_y)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Augment float images (N, C, H, W) by ``params``."""
        if self.shift_mode == "warp":
            out = _warp(images, params.angle, params.flip, params.shift_x, params.shift_y, padding="zeros")
        else:
            out = images
            if self.max_rotation > 0:
                no_shift = torch.zeros_like(params.shift_x)
                out = _warp(out, params.angle, torch.zeros_like(params.flip), no_shift, no_shift, padding="reflection")
            out = _reflect_shift_and_flip(out, params.shift_x, params.shift_y, params.flip, self.max_shift)
        if params.cut_x is not None:
            out = _cut_out(out, params.cut_x, params.cut_y, self.cutout)
        return out

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.is_identity:
            return images
        size = (images.shape[2], images.shape[3])
        return self.apply(images, self.sample(images.shape[0], images.device, generator, size=size))


def _warp(images: Tensor, angle: Tensor, flip: Tensor, shift_x: Tensor, shift_y: Tensor, *, padding: str) -> Tensor:
    """Rotate, mirror and shift a batch with one bilinear ``grid_sample`` call."""
    n, _, height, width = images.shape
    radians = angle.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # theta maps output coordinates to input coordinates in [-1, 1] units. Mirroring negates the
    # input x; a shift of s pixels is 2s/size in those units (align_corners=False).
    mirror = 1.0 - 2.0 * flip.to(torch.float32)
    theta = torch.empty(n, 2, 3, device=images.device, dtype=torch.float32)
    theta[:, 0, 0] = mirror * cos
    theta[:, 0, 1] = -mirror * sin * height / width
    theta[:, 0, 2] = -mirror * shift_x.to(torch.float32) * (2.0 / width)
    theta[:, 1, 0] = sin * width / height
    theta[:, 1, 1] = cos
    theta[:, 1, 2] = -shift_y.to(torch.float32) * (2.0 / height)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _reflect_shift_and_flip(images: Tensor, shift_x: Tensor, shift_y: Tensor, flip: Tensor, pad: int) -> Tensor:
    """Whole-pixel shifts over a reflected border, then mirrors, by one gather: no resampling.

    Output pixel (y, x) of image i is input pixel (y - shift_y, x' - shift_x) of the padded
    image, with x' = W - 1 - x for a mirrored image.
    """
    n, _, height, width = images.shape
    if pad:
        images = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    rows = (pad - shift_y)[:, None] + torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device).expand(n, width)
    columns = torch.where(flip[:, None], columns.flip(1), columns)
    columns = (pad - shift_x)[:, None] + columns
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indices around a slice put their broadcast shape first: (N, H, W, C). The result is
    # made contiguous in the batch's own layout: a permuted (channels-last strided) view fed to the
    # network on the CPU crashed the process inside the convolution with small images (a heap
    # corruption, batch 16 of 16x16 images; tests/test_augment.py).
    return images[batch, :, rows[:, :, None], columns[:, None, :]].permute(0, 3, 1, 2).contiguous()


def _cut_out(images: Tensor, centre_x: Tensor, centre_y: Tensor, size: int) -> Tensor:
    """Zero a ``size`` x ``size`` square around each image's centre point, clipped at the border."""
    _, _, height, width = images.shape
    top, left = centre_y - size // 2, centre_x - size // 2
    ys = torch.arange(height, device=images.device)
    xs = torch.arange(width, device=images.device)
    inside_y = (ys[None, :] >= top[:, None]) & (ys[None, :] < top[:, None] + size)
    inside_x = (xs[None, :] >= left[:, None]) & (xs[None, :] < left[:, None] + size)
    return images.masked_fill((inside_y[:, :, None] & inside_x[:, None, :])[:, None], 0.0)


#: ``(images, labels) -> (mixed images, soft targets)`` for one batch.
BatchMixing = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def batch_mixing(recipe: TrainRecipe, model: torch.nn.Module) -> Optional[BatchMixing]:
    """torchvision's MixUp and/or CutMix as ``recipe.mixup`` / ``recipe.cutmix`` ask (their Beta alphas),
    or None when both are off. With both, each batch takes one of the two at random, as torchvision's
    own recipe does. Soft targets need ``model.num_classes`` (timm's convention). Their random draws
    come from the global RNG, which the trainer seeds per run."""
    if not (recipe.mixup or recipe.cutmix):
        return None
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"train.mixup and train.cutmix need the network's class count as a `num_classes` "
                         f"attribute (timm's convention; {type(model).__name__} has {num_classes!r}), or set them to 0")
    from torchvision.transforms import v2  # only runs that mix pay for the import

    mixers = [mixer(alpha=alpha, num_classes=num_classes)
              for mixer, alpha in ((v2.MixUp, recipe.mixup), (v2.CutMix, recipe.cutmix)) if alpha]
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
