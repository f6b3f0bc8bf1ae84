"""Where the trainer's and the inference code's batches come from: two kinds of data source.

* :class:`TensorSource`: images held in memory as one tensor (the command line keeps whole datasets
  as uint8; a batch is gathered by index and normalised on the device in one fused op). Fast: no
  DataLoader, no PIL.
* :class:`LoaderSource`: a user's torch ``Dataset`` read through a ``DataLoader`` for every epoch,
  as baal's ``ModelWrapper`` does, so per-sample random transforms are drawn anew every epoch and
  memory is bounded by the batch size, not the dataset size. An optional second dataset with the
  same items but without random augmentation (baal's ``pool_specifics``) is used wherever the data
  is only scored (the search's V', the training metrics, embeddings of the labelled set).

Both give batches of network input (normalised float32 on the requested device) with their labels,
in any index order the trainer asks for, so one training loop and one inference loop serve both.
:class:`InputFormat` is how raw batches become network input; it is saved with a trained network.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

Batch = tuple[Tensor, Optional[Tensor]]


# -- turning raw images into network input ------------------------------------------------------

@dataclass(frozen=True)
class InputFormat:
    """How a batch of images becomes network input.

    ``"uint8"``: raw 0..255 images, normalised per channel with ``mean``/``std`` (0..1 scale) in one
    fused multiply-add on the device. ``"normalised"``: float images that the dataset's transforms
    already normalised (ToTensor + Normalize); used as they are.
    """

    kind: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("uint8", "normalised"):
            raise ValueError(f"unknown input format {self.kind!r}; choose 'uint8' or 'normalised'")
        if self.kind == "uint8":
            if len(self.mean) != len(self.std) or not self.mean:
                raise ValueError(f"mean and std need one value per channel, got {len(self.mean)} and {len(self.std)}")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std values must be positive, got {list(self.std)}")

    @classmethod
    def uint8(cls, mean: Iterable[float], std: Iterable[float]) -> "InputFormat":
        return cls("uint8", tuple(float(m) for m in mean), tuple(float(s) for s in std))

    @classmethod
    def normalised(cls) -> "InputFormat":
        return cls("normalised")

    @classmethod
    def untrained(cls, images: Tensor) -> "InputFormat":
        """The format of images before any training set was seen: floats as they are, uint8 only
        scaled to 0..1 (a network that has not been trained has no statistics to normalise with)."""
        check_images(images)
        if images.dtype == torch.uint8:
            return cls.uint8((0.0,) * images.shape[1], (1.0,) * images.shape[1])
        return cls.normalised()

    @classmethod
    def fit(cls, batches: Iterable[Tensor]) -> "InputFormat":
        """The format of a training set seen as batches: floats as they are; uint8 with the
        per-channel mean/std of all its pixels, accumulated batch by batch (memory stays bounded)."""
        total = total_sq = None
        count = 0
        for images in batches:
            check_images(images)
            if images.is_floating_point():
                return cls.normalised()
            pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double().div_(255.0)
            total = pixels.sum(1) if total is None else total + pixels.sum(1)
            total_sq = pixels.square().sum(1) if total_sq is None else total_sq + pixels.square().sum(1)
            count += pixels.shape[1]
        if total is None or count == 0:
            raise ValueError("cannot fit an input format on an empty dataset")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
        return cls.uint8(mean.tolist(), std.tolist())

    @property
    def channels(self) -> Optional[int]:
        return len(self.mean) if self.kind == "uint8" else None

    def check(self, images: Tensor) -> None:
        """One-line ValueError unless ``images`` is a batch this format can prepare."""
        check_images(images)
        if (self.kind == "uint8") != (images.dtype == torch.uint8):
            raise ValueError(f"the network was trained on {self.kind} images but got {images.dtype} images; "
                             "give it data prepared the same way as the training data")
        if self.kind == "uint8" and images.shape[1] != len(self.mean):
            raise ValueError(f"images have {images.shape[1]} channels but the input format has {len(self.mean)}")

    def prepare(self, images: Tensor, device: torch.device | str) -> Tensor:
        """Network input: float32 on ``device``."""
        self.check(images)
        if self.kind == "normalised":
            return images.to(device=device, dtype=torch.float32, non_blocking=True)
        scale, offset = _affine(self.mean, self.std, torch.device(device))
        # Move as uint8 (a quarter of the bytes), then convert and normalise in one pass.
        return torch.addcmul(offset, images.to(device=device, non_blocking=True), scale)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "InputFormat":
        return cls(data["kind"], tuple(data["mean"]), tuple(data["std"]))


@lru_cache(maxsize=32)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """``x * scale + offset`` normalises 0..255 pixels; cached so a batch costs no new small tensors."""
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def check_images(images: Any) -> None:
    """One-line ValueError unless ``images`` is an (N, C, H, W) uint8 or float tensor."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = f"shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be tensors (C, H, W) per item, i.e. (N, C, H, W) batches; got {got}")
    if not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise ValueError(f"images must be float (already normalised) or uint8 tensors, got {images.dtype}")


