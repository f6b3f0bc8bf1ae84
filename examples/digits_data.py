"""The two baal examples' data and options: scikit-learn's bundled 8x8 digits as a torchvision-style
dataset (offline), and the command-line options both scripts take. Kept apart so that each example
shows only what it is about: the baal loop with iNAS dropped in."""

import argparse

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset
from torchvision import transforms

from inas_plugins.heuristics import heuristic_names

QUERY_SIZE = 100  # labels per query, and the random initial labelled set


class Digits(Dataset):
    """8x8 digits as (normalised float image, label), with a transform like a torchvision dataset's."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        return (self.transform(image) if self.transform else image), int(self.labels[index])


def digits_datasets(test_size: int = 400, seed: int = 0) -> tuple[Digits, Digits]:
    """Training set (random rotations up to 10 degrees) and test set, normalised as ToTensor + Normalize would."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = (images - images.mean()) / images.std()
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return (Digits(images[train], labels[train], transform=transforms.RandomRotation(10)),
            Digits(images[test], labels[test]))


def parse_args(description: str, heuristic: str, steps: int, examples: str) -> argparse.Namespace:
    """--heuristic (any registered name; default ``heuristic``), --steps (default ``steps``) and --epochs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--heuristic", default=heuristic, choices=heuristic_names(), metavar="NAME",
                        help=f"any registered heuristic (`inas heuristics`), e.g. {examples}")
    parser.add_argument("--steps", type=int, default=steps, help=f"active rounds (default {steps})")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per round (default 30)")
    options = parser.parse_args()
    for name in ("steps", "epochs"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(options, name)}")
    return options
