"""One clear line and a non-zero exit for bad input, instead of a traceback."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)
