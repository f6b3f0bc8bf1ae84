"""Options shared by the commands: closed sets as Enum choices, and the setting options generated
from the one flag table (:data:`inas_plugins.config.RUN_FLAGS`).

A command that takes settings declares its own options in its signature and gets the setting
options from :func:`with_settings`, which adds one typed option per table row (``--epochs``, the
``--augment/--no-augment`` pair, ``--premature-schedule`` with its choices) and hands the command
their values as one ``settings`` dict keyed by :attr:`Flag.param` (None: not given). So ``inas run``
and ``inas label init`` offer the same options with the same types, choices and help, and a row added
to the table is an option of both.
"""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from typing import Annotated, Any, Callable, Iterable, Optional

import typer

from inas_plugins.config import FLAGS_BY_NAME, PRESETS, Flag

_ENUMS: dict[str, type[Enum]] = {}


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum of ``values`` (member name = value) for a Typer option of a closed set."""
    values = tuple(values)
    if name not in _ENUMS:
        _ENUMS[name] = Enum(name, [(value, value) for value in values], type=str)  # type: ignore[misc]
    assert tuple(member.value for member in _ENUMS[name]) == values, name
    return _ENUMS[name]


def value(option: Any) -> Any:
    """An option's plain value: an Enum member's text, anything else as it is."""
    return option.value if isinstance(option, Enum) else option


Preset = choices("Preset", PRESETS)
PRESET_HELP = ("paper (the paper's protocol, for a GPU), cpu (scaled CIFAR protocol, 2-8 min on 2 cores), "
               "quick (digits default).")


def setting_option(entry: Flag) -> Any:
    """The annotation of the option that sets ``entry``'s setting: its type, flag(s) and help."""
    kind: type = entry.value_type
    if entry.choices:
        kind = choices("".join(part.capitalize() for part in entry.field.split("_")), entry.choices)
    declaration = f"--{entry.flag}/--no-{entry.flag}" if kind is bool else f"--{entry.flag}"
    return Annotated[Optional[kind], typer.Option(declaration, help=entry.help, show_default=False)]


def with_settings(flags: Iterable[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the setting options of ``flags`` (rows of ``RUN_FLAGS``, in the table's order) to a command.

    The command takes a ``settings`` parameter instead of them: ``{param: value or None}``, with
    Enum choices already turned into their text.
    """
    entries = [FLAGS_BY_NAME[flag] for flag in flags]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [parameter for name, parameter in signature.parameters.items() if name != "settings"]
        added = [inspect.Parameter(entry.param, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=setting_option(entry)) for entry in entries]

        @functools.wraps(command)
        def wrapper(**options: Any) -> Any:
            settings = {entry.param: value(options.pop(entry.param)) for entry in entries}
            return command(settings=settings, **options)

        parameters = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in own] + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return wrapper

    return decorate