def check_labels(labels: Tensor, num_classes: Optional[int]) -> None:
    """One-line ValueError for labels that are not class indices of the network."""
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bad = low if low < 0 else high
        valid = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        raise ValueError(f"label {bad} is not a class index of the network ({valid}); build the network with "
                         "num_classes equal to the number of classes, and labels 0..num_classes-1")


# -- sources ------------------------------------------------------------------------------------

class DataSource(ABC):
    """Items with labels (or without, for a pool) that can be read as batches of network input."""

    fmt: InputFormat

    @abstractmethod
    def __len__(self) -> int:
        """Number of items."""

    @abstractmethod
    def batches(self, device: torch.device, *, order: Optional[Iterable[Tensor]] = None,
                batch_size: int = 512) -> Iterator[Batch]:
        """``(inputs, labels)`` batches on ``device``. With ``order`` (one index tensor per batch) the
        items are read in that order (training); without it, in item order in batches of ``batch_size``
        without random augmentation (scoring). ``labels`` is None for items without labels."""

    @abstractmethod
    def subset(self, index: Tensor) -> "DataSource":
        """The items at ``index`` (positions into this source), as a source of the same kind."""

    def evaluation(self) -> "DataSource":
        """These items without random augmentation (for scoring); the same source when it has none."""
        return self

    def to(self, device: torch.device) -> "DataSource":
        """A source whose in-memory tensors (if any) live on ``device``: done once per training run."""
        return self


class TensorSource(DataSource):
    """Images held in one tensor, ``(N, C, H, W)`` uint8 or float, with optional int64 labels."""

    def __init__(self, images: Tensor, labels: Optional[Tensor] = None, fmt: Optional[InputFormat] = None) -> None:
        check_images(images)
        if labels is not None:
            if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
                raise ValueError(f"labels must be a 1-d tensor with one label per image ({images.shape[0]})")
            labels = labels.long()
        self.fmt = fmt or (InputFormat.normalised() if images.is_floating_point() else None)
        if self.fmt is None:
            raise ValueError("uint8 images need an InputFormat with their mean/std (InputFormat.uint8(mean, std))")
        self.fmt.check(images[:0])
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, device: torch.device, *, order: Optional[Iterable[Tensor]] = None,
                batch_size: int = 512) -> Iterator[Batch]:
        if order is None:
            order = (slice(start, start + batch_size) for start in range(0, len(self), batch_size))
        for index in order:
            if isinstance(index, Tensor) and index.device != self.images.device:
                index = index.to(self.images.device)
            labels = None if self.labels is None else self.labels[index].to(device, non_blocking=True)
            yield self.fmt.prepare(self.images[index], device), labels

    def subset(self, index: Tensor) -> "TensorSource":
        index = torch.as_tensor(index, dtype=torch.long)
        labels = None if self.labels is None else self.labels[index.to(self.labels.device)]
        return TensorSource(self.images[index.to(self.images.device)], labels, self.fmt)

    def to(self, device: torch.device) -> "TensorSource":
        labels = None if self.labels is None else self.labels.to(device)
        return TensorSource(self.images.to(device).contiguous(), labels, self.fmt)


