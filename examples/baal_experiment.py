"""baal's ActiveLearningExperiment with iNAS dropped in: one changed line.

The experiment runs baal's train / evaluate / predict / label cycle by itself until the labelling
budget is spent. Handing it an ``INASModelWrapper`` instead of a ``ModelWrapper`` makes every round
search the architecture (from the previous round's) before training; the dataset is streamed with its
random transform drawn every epoch, as baal does. Two baal details matter here:

* Before every round the experiment restores a snapshot of the wrapper's first state to reset the
  weights. ``INASModelWrapper.load_state_dict`` recognises its own earlier snapshot and resets the
  weights without rewinding the architecture, so the search still grows from round to round.
* ``pool_size`` is left unset on purpose: with it, baal 2.1 ranks a random subset of the pool but
  labels the ranks as if they were pool positions (it never maps them back), i.e. the wrong items.

The heuristic is any registered one (``inas heuristics``), turned into a baal heuristic by
``wrapper.heuristic(name, query_size=...)``: BALD by default, ``--heuristic coreset`` for coreset.
``iterations`` is the number of MC-dropout samples, for the query and for baal's averaged test
predictions; the wrapper samples the classifier head at ``QueryOptions.mc_dropout_rate`` (0.5).

    python examples/baal_experiment.py                        # BALD, 4 rounds
    python examples/baal_experiment.py --heuristic coreset
    python examples/baal_experiment.py --steps 2 --epochs 2   # a quick look
"""

import numpy as np
import torch
from baal.active import ActiveLearningDataset
from baal.active.stopping_criteria import LabellingBudgetStoppingCriterion
from baal.experiments.base import ActiveLearningExperiment
from baal.modelwrapper import TrainingArgs
from baal.utils.metrics import Accuracy
from torch import nn

from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet
from inas_plugins.settings import QueryOptions, SearchOptions

from digits_data import QUERY_SIZE, digits_datasets, parse_args  # this folder's shared data and options


def main() -> None:
    options = parse_args(__doc__.split("\n")[0], heuristic="bald", steps=4, examples="coreset, softmax_response")
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

    experiment = ActiveLearningExperiment(
        trainer=wrapper,
        al_dataset=al_dataset,
        eval_dataset=test_set,
        # Plain baal: heuristic=BALD() -- still fine; wrapper.heuristic also knows coreset, softmax_response, ...
        heuristic=wrapper.heuristic(options.heuristic, query_size=QUERY_SIZE),
        query_size=QUERY_SIZE,
        iterations=20,  # MC-dropout samples for the query and for the averaged test predictions
        criterion=LabellingBudgetStoppingCriterion(al_dataset, labelling_budget=options.steps * QUERY_SIZE),
    )
    print(f"heuristic {options.heuristic}, start {wrapper.arch}, {options.epochs} epochs per round")
    records = experiment.start()

    for step, (record, search) in enumerate(zip(records, wrapper.search_history)):
        candidates = ", ".join(f"{c['arch'][0]}x{c['arch'][1]}: {c['val_accuracy']:.2f}" for c in search["candidates"])
        arch = f"{search['arch'][0]}x{search['arch'][1]}"
        print(f"step {step}: {record['dataset_size']:4d} labels  arch {arch}  "
              f"test accuracy {record['test_accuracy']:.3f}  (candidates {candidates})")
    print(f"labelled at the end: {len(al_dataset)}; final architecture {wrapper.arch}")


if __name__ == "__main__":
    main()
