"""One registry of query heuristics by name: ours, baal's, and third-party plugins.

* Ours (and anyone's in-process code) register with the :func:`register_heuristic` class decorator,
  in the style of timm's model registry.
* baal's built-ins are registered by :mod:`.baal_builtin` under their baal names (bald, entropy, ...);
  baal's own ``get_heuristic`` is a fixed dict and is not used. The built-in modules import this one
  to register themselves, so this module never imports them statically: it loads them by name on
  the first lookup (``_BUILTIN_MODULES``), the same way it loads entry-point plugins. Third-party
  baal heuristics are wrapped with :mod:`.baal_adapter`, which does not import the registry.
* Other distributions declare an entry point in the group ``inas_plugins.heuristics``; the entry
  point's name becomes the heuristic's name and the distribution's name its ``source``. Plugins load
  lazily on the first lookup, once; one that fails is recorded in :func:`plugin_errors` and skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

from .base import QueryHeuristic
from .outputs import check_needs

ENTRY_POINT_GROUP = "inas_plugins.heuristics"
OUR_SOURCE = "inas_plugins"

# Modules whose import registers the built-in heuristics (ours and baal's).
_BUILTIN_MODULES = (
    "inas_plugins.heuristics.softmax_response",
    "inas_plugins.heuristics.mc_dropout",
    "inas_plugins.heuristics.coreset",
    "inas_plugins.heuristics.badge",
    "inas_plugins.heuristics.typiclust",
    "inas_plugins.heuristics.probcover",
    "inas_plugins.heuristics.baal_builtin",
)


@dataclass(frozen=True)
class HeuristicInfo:
    """What ``inas heuristics`` lists for one heuristic."""

    name: str
    source: str
    description: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    cls: type[QueryHeuristic]
    info: HeuristicInfo


_entries: dict[str, _Entry] = {}
_aliases: dict[str, str] = {}
_plugin_errors: list[str] = []
_plugin_names: set[str] = set()
_builtins_loaded = False
_plugins_loaded = False

H = TypeVar("H", bound=type)


def register_heuristic(name: str, description: str | None = None, *, aliases: tuple[str, ...] = (),
                       source: str | None = None) -> Callable[[H], H]:
    """Class decorator that registers a :class:`QueryHeuristic` subclass under ``name``.

    ``description`` defaults to the class's ``description`` or the first line of its docstring;
    ``source`` defaults to ``inas_plugins`` for our modules, else the top-level package of the
    class's module. A name (or alias) that is already taken raises ValueError.
    """

    def decorator(cls: H) -> H:
        if not getattr(cls, "__module__", "").startswith(OUR_SOURCE + "."):
            _ensure_builtins()  # so a clash with a built-in name is reported here, not at first lookup
        _add(name, cls, description, aliases, source or _source_of(cls))
        return cls

    return decorator


def unregister_heuristic(name: str) -> None:
    """Remove ``name`` and its aliases (for tests and interactive plugin development)."""
    entry = _lookup(name)
    del _entries[entry.info.name]
    for alias in entry.info.aliases:
        _aliases.pop(alias, None)


def create_heuristic(name: str, **kwargs) -> QueryHeuristic:
    """Instantiate the heuristic registered as ``name`` (or an alias), passing ``kwargs`` on."""
    _ensure_loaded()
    entry = _lookup(name)
    try:
        return entry.cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"heuristic {entry.info.name!r} does not accept {sorted(kwargs)}: {error}") from error


def get_heuristic_class(name: str) -> type[QueryHeuristic]:
    """The class registered as ``name``, e.g. to read its ``needs`` before creating it."""
    _ensure_loaded()
    return _lookup(name).cls


def list_heuristics() -> list[HeuristicInfo]:
    """Every registered heuristic, sorted by source (ours, baal, plugins) then name."""
    _ensure_loaded()
    order = {OUR_SOURCE: 0, "baal": 1}
    infos = [entry.info for entry in _entries.values()]
    return sorted(infos, key=lambda info: (order.get(info.source, 2), info.source, info.name))


def heuristic_names() -> list[str]:
    """Registered names (without aliases), sorted."""
    _ensure_loaded()
    return sorted(_entries)


def plugin_errors() -> list[str]:
    """One line per entry point that could not be loaded (it was skipped)."""
    _ensure_loaded()
    return list(_plugin_errors)


def reload_plugins() -> None:
    """Forget the entry-point heuristics and their errors, and scan the entry points again.

    For plugin development and tests: after installing a plugin (or changing ``sys.path``) in a
    running interpreter, call ``importlib.invalidate_caches()`` and then this.
    """
    global _plugins_loaded
    for name in list(_plugin_names):
        if name in _entries:
            unregister_heuristic(name)
    _plugin_names.clear()
    _plugin_errors.clear()
    _plugins_loaded = False
    _ensure_loaded()


def _lookup(name: str) -> _Entry:
    canonical = _aliases.get(name, name)
    if canonical not in _entries:
        raise ValueError(f"unknown heuristic {name!r}; choose one of: {', '.join(sorted(_entries))}")
    return _entries[canonical]


def _add(name: str, cls: type, description: str | None, aliases: tuple[str, ...], source: str) -> None:
    if not isinstance(cls, type) or not issubclass(cls, QueryHeuristic):
        raise ValueError(f"cannot register {cls!r} as heuristic {name!r}: it is not a QueryHeuristic subclass")
    if not name or not name.isidentifier():
        raise ValueError(f"heuristic name {name!r} must be a non-empty identifier (letters, digits, _)")
    for taken in (name, *aliases):
        if taken in _entries or taken in _aliases:
            owner = _aliases.get(taken, taken)
            raise ValueError(f"heuristic name {taken!r} is already registered (by {_entries[owner].info.source})")
    check_needs(cls.needs)
    cls.name = name
    cls.description = description if description is not None else (cls.description or _first_doc_line(cls))
    _entries[name] = _Entry(cls, HeuristicInfo(name, source, cls.description, tuple(aliases)))
    for alias in aliases:
        _aliases[alias] = name


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def _ensure_loaded() -> None:
    global _plugins_loaded
    _ensure_builtins()
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        _load_plugin(entry_point)


def _load_plugin(entry_point: metadata.EntryPoint) -> None:
    dist = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
    where = f"heuristic plugin {entry_point.name!r} from {dist} ({entry_point.value})"
    try:
        target = entry_point.load()
        cls = _as_query_heuristic(target)
        existing = _entries.get(entry_point.name)
        if existing is not None and existing.cls is cls:
            # The plugin module registered itself with the decorator on import: credit the distribution.
            _entries[entry_point.name] = _Entry(cls, HeuristicInfo(entry_point.name, dist, existing.info.description,
                                                                   existing.info.aliases))
        else:
            _add(entry_point.name, cls, None, (), dist)
        _plugin_names.add(entry_point.name)
    except Exception as error:  # a broken plugin must never take the registry down
        message = " ".join(str(error).split()) or "(no message)"
        _plugin_errors.append(f"skipped {where}: {type(error).__name__}: {message}")


def _as_query_heuristic(target: object) -> type[QueryHeuristic]:
    """Entry points may name a QueryHeuristic subclass or a baal AbstractHeuristic subclass."""
    from baal.active.heuristics import AbstractHeuristic

    if isinstance(target, type) and issubclass(target, QueryHeuristic):
        return target
    if isinstance(target, type) and issubclass(target, AbstractHeuristic):
        from .baal_adapter import wrap_baal_heuristic

        return wrap_baal_heuristic(target)
    raise TypeError(f"{target!r} is neither a QueryHeuristic nor a baal AbstractHeuristic subclass")


def _source_of(cls: type) -> str:
    module = cls.__module__ or ""
    top = module.split(".")[0]
    return OUR_SOURCE if top == OUR_SOURCE else (top or "unknown")


def _first_doc_line(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""
