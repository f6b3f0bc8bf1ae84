"""The figures of a run and of a report: learning curves, architecture trajectory, the search-space DAG.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot: no display and no
global backend switch (Agg renders the PNG), so plotting works on headless machines and does not
disturb a user's notebook. Matplotlib is imported inside the functions, keeping
``import inas_plugins`` fast. Every file is written atomically (see :mod:`inas_plugins.atomic`).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Protocol, Sequence

# Not from .results: results draws these plots when it writes a run, so plots must not depend on it.
from .atomic import atomic_write_bytes
from .records import arch_text
from .space import Arch, SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_FORMATS = ("png", "pdf", "svg")
DPI = 120


class CurveGroup(Protocol):
    """What :func:`plot_report` needs of a group of runs (``inas_plugins.report.GroupSummary`` has it)."""

    label: str
    labelled: list[int]
    mean_accuracy: list[float]
    std_accuracy: list[float]

    @property
    def plot_label(self) -> str: ...


def plot_learning_curve(rounds: Sequence[dict], path: str | os.PathLike, title: Optional[str] = None) -> None:
    """Test accuracy against the number of labelled examples, one point per round.

    Each point where the architecture changes is annotated with the new ``i x j``, so the effect
    of the search can be read off the curve.
    """
    figure, axes = _new_figure()
    labelled = [row["labelled"] for row in rounds]
    accuracy = [row["test_accuracy"] for row in rounds]
    axes.plot(labelled, accuracy, marker="o", color="black", label="test accuracy")
    previous = None
    for row in rounds:
        current = arch_text(row.get("arch"))
        if current and current != previous:
            axes.annotate(current, (row["labelled"], row["test_accuracy"]), textcoords="offset points",
                          xytext=(0, 8), ha="center", fontsize=8, color="tab:blue")
        previous = current
    axes.margins(x=0.06, y=0.12)  # room for the architecture labels
    axes.set_xlabel("labelled examples")
    axes.set_ylabel("test accuracy")
    axes.set_title(title or "Test accuracy against labelled examples")
    axes.grid(True, alpha=0.3)
    if rounds:
        axes.legend(["test accuracy (labels: architecture i x j)"], loc="lower right", fontsize=8)
    else:
        _no_rounds_yet(axes)
    _save(figure, path)


def plot_architecture_trajectory(rounds: Sequence[dict], path: str | os.PathLike, title: Optional[str] = None) -> None:
    """Parameters (left axis, millions or thousands for small networks) and depth in layers (right axis) against labelled examples.

    The paper's Figure 6(a): blue for parameters, black for depth. A round without ``depth``
    gets it from its ``arch`` (basic blocks).
    """
    figure, params_axes = _new_figure()
    depth_axes = params_axes.twinx()
    labelled = [row["labelled"] for row in rounds]
    raw_params = [row["params"] if row.get("params") is not None else float("nan") for row in rounds]
    largest = max((value for value in raw_params if not math.isnan(value)), default=0)
    scale, unit = (1e6, "millions") if largest >= 1e6 else (1e3, "thousands")
    params = [value / scale for value in raw_params]
    depth = [_depth(row) for row in rounds]
    params_line, = params_axes.plot(labelled, params, marker="o", color="tab:blue", label=f"parameters ({unit})")
    depth_line, = depth_axes.plot(labelled, depth, marker="s", linestyle="--", color="black", label="depth (layers)")
    params_axes.set_xlabel("labelled examples")
    params_axes.set_ylabel(f"parameters ({unit})", color="tab:blue")
    params_axes.tick_params(axis="y", colors="tab:blue")
    depth_axes.set_ylabel("depth (layers)")
    depth_axes.yaxis.get_major_locator().set_params(integer=True)
    params_axes.set_title(title or "Architecture chosen by iNAS against labelled examples")
    params_axes.grid(True, alpha=0.3)
    params_axes.legend([params_line, depth_line], [params_line.get_label(), depth_line.get_label()],
                       loc="upper left", fontsize=8)
    if not rounds:
        _no_rounds_yet(params_axes)
    _save(figure, path)


def _depth(row: dict) -> float:
    if row.get("depth") is not None:
        return row["depth"]
    arch = row.get("arch")
    if isinstance(arch, (list, tuple)) and len(arch) == 2:
        return Arch(int(arch[0]), int(arch[1])).depth()
    return float("nan")


def plot_search_space(space: SearchSpace, path: str | os.PathLike) -> None:
    """The DAG on its grid, like the paper's Figure 1(b).

    x = blocks per stack i, y = stacks j; each vertex shows its number of blocks i*j, each arrow
    is an expansion step (deepen: i+1 in the same stack count; widen: one more stack).
    """
    from matplotlib.lines import Line2D

    figure, axes = _new_figure(size=(1.0 + 0.75 * space.max_blocks, 1.4 + 0.75 * space.max_stacks))
    styles = {"deepen": dict(color="tab:gray", linestyle="-"), "widen": dict(color="tab:orange", linestyle="-")}
    for source, target in space.edges():
        kind = "widen" if target.stacks > source.stacks else "deepen"
        axes.annotate("", xy=(target.blocks, target.stacks), xytext=(source.blocks, source.stacks),
                      arrowprops=dict(arrowstyle="-|>", shrinkA=11, shrinkB=11, lw=1.0, **styles[kind]))
    for arch in space:
        axes.scatter([arch.blocks], [arch.stacks], s=420, facecolor="white", edgecolor="black", zorder=3)
        axes.text(arch.blocks, arch.stacks, str(arch.total_blocks), ha="center", va="center", fontsize=8, zorder=4)
    axes.set_xlim(0.4, space.max_blocks + 0.6)
    axes.set_ylim(0.4, space.max_stacks + 0.6)
    axes.set_xticks(range(1, space.max_blocks + 1))
    axes.set_yticks(range(1, space.max_stacks + 1))
    axes.set_xlabel("i (blocks per stack)")
    axes.set_ylabel("j (stacks)")
    axes.set_title(f"Search space A({space.block}, i, j) up to A({space.block}, {space.max_blocks}, {space.max_stacks}); "
                   "vertex = i*j blocks", fontsize=9)
    handles = [Line2D([], [], marker=">", label="deepen (i+1, j)", **styles["deepen"]),
               Line2D([], [], marker=">", label="widen (floor(ij/(j+1))+1, j+1)", **styles["widen"])]
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14 - 0.1 / space.max_stacks),
                ncol=2, fontsize=8, frameon=False)
    _save(figure, path)


def plot_report(groups: Sequence[CurveGroup], path: str | os.PathLike, title: Optional[str] = None,
                log_x: bool = False) -> "Figure":
    """One learning curve per group: the mean over seeds, with a band of +-1 standard deviation.

    ``log_x`` spaces a labelled set that doubles each round evenly. The figure is returned as well
    as saved, so a notebook can show or restyle it.
    """
    # Past ten curves the default colours repeat and the legend hides the curves: a study's report
    # (28 configurations) gets 20 colours (then line styles), fainter bands and its legend beside the axes.
    from matplotlib import colormaps

    crowded = len(groups) > 10
    figure, axes = _new_figure(size=(11.5, 5.6) if crowded else (7.5, 4.8))
    colours = colormaps["tab20"].colors if crowded else [None] * 10  # None: matplotlib's 10-colour cycle
    cycle = ["-", "--", "-.", ":"]
    for index, group in enumerate(groups):
        if not group.labelled:
            continue
        line, = axes.plot(group.labelled, group.mean_accuracy, marker="o", markersize=3, label=group.plot_label,
                          color=colours[index % len(colours)],
                          linestyle=cycle[(index // len(colours)) % len(cycle)])
        lower = [m - s for m, s in zip(group.mean_accuracy, group.std_accuracy)]
        upper = [m + s for m, s in zip(group.mean_accuracy, group.std_accuracy)]
        axes.fill_between(group.labelled, lower, upper, color=line.get_color(), alpha=0.07 if crowded else 0.2,
                          linewidth=0)
    axes.set_xlabel("labelled examples" + (" (log scale)" if log_x else ""))
    axes.set_ylabel("test accuracy (mean, band = ±1 std over seeds)")
    axes.set_title(title or "Learning curves")
    axes.grid(True, alpha=0.3)
    if any(group.labelled for group in groups):
        if crowded:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False)
        else:
            axes.legend(loc="best", fontsize=8)
        if log_x:
            sizes = sorted({size for group in groups for size in group.labelled})
            axes.set_xscale("log")
            axes.set_xticks(sizes, [str(size) for size in sizes])
            axes.minorticks_off()
    else:
        _no_rounds_yet(axes)
    _save(figure, path)
    return figure


# --------------------------------------------------------------------------- helpers


def _new_figure(size: tuple[float, float] = (6.4, 4.4)) -> tuple["Figure", "Axes"]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    return figure, figure.add_subplot()


def _no_rounds_yet(axes: "Axes") -> None:
    axes.text(0.5, 0.5, "no rounds yet", transform=axes.transAxes, ha="center", va="center", color="gray")


def figure_format(path: str | os.PathLike) -> str:
    """The file format from the suffix (png, pdf or svg); a ValueError names the choices otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"cannot draw a plot to {path}: unsupported suffix {'.' + suffix if suffix else '(none)'}; "
                         f"use one of {', '.join('.' + name for name in FIGURE_FORMATS)}")
    return suffix


def _save(figure: "Figure", path: str | os.PathLike) -> None:
    """Render in memory, then replace the file atomically."""
    file_format = figure_format(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=file_format, dpi=DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
