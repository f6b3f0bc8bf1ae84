"""Third-party heuristics through the ``inas_plugins.heuristics`` entry point.

The test writes two throwaway distributions (a module plus a ``*.dist-info`` folder, which is all
importlib.metadata needs) into a temporary directory on PYTHONPATH: one that works, one whose
module raises ImportError. The CLI runs in a fresh interpreter; creating the plugins by name is
checked in-process after re-scanning the entry points (a second interpreter would cost seconds).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from inas_plugins.heuristics import ModelOutputs, create_heuristic, list_heuristics, plugin_errors, reload_plugins

GOOD_MODULE = '''
import numpy as np
from baal.active.heuristics import AbstractHeuristic
from inas_plugins.heuristics import QueryHeuristic


class LastFirst(QueryHeuristic):
    """Queries the last pool points first (test plugin)."""

    needs = frozenset()

    def select(self, outputs, n, rng):
        return np.arange(outputs.pool_size)[::-1][:n]


class FirstClassFirst(AbstractHeuristic):
    """baal-style plugin: highest probability of class 0 first."""

    needs = frozenset({"probs"})

    def __init__(self):
        super().__init__(reverse=True)

    def compute_score(self, predictions, target_predictions=None):
        return predictions[:, 0]
'''

def _distribution(root, name: str, module: str, source: str, entry_points: dict[str, str]) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"  # wheel's escaping: the folder name stops at the first -
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[inas_plugins.heuristics]\n{lines}\n")


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugins")
    _distribution(root, "inas-test-plugin", "inas_test_plugin", GOOD_MODULE,
                  {"last_first": "inas_test_plugin:LastFirst", "first_class_first": "inas_test_plugin:FirstClassFirst"})
    _distribution(root, "inas-broken-plugin", "inas_broken_plugin", 'raise ImportError("needs a missing package")\n',
                  {"broken_one": "inas_broken_plugin:Anything"})
    return root


def _run(plugin_path, *args):
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_cli_lists_plugins_and_skips_the_broken_one(plugin_path):
    result = _run(plugin_path, "-m", "inas_cli.main", "heuristics", "--json")
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row for row in json.loads(result.stdout)}
    assert listed["last_first"] == {"name": "last_first", "source": "inas-test-plugin",
                                    "description": "Queries the last pool points first (test plugin)."}
    assert listed["first_class_first"]["source"] == "inas-test-plugin"
    assert listed["softmax_response"]["source"] == "inas_plugins"
    assert "broken_one" not in listed
    warnings = [line for line in result.stderr.splitlines() if "broken_one" in line]
    assert len(warnings) == 1 and "ImportError" in warnings[0] and "inas-broken-plugin" in warnings[0]


def test_plugins_can_be_created_by_name(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))  # also invalidates import caches
    try:
        reload_plugins()
        rng = np.random.default_rng(0)
        assert create_heuristic("last_first").select(ModelOutputs(n_pool=6), 3, rng).tolist() == [5, 4, 3]
        probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]])
        baal_style = create_heuristic("first_class_first")
        assert baal_style.needs == {"probs"}
        assert baal_style.select(ModelOutputs(probs=probs), 2, rng).tolist() == [1, 2]
        assert [error for error in plugin_errors() if "broken_one" in error] == plugin_errors()
        assert len(plugin_errors()) == 1
    finally:
        monkeypatch.undo()
        for module in ("inas_test_plugin", "inas_broken_plugin"):
            sys.modules.pop(module, None)
        reload_plugins()
    assert "last_first" not in {info.name for info in list_heuristics()}
