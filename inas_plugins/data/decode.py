"""Decode image files once into uint8 (C, H, W) tensors, with one size and one colour mode per dataset.

libjpeg/libpng through ``torchvision.io.decode_image`` is several times faster than PIL per image
(about 40 us for a 32x32 JPEG, so the 60,000 CIFAR-10 JPEGs take seconds); PIL is the fallback
for formats torchvision does not decode (BMP, TIFF, PPM/PGM, GIF), and for everything should a
future torchvision drop its (deprecated since 0.29) image decoders. A thread pool does not help:
the decode op holds the GIL, and two threads measured slower than one.

Colour: alpha channels are dropped; 16-bit images are scaled to 8 bits. In ``color="auto"`` mode a
dataset is grayscale only when *every* image is, otherwise grayscale images are repeated to RGB
(lossless, unlike converting colour images to the majority mode). ``"rgb"`` and ``"gray"`` force a mode.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as tvf
from tqdm.auto import tqdm

from ..choices import COLOR_MODES
from .base import DatasetError
from ..error_text import first_line

try:  # deprecated in torchvision 0.29 (in favour of torchcodec); PIL takes over if it disappears
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - depends on the installed torchvision
    decode_image = None

TORCHVISION_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"} if decode_image is not None else ())
PIL_EXTENSIONS = frozenset({".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff"})
IMAGE_EXTENSIONS = TORCHVISION_EXTENSIONS | PIL_EXTENSIONS
TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def is_image_name(name: str) -> bool:
    """An image by its extension (not a hidden file); the decoder reports files that are not."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def parse_image_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``32`` or ``(H, W)`` -> (H, W); None means "all images must already share one size"."""
    if image_size is None:
        return None
    size = (int(image_size), int(image_size)) if isinstance(image_size, (int, np.integer)) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise DatasetError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def fit_to_square(image: torch.Tensor, side: int) -> torch.Tensor:
    """The aspect rule of ``--image-size S``: scale so the *shorter* side is S (aspect kept,
    antialiased), then cut the centred S x S square out of the longer side.

    The same rule as torchvision's ``Resize(S)`` + ``CenterCrop(S)``, the usual evaluation transform
    for photos: nothing is stretched, and what is lost is the margins of the longer side. An image
    that already is S x S is returned unchanged.
    """
    height, width = int(image.shape[-2]), int(image.shape[-1])
    if (height, width) == (side, side):
        return image
    if height <= width:
        new_size = [side, max(side, round(width * side / height))]
    else:
        new_size = [max(side, round(height * side / width)), side]
    if new_size != [height, width]:
        image = tvf.resize(image, new_size, antialias=True)
    return tvf.center_crop(image, [side, side])


class ImageDecoder:
    """Decodes files to uint8 (C, H, W) tensors, checking (or enforcing) one shared size.

    The first decoded image sets the reference size unless ``image_size`` is given. An int S fits
    every image to S x S by :func:`fit_to_square` (aspect kept, centre crop); an ``(H, W)`` pair
    resizes every image of another size to exactly H x W (the aspect changes). Each image is
    resized right after it is decoded, so only one full-size image is in memory at a time.
    """

    def __init__(self, image_size: int | Sequence[int] | None = None) -> None:
        self.square = int(image_size) if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool) else None
        self.target_size = parse_image_size(image_size)
        self._reference: tuple[str | Path, tuple[int, int]] | None = None

    def decode_files(self, paths: Sequence[str | Path], desc: str = "decoding", progress: bool = True) -> list[torch.Tensor]:
        """Each file as a uint8 (C, H, W) tensor with C in {1, 3} (channels not yet unified)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=TORCHVISION_DEPRECATION, category=DeprecationWarning)
            return [self._fit_size(path, decode_file(path))
                    for path in tqdm(paths, desc=desc, unit="img", disable=not progress or not paths,
                                     leave=False, mininterval=0.5)]

    def _fit_size(self, path: str | Path, image: torch.Tensor) -> torch.Tensor:
        size = (int(image.shape[1]), int(image.shape[2]))
        if self.square is not None:
            return fit_to_square(image, self.square)
        if self.target_size is not None:
            if size != self.target_size:
                image = tvf.resize(image, list(self.target_size), antialias=True)
            return image
        if self._reference is None:
            self._reference = (path, size)
        elif size != self._reference[1]:
            first_path, first_size = self._reference
            raise DatasetError(
                f"images differ in size: {path} is {_hw(size)} but {first_path} is {_hw(first_size)}; "
                f"pass image_size S to fit every image to S x S on load", "image_size")
        return image


def image_header_size(path: str | Path) -> tuple[int, int] | None:
    """(H, W) from the file header, without decoding the pixels; None when PIL cannot tell."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            width, height = picture.size
        return int(height), int(width)
    except Exception:  # the decoder reports unreadable files with their name later
        return None


