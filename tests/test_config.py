"""The run configuration: nested layout, migration of old flat configs, one flag table, one flat view."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer.main

from inas_cli.main import app
from inas_plugins.config import (LEGACY_KEYS, OWN_FIELDS, PRESETS, RUN_FLAGS, SECTIONS, RunConfig, flat_config,
                                 flag_overrides, resolve_config)
from inas_plugins.settings import QueryOptions, SearchOptions
from inas_plugins.training.recipe import TrainRecipe

# config.json of a run written before the settings sections existed (`inas run --dataset synthetic
# --seed 3`, quick preset): one flat dict.
OLD_FLAT_QUICK = {
    "dataset": "synthetic", "data_dir": None, "heuristic": "softmax_response", "arch": None, "start_arch": "1x1",
    "max_blocks": 4, "max_stacks": 3, "block": "basic", "initial": 50, "query_schedule": [[0, 50], [300, 150]],
    "budget": 600, "pool_subset": None, "epochs": 20, "epoch_size": 2000, "batch_size": 64, "lr": 0.1,
    "momentum": 0.9, "weight_decay": 0.0005, "augment": None, "base_width": 8, "drop_rate": 0.0,
    "val_fraction": 0.2, "premature_fraction": 0.25, "search_iterations": 1, "inherit_weights": False,
    "successive_halving": False, "mc_samples": 50, "mc_dropout_rate": 0.5, "limit_train": None, "limit_test": None,
    "seed": 3, "data_seed": 0, "device": "auto", "preset": "quick",
}
# The same for the cpu preset on CIFAR (`--dataset folder --preset cpu`).
OLD_FLAT_CPU = {
    "dataset": "folder", "data_dir": None, "heuristic": "softmax_response", "arch": None, "start_arch": "1x1",
    "max_blocks": 4, "max_stacks": 4, "block": "basic", "initial": 200,
    "query_schedule": [[0, 200], [400, 400], [800, 800], [1600, 1600]], "budget": 3200, "pool_subset": None,
    "epochs": 24, "epoch_size": 4000, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005,
    "augment": None, "base_width": 16, "drop_rate": 0.0, "val_fraction": 0.2, "premature_fraction": 0.125,
    "search_iterations": 1, "inherit_weights": False, "successive_halving": False, "mc_samples": 50,
    "mc_dropout_rate": 0.5, "limit_train": 10000, "limit_test": 2000, "seed": 0, "data_seed": 0, "device": "auto",
    "preset": "cpu",
}
NOT_SETTINGS = {"out", "resume", "quiet", "preset", "query_size", "schedule", "threads", "parallel_candidates"}


def run_command():
    return typer.main.get_command(app).commands["run"]


# --------------------------------------------------------------------------- the nested layout


def test_to_dict_is_nested_and_round_trips_through_json():
    config = resolve_config({"dataset": "synthetic", "epochs": 3, "search_iterations": 2, "heuristic": "random",
                             "pool_subset": 40, "arch": None}, preset="quick")
    data = config.to_dict()
    assert list(data)[-3:] == ["train", "search", "query"]
    assert set(data) == {*OWN_FIELDS, *SECTIONS}
    assert data["train"] == {**TrainRecipe(epochs=3, epoch_size=2000, batch_size=64).to_dict()}
    assert data["search"] == SearchOptions(iterations=2).to_dict()
    assert data["query"] == QueryOptions(heuristic="random", mc_samples=50, pool_subset=40).to_dict()
    assert not {"epochs", "heuristic", "search_iterations", "mc_samples"} & set(data)
    again = RunConfig.from_dict(json.loads(json.dumps(data)))
    assert again == config and again.to_dict() == data
    assert isinstance(again.train, TrainRecipe) and again.train.lr_milestones == (0.5, 0.75)


def test_the_copies_are_gone_from_the_flat_level():
    config = RunConfig()
    for name in LEGACY_KEYS:
        assert not hasattr(config, name), name
    assert not hasattr(config, "train_recipe")
    assert config.uses_search and not RunConfig(arch="2x4").uses_search
    assert config.train == TrainRecipe() and config.search == SearchOptions() and config.query == QueryOptions()


def test_a_config_does_not_share_the_callers_lists():
    data = RunConfig().to_dict()
    config = RunConfig.from_dict(data)
    data["query_schedule"][0][1] = 7
    assert config.query_schedule[0][1] == 2000


# --------------------------------------------------------------------------- migration of old runs


@pytest.mark.parametrize("old, overrides, preset", [
    (OLD_FLAT_QUICK, {"dataset": "synthetic", "seed": 3}, "quick"),
    # the cpu preset as it was before the lowdata recipe
    (OLD_FLAT_CPU, {"dataset": "folder", "recipe": "paper", "train": {"epoch_size_exponent": 0.0}}, "cpu"),
])
def test_an_old_flat_config_is_migrated_to_the_same_config(old, overrides, preset):
    migrated = RunConfig.from_dict(json.loads(json.dumps(old)))
    assert migrated == resolve_config(overrides, preset=preset)
    assert migrated.train.epochs == old["epochs"] and migrated.train.epoch_size == old["epoch_size"]
    assert migrated.search.iterations == old["search_iterations"]
    assert migrated.search.premature_fraction == old["premature_fraction"]
    assert migrated.query.heuristic == old["heuristic"] and migrated.query.mc_samples == old["mc_samples"]
    # The flat view of the new layout is exactly the old layout.
    assert flat_config(migrated.to_dict()) == old
    assert list(flat_config(migrated.to_dict())) == list(old)
    assert flat_config(old) == old


def test_an_old_flat_config_with_other_values_keeps_them():
    old = {**OLD_FLAT_QUICK, "arch": "2x3", "epochs": 7, "lr": 0.05, "momentum": 0.8, "val_fraction": 0.3,
           "successive_halving": True, "mc_dropout_rate": 0.25, "pool_subset": 100}
    config = RunConfig.from_dict(old)
    assert (config.train.epochs, config.train.lr, config.train.momentum) == (7, 0.05, 0.8)
    assert (config.search.val_fraction, config.search.successive_halving) == (0.3, True)
    assert (config.query.mc_dropout_rate, config.query.pool_subset) == (0.25, 100)
    assert not config.uses_search and config.fixed_arch is not None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("values, named", [
    ([], "got a list"),
    ({"search": False}, "got a boolean"),
    (None, "got null"),
    ("epochs=3", "got a string"),
    ({"train": {"epochs": "abc"}}, "epochs"),
    ({"epochs": "abc"}, "epochs"),
    ({"epochs": 0}, "epochs"),
    ({"train": {"lr": "fast"}}, "lr"),
    ({"train": {"momentum": "high"}}, "momentum"),
    ({"train": {"lr_milestones": "half"}}, "lr_milestones"),
    ({"train": 5}, "train"),
    ({"search": True}, "search"),
    ({"search": {"iterations": 0}}, "iterations"),
    ({"search_iterations": 1.5}, "iterations"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"query": {"mc_dropout_rate": 1.5}}, "mc_dropout_rate"),
    ({"query": {"heuristic": 3}}, "heuristic"),
    ({"query": {"pool_subset": 0}}, "pool_subset"),
    ({"budget": "lots"}, "budget"),
    ({"initial": None}, "initial"),
    ({"query_schedule": [[0, "x"]]}, "query_schedule"),
    ({"query_schedule": [[0]]}, "query schedule"),
    ({"augment": "yes"}, "augment"),
    ({"drop_rate": 1.0}, "drop-rate"),
    ({"base_width": 0}, "base-width"),
    ({"limit_train": 0}, "limit-train"),
    ({"flavour": "mint"}, "flavour"),
    ({"train": {"flavour": "mint"}}, "flavour"),
    ({"epochs": 5, "train": {"epochs": 6}}, "train.epochs"),
])
def test_bad_values_are_one_line_naming_the_key(values, named):
    with pytest.raises(ValueError) as caught:
        RunConfig.from_dict(values)
    message = str(caught.value)
    assert "\n" not in message and named in message, message


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['flavour'\]; valid keys are \[.*'train', "
                                         r"'search', 'query'\]"):
        RunConfig.from_dict({"flavour": 1})


def test_resolve_config_refuses_bad_overrides_in_one_line():
    with pytest.raises(ValueError, match="given twice"):
        resolve_config({"epochs": 3, "train": {"epochs": 4}}, preset="quick")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        resolve_config({"epoch": 3}, preset="quick")
    with pytest.raises(ValueError, match="must be a mapping"):
        resolve_config([("epochs", 3)], preset="quick")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        resolve_config({}, preset="huge")


# --------------------------------------------------------------------------- presets and overrides


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_and_names_only_real_settings(name):
    config = resolve_config({"dataset": "synthetic"}, preset=name)
    assert config.preset == name
    for key, value in PRESETS[name].items():
        if key in SECTIONS:
            for setting, wanted in value.items():
                assert getattr(getattr(config, key), setting) == wanted, (key, setting)
        else:
            assert getattr(config, key) == value, key


def test_resolve_config_takes_option_names_nested_sections_and_ignores_none():
    config = resolve_config({"dataset": "synthetic", "epochs": 3, "lr": 0.05, "premature_fraction": 0.5,
                             "search_iterations": 2, "inherit_weights": True, "heuristic": "random",
                             "mc_samples": 9, "budget": None, "train": {"momentum": 0.8, "lr_gamma": None},
                             "query": {"mc_dropout_rate": 0.3}}, preset="quick")
    assert (config.train.epochs, config.train.lr, config.train.momentum, config.train.lr_gamma) == (3, 0.05, 0.8, 0.1)
    assert config.train.epoch_size == 2000  # from the preset, not lost by overriding another train setting
    assert config.search == SearchOptions(iterations=2, premature_fraction=0.5, inherit_weights=True)
    assert config.query == QueryOptions(heuristic="random", mc_samples=9, mc_dropout_rate=0.3)
    assert config.budget == 600


def test_cpu_preset_keeps_its_cheaper_search_and_an_override_wins():
    assert resolve_config({"dataset": "folder"}, preset="cpu").search.premature_fraction == 0.125
    overridden = resolve_config({"dataset": "folder", "search": {"premature_fraction": 0.25}}, preset="cpu")
    assert overridden.search.premature_fraction == 0.25 and overridden.train.epochs == 24


# --------------------------------------------------------------------------- the flag table


def test_the_flag_table_covers_every_inas_run_option_but_the_non_settings():
    params = {param.name: param for param in run_command().params}
    assert {entry.param for entry in RUN_FLAGS} == set(params) - NOT_SETTINGS
    assert NOT_SETTINGS <= set(params)
    for entry in RUN_FLAGS:
        option = params[entry.param]
        assert option.opts == [f"--{entry.flag}"] and option.help == entry.help


def test_every_flag_sets_a_real_setting_under_its_old_flat_name():
    assert len({entry.flag for entry in RUN_FLAGS}) == len(RUN_FLAGS)
    for entry in RUN_FLAGS:
        if entry.section is None:
            assert entry.field in OWN_FIELDS, entry
            assert entry.param == entry.field
        else:
            assert entry.field in {f.name for f in fields(SECTIONS[entry.section])}, entry
            assert LEGACY_KEYS.get(entry.param, (entry.section, entry.field)) == (entry.section, entry.field), entry


def test_flag_overrides_route_each_option_to_its_setting():
    nested = flag_overrides({"epochs": 3, "search_iterations": 2, "mc_samples": None, "data_dir": Path("/d"),
                             "heuristic": "coreset", "seed": 4})
    assert nested == {"train": {"epochs": 3}, "search": {"iterations": 2}, "query": {"heuristic": "coreset"},
                      "data_dir": "/d", "seed": 4}
    with pytest.raises(ValueError, match="unknown option 'out'"):
        flag_overrides({"out": "x"})


# --------------------------------------------------------------------------- the flat view


def test_flat_config_shows_newer_settings_only_when_they_differ_from_the_default():
    data = RunConfig().to_dict()
    assert "lr_gamma" not in flat_config(data) and "eval_batch_size" not in flat_config(data)
    data["train"]["lr_gamma"] = 0.2
    assert flat_config(data)["lr_gamma"] == 0.2


def test_flat_config_passes_foreign_keys_through():
    assert flat_config({"dataset": "digits", "search": True, "workers": 4}) == {"dataset": "digits", "search": True,
                                                                                 "workers": 4}


def test_importing_the_config_module_does_not_import_torch():
    # The package __init__ imports the networks (torch); load only inas_plugins.config and what it imports.
    root = Path(__file__).resolve().parents[1] / "inas_plugins"
    script = f"""
import sys, types
for name, path in (("inas_plugins", {str(root)!r}), ("inas_plugins.training", {str(root / "training")!r})):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
import inas_plugins.config
assert inas_plugins.config.RunConfig().to_dict()["train"]["epochs"] == 200
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("torch", "numpy", "timm", "baal"))
print(heavy)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
