"""The scripts in examples/ run as a user runs them (a subprocess, tiny settings) and print what they say.

Each baal example prints one line per active step: ``step K:  N labels  arch IxJ  test accuracy A
(candidates IxJ: v, ...)``. The checks read those lines back: steps in order, labelled counts that
grow by the query size, and architectures that follow the search's rules (each step's candidates are
the previous step's network and its expansions in the example's space, and the chosen network is one
of them). Most of a run's time is importing baal, so each test runs its script once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inas_plugins.space import Arch, SearchSpace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = SearchSpace(max_blocks=4, max_stacks=3)  # the examples' search space
QUERY_SIZE = 100  # the examples' query size and initial labelled set
STEP = re.compile(r"^step (\d+): +(\d+) labels  arch (\d+)x(\d+)  test accuracy ([0-9.]+)  \(candidates (.*)\)$")

pytestmark = pytest.mark.slow  # each script imports baal and torch afresh: about 10 s of CPU apiece


def run_example(name: str, *args: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == expect_rc, f"{name} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def parse_arch(text: str) -> Arch:
    blocks, stacks = text.split("x")
    return Arch(int(blocks), int(stacks))


def parse_steps(stdout: str) -> list[dict]:
    steps = []
    for line in stdout.splitlines():
        match = STEP.match(line.strip())
        if match:
            step, labels, blocks, stacks, accuracy, candidates = match.groups()
            steps.append({
                "step": int(step), "labels": int(labels), "arch": Arch(int(blocks), int(stacks)),
                "accuracy": float(accuracy),
                "candidates": [parse_arch(item.split(":")[0].strip()) for item in candidates.split(",")],
            })
    return steps


def check_steps(steps: list[dict], count: int) -> None:
    """Steps 0..count-1; labels 100, 200, ...; every architecture reachable by the search's rules."""
    assert [s["step"] for s in steps] == list(range(count))
    assert [s["labels"] for s in steps] == [QUERY_SIZE * (k + 1) for k in range(count)]
    previous = Arch(1, 1)  # the examples start from A(1, 1)
    for step in steps:
        assert sorted(step["candidates"]) == sorted(SPACE.candidates(previous)), step
        assert step["arch"] in step["candidates"]
        assert 0.0 <= step["accuracy"] <= 1.0
        previous = step["arch"]


def test_baal_active_loop_runs_a_registered_heuristic_in_baals_loop() -> None:
    # coreset is not one of baal's heuristics: this goes through wrapper.heuristic(...).
    stdout = run_example("baal_active_loop.py", "--heuristic", "coreset", "--steps", "3", "--epochs", "1").stdout
    assert "heuristic coreset, start 1x1, 1 epochs per step" in stdout
    check_steps(parse_steps(stdout), 3)


def test_baal_experiment_runs_baals_experiment_with_bald_by_default() -> None:
    stdout = run_example("baal_experiment.py", "--steps", "2", "--epochs", "1").stdout
    assert "heuristic bald, start 1x1, 1 epochs per round" in stdout
    steps = parse_steps(stdout)
    check_steps(steps, 2)
    # The experiment labels after its last round too: 100 + 2 queries of 100.
    match = re.search(r"labelled at the end: (\d+); final architecture (\d+x\d+)", stdout)
    assert match and int(match.group(1)) == 300 and parse_arch(match.group(2)) == steps[-1]["arch"]


def test_an_unknown_heuristic_gets_one_line_naming_the_choices() -> None:
    stderr = run_example("baal_active_loop.py", "--heuristic", "no_such_thing", expect_rc=2).stderr
    error = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "no_such_thing" in error[0] and "coreset" in error[0] and "bald" in error[0]


def test_custom_heuristic_registers_and_spreads_its_picks_over_clusters() -> None:
    stdout = run_example("custom_heuristic.py").stdout
    assert "registered: diversity_entropy (source: __main__)" in stdout
    assert "needs: ['embeddings', 'probs']" in stdout
    touched = dict(re.findall(r"^\s*(\w+): picks \[[\d, ]+\], (\d) of 8 clusters$", stdout, flags=re.M))
    assert set(touched) == {"diversity_entropy", "entropy"}
    # Plain entropy piles into the one uncertain cluster; the diversity weighting spreads out.
    assert int(touched["entropy"]) == 1 and int(touched["diversity_entropy"]) >= 6
