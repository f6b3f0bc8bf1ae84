"""The iNAS search space: homogeneous ResNets A(B, i, j) on a grid, linked by two expansion steps.

Paper section 4.1-4.2. An architecture is i blocks per stack and j stacks of one block type B.
Its depth is ``i * j * beta + alpha``; the two edges of the DAG are the smallest depth-increasing
moves that keep (deepen) or add (widen) a stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .settings import check_positive_int

# Layers per block (beta) for each block type, and the layers outside the blocks (alpha):
# the stem convolution and the classifier.
BLOCK_LAYERS = {"basic": 2, "bottleneck": 3}
STEM_AND_HEAD_LAYERS = 2


@dataclass(frozen=True, order=True)
class Arch:
    """A(B, i, j): ``blocks`` blocks in each of ``stacks`` stacks."""

    blocks: int
    stacks: int

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.stacks < 1:
            raise ValueError(f"an architecture needs at least 1 block and 1 stack, got {self.blocks}x{self.stacks}")

    @classmethod
    def parse(cls, text: str) -> "Arch":
        """Read ``"2x4"`` (or ``"2,4"``) as A(2, 4); raise ValueError with the expected form otherwise."""
        cleaned = text.strip().lower().replace(",", "x")
        parts = cleaned.split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"architecture {text!r} is not of the form BLOCKSxSTACKS, e.g. 2x4")
        return cls(int(parts[0]), int(parts[1]))

    def depth(self, block: str = "basic") -> int:
        """|A(B, i, j)| = i * j * beta + alpha."""
        return self.blocks * self.stacks * BLOCK_LAYERS[block] + STEM_AND_HEAD_LAYERS

    @property
    def total_blocks(self) -> int:
        return self.blocks * self.stacks

    def as_list(self) -> list[int]:
        return [self.blocks, self.stacks]

    def __str__(self) -> str:
        return f"{self.blocks}x{self.stacks}"


def deepen(arch: Arch) -> Arch:
    """First expansion step: one more block in every stack, same number of stacks."""
    return Arch(arch.blocks + 1, arch.stacks)


def widen(arch: Arch) -> Arch:
    """Second expansion step: one more stack, with the fewest blocks that still add depth.

    ``floor(i*j / (j+1)) + 1`` is the smallest i' with i' * (j+1) > i * j.
    """
    return Arch(arch.blocks * arch.stacks // (arch.stacks + 1) + 1, arch.stacks + 1)


@dataclass(frozen=True)
class SearchSpace:
    """All A(B, i, j) with 1 <= i <= max_blocks and 1 <= j <= max_stacks (paper: 12 x 5)."""

    max_blocks: int = 12
    max_stacks: int = 5
    block: str = "basic"

    def __post_init__(self) -> None:
        check_positive_int("", "max_blocks", self.max_blocks)
        check_positive_int("", "max_stacks", self.max_stacks)
        if self.block not in BLOCK_LAYERS:
            raise ValueError(f"unknown block type {self.block!r}; choose one of {', '.join(BLOCK_LAYERS)}")

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, Arch) and arch.blocks <= self.max_blocks and arch.stacks <= self.max_stacks

    def __iter__(self) -> Iterator[Arch]:
        for stacks in range(1, self.max_stacks + 1):
            for blocks in range(1, self.max_blocks + 1):
                yield Arch(blocks, stacks)

    def __len__(self) -> int:
        return self.max_blocks * self.max_stacks

    @property
    def smallest(self) -> Arch:
        return Arch(1, 1)

    @property
    def largest(self) -> Arch:
        return Arch(self.max_blocks, self.max_stacks)

    def check(self, arch: Arch) -> Arch:
        """Return ``arch`` if it lies in the space, else raise a ValueError naming the valid range."""
        if arch not in self:
            raise ValueError(
                f"architecture {arch} is outside the search space 1x1..{self.largest} "
                f"(blocks 1..{self.max_blocks}, stacks 1..{self.max_stacks})"
            )
        return arch

    def expansions(self, arch: Arch) -> list[Arch]:
        """The out-edges of ``arch``: widen then deepen, each kept only if it stays in the space."""
        return [step for step in (widen(arch), deepen(arch)) if step in self]

    def candidates(self, arch: Arch) -> list[Arch]:
        """iNAS candidate set A' = {A, widen(A), deepen(A)} intersected with the space (Algorithm 1, lines 5-6)."""
        self.check(arch)
        return [arch, *self.expansions(arch)]

    def edges(self) -> list[tuple[Arch, Arch]]:
        return [(arch, step) for arch in self for step in self.expansions(arch)]

    def depth(self, arch: Arch) -> int:
        return arch.depth(self.block)

    def to_json(self) -> dict:
        """``{"nodes": [[i, j], ...], "edges": [[[i, j], [i2, j2]], ...]}``."""
        return {
            "nodes": [arch.as_list() for arch in self],
            "edges": [[a.as_list(), b.as_list()] for a, b in self.edges()],
        }
