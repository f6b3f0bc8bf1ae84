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

import numpy as np
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.modelwrapper import TrainingArgs
from baal.utils.metrics import Accuracy
from torch import nn

from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet
from inas_plugins.settings import QueryOptions, SearchOptions

from digits_data import QUERY_SIZE, digits_datasets, parse_args  # this folder's shared data and options


def main() -> None:
    options = parse_args(__doc__.split("\n")[0], heuristic="softmax_response", steps=5, examples="coreset, bald, mc_dropout")
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
