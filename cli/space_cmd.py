"""``inas space``: show the iNAS search DAG (nodes A(i, j), edges = expansion steps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from inas_plugins.space import BLOCK_LAYERS, SearchSpace

from .errors import fail
from .options import choices, value

Block = choices("Block", BLOCK_LAYERS)


def space(
    max_blocks: Annotated[int, typer.Option(
        "--max-blocks", min=1, help="Largest number of blocks per stack (paper: 12).")] = 12,
    max_stacks: Annotated[int, typer.Option("--max-stacks", min=1, help="Largest number of stacks (paper: 5).")] = 5,
    block: Annotated[Block, typer.Option(help="Block type: basic (ResNet basic block) or bottleneck.")] = Block.basic,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print {'nodes': [[i, j], ...], 'edges': [[[i, j], [i2, j2]], ...]}.")] = False,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Also draw the grid and its edges to this PNG file.")] = None,
) -> None:
    """Print the search space as a DAG: each architecture with its widen and deepen steps.

    Example: inas space --max-blocks 5 --max-stacks 4 --plot space.png
    """
    block = value(block)
    try:
        search_space = SearchSpace(max_blocks, max_stacks, block)
    except ValueError as error:
        raise fail(str(error))
    if plot is not None:
        from inas_plugins.plots import plot_search_space

        try:
            plot_search_space(search_space, plot)
        except OSError as error:
            raise fail(f"cannot write plot {plot}: {error.strerror or error}")
    if as_json:
        typer.echo(json.dumps(search_space.to_json()))
        return
    typer.echo(
        f"search space: A({block}, i, j), i = 1..{max_blocks} blocks per stack, j = 1..{max_stacks} stacks "
        f"({len(search_space)} architectures)"
    )
    typer.echo(f"{'arch':>6} {'blocks':>6} {'depth':>5}   expansions")
    for arch in search_space:
        steps = []
        for name, step in zip(("widen", "deepen"), _named_steps(search_space, arch)):
            if step is not None:
                steps.append(f"{name} -> {step}")
        typer.echo(f"{str(arch):>6} {arch.total_blocks:>6} {search_space.depth(arch):>5}   {', '.join(steps) or '(largest)'}")
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def _named_steps(search_space: SearchSpace, arch):
    from inas_plugins.space import deepen, widen

    return [step if step in search_space else None for step in (widen(arch), deepen(arch))]
