"""``synthetic``: a seeded toy image set that a tiny CNN learns in one epoch, for tests.

Each class has its own colour and a ring of its own radius around the image centre; images add
Gaussian noise. Both cues survive horizontal and vertical flips, so flips are valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .base import DatasetError, ImageSet, LoadedDataset
from .decode import parse_image_size

SYNTHETIC_OPTIONS = ("n_train", "n_test", "num_classes", "channels", "image_size", "noise")
RING_WIDTH_PIXELS = 1.0


def load_synthetic(
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    n_train: int = 512,
    n_test: int = 256,
    num_classes: int = 4,
    channels: int = 3,
    image_size: int | Sequence[int] = 16,
    noise: float = 0.1,
    **_: object,
) -> LoadedDataset:
    """``n_train``/``n_test`` balanced images of ``num_classes`` classes; same seed, same tensors."""
    height, width = parse_image_size(image_size)  # type: ignore[misc]
    for option, value, least in (("n_train", n_train, 1), ("n_test", n_test, 0), ("num_classes", num_classes, 2),
                                 ("channels", channels, 1)):
        if int(value) < least:
            raise DatasetError(f"synthetic option {option} must be at least {least}, got {value}")
    if not 0.0 <= float(noise) <= 1.0:
        raise DatasetError(f"synthetic option noise must be between 0 and 1, got {noise}")
    generator = torch.Generator().manual_seed(int(seed))
    colours = 0.2 + 0.6 * torch.rand(int(num_classes), int(channels), 1, 1, generator=generator)
    rings = _class_rings(int(num_classes), height, width)
    train = _draw(int(n_train), colours, rings, float(noise), generator)
    test = _draw(int(n_test), colours, rings, float(noise), generator)
    return LoadedDataset(name="synthetic", train=train, test=test,
                         classes=[f"class{label}" for label in range(int(num_classes))],
                         channels=int(channels), flips_valid=True)


def _class_rings(num_classes: int, height: int, width: int) -> torch.Tensor:
    """(classes, 1, H, W) masks in [0, 1]: a centred ring per class, radii spread over the image."""
    rows = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
    distance = (rows[:, None].square() + cols[None, :].square()).sqrt()
    radii = torch.linspace(0.2, 0.9, num_classes) * (min(height, width) / 2)
    return torch.exp(-(distance[None] - radii[:, None, None]).square() / (2 * RING_WIDTH_PIXELS ** 2))[:, None]


def _draw(count: int, colours: torch.Tensor, rings: torch.Tensor, noise: float, generator: torch.Generator) -> ImageSet:
    num_classes = len(colours)
    labels = torch.arange(count) % num_classes
    labels = labels[torch.randperm(count, generator=generator)]
    clean = colours[labels] * (0.6 + 0.4 * rings[labels])
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    images = noisy.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return ImageSet(images, labels)
