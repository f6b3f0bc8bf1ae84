"""A plain baal active-learning script with iNAS dropped in: one changed line.

This is baal's usual recipe -- an ActiveLearningDataset, a ModelWrapper, an ActiveLearningLoop and a
train / test / query step per round -- on scikit-learn's bundled 8x8 digits (offline, seconds on a
CPU). The only change from plain baal is the line marked ``iNAS``: ``INASModelWrapper`` replaces
``ModelWrapper``, and every ``train_on_dataset`` call now searches the architecture (from the
previous round's) before it trains, so the network can grow as labels arrive.

    python examples/baal_active_loop.py
"""

import numpy as np
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.modelwrapper import TrainingArgs
from baal.utils.metrics import Accuracy
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet
from inas_plugins.heuristics import SoftmaxResponse


def digits_datasets(test_size: int = 400, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """The digits as (normalised float image, label) datasets, as ToTensor + Normalize would give."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = (images - images.mean()) / images.std()
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])


def main() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)  # networks this small run fastest on one CPU thread
    train_set, test_set = digits_datasets()
    al_dataset = ActiveLearningDataset(train_set)
    al_dataset.label_randomly(100)

    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    args = TrainingArgs(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
        criterion=nn.CrossEntropyLoss(),
        batch_size=32,
        epoch=30,
        use_cuda=torch.cuda.is_available(),
        workers=0,  # the data is a few in-memory tensors: worker processes would cost more than they save
    )

    # Plain baal:  wrapper = ModelWrapper(model, args)
    wrapper = INASModelWrapper(  # iNAS: the only changed line
        build_inas_resnet(Arch(1, 1), num_classes=10, in_chans=1, base_width=8, drop_rate=0.2), args,
        space=SearchSpace(max_blocks=4, max_stacks=3), progress=False,
    )
    wrapper.add_metric("accuracy", lambda: Accuracy())

    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=SoftmaxResponse(),
                              query_size=100, iterations=1, verbose=False)
    for step in range(5):
        wrapper.train_on_dataset(al_dataset)
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