class LoaderSource(DataSource):
    """A torch ``Dataset`` of ``(image, label, ...)`` items (or bare images for a pool), read through
    a ``DataLoader`` on every pass, with the dataset's own transforms drawn per item and epoch.

    ``evaluation_dataset`` holds the same items in the same order without random augmentation
    (defaults to ``dataset``). ``num_classes`` lets every batch's labels be checked on the CPU.
    """

    def __init__(self, dataset: Dataset, fmt: InputFormat, *, evaluation_dataset: Optional[Dataset] = None,
                 workers: int = 0, collate_fn: Optional[Callable] = None, num_classes: Optional[int] = None,
                 with_labels: bool = True) -> None:
        self.dataset = dataset
        self.evaluation_dataset = dataset if evaluation_dataset is None else evaluation_dataset
        if len(self.evaluation_dataset) != len(dataset):
            raise ValueError(f"the evaluation view has {len(self.evaluation_dataset)} items, the dataset {len(dataset)}")
        self.fmt = fmt
        self.workers = workers
        self.collate_fn = collate_fn or default_collate
        self.num_classes = num_classes
        self.with_labels = with_labels

    def __len__(self) -> int:
        return len(self.dataset)

    def _like(self, dataset: Dataset, evaluation_dataset: Dataset) -> "LoaderSource":
        return LoaderSource(dataset, self.fmt, evaluation_dataset=evaluation_dataset, workers=self.workers,
                            collate_fn=self.collate_fn, num_classes=self.num_classes, with_labels=self.with_labels)

    def batches(self, device: torch.device, *, order: Optional[Iterable[Tensor]] = None,
                batch_size: int = 512) -> Iterator[Batch]:
        pin = device.type == "cuda"
        if order is None:
            loader = DataLoader(self.evaluation_dataset, batch_size=batch_size, shuffle=False, num_workers=self.workers,
                                collate_fn=self.collate_fn, pin_memory=pin)
        else:
            index_lists = [index.tolist() for index in order]
            loader = DataLoader(self.dataset, batch_sampler=index_lists, num_workers=self.workers,
                                collate_fn=self.collate_fn, pin_memory=pin)
        for batch in loader:
            images, labels = split_batch(batch, self.with_labels)
            if labels is not None:
                check_labels(labels, self.num_classes)
                labels = labels.to(device, non_blocking=True)
            yield self.fmt.prepare(images, device), labels

    def subset(self, index: Tensor) -> "LoaderSource":
        positions = torch.as_tensor(index, dtype=torch.long).tolist()
        return self._like(Subset(self.dataset, positions), Subset(self.evaluation_dataset, positions))

    def evaluation(self) -> "LoaderSource":
        return self._like(self.evaluation_dataset, self.evaluation_dataset)


def split_batch(batch: Any, with_labels: bool = True) -> Batch:
    """``(images, labels)`` of a collated batch: ``(x, y, ...)`` -> x, y; a bare tensor is images only.

    A dataset that yields something else gets one line saying what is expected.
    """
    if isinstance(batch, Tensor):
        if with_labels:
            raise ValueError("the dataset yields bare tensors, but training needs (image, label) pairs")
        return batch, None
    if not isinstance(batch, (list, tuple)) or len(batch) == 0 or not isinstance(batch[0], Tensor):
        raise ValueError(f"the dataset must yield (image tensor, label) pairs; a batch was a {type(batch).__name__}"
                         + (f" of {type(batch[0]).__name__}" if isinstance(batch, (list, tuple)) and batch else "")
                         + " (add transforms.ToTensor() to the dataset's transform)")
    if not with_labels:
        return batch[0], None
    if len(batch) < 2:
        raise ValueError("the dataset must yield (image, label) pairs; it yields images only")
    labels = torch.as_tensor(batch[1])
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be one integer class index per image, got a {labels.dtype} tensor of shape "
                         f"{tuple(labels.shape)}")
    return batch[0], labels.long()
