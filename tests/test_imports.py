"""No import cycles between the modules of ``inas_plugins`` and ``inas_cli``.

A module-level import cycle makes the import order matter: whichever module of the cycle is
imported first sees the other half-initialised, and a name imported from it fails (or, worse, is
picked up from a stale global). The graph is built statically with ``ast`` from the source files,
so the test needs no heavy import (torch, baal, matplotlib) and sees every module, also those no
other test imports.

What counts as an edge A -> B (B one of our modules):

* ``import B`` / ``from B import name`` / ``from B import submodule`` (-> ``B.submodule``), relative
  imports resolved against A's package;
* packages above B that A is not itself inside: importing ``inas_plugins.heuristics.registry`` from
  ``inas_plugins.loop`` first runs ``inas_plugins/heuristics/__init__.py``. A package's own modules
  skip it, because Python has always imported (or is importing) it before them.

Not counted: imports inside functions (they run later, on call, when every module is complete)
and under ``if TYPE_CHECKING:`` (never at run time), and by-name imports (``importlib``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGES = ("inas_plugins", "inas_cli")


def package_root(package: str) -> Path:
    """The package directory, found without executing the package (``inas_cli`` lives in ``cli/``)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is not installed as a package"
    return Path(list(spec.submodule_search_locations)[0])


def discover_modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package ``__init__``) for every module of our packages."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        root = package_root(package)
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join([package, *parts])] = (path, is_package)
    return modules


def module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: not in functions, not TYPE_CHECKING-only."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                pending.append(child)
            elif isinstance(child, ast.excepthandler):
                pending.extend(child.body)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def all_imports(tree: ast.Module):
    """Every import statement, including those inside functions."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool,
                     modules: dict) -> set[str]:
    """Our modules that one import statement loads (before the ancestor-package rule)."""
    targets: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            targets.add(alias.name)
        return targets
    if node.level:
        package_parts = importer.split(".") if is_package else importer.split(".")[:-1]
        base_parts = package_parts[:len(package_parts) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        targets.add(submodule if submodule in modules else base)
    return targets


def edges_of(importer: str, targets: set[str], modules: dict) -> set[str]:
    edges = set()
    for target in targets:
        # ``import inas_plugins.x.y`` where y is a name, not a module: fall back to the longest module prefix.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if not target or target == importer:
            continue
        edges.add(target)
        parts = target.split(".")
        for depth in range(1, len(parts)):
            ancestor = ".".join(parts[:depth])
            if ancestor in modules and not (importer == ancestor or importer.startswith(ancestor + ".")):
                edges.add(ancestor)
    return edges


def import_graph(module_level_only: bool = True) -> dict[str, set[str]]:
    modules = discover_modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        statements = module_level_imports(tree) if module_level_only else all_imports(tree)
        targets: set[str] = set()
        for node in statements:
            targets |= imported_modules(node, name, is_package, modules)
        graph[name] = edges_of(name, targets, modules)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            successor = next(stack[-1], None)
            if successor is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if not state.get(successor):
                state[successor] = 1
                path.append(successor)
                stack.append(iter(sorted(graph.get(successor, ()))))
    return None


# --------------------------------------------------------------------------- the checks


def test_the_module_level_import_graph_has_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        print("import cycle:", " -> ".join(cycle))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_no_cycle_even_counting_imports_inside_functions_and_type_checking():
    """Data flows one way: a lazy or typing-only import back is still a dependency back."""
    cycle = find_cycle(import_graph(module_level_only=False))
    assert cycle is None, "import cycle (imports inside functions included): " + " -> ".join(cycle)


def test_the_graph_sees_our_modules_and_their_imports():
    """Guards the test above against passing vacuously (a resolver that finds no edges)."""
    graph = import_graph()
    for module in ("inas_plugins", "inas_plugins.results", "inas_plugins.heuristics.registry",
                   "inas_plugins.data.cache", "inas_cli.main", "inas_cli.run_cmd"):
        assert module in graph, f"{module} was not discovered"
    assert {"inas_plugins.plots", "inas_plugins.atomic", "inas_plugins.records"} <= graph["inas_plugins.results"]
    assert "inas_plugins.atomic" in graph["inas_plugins.data.cache"]  # relative import two levels up
    assert "inas_cli.report_cmd" in graph["inas_cli.main"]  # `from . import report_cmd`
    assert {"inas_plugins.config", "inas_plugins"} <= graph["inas_cli.run_cmd"]  # module and its package
    assert "inas_plugins.heuristics" not in graph["inas_plugins.heuristics.registry"]  # own package skipped
    assert sum(len(targets) for targets in graph.values()) > 50


def test_plots_and_the_heuristic_registry_do_not_import_back_at_all():
    """The two cycles this layout removed, checked with imports inside functions included too."""
    graph = import_graph(module_level_only=False)
    assert "inas_plugins.results" not in graph["inas_plugins.plots"]
    assert "inas_plugins.heuristics.baal_builtin" not in graph["inas_plugins.heuristics.registry"]
    assert "inas_plugins.heuristics.registry" not in graph["inas_plugins.heuristics.baal_adapter"]
    for module in ("inas_plugins.atomic", "inas_plugins.records"):  # leaves: usable from anywhere
        assert graph[module] <= {"inas_plugins.space"}, f"{module} imports {sorted(graph[module])}"


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b"}}, ["b", "b"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_find_cycle_reports_the_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_function_level_and_type_checking_imports_are_not_module_level():
    tree = ast.parse(
        "import a\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
        "try:\n    import d\nexcept ImportError:\n    import e\n"
        "def f():\n    import g\n"
        "class K:\n    import h\n    def m(self):\n        import i\n"
    )
    names = {alias.name for node in module_level_imports(tree) for alias in node.names}
    assert names == {"a", "TYPE_CHECKING", "c", "d", "e", "h"}
