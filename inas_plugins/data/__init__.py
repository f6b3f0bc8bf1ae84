"""Datasets as uint8 image tensors: cifar10, cifar100, svhn, folder, digits and synthetic.

``load_dataset(name, data_dir)`` returns a ``LoadedDataset`` (train pool, test set, classes,
channels, whether flips are valid, per-channel mean/std); bad input raises ``DatasetError``.
"""

from .base import DatasetError, ImageSet, LoadedDataset, channel_stats
from .registry import DATASETS, DatasetSpec, apply_limits, available_datasets, get_spec, load_dataset
from .splits import stratified_split, stratified_subset
from .torchvision_sets import default_data_dir

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetSpec",
    "ImageSet",
    "LoadedDataset",
    "apply_limits",
    "available_datasets",
    "channel_stats",
    "default_data_dir",
    "get_spec",
    "load_dataset",
    "stratified_split",
    "stratified_subset",
]
