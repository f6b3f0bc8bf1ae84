"""Weight inheritance: start a grown network from its parent's trained weights.

Parameters are matched by position, i.e. by state-dict name: ``stem.*``, ``stacks.{stack}.{block}.*``
and ``head.*`` name the same place in every A(B, i, j). A unit (the stem, one residual block, the
head) is copied only when the child and the parent have it with exactly the same tensors and shapes;
otherwise it keeps its fresh initialisation.

* Deepened child A(i+1, j) of A(i, j): every parent unit is copied; the new last block of each stack
  keeps a zero last-BN gamma, so it is an identity and the child computes exactly what the parent
  does (in eval mode and in train mode).
* Widened child A(i', j+1): the stem and the blocks the two share by (stack, block) position are
  copied; the new stack and the classifier (whose input width doubled) start fresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

_BLOCK_KEY = re.compile(r"^(stacks\.\d+\.\d+)\.")


def unit_of(key: str) -> str:
    """The unit a state-dict entry belongs to: ``stacks.S.B`` for a residual block, else its top module."""
    match = _BLOCK_KEY.match(key)
    return match.group(1) if match else key.split(".", 1)[0]


@dataclass
class InheritReport:
    """Which units the child took from the parent and which it kept fresh."""

    inherited: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.inherited)


def inherit_weights(child: nn.Module, parent: nn.Module) -> InheritReport:
    """Copy into ``child`` (in place) every unit of ``parent`` that it has with identical shapes."""
    child_state = child.state_dict()
    parent_state = parent.state_dict()
    units: dict[str, list[str]] = {}
    for key in child_state:
        units.setdefault(unit_of(key), []).append(key)
    parent_units: dict[str, set[str]] = {}
    for key in parent_state:
        parent_units.setdefault(unit_of(key), set()).add(key)

    report = InheritReport()
    with torch.no_grad():
        for unit, keys in units.items():
            compatible = parent_units.get(unit) == set(keys) and all(
                child_state[key].shape == parent_state[key].shape for key in keys
            )
            if compatible:
                for key in keys:
                    child_state[key].copy_(parent_state[key].to(child_state[key].device))
                report.inherited.append(unit)
            else:
                report.fresh.append(unit)
    _zero_init_fresh_blocks(child, report.fresh)
    return report


def _zero_init_fresh_blocks(child: nn.Module, fresh_units: list[str]) -> None:
    """Make sure every fresh residual block starts as an identity (zero last-BN gamma)."""
    for unit in fresh_units:
        if not _BLOCK_KEY.match(unit + "."):
            continue
        block = child.get_submodule(unit)
        if hasattr(block, "zero_init_last"):
            block.zero_init_last()
