"""The same seeds give the same labelled sets and accuracies on the CPU, through every entry point.

The expected values below were computed by the code *before* the three entry points (``inas run``'s
``ActiveRun``, ``inas label``'s session and ``INASModelWrapper`` in baal's loop) were moved onto one
round service (issue 22), and are stored here as data: a refactor that changes which images get
labelled, which network is chosen or how it trains fails this file. Each configuration gives its
``train`` section in full from :class:`TrainRecipe`'s own defaults (never a preset's recipe, which
may be retuned), so only a change of the round itself moves these numbers.

Regenerate (only for an intended change of behaviour, and say so in the commit):
``python tests/test_round_pins.py``, which prints the current values in this file's layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inas_plugins.config import RunConfig
from inas_plugins.data import load_dataset
from inas_plugins.settings import QueryOptions, SearchOptions
from inas_plugins.training import TrainRecipe

RECIPE = TrainRecipe(epochs=2, epoch_size=256, batch_size=64)  # TrainRecipe's defaults but the size
LOOP_CASES = {
    "softmax_response, pool subset": dict(query=QueryOptions("softmax_response", pool_subset=40)),
    "mc_dropout, inherit + halving": dict(query=QueryOptions("mc_dropout", mc_samples=4),
                                          search=SearchOptions(inherit_weights=True, successive_halving=True)),
    "coreset, 2 iterations, early stop": dict(query=QueryOptions("coreset"),
                                              search=SearchOptions(iterations=2, premature_schedule="early_stop")),
}


def loop_config(**changes) -> RunConfig:
    return RunConfig(dataset="synthetic", initial=24, query_schedule=[[0, 16]], budget=56, base_width=4,
                     max_blocks=2, max_stacks=2, device="cpu", seed=3, train=RECIPE, **changes).validate()


def loop_pin(config: RunConfig, run_dir: Path) -> dict:
    """The labelled map by step, the architectures and test accuracies of a short ``ActiveRun``."""
    from inas_plugins.checkpoint import load_checkpoint
    from inas_plugins.loop import ActiveRun

    data = load_dataset("synthetic", seed=0, progress=False, n_train=120, n_test=40, num_classes=3, image_size=8)
    run_dir.mkdir(parents=True, exist_ok=True)
    rounds = ActiveRun(config, data, run_dir, progress=False, log=lambda _: None).run()
    labelled_map = load_checkpoint(run_dir).labelled_map
    return {"labelled": {int(step): np.flatnonzero(labelled_map == step).tolist()
                         for step in np.unique(labelled_map[labelled_map > 0])},
            "arch": [r["arch"] for r in rounds], "accuracy": [round(r["test_accuracy"], 6) for r in rounds]}


EXPECTED_LOOP: dict[str, dict] = {
    'softmax_response, pool subset':
        {'accuracy': [0.675, 0.65, 0.65],
         'arch': [[2, 1], [2, 2], [2, 2]],
         'labelled': {1: [4, 5, 6, 8, 12, 17, 25, 42, 45, 47, 52, 57, 59, 85, 95, 97, 100, 101, 103, 105, 111, 112,
                          117, 119],
                      2: [14, 21, 23, 33, 51, 71, 75, 79, 82, 88, 90, 96, 99, 108, 110, 113],
                      3: [1, 2, 10, 15, 35, 60, 61, 62, 66, 70, 72, 73, 77, 81, 116, 118]}},
    'mc_dropout, inherit + halving':
        {'accuracy': [0.675, 0.35, 0.425],
         'arch': [[2, 1], [2, 2], [2, 2]],
         'labelled': {1: [4, 5, 6, 8, 12, 17, 25, 42, 45, 47, 52, 57, 59, 85, 95, 97, 100, 101, 103, 105, 111, 112,
                          117, 119],
                      2: [0, 3, 13, 18, 24, 26, 38, 53, 62, 65, 68, 76, 86, 89, 92, 114],
                      3: [7, 20, 23, 29, 32, 41, 44, 46, 49, 56, 67, 75, 87, 107, 109, 116]}},
    'coreset, 2 iterations, early stop':
        {'accuracy': [0.675, 0.675, 0.875],
         'arch': [[1, 1], [2, 2], [2, 2]],
         'labelled': {1: [4, 5, 6, 8, 12, 17, 25, 42, 45, 47, 52, 57, 59, 85, 95, 97, 100, 101, 103, 105, 111, 112,
                          117, 119],
                      2: [2, 15, 26, 30, 31, 44, 50, 53, 55, 61, 67, 74, 79, 83, 106, 118],
                      3: [7, 13, 14, 21, 23, 46, 49, 64, 71, 80, 87, 88, 91, 98, 109, 110]}},
}


@pytest.mark.parametrize("case", list(LOOP_CASES))
def test_active_run_labels_what_it_labelled_before(case, tmp_path) -> None:
    assert loop_pin(loop_config(**LOOP_CASES[case]), tmp_path) == EXPECTED_LOOP[case]


# --- inas label ---------------------------------------------------------------------------------

LABEL_CLASSES = ("top", "left")
LABEL_CASES = {
    "softmax_response, test set": dict(query=QueryOptions("softmax_response"), test=True),
    "mc_dropout, cross-validated": dict(query=QueryOptions("mc_dropout", mc_samples=4), test=False),
}


def draw_pool(root: Path, n: int = 40, test: int = 6) -> Path:
    """DIR/unlabelled/img<NNN>.png, class NNN % 2 (a bright top or left half), and test/<class>/."""
    rng = np.random.default_rng(0)

    def draw(label: int, path: Path) -> None:
        pixels = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
        pixels[(slice(0, 4), slice(None)) if label == 0 else (slice(None), slice(0, 4))] += 150
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)

    for i in range(n):
        draw(i % 2, root / "unlabelled" / f"img{i:03d}.png")
    for label, name in enumerate(LABEL_CLASSES):
        for i in range(test):
            draw(label, root / "test" / name / f"t{i}.png")
    return root


def label_pin(case: dict, tmp_path: Path, rounds: int = 2) -> list[dict]:
    """Each round's batch (path, score, guess) and accuracy of a labelling run answered by an oracle."""
    import shutil

    from inas_plugins.labelling.project import load_project
    from inas_plugins.labelling.session import init_project, sync
    from inas_plugins.labelling.store import Answer, LabelStore

    data = draw_pool(tmp_path / "data")
    if not case["test"]:
        shutil.rmtree(data / "test")
    config = RunConfig(dataset="folder", initial=8, query_schedule=[[0, 6]], budget=26, base_width=4, max_blocks=2,
                       max_stacks=2, device="cpu", seed=1, train=TrainRecipe(epochs=2, epoch_size=128, batch_size=32),
                       query=case["query"]).validate()
    run_dir = tmp_path / "run"
    init_project(run_dir, data, list(LABEL_CLASSES), config, log=lambda _: None)
    pins = []
    for _ in range(rounds):
        _, state = load_project(run_dir)
        LabelStore(run_dir).add(Answer(path, LABEL_CLASSES[int(path[-7:-4]) % 2], "import", "oracle")
                                for path in state.batch.paths)
        sync(run_dir, log=lambda _: None)
        _, state = load_project(run_dir)
        record = state.rounds[-1]
        pins.append({"arch": record["arch"], "accuracy": record["accuracy"],
                     "batch": [[item.path, item.query_score, item.predicted] for item in state.batch.items]})
    return pins


