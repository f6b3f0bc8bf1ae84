"""One clear line and a non-zero exit for bad input, instead of a traceback."""

from __future__ import annotations

import re
import sys

import typer
from typer._click import ClickException  # Typer's own click, whose errors its commands raise
from typer.core import TyperGroup

from inas_plugins.error_text import first_line


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def in_flags(error: BaseException) -> str:
    """The message of a library error with the settings it names turned into their flags.

    The library names settings by field or path (``initial``, ``query.mc_samples``) and lists them
    in the error's ``settings`` (:class:`~inas_plugins.settings.SettingError`); each becomes its
    command-line flag through the one table of them (``RUN_FLAGS``), so ``query.mc_samples must be a
    positive integer`` reads ``--mc-samples must be a positive integer``. Names without a flag stay.
    """
    from inas_plugins.config import flag_of

    message = str(error)
    for name in getattr(error, "settings", ()):
        flag = flag_of(name)
        if flag is not None:
            message = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w/-])", flag, message)  # not inside a path
    return message


def one_line(error: BaseException) -> str:
    """A library error as one ``error:`` line: its settings as flags (:func:`in_flags`), its first line."""
    return first_line(in_flags(error)) or first_line(error)


class OneLineErrors(TyperGroup):
    """The app's group: a bad option value, a missing option or an unknown command is one ``error:``
    line too (click would print a usage box), with the exit status click gives it (2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as error:
            message = " ".join(error.format_message().split())
            if message:  # empty: a group called without its command, whose help was printed
                command = getattr(getattr(error, "ctx", None), "command_path", None)
                fail(message + (f" (see {command} --help)" if command else ""))
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
