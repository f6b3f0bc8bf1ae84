"""Entry point of the ``inas`` console script: one Typer app, one module per command."""

from __future__ import annotations

import typer

from . import report_cmd
from . import run_cmd
from . import sweep_cmd
from . import heuristics_cmd, space_cmd
from . import label_cmd
from . import track_cmd
from .errors import OneLineErrors

app = typer.Typer(
    name="inas",
    help="Active learning with an incremental architecture search (active-iNAS) on baal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
app.command("run")(run_cmd.run)
app.command("sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            epilog=sweep_cmd.EPILOG)(sweep_cmd.sweep)
app.command("space")(space_cmd.space)
app.command("heuristics")(heuristics_cmd.heuristics)
app.command("report")(report_cmd.report)
app.add_typer(label_cmd.app, name="label")
app.add_typer(track_cmd.app, name="track")


@app.callback()
def main() -> None:
    """Active learning with an incremental architecture search (active-iNAS) on baal."""


if __name__ == "__main__":  # pragma: no cover
    app()