EXPECTED_LABEL: dict[str, list] = {
    'softmax_response, test set':
        [{'accuracy': 0.5,
          'arch': [1, 1],
          'batch': [['unlabelled/img036.png', 0.320898, 'left'], ['unlabelled/img012.png', 0.317538, 'left'],
                    ['unlabelled/img024.png', 0.316162, 'left'], ['unlabelled/img038.png', 0.315406, 'left'],
                    ['unlabelled/img000.png', 0.313409, 'left'], ['unlabelled/img030.png', 0.311188, 'left']]},
         {'accuracy': 0.5,
          'arch': [2, 1],
          'batch': [['unlabelled/img019.png', 0.253816, 'top'], ['unlabelled/img007.png', 0.246932, 'top'],
                    ['unlabelled/img035.png', 0.244556, 'top'], ['unlabelled/img013.png', 0.243703, 'top'],
                    ['unlabelled/img029.png', 0.243643, 'top'], ['unlabelled/img021.png', 0.240156, 'top']]}],
    'mc_dropout, cross-validated':
        [{'accuracy': 0.625,
          'arch': [1, 1],
          'batch': [['unlabelled/img028.png', 0.056852, 'left'], ['unlabelled/img035.png', 0.05428, 'left'],
                    ['unlabelled/img038.png', 0.034191, 'left'], ['unlabelled/img027.png', 0.030767, 'left'],
                    ['unlabelled/img016.png', 0.030542, 'left'], ['unlabelled/img007.png', 0.030365, 'left']]},
         {'accuracy': 0.5,
          'arch': [2, 1],
          'batch': [['unlabelled/img000.png', 0.043609, 'top'], ['unlabelled/img018.png', 0.039056, 'top'],
                    ['unlabelled/img010.png', 0.037739, 'top'], ['unlabelled/img020.png', 0.03526, 'top'],
                    ['unlabelled/img006.png', 0.03424, 'top'], ['unlabelled/img030.png', 0.032221, 'top']]}],
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_labelling_session_asks_for_what_it_asked_for_before(case, tmp_path) -> None:
    assert label_pin(LABEL_CASES[case], tmp_path) == EXPECTED_LABEL[case]


# --- INASModelWrapper in baal's ActiveLearningLoop ----------------------------------------------

WRAPPER_CASES = {
    "mc_dropout": dict(heuristic="mc_dropout", iterations=4, search=SearchOptions(premature_fraction=0.5)),
    "coreset, inherit": dict(heuristic="coreset", iterations=1,
                             search=SearchOptions(premature_fraction=0.5, inherit_weights=True)),
}


def wrapper_pin(case: dict, steps: int = 2) -> dict:
    """The labelled map by step, the architectures and test accuracies of two steps of baal's loop."""
    from baal.active import ActiveLearningDataset, ActiveLearningLoop
    from baal.modelwrapper import TrainingArgs
    from torch.utils.data import TensorDataset

    from inas_plugins.models import build_inas_resnet
    from inas_plugins.space import Arch, SearchSpace
    from inas_plugins.wrapper import INASModelWrapper

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (130,), generator=generator)
    images = torch.randn(130, 1, 8, 8, generator=generator) * 0.5
    for cls, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8)),
                                        (slice(0, 4), slice(4, 8))]):
        images[labels == cls, :, rows, cols] += 1.0
    train, test = TensorDataset(images[:100], labels[:100]), TensorDataset(images[100:], labels[100:])
    al_dataset = ActiveLearningDataset(train, random_state=0)
    al_dataset.label_randomly(20)
    model = build_inas_resnet(Arch(1, 1), num_classes=3, in_chans=1, base_width=4, drop_rate=0.2)
    wrapper = INASModelWrapper(model, TrainingArgs(batch_size=16, epoch=2, workers=0, use_cuda=False),
                               space=SearchSpace(2, 2), search=case["search"], recipe=RECIPE, seed=5, progress=False)
    heuristic = wrapper.heuristic(case["heuristic"], query_size=10)
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=heuristic, query_size=10,
                              iterations=case["iterations"], verbose=False)
    archs, accuracy = [], []
    for _ in range(steps):
        wrapper.train_on_dataset(al_dataset)
        archs.append(wrapper.arch.as_list())
        predicted = wrapper.predict_on_dataset(test)[..., 0].argmax(1)
        accuracy.append(round(float((torch.from_numpy(predicted) == test.tensors[1]).float().mean()), 6))
        loop.step()
    labelled_map = al_dataset.labelled_map
    return {"labelled": {int(step): np.flatnonzero(labelled_map == step).tolist()
                         for step in np.unique(labelled_map[labelled_map > 0])},
            "arch": archs, "accuracy": accuracy}


