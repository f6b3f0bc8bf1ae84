"""The dataset registry behind ``--dataset``: names, what each needs, and ``load_dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from ..settings import check_positive_int
from .base import DatasetError, LoadedDataset
from .digits import load_digits_dataset
from .folder import FOLDER_OPTIONS, load_folder
from .splits import check_test_fraction, stratified_subset
from .synthetic import SYNTHETIC_OPTIONS, load_synthetic
from .torchvision_sets import TORCHVISION_SETS, load_torchvision_set

# The loaders' common signature: (data_dir, *, download, seed, test_fraction, progress, **options).
Loader = Callable[..., LoadedDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset: its loader, a one-line summary for help texts, and its options."""

    name: str
    load: Loader
    summary: str
    options: tuple[str, ...] = ()
    uses_data_dir: bool = True


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", partial(load_torchvision_set, "cifar10"),
                           "CIFAR-10 via torchvision (downloaded to a cache, or --data-dir)", FOLDER_OPTIONS),
    "cifar100": DatasetSpec("cifar100", partial(load_torchvision_set, "cifar100"),
                            "CIFAR-100 via torchvision (downloaded to a cache, or --data-dir)", FOLDER_OPTIONS),
    "svhn": DatasetSpec("svhn", partial(load_torchvision_set, "svhn"),
                        "SVHN house numbers via torchvision (downloaded to a cache, or --data-dir)", FOLDER_OPTIONS),
    "folder": DatasetSpec("folder", load_folder,
                          "your images: --data-dir DIR with train/<class>/ and test/<class>/ (or held out)",
                          FOLDER_OPTIONS),
    "digits": DatasetSpec("digits", load_digits_dataset,
                          "scikit-learn's bundled 8x8 digits (offline default)", uses_data_dir=False),
    "synthetic": DatasetSpec("synthetic", load_synthetic, "seeded toy images for tests", SYNTHETIC_OPTIONS,
                             uses_data_dir=False),
}
assert set(TORCHVISION_SETS) <= set(DATASETS)


def available_datasets() -> list[str]:
    return list(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name`` (case-insensitive); DatasetError listing the valid names otherwise."""
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[key]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    seed: int = 0,
    test_fraction: float = 0.2,
    limit_train: int | None = None,
    limit_test: int | None = None,
    progress: bool = True,
    **options: object,
) -> LoadedDataset:
    """Load a registered dataset as uint8 tensors, then shrink it to the limits (class-balanced, seeded).

    ``seed`` fixes held-out test splits and limits (keep it fixed across runs that should share a
    test set). ``download=False`` never touches the network. ``options`` are dataset-specific (see
    ``DATASETS[name].options``), e.g. ``image_size``/``color``/``flips_valid``/``cache_dir`` for folders.
    """
    spec = get_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = f"its options: {', '.join(spec.options)}" if spec.options else "it takes no options"
        raise DatasetError(f"dataset {spec.name} has no option {', '.join(unknown)}; {valid}")
    if data_dir is not None and not spec.uses_data_dir:
        raise DatasetError(f"{spec.name} is built in and takes no data_dir; for images on disk use dataset 'folder' "
                           f"with data_dir DIR", "data_dir", "dataset")
    test_fraction = check_test_fraction(test_fraction)
    for label, limit in (("limit_train", limit_train), ("limit_test", limit_test)):
        if limit is not None:
            check_positive_int("", label, limit, DatasetError)
    dataset = spec.load(data_dir, download=download, seed=seed, test_fraction=test_fraction,
                        progress=progress, **options)
    return apply_limits(dataset, limit_train, limit_test, seed)


def apply_limits(dataset: LoadedDataset, limit_train: int | None, limit_test: int | None, seed: int) -> LoadedDataset:
    """Class-balanced seeded subsets of at most ``limit_train``/``limit_test`` images (None: keep all)."""
    if (limit_train is None or limit_train >= len(dataset.train)) and (limit_test is None or limit_test >= len(dataset.test)):
        return dataset
    train, test = dataset.train, dataset.test
    if limit_train is not None and limit_train < len(train):
        train = train.subset(stratified_subset(train.labels, int(limit_train), seed))
    if limit_test is not None and limit_test < len(test):
        test = test.subset(stratified_subset(test.labels, int(limit_test), seed))
    return dataset.with_splits(train, test)
