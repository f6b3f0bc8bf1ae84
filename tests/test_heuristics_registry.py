"""The heuristic registry: names, sources, errors, and baal's built-ins used by name."""

import json

import numpy as np
import pytest
import typer
from baal.active.heuristics import BALD, Entropy
from scipy.special import softmax
from typer.testing import CliRunner

from inas_cli.heuristics_cmd import heuristics as heuristics_command
from inas_plugins.heuristics import (ModelOutputs, QueryHeuristic, ScoreHeuristic, create_heuristic, list_heuristics,
                                     register_heuristic, unregister_heuristic)

BAAL_NAMES = {"bald", "batch_bald", "entropy", "margin", "certainty", "variance", "random",
              "power_bald", "power_entropy", "gibbs_bald", "gibbs_entropy", "rank_bald", "rank_entropy"}
OUR_NAMES = {"softmax_response", "mc_dropout", "coreset"}


@pytest.fixture(scope="module")
def outputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(60, 4, 12))
    mc_probs = softmax(logits + rng.normal(size=(60, 4, 1)) * 2, axis=1).astype(np.float32)
    return ModelOutputs(probs=mc_probs.mean(-1), mc_probs=mc_probs)


def test_every_builtin_is_listed_with_its_source():
    sources = {info.name: info.source for info in list_heuristics()}
    assert {name: sources.get(name) for name in OUR_NAMES} == dict.fromkeys(OUR_NAMES, "inas_plugins")
    assert {name: sources.get(name) for name in BAAL_NAMES} == dict.fromkeys(BAAL_NAMES, "baal")
    assert all(info.description for info in list_heuristics())


def test_registry_errors_are_value_errors_that_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown heuristic 'nope'; choose one of: .*softmax_response"):
        create_heuristic("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_heuristic("coreset")(type("Again", (ScoreHeuristic,), {"scores": lambda self, o: None}))
    with pytest.raises(ValueError, match="already registered"):
        register_heuristic("fresh_name", aliases=("sr",))(type("Alias", (ScoreHeuristic,), {"scores": None}))
    with pytest.raises(ValueError, match="not a QueryHeuristic"):
        register_heuristic("not_a_heuristic")(dict)
    with pytest.raises(ValueError, match="valid needs"):
        register_heuristic("bad_needs")(type("BadNeeds", (ScoreHeuristic,), {"needs": frozenset({"logits"})}))
    with pytest.raises(ValueError, match="does not accept"):
        create_heuristic("bald", temperature=2.0)
    with pytest.raises(ValueError, match="pool of 3"):
        create_heuristic("entropy").select(ModelOutputs(probs=np.full((3, 2), 0.5)), 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mc_probs is missing"):
        create_heuristic("bald").select(ModelOutputs(probs=np.full((3, 2), 0.5)), 1, np.random.default_rng(0))
    assert "not_a_heuristic" not in {info.name for info in list_heuristics()}


def test_decorator_registers_a_custom_heuristic():
    @register_heuristic("test_lowest_index")
    class LowestIndex(QueryHeuristic):
        """Queries the pool in order (a test heuristic)."""

        def select(self, outputs, n, rng):
            return np.arange(n)

    try:
        info = {i.name: i for i in list_heuristics()}["test_lowest_index"]
        assert info.description == "Queries the pool in order (a test heuristic)."
        assert info.source == LowestIndex.__module__.split(".")[0]
        assert create_heuristic("test_lowest_index").select(ModelOutputs(n_pool=9), 3, None).tolist() == [0, 1, 2]
    finally:
        unregister_heuristic("test_lowest_index")
    with pytest.raises(ValueError, match="unknown heuristic"):
        create_heuristic("test_lowest_index")


def test_baal_builtins_rank_like_baal(outputs):
    rng = np.random.default_rng(0)
    bald_scores = BALD().get_uncertainties(outputs.mc_probs)
    assert create_heuristic("bald").select(outputs, 8, rng).tolist() == np.argsort(-bald_scores)[:8].tolist()
    entropy_scores = Entropy().get_uncertainties(outputs.probs)
    assert create_heuristic("entropy").select(outputs, 8, rng).tolist() == np.argsort(-entropy_scores)[:8].tolist()
    certainty = create_heuristic("certainty").select(outputs, 8, rng)
    assert certainty.tolist() == create_heuristic("softmax_response").select(outputs, 8, rng).tolist()
    for name in ("margin", "variance"):
        picks = create_heuristic(name).select(outputs, 8, rng)
        assert len(set(picks.tolist())) == 8
    batch = create_heuristic("batch_bald", num_draw=50).select(outputs, 5, rng)
    assert len(set(batch.tolist())) == 5 and batch[0] == np.argmax(bald_scores)


@pytest.mark.parametrize("name", ["random", "power_bald", "gibbs_entropy", "rank_bald"])
def test_random_and_stochastic_heuristics_draw_only_from_the_given_rng(outputs, name):
    heuristic = create_heuristic(name)
    np.random.seed(0)
    global_state = np.random.get_state()[1].copy()
    first = heuristic.select(outputs, 10, np.random.default_rng(5))
    assert np.array_equal(np.random.get_state()[1], global_state)
    assert first.tolist() == heuristic.select(outputs, 10, np.random.default_rng(5)).tolist()
    assert first.tolist() != heuristic.select(outputs, 10, np.random.default_rng(6)).tolist()
    assert len(set(first.tolist())) == 10 and first.max() < 60


def test_stochastic_sampling_prefers_uncertain_points(outputs):
    bald_scores = BALD().get_uncertainties(outputs.mc_probs)
    top_half = set(np.argsort(-bald_scores)[:30].tolist())
    picks = create_heuristic("power_bald", temperature=0.1).select(outputs, 10, np.random.default_rng(0))
    assert sum(pick in top_half for pick in picks.tolist()) >= 9


def test_cli_lists_heuristics_as_table_and_json():
    app = typer.Typer()
    app.command()(heuristics_command)
    table = CliRunner().invoke(app, [])
    assert table.exit_code == 0
    assert "softmax_response (sr)" in table.output and "baal" in table.output
    listed = json.loads(CliRunner().invoke(app, ["--json"]).output)
    assert {"name": "coreset", "source": "inas_plugins"}.items() <= next(
        row for row in listed if row["name"] == "coreset").items()
    assert all(set(row) == {"name", "source", "description"} for row in listed)
