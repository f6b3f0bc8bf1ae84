"""The images of a labelling project: found under the data directory, decoded with the toolkit's decoder.

Layout (paths are kept relative to the data directory, with ``/``)::

    DIR/unlabelled/**/*.{jpg,png,...}    the pool people label
    DIR/labelled/<class>/*               optional seed labels (read once, by ``inas label init``)
    DIR/test/<class>/*                   optional test set (accuracy is measured on it when present)

Decoding goes through :class:`inas_plugins.data.decode.ImageDecoder` (one size per project, or
``image_size`` to resize) one file at a time, so that an image deleted or damaged since it was
labelled is left out with a warning instead of failing the round: its label stays in
``labels.csv`` and counts again once the file is back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..data.base import DatasetError
from ..data.decode import ImageDecoder, is_image_name, resolve_channels, stack_images
from .project import SEEDS, TEST, UNLABELLED, ProjectError


def relative(root: Path, path: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with ``/`` separators."""
    return Path(os.path.relpath(path, root)).as_posix()


def find_images(directory: Path) -> list[Path]:
    """Image files under ``directory``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for folder, subfolders, names in os.walk(directory, followlinks=True):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(folder) / name for name in sorted(names) if is_image_name(name)]
    return found


def scan_pool(root: Path) -> list[str]:
    """Relative paths of the images under ``DIR/unlabelled``."""
    return [relative(root, path) for path in find_images(root / UNLABELLED)]


def scan_classified(root: Path, folder: str, classes: Sequence[str]) -> list[tuple[str, str]]:
    """``(path, class)`` for every image under ``DIR/<folder>/<class>/``; a class folder that is
    not in the class list is a ProjectError naming the valid classes."""
    directory = root / folder
    if not directory.is_dir():
        return []
    found = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise ProjectError(f"{directory} must hold one folder per class; {entry.name} is a file")
        if entry.name not in classes:
            raise ProjectError(f"{directory / entry.name} is not one of the classes ({', '.join(classes)})")
        found += [(relative(root, path), entry.name) for path in find_images(Path(entry.path))]
    return found


def scan_seeds(root: Path, classes: Sequence[str]) -> list[tuple[str, str]]:
    return scan_classified(root, SEEDS, classes)


def scan_test(root: Path, classes: Sequence[str]) -> list[tuple[str, str]]:
    return scan_classified(root, TEST, classes)


@dataclass
class Decoded:
    """Groups of images decoded to one size and one channel count, with the files left out."""

    groups: dict[str, tuple[list[str], torch.Tensor]]
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(next(iter(self.groups.values()))[1].shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        for _, images in self.groups.values():
            if len(images):
                return int(images.shape[2]), int(images.shape[3])
        raise ProjectError("no images to decode")


def decode_groups(root: Path, groups: dict[str, list[str]], image_size: Optional[Sequence[int]] = None,
                  color: str = "auto") -> Decoded:
    """Decode each group of relative paths; deleted and unreadable files are reported, not fatal.

    Images of different sizes without ``image_size`` stay an error (one line), as for ``inas run``.
    """
    # A square size follows `inas run --image-size`: shorter side scaled to S, centre S x S crop.
    if image_size and len(image_size) == 2 and image_size[0] == image_size[1]:
        decoder = ImageDecoder(int(image_size[0]))
    else:
        decoder = ImageDecoder(tuple(image_size) if image_size else None)
    decoded: dict[str, tuple[list[str], list[torch.Tensor]]] = {}
    missing, unreadable = [], []
    for name, paths in groups.items():
        kept, images = [], []
        for path in paths:
            full = root / path
            if not full.is_file():
                missing.append(path)
                continue
            try:
                [image] = decoder.decode_files([full], progress=False)
            except DatasetError as error:
                if "differ in size" in str(error):
                    raise ProjectError(f"{error} (a project with images of several sizes needs "
                                       "`inas label init ... --image-size N`)") from None
                unreadable.append(f"{path} ({str(error).rsplit(': ', 1)[-1]})")
                continue
            kept.append(path)
            images.append(image)
        decoded[name] = (kept, images)
    if not any(images for _, images in decoded.values()):
        raise ProjectError(f"no readable images under {root}")
    channels = resolve_channels([images for _, images in decoded.values()], color)
    size = next(tuple(images[0].shape[1:]) for _, images in decoded.values() if images)
    return Decoded({name: (kept, stack_images(images, channels, size)) for name, (kept, images) in decoded.items()},
                   missing, unreadable)