EXPECTED_WRAPPER: dict[str, dict] = {
    'mc_dropout':
        {'accuracy': [0.433333, 0.433333],
         'arch': [[1, 1], [1, 1]],
         'labelled': {1: [2, 7, 8, 13, 16, 22, 24, 26, 30, 33, 53, 54, 55, 73, 75, 78, 86, 92, 93, 95],
                      2: [12, 19, 27, 39, 61, 77, 87, 91, 97, 99],
                      3: [6, 17, 32, 42, 63, 65, 67, 79, 82, 84]}},
    'coreset, inherit':
        {'accuracy': [0.433333, 0.733333],
         'arch': [[1, 1], [1, 2]],
         'labelled': {1: [2, 7, 8, 13, 16, 22, 24, 26, 30, 33, 53, 54, 55, 73, 75, 78, 86, 92, 93, 95],
                      2: [6, 10, 12, 19, 27, 67, 70, 76, 79, 80],
                      3: [3, 23, 43, 47, 50, 59, 66, 71, 83, 99]}},
}


@pytest.mark.parametrize("case", list(WRAPPER_CASES))
def test_wrapper_in_baal_loop_labels_what_it_labelled_before(case) -> None:
    assert wrapper_pin(WRAPPER_CASES[case]) == EXPECTED_WRAPPER[case]


def _layout(name: str, annotation: str, values: dict) -> str:
    """``NAME: annotation = {`` then one case a block, as this file stores them."""
    import pprint

    cases = "".join(f"    {case!r}:\n        " + pprint.pformat(value, width=110, compact=True).replace("\n", "\n        ")
                    + ",\n" for case, value in values.items())
    return f"{name}: {annotation} = {{\n{cases}}}"


if __name__ == "__main__":  # print the current values, to paste above after an intended change
    import tempfile

    torch.set_num_threads(1)  # as tests/conftest.py
    with tempfile.TemporaryDirectory() as scratch:
        found = [
            _layout("EXPECTED_LOOP", "dict[str, dict]", {case: loop_pin(loop_config(**changes), Path(scratch) / f"l{i}")
                                                         for i, (case, changes) in enumerate(LOOP_CASES.items())}),
            _layout("EXPECTED_LABEL", "dict[str, list]", {case: label_pin(changes, Path(scratch) / f"s{i}")
                                                          for i, (case, changes) in enumerate(LABEL_CASES.items())}),
            _layout("EXPECTED_WRAPPER", "dict[str, dict]",
                    {case: wrapper_pin(changes) for case, changes in WRAPPER_CASES.items()}),
        ]
    print("\n\n".join(found))