def decode_file(path: str | Path) -> torch.Tensor:
    """One image file as uint8 (C, H, W), C = 1 (grayscale) or 3 (colour); alpha dropped."""
    try:
        if os.path.splitext(path)[1].lower() in TORCHVISION_EXTENSIONS:
            with open(path, "rb") as handle:
                data = torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8)
            image = decode_image(data, mode=ImageReadMode.UNCHANGED)
        else:
            image = _decode_with_pil(path)
    except DatasetError:
        raise
    except Exception as error:  # decoders raise RuntimeError, OSError, ValueError, ... for bad files
        raise DatasetError(f"cannot decode image {path}: {first_line(error)}") from error
    if image.dtype != torch.uint8:
        image = tvf.to_dtype(image, torch.uint8, scale=True)
    if image.dim() != 3:
        raise DatasetError(f"cannot decode image {path}: expected one frame, got shape {tuple(image.shape)}")
    channels = image.shape[0]
    if channels == 2:  # gray + alpha
        image = image[:1]
    elif channels == 4:  # RGBA
        image = image[:3]
    elif channels not in (1, 3):
        raise DatasetError(f"cannot decode image {path}: unsupported {channels}-channel image")
    return image


def _decode_with_pil(path: str | Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as picture:
        picture.seek(0)  # first frame of animated GIF/TIFF
        if picture.mode.startswith("I;16"):
            array = np.asarray(picture, dtype=np.uint16)[None]
            return torch.from_numpy(array.astype(np.int32)).mul_(255).div_(65535, rounding_mode="floor").to(torch.uint8)
        mode = "L" if picture.mode in ("1", "L", "LA", "I", "F") else "RGB"
        array = np.asarray(picture.convert(mode))
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def resolve_channels(groups: Iterable[Sequence[torch.Tensor]], color: str) -> int:
    """The channel count a dataset gets: 1 for "gray", 3 for "rgb", and for "auto" 1 only if all images are gray."""
    if color not in COLOR_MODES:
        raise DatasetError(f"unknown color mode {color!r}; valid: {', '.join(COLOR_MODES)}")
    if color == "gray":
        return 1
    if color == "rgb":
        return 3
    return 3 if any(image.shape[0] == 3 for group in groups for image in group) else 1


def stack_images(images: Sequence[torch.Tensor], channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Stack (C, H, W) images into one uint8 (N, channels, H, W) tensor, converting modes as needed."""
    if not images:
        height, width = size or (0, 0)
        return torch.zeros((0, channels, height, width), dtype=torch.uint8)
    if all(image.shape[0] == channels for image in images):
        return torch.stack(list(images))
    out = torch.empty((len(images), channels, *images[0].shape[1:]), dtype=torch.uint8)
    for row, image in enumerate(images):
        if image.shape[0] == channels:
            out[row] = image
        elif channels == 3:  # gray -> RGB
            out[row] = image.expand(3, -1, -1)
        else:  # RGB -> gray
            out[row] = tvf.rgb_to_grayscale(image, num_output_channels=1)
    return out


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (HxW)"
