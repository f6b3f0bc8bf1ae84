"""BaalQuery's own job: what a predict pass recorded is used only for the predictions it made,
pointwise heuristics are scored in chunks, and the wrapper's progress follows the CLI's rule."""

from __future__ import annotations

import io

import numpy as np
import pytest
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.modelwrapper import TrainingArgs
from torch.utils.data import Subset

from inas_plugins import baal_query
from inas_plugins.heuristics import MCDropoutQuery, create_heuristic
from inas_plugins.models import build_inas_resnet
from inas_plugins.progress import draw_bars
from inas_plugins.space import Arch, SearchSpace
from inas_plugins.wrapper import INASModelWrapper
from test_wrapper_dropin import CLASSES, blobs

def train_wrapper() -> INASModelWrapper:
    model = build_inas_resnet(Arch(1, 1), num_classes=CLASSES, in_chans=1, base_width=4, drop_rate=0.0)
    wrapper = INASModelWrapper(model, TrainingArgs(batch_size=16, epoch=1, workers=0, use_cuda=False),
                               space=SearchSpace(2, 2), search=False, progress=False)
    wrapper.train_on_dataset(blobs(30))
    return wrapper


@pytest.fixture(scope="module")
def trained() -> INASModelWrapper:
    return train_wrapper()


class ChunkSpy(MCDropoutQuery):
    """The paper's MC-dropout score, recording how many pool rows each call of ``scores`` sees."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def scores(self, outputs):
        self.rows.append(len(outputs.mc_probs))
        return super().scores(outputs)


@pytest.mark.parametrize("heuristic,iterations", [("mc_dropout", 4), ("softmax_response", 1), ("coreset", 1)])
def test_recorded_outputs_serve_only_the_predictions_they_were_recorded_with(trained, heuristic, iterations) -> None:
    """Two pools of the same length: the old cache, matched by length, ranked the first pool with the
    second pool's deterministic probabilities or embeddings."""
    query = trained.heuristic(heuristic, query_size=4)
    first, second = Subset(blobs(60, seed=1), range(20)), Subset(blobs(60, seed=1), range(20, 40))
    first_predictions = trained.predict_on_dataset(first, iterations=iterations)
    expected = query.get_ranks(first_predictions)
    trained.predict_on_dataset(second, iterations=iterations)  # the latest pass is now another pool
    if heuristic == "softmax_response":  # one deterministic sample: its probabilities are in the predictions
        np.testing.assert_array_equal(query.get_ranks(first_predictions)[0], expected[0])
    else:
        with pytest.raises(ValueError, match="that made these predictions"):
            query.get_ranks(first_predictions)
    again = trained.predict_on_dataset(first, iterations=iterations)  # predicted again, it is ranked again
    if iterations == 1:  # deterministic: the same ranking (MC samples are drawn anew by every pass)
        np.testing.assert_array_equal(query.get_ranks(again)[0], expected[0])
    else:
        assert len(query.get_ranks(again)[0]) == 4


def test_pointwise_scores_are_computed_chunk_by_chunk_from_the_generator_and_from_arrays(monkeypatch) -> None:
    """Twin wrappers (same seeds) make the same predictions; a spy sees how many rows each scoring call gets."""
    pool, first, second = blobs(50, seed=2), train_wrapper(), train_wrapper()
    spies = ChunkSpy(), ChunkSpy()
    on_generator = baal_query.BaalQuery(spies[0], first, query_size=5)
    on_array = baal_query.BaalQuery(spies[1], second, query_size=5)
    reference = baal_query.BaalQuery(create_heuristic("mc_dropout"), second, query_size=5)
    generator_ranks = on_generator.get_ranks(first.predict_on_dataset_generator(pool, iterations=6))
    assert spies[0].rows == [16, 16, 16, 2]  # the wrapper's batches: the (50, 3, 6) array never exists
    predictions = second.predict_on_dataset(pool, iterations=6)
    monkeypatch.setattr(baal_query, "CHUNK_ROWS", 7)
    array_ranks = on_array.get_ranks(predictions)
    assert spies[1].rows == [7] * 7 + [1]  # blocks of the array, not a softmaxed copy of all of it
    monkeypatch.setattr(baal_query, "scores_in_chunks", lambda heuristic: False)
    whole_picks, whole_scores = reference.get_ranks(predictions)  # the registered heuristic on the whole pool
    for picks, scores in (generator_ranks, array_ranks):
        np.testing.assert_array_equal(picks, whole_picks)
        np.testing.assert_allclose(scores, whole_scores, rtol=1e-6)


def test_the_generator_in_baal_loop_picks_what_the_array_picks() -> None:
    """Twin wrappers (same seeds, so the same MC masks): baal's loop over either prediction method."""
    labelled_map = np.zeros(60, dtype=int)
    labelled_map[:20] = 1
    picked = []
    for wrapper in (train_wrapper(), train_wrapper()):
        predict = wrapper.predict_on_dataset if not picked else wrapper.predict_on_dataset_generator
        al_dataset = ActiveLearningDataset(blobs(60, seed=3), labelled=labelled_map.copy())
        loop = ActiveLearningLoop(al_dataset, predict, heuristic=wrapper.heuristic("mc_dropout", 5),
                                  query_size=5, iterations=4, verbose=False)
        assert loop.step()
        picked.append(np.flatnonzero(al_dataset.labelled_map == 2))
    np.testing.assert_array_equal(*picked)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal() -> None:
    assert draw_bars(True, Terminal()) and not draw_bars(False, Terminal())
    assert not draw_bars(True, io.StringIO())  # a log file, a pipe


def test_the_wrapper_writes_one_line_per_step_off_a_terminal(capfd) -> None:
    model = build_inas_resnet(Arch(1, 1), num_classes=CLASSES, in_chans=1, base_width=4)
    wrapper = INASModelWrapper(model, TrainingArgs(batch_size=16, epoch=2, workers=0, use_cuda=False),
                               space=SearchSpace(2, 2))  # progress on, the default
    al_dataset = ActiveLearningDataset(blobs(40))
    al_dataset.label_randomly(20)
    for _ in range(2):
        wrapper.train_on_dataset(al_dataset)
        wrapper.predict_on_dataset(al_dataset.pool, iterations=3)
        al_dataset.label_randomly(5)
    err = capfd.readouterr().err
    assert "\r" not in err  # no bar was drawn into the captured (non-terminal) stream
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 0: 20 labelled, iNAS chose ") and "trained 2 epochs" in lines[0]
    assert lines[1].startswith("step 1: 25 labelled")
