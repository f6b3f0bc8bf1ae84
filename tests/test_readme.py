"""Every ```python block of README.md runs, so a snippet cannot rot.

Each block is one test, executed as written (compiled under README.md's own path and line numbers, so
a traceback points at the README line). A block that is a fragment of a user's script gets a
*preamble* that defines the variables it uses (``x``, ``args``, ``al_dataset``, ...) on tiny data --
the only way settings are shrunk: the block's text is never rewritten -- and a *check* run after it
that asserts the block did what the README says. Fixtures are keyed by a marker, a fragment of the
block's code; every marker must match exactly one block, so a rewritten block cannot silently lose
its preamble or its check. Heuristics a block registers are unregistered afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from inas_plugins.heuristics import heuristic_names, unregister_heuristic

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Block:
    index: int
    line: int  # README line of the block's first code line (1-based)
    code: str

    @property
    def title(self) -> str:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return f"{self.index}:{first[:50]}"


def python_blocks(text: str) -> list[Block]:
    """The ```python fenced blocks of a Markdown text, with where they start."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if re.fullmatch(r"\s*```python\s*", lines[i]):
            start, i = i + 1, i + 1
            while i < len(lines) and not re.fullmatch(r"\s*```\s*", lines[i]):
                i += 1
            blocks.append(Block(len(blocks), start + 1, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return blocks


@dataclass(frozen=True)
class Fixture:
    preamble: str = ""
    check: str = ""


# Tiny digits for the baal fragments: a 250-item training set with 20 labels (so 100-item queries
# exhaust the pool within a few steps and a 200-label budget fits in it), 50 test items, 1 epoch.
DIGITS = """
import torch
from baal.active import ActiveLearningDataset
from baal.modelwrapper import TrainingArgs
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

_digits = load_digits()
_images = (torch.tensor(_digits.images[:300], dtype=torch.float32).unsqueeze(1) / 16.0 - 0.3) / 0.4
_labels = torch.tensor(_digits.target[:300])
al_dataset = ActiveLearningDataset(TensorDataset(_images[:250], _labels[:250]))
al_dataset.label_randomly(20)
test_set = TensorDataset(_images[250:], _labels[250:])
args = TrainingArgs(batch_size=32, epoch=1, workers=0, use_cuda=False, criterion=torch.nn.CrossEntropyLoss())
"""

FIXTURES = {
    # "Using the library": timm networks and their embed/classify split.
    "small.embed(x)": Fixture(
        preamble="import torch\nx = torch.randn(2, 1, 16, 16)\n",
        check="""
from inas_plugins import count_parameters
claimed = int(re.search(r"([0-9,]+) params", BLOCK).group(1).replace(",", ""))
assert count_parameters(model) == claimed, (count_parameters(model), claimed)
assert features.shape[0] == 2 and logits.shape == (2, 10)
small.eval()  # without dropout and batch statistics, the classifier on the embedding is the forward pass
torch.testing.assert_close(small.get_classifier()(small.embed(x)), small(x))
""",
    ),
    # "Dropping iNAS into a baal project": the loop, then the experiment.
    "wrapper = INASModelWrapper(": Fixture(
        preamble=DIGITS,
        check="""
# 20 labels, +100, +100, +the last 30 of the pool; then the pool is empty and the loop stops.
assert len(al_dataset) == 250
assert [record["labelled"] for record in wrapper.search_history] == [20, 120, 220, 250]
""",
    ),
    "ActiveLearningExperiment(trainer=wrapper": Fixture(
        preamble=DIGITS + """
from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet
wrapper = INASModelWrapper(build_inas_resnet(Arch(1, 1), num_classes=10, in_chans=1, base_width=4, drop_rate=0.2),
                           args, space=SearchSpace(max_blocks=2, max_stacks=2), progress=False)
""",
        check="""
assert len(records) == 2 and len(al_dataset) == 220 and wrapper.rounds == 2
assert all(np.isfinite(record["test_loss"]) for record in records)
""",
    ),
    # "Writing a heuristic plugin": the registered heuristic is found by name and scores as documented.
    '@register_heuristic("least_margin"': Fixture(
        check="""
from inas_plugins.heuristics import ModelOutputs, create_heuristic
probs = np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05], [0.34, 0.33, 0.33]], dtype=np.float32)
picks = create_heuristic("least_margin").select(ModelOutputs(probs=probs), 2, np.random.default_rng(0))
assert list(picks) == [2, 0], picks
""",
    ),
}

BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def fixture_for(block: Block) -> Fixture:
    matches = [marker for marker in FIXTURES if marker in block.code]
    assert len(matches) <= 1, f"README block {block.title} matches several fixtures: {matches}"
    return FIXTURES[matches[0]] if matches else Fixture()


def test_the_readme_has_python_blocks_and_every_fixture_matches_exactly_one() -> None:
    assert len(BLOCKS) >= len(FIXTURES)
    for marker in FIXTURES:
        holders = [block.title for block in BLOCKS if marker in block.code]
        assert len(holders) == 1, f"fixture marker {marker!r} is in {len(holders)} README blocks: {holders}"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.title for block in BLOCKS])
def test_readme_block_runs(block: Block) -> None:
    fixture = fixture_for(block)
    namespace: dict = {"__name__": f"readme_block_{block.index}"}
    before = set(heuristic_names())
    torch.manual_seed(0)
    np.random.seed(0)
    try:
        exec(compile(fixture.preamble, f"<preamble of README block {block.title}>", "exec"), namespace)
        # Padded so that line numbers in a traceback are README.md's.
        exec(compile("\n" * (block.line - 1) + block.code, str(README), "exec"), namespace)
        namespace.update(re=re, np=np, torch=torch, BLOCK=block.code)
        exec(compile(fixture.check, f"<check of README block {block.title}>", "exec"), namespace)
    finally:
        for name in set(heuristic_names()) - before:
            unregister_heuristic(name)
