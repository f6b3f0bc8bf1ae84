"""``inas heuristics``: every query heuristic by name, with where it comes from."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def heuristics(
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print [{"name": ..., "source": ..., "description": ...}, ...].')] = False,
) -> None:
    """List the query heuristics: ours, baal's, and those of installed plugins.

    A plugin is any installed distribution with an entry point in the group
    "inas_plugins.heuristics"; one that fails to load is reported on stderr and skipped.

    Example: inas heuristics --json
    """
    from inas_plugins.heuristics import list_heuristics, plugin_errors  # imports baal: only when listing

    infos = list_heuristics()
    for error in plugin_errors():
        typer.secho(f"warning: {error}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        typer.echo(json.dumps([{"name": info.name, "source": info.source, "description": info.description}
                               for info in infos]))
        return
    names = [info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "") for info in infos]
    name_width = max([len("name"), *map(len, names)])
    source_width = max([len("source"), *(len(info.source) for info in infos)])
    typer.echo(f"{'name':<{name_width}}  {'source':<{source_width}}  description")
    for name, info in zip(names, infos):
        typer.echo(f"{name:<{name_width}}  {info.source:<{source_width}}  {info.description}")
