"""The search-space properties the paper relies on (section 4.2), checked over the whole 12 x 5 grid."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins.space import Arch, SearchSpace, deepen, widen

PAPER_SPACE = SearchSpace(12, 5)


def minimal_widen_by_argmin(arch: Arch, block: str = "basic") -> Arch:
    """Section 4.2's definition, by brute force: the smallest i' with |A(i', j+1)| > |A(i, j)|."""
    blocks = 1
    while Arch(blocks, arch.stacks + 1).depth(block) <= arch.depth(block):
        blocks += 1
    return Arch(blocks, arch.stacks + 1)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_widen_is_the_minimal_depth_increasing_step_with_one_more_stack(block: str) -> None:
    for arch in SearchSpace(12, 5, block):
        assert widen(arch) == minimal_widen_by_argmin(arch, block)
        assert widen(arch).depth(block) > arch.depth(block)


def test_deepen_adds_one_block_per_stack_and_no_smaller_deeper_net_keeps_the_stacks() -> None:
    for arch in PAPER_SPACE:
        step = deepen(arch)
        assert step == Arch(arch.blocks + 1, arch.stacks)
        assert step.depth() > arch.depth()
        # Every architecture with the same stacks that is deeper has at least step's blocks.
        deeper = [Arch(i, arch.stacks) for i in range(1, 20) if Arch(i, arch.stacks).depth() > arch.depth()]
        assert min(deeper) == step


def test_every_edge_strictly_increases_depth_and_stays_in_the_space() -> None:
    edges = PAPER_SPACE.edges()
    assert edges
    for parent, child in edges:
        assert child in PAPER_SPACE
        assert child.depth() > parent.depth()


def _reachable(space: SearchSpace, start: Arch) -> set[Arch]:
    seen, frontier = {start}, [start]
    while frontier:
        for child in space.expansions(frontier.pop()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


def test_every_architecture_is_reachable_from_the_smallest() -> None:
    assert _reachable(PAPER_SPACE, Arch(1, 1)) == set(PAPER_SPACE)


def test_every_path_can_grow_to_the_largest() -> None:
    for arch in PAPER_SPACE:
        assert PAPER_SPACE.largest in _reachable(PAPER_SPACE, arch)
    # The largest is the only sink: every other node has an out-edge.
    sinks = [arch for arch in PAPER_SPACE if not PAPER_SPACE.expansions(arch)]
    assert sinks == [PAPER_SPACE.largest]


def test_candidates_are_self_widen_deepen_clipped_to_the_space() -> None:
    assert PAPER_SPACE.candidates(Arch(1, 1)) == [Arch(1, 1), Arch(1, 2), Arch(2, 1)]
    assert PAPER_SPACE.candidates(Arch(2, 4)) == [Arch(2, 4), Arch(2, 5), Arch(3, 4)]
    assert PAPER_SPACE.candidates(Arch(12, 4)) == [Arch(12, 4), Arch(10, 5)]
    assert PAPER_SPACE.candidates(Arch(3, 5)) == [Arch(3, 5), Arch(4, 5)]
    assert PAPER_SPACE.candidates(Arch(12, 5)) == [Arch(12, 5)]
    with pytest.raises(ValueError, match="outside the search space"):
        PAPER_SPACE.candidates(Arch(13, 1))


def test_depth_formula_matches_resnet18() -> None:
    # ResNet-18 = A(B_r, 2, 4): 8 basic blocks of 2 layers + stem conv + classifier = 18 layers.
    assert Arch(2, 4).depth("basic") == 18


@pytest.mark.parametrize("text,expected", [("2x4", Arch(2, 4)), (" 12X5 ", Arch(12, 5)), ("1,2", Arch(1, 2))])
def test_parse_architecture(text: str, expected: Arch) -> None:
    assert Arch.parse(text) == expected


@pytest.mark.parametrize("text", ["2", "axb", "0x3", "2x4x1", ""])
def test_parse_rejects_malformed_architectures(text: str) -> None:
    with pytest.raises(ValueError):
        Arch.parse(text)


def test_cli_space_json_prints_the_dag() -> None:
    result = CliRunner().invoke(app, ["space", "--max-blocks", "12", "--max-stacks", "5", "--json"])
    assert result.exit_code == 0, result.output
    dag = json.loads(result.output)
    assert len(dag["nodes"]) == 60
    assert [[1, 1], [1, 2]] in dag["edges"] and [[1, 1], [2, 1]] in dag["edges"]
    assert len(dag["edges"]) == len(PAPER_SPACE.edges())


def test_cli_space_text_lists_each_architecture_and_its_steps() -> None:
    result = CliRunner().invoke(app, ["space", "--max-blocks", "3", "--max-stacks", "2"])
    assert result.exit_code == 0, result.output
    assert "1x1" in result.output and "widen -> 1x2, deepen -> 2x1" in result.output
    assert "(largest)" in result.output


def test_cli_space_rejects_unknown_block_in_one_line() -> None:
    result = CliRunner().invoke(app, ["space", "--block", "dense"])
    assert result.exit_code != 0
    assert "'dense' is not one of 'basic', 'bottleneck'" in result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
