"""``inas report``: compare run directories -- one table, one plot of the learning curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .errors import fail


def report(
    run_dirs: Annotated[List[Path], typer.Argument(
        metavar="RUN_DIR", show_default=False, help="Run directories written by `inas run` (each holds results.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Plot of the learning curves (.png, .pdf or .svg).")] = Path(
        "report.png"),
    passive: Annotated[Optional[List[Path]], typer.Option(
        "--passive", metavar="RUN_DIR", help="Passive (random-query) runs to compute AUC-GAIN against; repeat for "
                                             "several. Random-query runs among RUN_DIR are found without it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON instead of the table.")] = False,
    log_x: Annotated[bool, typer.Option(
        "--log-x", help="Logarithmic labelled-size axis (for schedules that double).")] = False,
) -> None:
    """Compare runs: a table and one plot of the learning curves, mean ± std over seeds.

    Runs whose configurations differ only in the seed (or device, data directory) form one group; runs on
    different data (by the fingerprint each run stores) never do.

    Columns: final test accuracy; AUC, the area under the accuracy curve normalised to [0, 1] over the labelled range; AUC-GAIN (paper 5.4), the relative reduction of the 0-1 loss area against a passive (random-query) run of the same fixed architecture, "-" when there is none.

    Runs still in progress are included and marked "running".

    Example: inas report runs/sr-1x2-s* runs/random-1x2-s* --out curves.png
    """
    from inas_plugins.plots import figure_format, plot_report
    from inas_plugins.report import build_report, format_report_table, report_to_dict

    try:
        figure_format(out)
        groups = build_report(run_dirs, passive or [])
    except ValueError as error:
        raise fail(str(error))
    try:
        plot_report(groups, out, log_x=log_x)
    except OSError as error:
        raise fail(f"cannot write plot {out}: {error.strerror or error}")
    if as_json:
        typer.echo(json.dumps({**report_to_dict(groups), "plot": str(out)}, indent=2))
        return
    typer.echo(format_report_table(groups))
    typer.echo(f"plot written to {out}")
