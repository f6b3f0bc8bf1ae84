"""Query-side hardening: picks checked before labelling, scores in chunks, BatchBALD's memory guard."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from inas_plugins.config import resolve_config
from inas_plugins.data import load_dataset
from inas_plugins.heuristics import ModelOutputs, QueryHeuristic, collect_outputs, create_heuristic
from inas_plugins.heuristics.baal_builtin import BatchBALDQuery, batch_bald_bytes
from inas_plugins.heuristics.base import check_picks
from inas_plugins.heuristics.outputs import pool_scores, scores_in_chunks
from inas_plugins.loop import ActiveRun, InMemoryActiveDataset, select_from_pool


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("synthetic", seed=0, progress=False, n_train=120, n_test=20, num_classes=3, image_size=8)
    config = resolve_config(dict(dataset="synthetic", initial=20, query_schedule=[[0, 10]], budget=40, base_width=4,
                                 max_blocks=2, max_stacks=2, mc_samples=6, arch="1x1"), preset="quick")
    run = ActiveRun(config, data, run_dir=".", progress=False, log=lambda _: None)
    torch.manual_seed(0)
    model = run.build_model(config.fixed_arch)
    al_dataset = InMemoryActiveDataset(data.train, random_state=0)
    al_dataset.label_randomly(20)
    return config, run, model, al_dataset


def picker(picks):
    class Fixed(QueryHeuristic):
        name = "fixed_picks"
        needs = frozenset()

        def select(self, outputs, n, rng):
            return picks
    return Fixed()


@pytest.mark.parametrize("picks,fragment", [
    (np.array([-1, 0, 1]), "outside the pool of 100 (0..99): -1..1"),
    (np.array([0.0, 1.0, 2.0]), "integer pool positions, got float64"),
    (np.array([0, 0, 1]), "same pool position more than once"),
    (np.array([0, 1]), "returned 2 picks, not the 3 asked for"),
    (np.array([0, 1, 100]), "outside the pool of 100"),
    (np.array([True, False, True]), "integer pool positions, got bool"),
    (np.array([[0, 1, 2]]), "1-d array"),
])
def test_bad_picks_are_refused_naming_the_heuristic_before_anything_is_labelled(setup, picks, fragment) -> None:
    config, run, model, al_dataset = setup
    before = al_dataset.labelled_map.copy()
    with pytest.raises(ValueError) as error:
        select_from_pool(picker(picks), model, run.train_data, al_dataset, 3, config, np.random.default_rng(0), False)
    message = str(error.value)
    assert "heuristic 'softmax_response'" in message and fragment in message and "\n" not in message
    np.testing.assert_array_equal(al_dataset.labelled_map, before)


def test_check_picks_is_one_function_shared_with_baal_query() -> None:
    np.testing.assert_array_equal(check_picks([3, 1, 2], 3, 4, "x"), [3, 1, 2])
    assert check_picks(np.array([], dtype=np.int64), 0, 0, "x").dtype == np.int64


@pytest.mark.parametrize("name", ["mc_dropout", "bald", "variance", "softmax_response", "entropy", "margin"])
def test_scores_in_chunks_equal_the_scores_of_the_whole_pool(setup, name) -> None:
    """Batches of 7 (the pool: 100) against collect_outputs + scores on the full (N, C, K) array."""
    config, run, model, al_dataset = setup
    heuristic = create_heuristic(name)
    assert scores_in_chunks(heuristic)
    pool = run.train_data.subset(torch.from_numpy(al_dataset.pool_indices()))
    chunked = pool_scores(model, pool, heuristic, batch_size=7, mc_samples=6, mc_dropout_rate=0.5, seed=3)
    whole = collect_outputs(model, pool, None, heuristic.needs, batch_size=7, mc_samples=6, mc_dropout_rate=0.5, seed=3)
    expected = np.asarray(heuristic.scores(whole) if hasattr(heuristic, "scores") else None, dtype=np.float64)
    assert chunked.shape == (100,)
    np.testing.assert_allclose(chunked, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(heuristic.select_by_scores(chunked, 10),
                                  heuristic.select(whole, 10, np.random.default_rng(0)))


def test_heuristics_that_need_the_whole_pool_are_not_chunked() -> None:
    for name in ("coreset", "batch_bald", "random", "power_bald"):
        assert not scores_in_chunks(create_heuristic(name)), name

    class Diverse(type(create_heuristic("softmax_response"))):  # scores, but picks its own way
        def select(self, outputs, n, rng):
            return np.arange(n)

    class PoolNormalised(type(create_heuristic("softmax_response"))):
        pointwise = False

    assert not scores_in_chunks(Diverse()) and not scores_in_chunks(PoolNormalised())


def test_batch_bald_refuses_what_would_not_fit_with_its_estimate() -> None:
    rng = np.random.default_rng(0)
    mc_probs = rng.dirichlet(np.ones(4), size=(60, 5)).transpose(0, 2, 1).astype(np.float32)
    needed = batch_bald_bytes(60, 4, 5, 10)
    with pytest.raises(ValueError) as error:
        BatchBALDQuery(memory_limit=needed - 1).select(ModelOutputs(mc_probs=mc_probs), 10, rng)
    message = str(error.value)
    assert "batch_bald would need about" in message and "a batch of 10 from a pool of 60" in message
    assert "\n" not in message
    picks = BatchBALDQuery(memory_limit=needed).select(ModelOutputs(mc_probs=mc_probs), 10, rng)
    assert len(set(picks.tolist())) == 10


MEASURE = """
import os, resource, sys
import numpy as np
from inas_plugins.heuristics import ModelOutputs
from inas_plugins.heuristics.baal_builtin import BatchBALDQuery
for shape in sys.argv[1:]:
    pool, classes, samples, n = map(int, shape.split(","))
    rng = np.random.default_rng(0)
    mc_probs = rng.dirichlet(np.ones(classes), size=(pool, samples)).transpose(0, 2, 1).astype(np.float32)
    read, write = os.pipe()
    if os.fork() == 0:  # a child per shape: its own peak, after the imports both share
        # Warm up first: torch allocates its thread pools and kernels' workspaces lazily, on the first
        # call, and that one-off (tens of MB) is not what the estimate is about.
        tiny = rng.dirichlet(np.ones(classes), size=(8, 2)).transpose(0, 2, 1).astype(np.float32)
        BatchBALDQuery().select(ModelOutputs(mc_probs=tiny), 2, np.random.default_rng(1))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        BatchBALDQuery().select(ModelOutputs(mc_probs=mc_probs), n, rng)
        os.write(write, str((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024).encode())
        os._exit(0)
    os.close(write)
    os.wait()
    print(shape, os.read(read, 64).decode(), flush=True)
"""
SHAPES = [(200, 4, 10, 8), (60, 3, 30, 20)]  # (pool, classes, K, n): joint entropy, then the sampler, dominates


@pytest.mark.slow
def test_the_batch_bald_estimate_matches_the_measured_peak() -> None:
    """Against the peak resident memory of baal's BatchBALD (one child process per shape)."""
    import subprocess
    import sys

    output = subprocess.run([sys.executable, "-c", MEASURE, *(",".join(map(str, shape)) for shape in SHAPES)],
                            capture_output=True, text=True, check=True,
                            # One malloc arena: glibc's per-thread arenas otherwise add tens of MB of
                            # allocator slack to the peak (measured 166-235 MB for the same shape).
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}).stdout
    measured = dict(line.split() for line in output.strip().splitlines())
    for shape in SHAPES:
        peak, estimate = int(measured[",".join(map(str, shape))]), batch_bald_bytes(*shape)
        # The peak moves with the allocator and with what the child happened to touch (for one shape
        # 160-235 MB over repeated runs), so the band is wide; a factor-2 error still fails.
        assert 0.6 * peak <= estimate <= 1.5 * peak, (shape, estimate, peak)
