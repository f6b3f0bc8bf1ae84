"""The active loop (Algorithm 2): schedule, pool-subset mapping, run directory, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inas_plugins.checkpoint import load_checkpoint
from inas_plugins.config import RunConfig, parse_schedule, resolve_config
from inas_plugins.data import load_dataset
from inas_plugins.heuristics import ModelOutputs, QueryHeuristic
from inas_plugins.loop import ActiveRun, InMemoryActiveDataset, next_query_size, select_from_pool
from inas_plugins.space import Arch

TINY = dict(
    dataset="synthetic", heuristic="softmax_response", initial=24, query_schedule=[[0, 16], [40, 24]], budget=80,
    epochs=2, epoch_size=96, batch_size=32, base_width=4, max_blocks=2, max_stacks=2, mc_samples=4,
)


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", seed=0, progress=False, n_train=160, n_test=60, num_classes=3, image_size=8)


def tiny_config(**changes) -> RunConfig:
    return resolve_config({**TINY, **changes}, preset="quick")


def test_schedule_switches_batch_size_and_clips_to_budget_and_pool() -> None:
    config = resolve_config({"initial": 2000, "budget": 50_000}, preset="paper")
    assert [config.batch_size_at(n) for n in (2000, 9999, 10_000, 45_000)] == [2000, 2000, 5000, 5000]
    assert next_query_size(config, 48_000, 10_000) == 2000  # clipped to the budget
    assert next_query_size(config, 12_000, 300) == 300  # clipped to the pool
    assert next_query_size(config, 50_000, 10_000) == 0
    assert parse_schedule("10000:5000, 0:2000") == [[0, 2000], [10000, 5000]]
    with pytest.raises(ValueError, match="FROM:BATCH"):
        parse_schedule("2000")


def test_invalid_configurations_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"budget \(10\) is below initial"):
        tiny_config(budget=10)
    with pytest.raises(ValueError, match="outside the search space"):
        tiny_config(arch="3x1")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_config({}, preset="huge")


class FirstPositions(QueryHeuristic):
    """Picks candidate positions 0..n-1, so the mapping back to the pool is easy to predict."""

    name = "first"
    description = "test helper"
    needs = frozenset()

    def select(self, outputs: ModelOutputs, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(n)


def test_pool_subset_picks_are_mapped_back_to_pool_and_oracle_indices(synthetic) -> None:
    config = tiny_config(pool_subset=30)
    run = ActiveRun(config, synthetic, run_dir=".", progress=False, log=lambda _: None)
    al_dataset = InMemoryActiveDataset(synthetic.train, random_state=0)
    al_dataset.label_randomly(40)
    pool_before = al_dataset.pool_indices()
    model = run.build_model(config.space.smallest)
    rng = np.random.default_rng(7)
    picks = select_from_pool(FirstPositions(), model, run.train_data, al_dataset, 5, config, rng, progress=False)
    subset = np.sort(np.random.default_rng(7).choice(len(pool_before), size=30, replace=False))
    np.testing.assert_array_equal(picks, subset[:5])  # subset positions -> pool positions
    assert picks.max() >= 5  # a naive implementation would label pool items 0..4
    al_dataset.label(picks.tolist())
    newly_labelled = np.setdiff1d(al_dataset.labelled_indices(), np.setdiff1d(np.arange(160), pool_before))
    np.testing.assert_array_equal(newly_labelled, np.sort(pool_before[subset[:5]]))


def test_pool_access_does_not_copy_the_dataset(synthetic) -> None:
    al_dataset = InMemoryActiveDataset(synthetic.train, random_state=0)
    al_dataset.label_randomly(10)
    pool = al_dataset.pool
    assert len(pool) == 150 and pool.dataset is synthetic.train


def test_run_writes_results_and_labels_up_to_the_budget(tmp_path, synthetic) -> None:
    lines: list[str] = []
    rounds = ActiveRun(tiny_config(), synthetic, tmp_path, progress=False, log=lines.append).run()
    labelled = [r["labelled"] for r in rounds]
    assert labelled == [24, 40, 64, 80]  # 16 below 40 labels, then 24, the last batch clipped to the budget
    space = tiny_config().space
    previous = Arch(1, 1)  # --start-arch
    for record in rounds:
        # Algorithm 1, one iteration: the candidates are the previous round's architecture and its
        # expansions inside the 2x2 space, and the round keeps the best on V' (ties: fewer parameters).
        candidates = record["candidates"]
        assert sorted(Arch(*c["arch"]) for c in candidates) == sorted(space.candidates(previous))
        best = min(candidates, key=lambda c: (-c["val_accuracy"], c["params"]))
        assert record["arch"] == best["arch"]
        assert 0.0 <= record["test_accuracy"] <= 1.0 and record["params"] == best["params"]
        previous = Arch(*record["arch"])
    assert rounds[0]["candidates"][0]["arch"] == [1, 1]
    assert len(lines) == len(rounds)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "complete" and results["config"]["budget"] == 80
    assert [r["labelled"] for r in results["rounds"]] == labelled
    csv_lines = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rounds)
    for picture in ("learning_curve.png", "architecture.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.finished and int((checkpoint.labelled_map > 0).sum()) == 80


@pytest.mark.slow
def test_fixed_architecture_baseline_never_searches(tmp_path, synthetic) -> None:
    rounds = ActiveRun(tiny_config(arch="1x2", budget=40), synthetic, tmp_path, progress=False,
                       log=lambda _: None).run()
    assert all(r["arch"] == [1, 2] and r["candidates"] == [] and r["search_seconds"] == 0 for r in rounds)


@pytest.mark.slow
def test_resume_after_interruption_ends_with_the_same_labelled_set(tmp_path, synthetic) -> None:
    config = tiny_config(heuristic="coreset")
    whole = ActiveRun(config, synthetic, tmp_path / "whole", progress=False, log=lambda _: None)
    (tmp_path / "whole").mkdir()
    whole_rounds = whole.run()

    class Interrupt(Exception):
        pass

    def stop_after_second_round(line: str) -> None:
        if line.lstrip().startswith("round  1"):
            raise Interrupt

    (tmp_path / "cut").mkdir()
    with pytest.raises(Interrupt):
        ActiveRun(config, synthetic, tmp_path / "cut", progress=False, log=stop_after_second_round).run()
    interrupted = load_checkpoint(tmp_path / "cut")
    assert not interrupted.finished and interrupted.next_round == 1

    resumed_rounds = ActiveRun(config, synthetic, tmp_path / "cut", progress=False, log=lambda _: None).run(resume=True)
    np.testing.assert_array_equal(load_checkpoint(tmp_path / "cut").labelled_map > 0,
                                  load_checkpoint(tmp_path / "whole").labelled_map > 0)
    assert [r["arch"] for r in resumed_rounds] == [r["arch"] for r in whole_rounds]
    assert [r["test_accuracy"] for r in resumed_rounds] == [r["test_accuracy"] for r in whole_rounds]
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["finished"] is True


@pytest.mark.slow
@pytest.mark.parametrize("heuristic", ["mc_dropout", "bald", "coreset", "random", "power_entropy"])
def test_each_query_function_labels_distinct_new_pool_points(tmp_path, synthetic, heuristic) -> None:
    config = tiny_config(heuristic=heuristic, arch="1x1", budget=40, query_schedule=[[0, 16]])
    run = ActiveRun(config, synthetic, tmp_path, progress=False, log=lambda _: None)
    rounds = run.run()
    assert [r["labelled"] for r in rounds] == [24, 40]
    assert rounds[0]["queried"] == 16
    assert rounds[0]["query_seconds"] > 0 or heuristic == "random"  # random needs no pass: well under 1 ms
    assert int((load_checkpoint(tmp_path).labelled_map > 0).sum()) == 40
