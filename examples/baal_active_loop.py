"""A plain baal active-learning script with iNAS dropped in: one changed line.

This is baal's usual recipe -- a dataset with a random training transform, an ActiveLearningDataset
whose pool is read with the test transform (``pool_specifics``), a ModelWrapper, an
ActiveLearningLoop and a train / test / query step per round -- on scikit-learn's bundled 8x8 digits
(offline, about a minute on a CPU). The one change from plain baal is the line marked ``iNAS``:
``INASModelWrapper`` replaces ``ModelWrapper``, so every ``train_on_dataset`` call searches the
architecture (from the previous step's) before it trains, and the network grows as labels arrive.

The wrapper streams the dataset as baal does: the random rotation is drawn anew every epoch, and the
search scores its candidates on held-out labels read through the test transform.

The query heuristic can be any registered one (``inas heuristics``): ``wrapper.heuristic(name,
query_size=...)`` returns it as a baal heuristic -- softmax response, MC-dropout, coreset (which needs
embeddings that baal's loop never computes), baal's own (bald, entropy, ...) and installed plugins.
baal's heuristic objects (``BALD()``) keep working too.

    python examples/baal_active_loop.py                        # softmax response, 5 steps
    python examples/baal_active_loop.py --heuristic coreset
    python examples/baal_active_loop.py --steps 2 --epochs 2   # a quick look
"""

import argparse

import numpy as np
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.modelwrapper import TrainingArgs
from baal.utils.metrics import Accuracy
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms

from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet
from inas_plugins.heuristics import heuristic_names
from inas_plugins.settings import QueryOptions, SearchOptions

QUERY_SIZE = 100


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heuristic", default="softmax_response", choices=heuristic_names(), metavar="NAME",
                        help="any registered heuristic (`inas heuristics`), e.g. coreset, bald, mc_dropout")
    parser.add_argument("--steps", type=int, default=5, help="active steps (default 5)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per step (default 30)")
    options = parser.parse_args()
    for name in ("steps", "epochs"):
        if getattr(options, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(options, name)}")
    return options


def main() -> None:
    options = parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)  # networks this small run fastest on one CPU thread
    train_set, test_set = digits_datasets()
    al_dataset = ActiveLearningDataset(train_set, pool_specifics={"transform": None})
    al_dataset.label_randomly(QUERY_SIZE)

    model = build_inas_resnet(Arch(1, 1), num_classes=10, in_chans=1, base_width=8, drop_rate=0.2)
    args = TrainingArgs(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
        criterion=nn.CrossEntropyLoss(),
        batch_size=32,
        epoch=options.epochs,
        use_cuda=torch.cuda.is_available(),
        workers=0,  # the data is a few in-memory tensors: worker processes would cost more than they save
    )

    # Plain baal:  wrapper = ModelWrapper(model, args)
    wrapper = INASModelWrapper(model, args, space=SearchSpace(max_blocks=4, max_stacks=3),  # iNAS: the changed line
                               search=SearchOptions(premature_fraction=0.25), query=QueryOptions(mc_dropout_rate=0.5),
                               progress=False)
    wrapper.add_metric("accuracy", lambda: Accuracy())

    # Plain baal:  heuristic = get_heuristic("bald")  -- still fine for baal's names; wrapper.heuristic
    # also knows coreset, softmax_response, mc_dropout and plugins.
    heuristic = wrapper.heuristic(options.heuristic, query_size=QUERY_SIZE)
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=heuristic, query_size=QUERY_SIZE,
                              iterations=20,  # MC-dropout samples, for the heuristics that use them
                              verbose=False)
    print(f"heuristic {options.heuristic}, start {wrapper.arch}, {options.epochs} epochs per step")
    for step in range(options.steps):
        wrapper.train_on_dataset(al_dataset)  # search + train
        wrapper.test_on_dataset(test_set)
        metrics = wrapper.get_metrics()
        candidates = ", ".join(f"{c['arch'][0]}x{c['arch'][1]}: {c['val_accuracy']:.2f}"
                               for c in wrapper.search_history[-1]["candidates"])
        print(f"step {step}: {len(al_dataset):4d} labels  arch {wrapper.arch}  "
              f"test accuracy {metrics['test_accuracy']:.3f}  (candidates {candidates})")
        if not loop.step():
            break


if __name__ == "__main__":
    main()
