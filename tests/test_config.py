"""The run configuration: the nested layout, errors that name settings, one flag table."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer.main

from inas_cli.main import app
from inas_plugins.config import (OWN_FIELDS, PRESETS, RUN_FLAGS, SECTIONS, RunConfig, flag_of, flag_overrides,
                                 resolve_config)
from inas_plugins.settings import QueryOptions, SearchOptions, SettingError
from inas_plugins.training.recipe import TrainRecipe

NOT_SETTINGS = {"out", "resume", "quiet", "preset", "query_size", "schedule", "threads", "parallel_candidates",
                "tracking_uri", "experiment", "parent_run_id"}


def run_command():
    return typer.main.get_command(app).commands["run"]


# --------------------------------------------------------------------------- the nested layout


def test_to_dict_is_nested_and_round_trips_through_json():
    config = resolve_config({"dataset": "synthetic", "epochs": 3, "search_iterations": 2, "heuristic": "random",
                             "pool_subset": 40, "arch": None}, preset="quick")
    data = config.to_dict()
    assert list(data)[-3:] == ["train", "search", "query"]
    assert set(data) == {*OWN_FIELDS, *SECTIONS}
    assert data["train"] == TrainRecipe.named("lowdata", epochs=3, epoch_size=2000, batch_size=64).to_dict()
    assert data["search"] == SearchOptions(iterations=2).to_dict()
    assert data["query"] == QueryOptions(heuristic="random", mc_samples=50, pool_subset=40).to_dict()
    assert not {"epochs", "heuristic", "search_iterations", "mc_samples"} & set(data)
    again = RunConfig.from_dict(json.loads(json.dumps(data)))
    assert again == config and again.to_dict() == data
    assert isinstance(again.train, TrainRecipe) and again.train.lr_schedule == "linear"


def test_the_copies_are_gone_from_the_flat_level():
    config = RunConfig()
    for name in ("heuristic", "epochs", "search_iterations", "mc_samples", "pool_subset", "val_fraction"):
        assert not hasattr(config, name), name
    assert not hasattr(config, "train_recipe")
    assert config.uses_search and not RunConfig(arch="2x4").uses_search
    assert config.train == TrainRecipe() and config.search == SearchOptions() and config.query == QueryOptions()


def test_a_config_does_not_share_the_callers_lists():
    data = RunConfig().to_dict()
    config = RunConfig.from_dict(data)
    data["query_schedule"][0][1] = 7
    assert config.query_schedule[0][1] == 2000


def test_the_flat_layout_nobody_writes_is_refused_with_the_keys_it_does_not_know():
    flat = {**{k: v for k, v in RunConfig().to_dict().items() if k not in SECTIONS}, "epochs": 20, "heuristic": "sr"}
    with pytest.raises(ValueError, match=r"unknown configuration keys \['epochs', 'heuristic'\]"):
        RunConfig.from_dict(flat)


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
    ({"query_schedule": [[0]]}, "query_schedule"),
    ({"augment": "yes"}, "augment"),
    ({"drop_rate": 1.0}, "drop_rate"),
    ({"base_width": 0}, "base_width"),
    ({"limit_train": 0}, "limit_train"),
    ({"flavour": "mint"}, "flavour"),
    ({"train": {"flavour": "mint"}}, "flavour"),
])
def test_bad_values_are_one_line_naming_the_key(values, named):
    with pytest.raises(ValueError) as caught:
        RunConfig.from_dict(values)
    message = str(caught.value)
    assert "\n" not in message and named in message, message


@pytest.mark.parametrize("overrides, settings, message", [
    ({"initial": 0}, ("initial",), "initial must be a positive integer, got 0"),
    ({"budget": 10}, ("budget", "initial"), "budget (10) is below initial (50)"),
    ({"mc_samples": 0}, ("query.mc_samples",), "query.mc_samples must be a positive integer, got 0"),
    ({"search_iterations": 0}, ("search.iterations",), "search.iterations must be a positive integer, got 0"),
    ({"epochs": 0}, ("train.epochs",), "train.epochs"),
    ({"lr": -1.0}, ("train.lr",), "train.lr"),
    ({"start_arch": "9x9"}, ("start_arch",), "start_arch 9x9: architecture 9x9 is outside the search space"),
    ({"arch": "0x2"}, ("arch",), "arch 0x2: an architecture needs at least 1 block"),
    ({"image_size": 3}, ("image_size",), "image_size must be in [8, 1024] pixels, got 3"),
    ({"premature_schedule": "late"}, ("search.premature_schedule",), "one of compressed, early_stop"),
    ({"seed": -1}, ("seed",), "seed must be in [0, 4294967295], got -1"),
    ({"epoch_size": "many"}, ("train.epoch_size",), "train.epoch_size must be an integer, got 'many'"),
])
def test_errors_name_the_setting_by_field_and_never_by_flag(overrides, settings, message):
    with pytest.raises(SettingError) as caught:
        resolve_config({"dataset": "synthetic", **overrides}, preset="quick")
    text = str(caught.value)
    assert caught.value.settings == settings and message in text, text
    assert "--" not in text and "\n" not in text


def test_every_setting_name_of_an_error_maps_to_its_flag():
    assert (flag_of("initial"), flag_of("query.mc_samples"), flag_of("mc_samples")) == ("--initial", "--mc-samples",
                                                                                       "--mc-samples")
    assert flag_of("search.iterations") == "--search-iterations" and flag_of("data_seed") is None
    for entry in RUN_FLAGS:
        assert flag_of(entry.path) == flag_of(entry.field) == f"--{entry.flag}", entry


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
        annotation = option.type_descriptor.annotation
        assert annotation is entry.value_type or [choice.value for choice in annotation] == list(entry.choices), entry


def test_label_init_offers_the_setting_options_of_inas_run_from_the_same_table():
    from inas_cli.label_cmd import RUN_ONLY

    run = {param.name: param for param in run_command().params}
    init = {param.name: param for param in typer.main.get_command(app).commands["label"].commands["init"].params}
    assert set(RUN_ONLY) <= {entry.flag for entry in RUN_FLAGS}
    for entry in RUN_FLAGS:
        if entry.flag in RUN_ONLY:
            assert entry.param not in init or entry.flag == "data-dir", entry
            continue
        mine, theirs = init[entry.param], run[entry.param]
        assert (mine.opts, mine.secondary_opts, mine.help) == (theirs.opts, theirs.secondary_opts, theirs.help)
        assert mine.type_descriptor.annotation is theirs.type_descriptor.annotation, entry


def test_every_flag_sets_a_real_setting():
    assert len({entry.flag for entry in RUN_FLAGS}) == len(RUN_FLAGS)
    for entry in RUN_FLAGS:
        if entry.section is None:
            assert entry.field in OWN_FIELDS, entry
            assert entry.param == entry.field
        else:
            assert entry.field in {f.name for f in fields(SECTIONS[entry.section])}, entry


def test_arch_inas_means_the_search_for_inas_run_as_for_inas_sweep():
    from inas_plugins.config import SEARCHED_ARCH, resume_conflicts
    from inas_plugins.sweep import option_args

    searched = resolve_config({"dataset": "synthetic", "arch": SEARCHED_ARCH}, preset="quick")
    assert searched.arch is None and searched.uses_search
    assert resume_conflicts(searched, {"arch": "inas"}) == []
    assert resume_conflicts(searched, {"arch": "1x2"}) == ["--arch 1x2 (the run has inas)"]
    assert option_args({"arch": SEARCHED_ARCH, "seed": 1}) == ["--seed", "1"]


def test_flag_overrides_route_each_option_to_its_setting():
    nested = flag_overrides({"epochs": 3, "search_iterations": 2, "mc_samples": None, "data_dir": Path("/d"),
                             "heuristic": "coreset", "seed": 4})
    assert nested == {"train": {"epochs": 3}, "search": {"iterations": 2}, "query": {"heuristic": "coreset"},
                      "data_dir": "/d", "seed": 4}
    with pytest.raises(ValueError, match="unknown option 'out'"):
        flag_overrides({"out": "x"})


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
