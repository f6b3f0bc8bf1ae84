"""Figures: real image files, written atomically, and matplotlib kept out of `import inas_plugins`."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import inas_plugins
from inas_plugins.plots import (plot_architecture_trajectory, plot_learning_curve, plot_report,
                                plot_search_space)
from inas_plugins.space import SearchSpace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUNDS = [
    {"labelled": 100, "arch": [1, 1], "params": 12_000, "depth": 4, "test_accuracy": 0.4},
    {"labelled": 200, "arch": [1, 2], "params": 2_500_000, "test_accuracy": 0.55},  # depth from arch
    {"labelled": 400, "arch": [1, 2], "params": 2_500_000, "depth": 6, "test_accuracy": 0.6},
]


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000, f"{path.name} is suspiciously small ({len(data)} bytes)"
    assert [name for name in os.listdir(path.parent) if name.endswith(".tmp")] == []


def test_plot_search_space_draws_the_grid(tmp_path):
    plot_search_space(SearchSpace(5, 4), tmp_path / "space.png")
    assert_png(tmp_path / "space.png")


def test_inas_space_plot_writes_a_png(tmp_path):
    from typer.testing import CliRunner

    from inas_cli.main import app

    result = CliRunner().invoke(app, ["space", "--max-blocks", "3", "--max-stacks", "2", "--plot",
                                      str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert_png(tmp_path / "s.png")


def test_run_plots_are_pngs(tmp_path):
    plot_learning_curve(ROUNDS, tmp_path / "curve.png", title="digits")
    plot_architecture_trajectory(ROUNDS, tmp_path / "arch.png")
    assert_png(tmp_path / "curve.png")
    assert_png(tmp_path / "arch.png")


@dataclass
class Curve:
    label: str
    labelled: list
    mean_accuracy: list
    std_accuracy: list

    @property
    def plot_label(self) -> str:
        return self.label


def test_plot_report_draws_means_with_spreads_and_tolerates_empty_groups(tmp_path):
    groups = [Curve("a", [100, 200], [0.5, 0.6], [0.05, 0.02]), Curve("b", [100, 200], [0.4, 0.7], [0.0, 0.0]),
              Curve("empty", [], [], [])]
    plot_report(groups, tmp_path / "report.png")
    assert_png(tmp_path / "report.png")
    plot_report([], tmp_path / "nothing.pdf")
    assert (tmp_path / "nothing.pdf").read_bytes().startswith(b"%PDF")


def test_plot_report_can_space_doubling_sizes_on_a_log_axis(tmp_path):
    curve = Curve("a", [200, 400, 800, 1600], [0.3, 0.4, 0.5, 0.6], [0.0] * 4)
    linear = plot_report([curve], tmp_path / "linear.png")
    logged = plot_report([curve], tmp_path / "log.png", log_x=True)
    assert linear.axes[0].get_xscale() == "linear"
    assert logged.axes[0].get_xscale() == "log"
    assert [tick.get_text() for tick in logged.axes[0].get_xticklabels()] == ["200", "400", "800", "1600"]
    assert_png(tmp_path / "log.png")


def test_a_study_sized_report_gives_every_curve_its_own_colour_and_keeps_the_legend_off_the_curves(tmp_path):
    curves = [Curve(f"configuration {index}", [200, 400], [0.3, 0.3 + index / 100], [0.01, 0.01]) for index in range(19)]
    figure = plot_report(curves, tmp_path / "study.png")
    lines = figure.axes[0].get_lines()
    assert len({tuple(line.get_color()) for line in lines}) == 19  # the default cycle repeats after 10
    legend = figure.axes[0].get_legend()
    assert len(legend.get_texts()) == 19
    assert legend.get_bbox_to_anchor().x0 > figure.axes[0].get_window_extent().x1  # beside the axes, not on them
    assert_png(tmp_path / "study.png")


def test_an_unsupported_suffix_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.pdf, \.svg"):
        plot_learning_curve(ROUNDS, tmp_path / "curve.jpeg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", ["results", "plots", "report"])
def test_matplotlib_is_imported_only_inside_functions(module):
    """Keeps `import inas_plugins` fast (a subprocess import check would cost seconds of torch import)."""
    source = (Path(inas_plugins.__file__).parent / f"{module}.py").read_text()
    top_level = [node for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top_level for alias in node.names]
    names += [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not [name for name in names if name.startswith("matplotlib")]
