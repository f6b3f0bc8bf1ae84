"""The ``folder`` dataset: users' own images in an ImageFolder layout.

Accepted layouts under ``data_dir`` (class = sub-folder name, labels in sorted name order, images
found recursively inside each class folder, like torchvision's ``ImageFolder``)::

    data_dir/train/<class>/*.png  +  data_dir/test/<class>/*.png   (given test set)
    data_dir/train/<class>/*.png                                  (test_fraction held out per class)
    data_dir/<class>/*.png                                        (test_fraction held out per class)

Images are decoded once (see ``decode``); nothing is written into ``data_dir``. An opt-in
``cache_dir`` keeps the decoded tensors for the next run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..memory import MEMORY_SHARE, format_bytes, memory_allowance
from . import cache
from .base import DatasetError, ImageSet, LoadedDataset
from .decode import (COLOR_MODES, IMAGE_EXTENSIONS, ImageDecoder, image_header_size, is_image_name, parse_image_size,
                     resolve_channels, stack_images)
from .splits import stratified_split

LAYOUT_HINT = "expected DIR/train/<class>/<images> and DIR/test/<class>/<images>, or DIR/<class>/<images>"
FOLDER_OPTIONS = ("image_size", "color", "flips_valid", "cache_dir", "memory_limit")
# Decoded images are held in a list and then stacked into one tensor: twice the final size at the peak.
DECODE_PEAK_FACTOR = 2



@dataclass
class FolderLayout:
    """The image files found under a data directory, with their class labels."""

    root: Path
    classes: list[str]
    train_files: list[str]
    train_labels: list[int]
    test_files: list[str] | None  # None: no test/ folder, hold out part of train
    test_labels: list[int] | None

    @property
    def all_files(self) -> list[str]:
        return self.train_files + (self.test_files or [])

    def fingerprint(self) -> str:
        """Digest of the file list: paths relative to the root, and sizes (a moved copy matches)."""
        digest = hashlib.blake2b(digest_size=16)
        for path in self.all_files:
            digest.update(f"{os.path.relpath(path, self.root)}\0{os.path.getsize(path)}\n".encode())
        return digest.hexdigest()


def looks_like_image_folder(data_dir: Path) -> bool:
    """True when ``data_dir/train`` holds class sub-folders (used to accept CIFAR as JPEGs)."""
    train = data_dir / "train"
    return train.is_dir() and any(child.is_dir() for child in train.iterdir())


def find_layout(data_dir: str | Path | None) -> FolderLayout:
    """Scan ``data_dir`` for one of the accepted layouts; DatasetError (one line) if it has none."""
    if data_dir is None:
        raise DatasetError(f"the folder dataset needs data_dir DIR; {LAYOUT_HINT}", "data_dir")
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"data directory {root} does not exist; {LAYOUT_HINT}")
    if not root.is_dir():
        raise DatasetError(f"data directory {root} is not a directory; {LAYOUT_HINT}")
    train_dir, test_dir = root / "train", root / "test"
    if test_dir.is_dir() and not train_dir.is_dir():
        raise DatasetError(f"{root} has test/ but no train/ folder; {LAYOUT_HINT}")
    if not train_dir.is_dir():
        train_dir = root
    classes = class_folders(train_dir)
    if len(classes) < 2:
        raise DatasetError(f"{train_dir} has one class ({classes[0]}); active learning needs at least two "
                           f"class sub-folders; {LAYOUT_HINT}")
    train_files, train_labels = _class_files(train_dir, classes)
    if not test_dir.is_dir():
        return FolderLayout(root, classes, train_files, train_labels, None, None)
    test_classes = class_folders(test_dir)
    if test_classes != classes:
        only_train = sorted(set(classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(classes))
        raise DatasetError(f"train/ and test/ in {root} have different classes: "
                           f"only in train: {', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}")
    test_files, test_labels = _class_files(test_dir, classes)
    return FolderLayout(root, classes, train_files, train_labels, test_files, test_labels)


def load_folder(
    data_dir: str | Path | None,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    progress: bool = True,
    name: str = "folder",
    image_size: int | Sequence[int] | None = None,
    color: str = "auto",
    flips_valid: bool = True,
    cache_dir: str | Path | None = None,
    memory_limit: int | None = None,
    **_: object,
) -> LoadedDataset:
    """Decode an ImageFolder tree into a LoadedDataset.

    ``image_size``: an int S fits every image to S x S, scaling the shorter side to S and cutting
    the centred square (aspect kept, see :func:`~.decode.fit_to_square`); an (H, W) pair resizes
    images of another size to exactly H x W. Without it all images must share one size.
    ``color`` is "auto" (RGB unless every image is grayscale), "rgb" or "gray".
    ``flips_valid=False`` for images whose label a mirror changes (text, digits, some scans).
    ``cache_dir`` stores the decoded tensors there and reuses them while no file changes.
    ``memory_limit`` (bytes; default: the available memory) refuses, before decoding anything, a
    folder whose decoded images would not fit (see :func:`check_decode_memory`).
    """
    if color not in COLOR_MODES:
        raise DatasetError(f"unknown color mode {color!r}; valid: {', '.join(COLOR_MODES)}")
    layout = find_layout(data_dir)
    check_decode_memory(layout, image_size, memory_limit)
    decoded = _decode_layout(layout, image_size, color, progress, cache_dir)
    train = ImageSet(decoded["train_images"], decoded["train_labels"])
    if layout.test_files is None:
        train_index, test_index = stratified_split(train.labels, test_fraction, seed)
        train, test = train.subset(train_index), train.subset(test_index)
    else:
        test = ImageSet(decoded["test_images"], decoded["test_labels"])
    return LoadedDataset(name=name, train=train, test=test, classes=list(layout.classes),
                         channels=int(train.images.shape[1]), flips_valid=bool(flips_valid), source=str(layout.root),
                         files_fingerprint=layout.fingerprint())


def decoded_bytes(layout: FolderLayout, image_size: int | Sequence[int] | None) -> tuple[int, tuple[int, int]]:
    """(peak bytes of decoding the folder, the (H, W) the estimate assumes).

    With ``image_size`` the stored size is known; without it every image must have the first one's
    size, read from its header. Three channels are assumed (grayscale needs a third of it).
    """
    size = parse_image_size(image_size)
    if size is None:
        size = image_header_size(layout.all_files[0]) if layout.all_files else None
        if size is None:
            return 0, (0, 0)
    per_image = 3 * size[0] * size[1]
    return DECODE_PEAK_FACTOR * per_image * len(layout.all_files), size


def check_decode_memory(layout: FolderLayout, image_size: int | Sequence[int] | None,
                        memory_limit: int | None = None) -> None:
    """DatasetError, with the numbers, when decoding the folder would need more than
    :data:`MEMORY_SHARE` of the available memory (or more than ``memory_limit`` bytes)."""
    needed, (height, width) = decoded_bytes(layout, image_size)
    memory_limit = memory_allowance(memory_limit)
    if memory_limit is None or needed <= memory_limit:
        return
    advice = "pass a smaller image_size" if image_size is not None else "pass image_size S (e.g. 64)"
    per_64 = DECODE_PEAK_FACTOR * 3 * 64 * 64 * len(layout.all_files)
    raise DatasetError(f"decoding {len(layout.all_files)} images of {height}x{width} from {layout.root} needs about "
                       f"{format_bytes(needed)} of memory, more than the {format_bytes(memory_limit)} allowed "
                       f"({int(MEMORY_SHARE * 100)}% of the available memory); {advice} to fit every image to "
                       f"S x S on load (64: about {format_bytes(per_64)})", "image_size")


def _decode_layout(layout: FolderLayout, image_size: int | Sequence[int] | None, color: str,
                   progress: bool, cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    key = cache.folder_key(layout.root, layout.all_files, {"image_size": image_size, "color": color}) if cache_dir else ""
    if cache_dir:
        cached = cache.load(cache_dir, key)
        if cached is not None:
            return cached
    decoder = ImageDecoder(image_size)
    train = decoder.decode_files(layout.train_files, desc="decoding train", progress=progress)
    test = decoder.decode_files(layout.test_files or [], desc="decoding test", progress=progress)
    channels = resolve_channels([train, test], color)
    size = tuple(train[0].shape[1:]) if train else None
    decoded = {
        "train_images": stack_images(train, channels),
        "train_labels": torch.tensor(layout.train_labels, dtype=torch.int64),
        "test_images": stack_images(test, channels, size),  # type: ignore[arg-type]
        "test_labels": torch.tensor(layout.test_labels or [], dtype=torch.int64),
    }
    if cache_dir:
        cache.save(cache_dir, key, decoded)
    return decoded


def class_folders(directory: Path) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of ``directory``: the class names."""
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DatasetError(f"{directory} has no class sub-folders; {LAYOUT_HINT}")
    return classes


def _class_files(directory: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    files: list[str] = []
    labels: list[int] = []
    for label, class_name in enumerate(classes):
        found = _image_files(directory / class_name)
        if not found:
            raise DatasetError(f"class folder {directory / class_name} holds no images "
                               f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += found
        labels += [label] * len(found)
    return files, labels


def _image_files(class_dir: Path) -> list[str]:
    """Image paths under ``class_dir``, recursively, in sorted order (strings: 60,000 Paths cost seconds)."""
    found = []
    for folder, subfolders, names in os.walk(class_dir, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [os.path.join(folder, name) for name in sorted(names) if is_image_name(name)]
    return found
