"""Comparing runs: normalised AUC, grouping over seeds, AUC-GAIN, and the `inas report` command."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins.config import resolve_config
from inas_plugins.report import (auc_gain, auc_gain_by_budget, build_report, format_curve_table,
                                 format_report_table, normalised_auc)
from inas_plugins.results import atomic_write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE_CONFIG = {"dataset": "digits", "heuristic": "softmax_response", "budget": 300, "epochs": 2, "seed": 0,
               "device": "cpu"}


def make_run(path, accuracies, labelled=(100, 200, 300), status="complete", **config_changes):
    """A run directory as the active loop writes it, with the given test accuracies; ``config_changes``
    are settings by their option name (``epochs``, ``mc_samples``)."""
    path.mkdir(parents=True)
    config = resolve_config({**BASE_CONFIG, **config_changes}, preset="quick").to_dict()
    arch = [int(n) for n in config["arch"].split("x")] if config["arch"] else [1, 1]
    rounds = [{"round": r, "labelled": n, "arch": arch, "params": 1000 * (r + 1), "depth": 4,
               "test_accuracy": a, "candidates": [], "search_seconds": 0.1, "train_seconds": 0.2,
               "query_seconds": 0.01} for r, (n, a) in enumerate(zip(labelled, accuracies))]
    # Only results.json matters to the report; write_results (with its plots) is tested elsewhere.
    atomic_write_json(path / "results.json", {"config": config, "rounds": rounds, "status": status})
    return path


# --------------------------------------------------------------------------- curve arithmetic


def test_normalised_auc_of_a_constant_curve_is_the_constant():
    assert normalised_auc([100, 200, 500, 1000], [0.7] * 4) == pytest.approx(0.7)


def test_normalised_auc_of_a_linear_curve_is_its_midpoint():
    assert normalised_auc([0, 50, 100], [0.2, 0.5, 0.8]) == pytest.approx(0.5)


def test_normalised_auc_weights_by_the_labelled_spacing():
    # (200-100) * (0.5+0.7)/2 + (400-200) * (0.7+0.9)/2 = 60 + 160 = 220 over a range of 300.
    assert normalised_auc([100, 200, 400], [0.5, 0.7, 0.9]) == pytest.approx(220 / 300)
    assert normalised_auc([400, 100, 200], [0.9, 0.5, 0.7]) == pytest.approx(220 / 300)


def test_normalised_auc_of_one_point_is_its_accuracy_and_mismatched_curves_are_refused():
    assert normalised_auc([100], [0.42]) == pytest.approx(0.42)
    with pytest.raises(ValueError, match="as many labelled sizes as accuracies"):
        normalised_auc([100, 200], [0.5])


def test_auc_gain_is_the_relative_reduction_of_the_loss_area():
    labelled = [100, 200, 300]
    passive = (labelled, [0.6, 0.6, 0.6])  # loss area 0.4
    better = (labelled, [0.7, 0.7, 0.7])  # loss area 0.3
    worse = (labelled, [0.5, 0.5, 0.5])  # loss area 0.5
    assert auc_gain(passive, better) == pytest.approx(0.25)
    assert auc_gain(passive, worse) == pytest.approx(-0.25)
    assert auc_gain(passive, passive) == pytest.approx(0.0)


def test_auc_gain_uses_only_the_labelled_sizes_both_curves_reached():
    passive = ([100, 200, 300], [0.5, 0.6, 0.9])
    active = ([100, 200], [0.6, 0.7])  # loss areas over [100, 200]: 0.45 (passive) and 0.35 (active)
    assert auc_gain(passive, active) == pytest.approx(0.10 / 0.45)
    assert auc_gain(passive, ([400], [0.9])) is None
    assert auc_gain(([100, 200], [1.0, 1.0]), ([100, 200], [1.0, 1.0])) is None


def test_auc_gain_by_budget_follows_the_growing_budget():
    passive = ([100, 200, 300], [0.6, 0.6, 0.6])
    active = ([100, 200, 300], [0.6, 0.8, 0.8])
    gains = auc_gain_by_budget(passive, active)
    assert [m for m, _ in gains] == [100, 200, 300]
    # m=100: equal; m=200: loss areas 0.4 vs 0.3; m=300: 0.4 vs (0.3 + 0.2) / 2 = 0.25.
    assert [g for _, g in gains] == pytest.approx([0.0, 0.25, 0.375])


def test_the_architecture_is_fixed_exactly_when_the_config_names_one(tmp_path):
    fixed, searched = build_report([make_run(tmp_path / "fixed", [0.5] * 3, arch="2x3"),
                                    make_run(tmp_path / "inas", [0.5] * 3)])
    assert (fixed.fixed_arch, fixed.runs[0].fixed_arch) == ("2x3", "2x3")
    assert (searched.fixed_arch, searched.runs[0].fixed_arch) == (None, None)


# --------------------------------------------------------------------------- grouping


def test_runs_that_differ_only_in_seed_device_and_data_dir_form_one_group(tmp_path):
    runs = [
        make_run(tmp_path / "a0", [0.5, 0.6, 0.7], seed=0),
        make_run(tmp_path / "a1", [0.7, 0.8, 0.9], seed=1, device="cuda", data_dir="/data"),
        make_run(tmp_path / "b0", [0.4, 0.5, 0.6], seed=0, heuristic="random"),
    ]
    groups = build_report(runs)
    assert [len(group.runs) for group in groups] == [2, 1]
    softmax, random = groups
    assert softmax.label == "digits softmax_response iNAS"
    assert random.label == "digits random iNAS"
    assert softmax.labelled == [100, 200, 300]
    assert softmax.mean_accuracy == pytest.approx([0.6, 0.7, 0.8])
    # Sample standard deviation over the two seeds: |0.7 - 0.5| / sqrt(2).
    assert softmax.std_accuracy == pytest.approx([0.2 / math.sqrt(2)] * 3)
    assert softmax.final_mean == pytest.approx(0.8)
    assert softmax.final_std == pytest.approx(0.2 / math.sqrt(2))
    # Per-run AUCs 0.6 and 0.8.
    assert softmax.auc_mean == pytest.approx(0.7)
    assert softmax.auc_std == pytest.approx(0.2 / math.sqrt(2))
    assert random.std_accuracy == [0.0, 0.0, 0.0]
    # AUC-GAIN is undefined for iNAS groups (the architecture changes).
    assert softmax.auc_gain is None and "search" in softmax.auc_gain_note


def test_a_running_run_counts_where_it_has_rounds_and_is_marked(tmp_path):
    runs = [make_run(tmp_path / "done", [0.5, 0.6, 0.7], seed=0),
            make_run(tmp_path / "busy", [0.7], labelled=(100,), status="running", seed=1)]
    group, = build_report(runs)
    assert group.runs_at == [2, 1, 1]
    assert group.mean_accuracy == pytest.approx([0.6, 0.6, 0.7])
    assert group.n_running == 1
    # Final accuracy and AUC come from the runs that reached 300, not from the one stopped at 100.
    assert (group.final_mean, group.final_std) == (pytest.approx(0.7), 0.0)
    assert group.auc_mean == pytest.approx(0.6)
    assert [run.run_dir for run in group.scored_runs] == [str(runs[0])]
    assert "| 2 (1 running, 1 scored) |" in format_report_table([group])
    assert "1 running" in group.plot_label


def test_in_an_ablation_only_the_groups_that_change_a_setting_show_it(tmp_path):
    groups = build_report([make_run(tmp_path / "plain", [0.5, 0.6, 0.7]),
                           make_run(tmp_path / "rnd", [0.5, 0.6, 0.7], heuristic="random"),
                           make_run(tmp_path / "e5", [0.6, 0.7, 0.8], epochs=5)])
    assert [group.label for group in groups] == ["digits softmax_response iNAS", "digits random iNAS",
                                                 "digits softmax_response iNAS train.epochs=5"]


def test_groups_are_keyed_by_the_typed_config_and_a_config_that_is_not_a_run_is_refused(tmp_path):
    inas, fixed, epochs5 = build_report([make_run(tmp_path / "a", [0.5, 0.6, 0.7], seed=0),
                                         make_run(tmp_path / "b", [0.7, 0.8, 0.9], seed=1),
                                         make_run(tmp_path / "f", [0.6] * 3, arch="1x2"),
                                         make_run(tmp_path / "e5", [0.6] * 3, epochs=5)])
    assert [len(group.runs) for group in (inas, fixed, epochs5)] == [2, 1, 1]
    assert inas.config["train.epochs"] == 2 and inas.config["search.iterations"] == 1 and "seed" not in inas.config
    assert epochs5.label == "digits softmax_response iNAS train.epochs=5"
    # The layout of a configuration is RunConfig's: keys nobody writes are not guessed at.
    flat = make_run(tmp_path / "flat", [0.5] * 3)
    results = json.loads((flat / "results.json").read_text())
    results["config"] = {**{k: v for k, v in results["config"].items() if k != "train"}, "epochs": 2}
    (flat / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError) as error:
        build_report([flat])
    message = str(error.value)
    assert str(flat) in message and "unknown configuration keys ['epochs']" in message and "\n" not in message


def test_groups_that_differ_in_other_settings_get_those_settings_in_their_labels(tmp_path):
    groups = build_report([make_run(tmp_path / "e2", [0.5, 0.6, 0.7], epochs=2),
                           make_run(tmp_path / "e5", [0.6, 0.7, 0.8], epochs=5)])
    assert [group.label for group in groups] == ["digits softmax_response iNAS train.epochs=2",
                                                 "digits softmax_response iNAS train.epochs=5"]


def test_auc_gain_of_a_fixed_architecture_against_its_passive_run(tmp_path):
    active = [make_run(tmp_path / f"sr{seed}", [0.7, 0.7, 0.7], arch="1x2", seed=seed) for seed in (0, 1)]
    passive = [make_run(tmp_path / f"rnd{seed}", [0.6, 0.6, 0.6], arch="1x2", seed=seed, heuristic="random",
                        mc_samples=7) for seed in (0, 1)]
    other_arch = make_run(tmp_path / "sr-2x3", [0.65, 0.65, 0.65], arch="2x3")
    groups = build_report([*active, *passive, other_arch])
    small, small_passive, big = groups
    assert (small.heuristic, small.fixed_arch, small_passive.heuristic, big.fixed_arch) == (
        "softmax_response", "1x2", "random", "2x3")
    # The passive runs differ in a query-only setting (mc_samples) and still match.
    assert small.auc_gain == pytest.approx(0.25)
    assert small.passive_label == small_passive.label == "digits random fixed 1x2 query.mc_samples=7"
    assert [g for _, g in small.auc_gain_by_budget] == pytest.approx([0.25, 0.25, 0.25])
    assert small_passive.auc_gain is None
    assert big.auc_gain is None and "no passive" in big.auc_gain_note
    table = format_report_table(groups)
    assert "+0.250" in table
    assert "| digits softmax_response fixed 2x3 | 1 | 100-300 | 0.650 ± 0.000 | 0.650 ± 0.000 | - |" in table


def test_a_run_given_as_passive_is_matched_whatever_its_heuristic_name(tmp_path):
    active = make_run(tmp_path / "active", [0.8, 0.8, 0.8], arch="1x2")
    reference = make_run(tmp_path / "reference", [0.6, 0.6, 0.6], arch="1x2", heuristic="passive_custom")
    group = build_report([active], passive_dirs=[reference])[0]
    assert group.auc_gain == pytest.approx(0.5)


def test_a_directory_listed_twice_counts_once(tmp_path):
    run = make_run(tmp_path / "run", [0.5, 0.6, 0.7])
    group, = build_report([run, tmp_path / "." / "run"])
    assert len(group.runs) == 1


def test_curve_table_lists_mean_and_std_at_each_labelled_size(tmp_path):
    groups = build_report([make_run(tmp_path / "a", [0.5, 0.6, 0.7]),
                           make_run(tmp_path / "b", [0.4, 0.5], labelled=(100, 200), heuristic="random")])
    lines = format_curve_table(groups).splitlines()
    assert lines[0] == "| labelled | digits softmax_response iNAS | digits random iNAS |"
    assert lines[2] == "| 100 | 0.500 ± 0.000 | 0.400 ± 0.000 |"
    assert lines[4] == "| 300 | 0.700 ± 0.000 |  |"


# --------------------------------------------------------------------------- the CLI


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_inas_report_prints_the_table_and_writes_the_plot(tmp_path):
    runs = [make_run(tmp_path / f"sr{seed}", [0.5 + seed / 10, 0.6, 0.7], arch="1x2", seed=seed) for seed in (0, 1)]
    passive = make_run(tmp_path / "rnd", [0.4, 0.5, 0.6], arch="1x2", heuristic="random")
    busy = make_run(tmp_path / "busy", [0.3], labelled=(100,), status="running", heuristic="coreset")
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["report", *map(str, runs), str(busy), "--passive", str(passive),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| group | runs | labelled | final accuracy | AUC | AUC-GAIN |" in result.stdout
    assert "| digits softmax_response fixed 1x2 | 2 | 100-300 | 0.700 ± 0.000 |" in result.stdout
    assert "| digits coreset iNAS | 1 (1 running) | 100 | 0.300 ± 0.000 |" in result.stdout
    assert f"plot written to {out}" in result.stdout
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_inas_report_json_prints_the_numbers(tmp_path):
    active = make_run(tmp_path / "sr", [0.7, 0.7, 0.7], arch="1x2")
    passive = make_run(tmp_path / "rnd", [0.6, 0.6, 0.6], arch="1x2", heuristic="random")
    result = CliRunner().invoke(app, ["report", str(active), str(passive), "--json",
                                      "--out", str(tmp_path / "r.svg")])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    first = numbers["groups"][0]
    assert first["auc"]["mean"] == pytest.approx(0.7)
    assert first["auc_gain"] == pytest.approx(0.25)
    assert first["runs"][0]["status"] == "complete"
    assert numbers["groups"][1]["auc_gain"] is None
    assert (tmp_path / "r.svg").read_text().lstrip().startswith("<?xml")


def test_inas_report_log_x_puts_the_labelled_sizes_on_a_log_axis(tmp_path, monkeypatch):
    import inas_plugins.plots as plots

    drawn = []
    draw = plots.plot_report
    monkeypatch.setattr(plots, "plot_report", lambda *args, **kwargs: drawn.append(draw(*args, **kwargs)))
    run = make_run(tmp_path / "run", [0.5, 0.6, 0.7])
    result = CliRunner().invoke(app, ["report", str(run), "--log-x", "--out", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    assert drawn[0].axes[0].get_xscale() == "log"
    assert (tmp_path / "r.png").read_bytes().startswith(PNG_MAGIC)


def test_inas_report_writes_report_png_in_the_current_directory_by_default(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", [0.5, 0.6, 0.7])
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("problem, expected", [
    ("empty", "holds no run: results.json not found"),
    ("missing", "is not a directory"),
    ("malformed", "is malformed"),
    ("unwritable", "cannot write plot"),
    ("suffix", "unsupported suffix .jpg"),
])
def test_inas_report_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, problem, expected):
    good = make_run(tmp_path / "good", [0.5, 0.6, 0.7])
    out = tmp_path / "report.png"
    bad = tmp_path / "bad"
    if problem == "empty":
        bad.mkdir()
    elif problem == "malformed":
        bad.mkdir()
        (bad / "results.json").write_text('{"config": {}, "rounds": [')
    elif problem == "unwritable":
        bad, out = good, tmp_path / "no" / "such" / "dir" / "report.png"
    elif problem == "suffix":
        bad, out = good, tmp_path / "report.jpg"
    result = CliRunner().invoke(app, ["report", str(good), str(bad), "--out", str(out)])
    line = one_line_error(result)
    assert line.startswith("error: ") and expected in line
    assert result.exit_code == 2
    assert not out.exists()


def test_inas_report_without_run_directories_shows_usage():
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code != 0
    assert "RUN_DIR" in result.output
