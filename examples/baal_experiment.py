"""baal's ActiveLearningExperiment with iNAS dropped in: one changed line.

The experiment runs baal's train / evaluate / predict / label cycle by itself until the labelling
budget is spent. Handing it an ``INASModelWrapper`` instead of a ``ModelWrapper`` makes every round
search the architecture (from the previous round's) before training. Two baal details matter here:

* Before every round the experiment restores a snapshot of the wrapper's first state to reset the
  weights. ``INASModelWrapper.load_state_dict`` recognises its own earlier snapshot and resets the
  weights without rewinding the architecture, so the search still grows from round to round.
* ``pool_size`` is left unset on purpose: with it, baal ranks a random subset of the pool but labels
  the ranks as if they were pool positions (it never maps them back), i.e. the wrong items.

    python examples/baal_experiment.py
"""

import numpy as np
import torch
from baal.active import ActiveLearningDataset
from baal.active.heuristics import BALD
from baal.active.stopping_criteria import LabellingBudgetStoppingCriterion
from baal.experiments.base import ActiveLearningExperiment
from baal.modelwrapper import TrainingArgs
from baal.utils.metrics import Accuracy
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet


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

    experiment = ActiveLearningExperiment(
        trainer=wrapper,
        al_dataset=al_dataset,
        eval_dataset=test_set,
        heuristic=BALD(),
        query_size=100,
        iterations=10,  # MC-dropout samples for BALD and for the averaged test predictions
        criterion=LabellingBudgetStoppingCriterion(al_dataset, labelling_budget=400),
    )
    records = experiment.start()

    for step, (record, search) in enumerate(zip(records, wrapper.search_history)):
        candidates = ", ".join(f"{c['arch'][0]}x{c['arch'][1]}: {c['val_accuracy']:.2f}" for c in search["candidates"])
        arch = f"{search['arch'][0]}x{search['arch'][1]}"
        print(f"step {step}: {record['dataset_size']:4d} labels  arch {arch}  "
              f"test accuracy {record['test_accuracy']:.3f}  (candidates {candidates})")
    print(f"labelled at the end: {len(al_dataset)}; final architecture {wrapper.arch}")


if __name__ == "__main__":
    main()
