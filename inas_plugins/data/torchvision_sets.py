"""CIFAR-10, CIFAR-100 and SVHN through torchvision, converted straight from its arrays.

torchvision keeps these sets as uint8 numpy arrays (CIFAR NHWC, SVHN NCHW), so one transpose
gives the trainer's uint8 NCHW tensors with no per-sample PIL work. The network is only touched
when ``download=True`` and the files are not already in the directory. A ``--data-dir`` that holds
an ImageFolder copy (train/<class>/, test/<class>/) instead of torchvision's files is loaded as a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision import datasets

from .base import DatasetError, ImageSet, LoadedDataset
from .folder import class_folders, load_folder, looks_like_image_folder
from ..error_text import first_line

DATA_DIR_ENV = "INAS_DATA_DIR"
DEFAULT_CACHE = Path("~/.cache/inas-plugins")


@dataclass(frozen=True)
class TorchvisionSet:
    """How to open one torchvision dataset and turn it into uint8 NCHW tensors."""

    name: str
    open_split: Callable[[Path, bool, bool], object]  # (root, train, download) -> torchvision dataset
    to_tensors: Callable[[object], tuple[torch.Tensor, torch.Tensor]]
    classes: Callable[[object], list[str]]
    num_classes: int
    flips_valid: bool


def _cifar_tensors(dataset: object) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


def _svhn_tensors(dataset: object) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(dataset.data)), torch.as_tensor(dataset.labels, dtype=torch.int64)


TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "cifar10": TorchvisionSet("cifar10", lambda root, train, dl: datasets.CIFAR10(root, train=train, download=dl),
                              _cifar_tensors, lambda d: list(d.classes), 10, True),
    "cifar100": TorchvisionSet("cifar100", lambda root, train, dl: datasets.CIFAR100(root, train=train, download=dl),
                               _cifar_tensors, lambda d: list(d.classes), 100, True),
    "svhn": TorchvisionSet("svhn", lambda root, train, dl: datasets.SVHN(root, split="train" if train else "test",
                                                                          download=dl),
                           _svhn_tensors, lambda d: [str(digit) for digit in range(10)], 10, False),
}


def default_data_dir(name: str) -> Path:
    """Where a downloaded set lives: ``$INAS_DATA_DIR/<name>``, else ``~/.cache/inas-plugins/<name>``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_CACHE).expanduser() / name


def load_torchvision_set(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    seed: int = 0,
    test_fraction: float = 0.2,
    progress: bool = True,
    **folder_options: object,
) -> LoadedDataset:
    """Load ``name`` from ``data_dir`` (default: the cache directory), downloading it if allowed."""
    spec = TORCHVISION_SETS[name]
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(name)
    if data_dir is not None and looks_like_image_folder(root):
        return _load_as_folder(spec, root, seed=seed, test_fraction=test_fraction, progress=progress,
                               **folder_options)
    if folder_options.get("image_size") is not None:
        raise DatasetError(f"image_size applies to image folders; {name} from torchvision's files is used at its "
                           f"own size (for a JPEG copy, pass data_dir DIR with train/ and test/)", "image_size",
                           "data_dir")
    train = _open(spec, root, train=True, download=download)
    test = _open(spec, root, train=False, download=download)
    return LoadedDataset(name=name, train=ImageSet(*spec.to_tensors(train)), test=ImageSet(*spec.to_tensors(test)),
                         classes=spec.classes(train), channels=3, flips_valid=spec.flips_valid, source=str(root))


def _open(spec: TorchvisionSet, root: Path, *, train: bool, download: bool) -> object:
    alternatives = ("pass data_dir DIR holding the torchvision copy, "
                    "or use dataset 'folder' with data_dir DIR holding train/ and test/ image folders")
    try:
        return spec.open_split(root, train, False)  # never touches the network
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        if not download:
            raise DatasetError(f"{spec.name} is not in {root} and downloading is off: {alternatives}", "data_dir",
                               "dataset") from None
    try:
        return spec.open_split(root, train, True)
    except (OSError, RuntimeError, ValueError) as error:  # URLError is an OSError
        reason = first_line(getattr(error, "reason", None) or error)  # a URLError's reason is the useful part
        raise DatasetError(f"{spec.name} is not in {root} and could not be downloaded (offline? {reason}): "
                           f"{alternatives}", "data_dir", "dataset") from error


def _load_as_folder(spec: TorchvisionSet, root: Path, **options: object) -> LoadedDataset:
    found = len(class_folders(root / "train"))
    if found != spec.num_classes:
        raise DatasetError(f"{root} looks like an image folder with {found} classes, "
                           f"but {spec.name} has {spec.num_classes}; use dataset 'folder' for other data", "dataset")
    options.setdefault("flips_valid", spec.flips_valid)
    return load_folder(root, name=spec.name, **options)  # type: ignore[arg-type]
