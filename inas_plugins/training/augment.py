"""Batched data augmentation on tensors: the paper's flips, 4-pixel shifts and 15-degree rotations.

One ``affine_grid`` / ``grid_sample`` call transforms a whole batch on the training device, so
augmentation costs a fraction of a forward pass instead of a PIL round trip per image. It runs on
the *normalised* float batch, so pixels shifted or rotated in from outside the image are zeros,
i.e. the dataset's mean colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentParams:
    """The random draw for one batch: per sample a flip flag, integer pixel shifts and an angle."""

    flip: Tensor  # bool (N,)
    shift_x: Tensor  # int64 (N,), pixels, positive moves content right
    shift_y: Tensor  # int64 (N,), pixels, positive moves content down
    angle: Tensor  # float32 (N,), degrees, counter-clockwise


@dataclass(frozen=True)
class BatchAugment:
    """Random horizontal flip (when ``flips``), shifts of up to ``max_shift`` pixels, rotations of up to
    ``max_rotation`` degrees. Datasets where a mirrored image changes its meaning (digits, house
    numbers) set ``flips=False`` and keep the shifts and rotations."""

    flips: bool = True
    max_shift: int = 4
    max_rotation: float = 15.0

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels, got {self.max_shift}")
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ValueError(f"max_rotation must be in [0, 180] degrees, got {self.max_rotation}")

    @property
    def is_identity(self) -> bool:
        return not self.flips and self.max_shift == 0 and self.max_rotation == 0.0

    def sample(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw the parameters for ``n`` images with ``generator`` (which must live on ``device``)."""
        flip = torch.rand(n, device=device, generator=generator) < 0.5
        if not self.flips:
            flip = torch.zeros_like(flip)
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (2, n), device=device, generator=generator)
        angle = (torch.rand(n, device=device, generator=generator) * 2.0 - 1.0) * self.max_rotation
        return AugmentParams(flip=flip, shift_x=shifts[0], shift_y=shifts[1], angle=angle)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Warp float images (N, C, H, W) by ``params`` with one bilinear ``grid_sample`` call."""
        n, _, height, width = images.shape
        radians = params.angle.to(torch.float32) * (math.pi / 180.0)
        cos, sin = torch.cos(radians), torch.sin(radians)
        # theta maps output coordinates to input coordinates in [-1, 1] units. Mirroring negates the
        # input x; a shift of s pixels is 2s/size in those units (align_corners=False).
        mirror = 1.0 - 2.0 * params.flip.to(torch.float32)
        theta = torch.empty(n, 2, 3, device=images.device, dtype=torch.float32)
        theta[:, 0, 0] = mirror * cos
        theta[:, 0, 1] = -mirror * sin * height / width
        theta[:, 0, 2] = -mirror * params.shift_x.to(torch.float32) * (2.0 / width)
        theta[:, 1, 0] = sin * width / height
        theta[:, 1, 1] = cos
        theta[:, 1, 2] = -params.shift_y.to(torch.float32) * (2.0 / height)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.is_identity:
            return images
        return self.apply(images, self.sample(images.shape[0], images.device, generator))
