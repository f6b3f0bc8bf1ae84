"""The A(B, i, j) networks of the paper (section 5.1), composed from timm's building blocks.

timm's own ``ResNet`` class hard-codes four stages and a large strided stem, so the family is
assembled here from ``timm.models.resnet.BasicBlock`` / ``Bottleneck``, timm's downsample
shortcut and timm's ``ClassifierHead``. The networks are registered with timm as
``inas_resnet_i{i}_j{j}`` so ``timm.create_model`` builds them by name.
"""

from __future__ import annotations

import sys
from typing import Optional

import torch
from torch import nn
from timm.layers import ClassifierHead
from timm.models import register_model
from timm.models.resnet import BasicBlock, Bottleneck, downsample_conv

from .space import Arch, BLOCK_LAYERS

BLOCK_TYPES: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
assert set(BLOCK_TYPES) == set(BLOCK_LAYERS)

# Names registered with timm cover the paper's 12 x 5 grid; larger spaces use build_inas_resnet.
REGISTERED_MAX_BLOCKS = 12
REGISTERED_MAX_STACKS = 5


class INASResNet(nn.Module):
    """A(B, i, j): 3x3 stem + max-pool, j stacks of i blocks, global pooling, dropout, linear classifier.

    Each stack after the first halves the resolution in its first block and doubles the width.
    The dropout before the classifier is a real ``nn.Dropout`` (``self.head.drop``) so baal's
    MC-dropout patching can switch it on at inference, and ``forward_head(x, pre_logits=True)`` (and
    ``embed``) returns the pooled features *before* that dropout, so coreset embeddings stay
    deterministic. It follows timm's model interface: ``forward_features``, ``forward_head``,
    ``get_classifier``, ``reset_classifier`` and ``num_features``.
    """

    def __init__(
        self,
        arch: Arch,
        num_classes: int = 10,
        in_chans: int = 3,
        base_width: int = 64,
        drop_rate: float = 0.0,
        block: str = "basic",
    ) -> None:
        super().__init__()
        if block not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {block!r}; choose one of {', '.join(BLOCK_TYPES)}")
        if base_width < 1 or num_classes < 1 or in_chans < 1:
            raise ValueError("base_width, num_classes and in_chans must be positive")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.arch = arch
        self.block = block
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.base_width = base_width
        self.drop_rate = drop_rate

        block_cls = BLOCK_TYPES[block]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, base_width, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stacks = []
        in_width = base_width
        for stack_index in range(arch.stacks):
            planes = base_width * 2**stack_index
            stride = 1 if stack_index == 0 else 2
            blocks = []
            for block_index in range(arch.blocks):
                block_stride = stride if block_index == 0 else 1
                out_width = planes * block_cls.expansion
                downsample = None
                if block_stride != 1 or in_width != out_width:
                    downsample = downsample_conv(in_width, out_width, kernel_size=1, stride=block_stride)
                blocks.append(block_cls(in_width, planes, stride=block_stride, downsample=downsample))
                in_width = out_width
            stacks.append(nn.Sequential(*blocks))
        self.stacks = nn.Sequential(*stacks)
        self.num_features = in_width
        self.head = ClassifierHead(in_width, num_classes, pool_type="avg", drop_rate=drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # A block whose last BN gamma is zero is an identity on its (post-ReLU) input, so a network
        # grown by one block can start exactly where its parent was.
        for module in self.modules():
            if hasattr(module, "zero_init_last"):
                module.zero_init_last()

    # timm's model interface (forward_features / forward_head / get_classifier / reset_classifier), so
    # timm tooling and code written for timm models work with the family unchanged.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the last stack (before pooling)."""
        return self.stacks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global-pool the feature map ``x``; logits, or with ``pre_logits`` the pooled features.

        Unlike timm's ``ClassifierHead.forward``, which applies the dropout *before* it returns the
        pre-logits, the pre-logits here are taken *before* the dropout (``head.drop``), in train
        mode too. Two consumers need that: coreset embeddings must be deterministic (a k-center
        selection on dropped-out features would depend on the dropout draw), and MC-dropout draws
        its own K masks on these features (:mod:`inas_plugins.heuristics.outputs`) so that the
        trunk runs once instead of K times. The logits are ``head.fc(head.drop(pooled))`` as in timm.
        """
        pooled = self.head.global_pool(x)
        if pre_logits:
            return pooled
        return self.get_classifier()(self.head.drop(pooled))

    def get_classifier(self) -> nn.Linear:
        """The final linear layer (``head.fc``)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier with a freshly initialised ``nn.Linear`` to ``num_classes`` outputs.

        It is created on the old classifier's device and dtype, in the model's train/eval mode.
        ``global_pool`` may only be None or ``"avg"``: another pooling (e.g. timm's ``catavgmax``)
        would change the pre-logits width, which the heuristics rely on being ``num_features``.
        Unlike timm, ``num_classes=0`` (no classifier) is refused: every consumer here needs logits.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool {global_pool!r} is not supported; INASResNet pools with 'avg'")
        self.head.reset(num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, taken before the dropout (width ``num_features``): the
        coreset embedding. See :meth:`forward_head` for why dropout is not applied."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, block={self.block}, base_width={self.base_width}"


def build_inas_resnet(
    arch: Arch,
    num_classes: int = 10,
    in_chans: int = 3,
    base_width: int = 64,
    drop_rate: float = 0.0,
    block: str = "basic",
) -> INASResNet:
    """Build A(block, arch.blocks, arch.stacks)."""
    return INASResNet(arch, num_classes=num_classes, in_chans=in_chans, base_width=base_width,
                      drop_rate=drop_rate, block=block)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def timm_name(arch: Arch) -> str:
    """The name under which ``arch`` is registered with timm."""
    return f"inas_resnet_i{arch.blocks}_j{arch.stacks}"


# Arguments timm's create_model hands every entrypoint that only matter for pretrained weights.
_TIMM_FACTORY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _make_entrypoint(arch: Arch):
    def entrypoint(pretrained: bool = False, **kwargs) -> INASResNet:
        if pretrained:
            raise ValueError(f"{timm_name(arch)} has no pretrained weights")
        for factory_only in _TIMM_FACTORY_KWARGS:
            kwargs.pop(factory_only, None)
        return build_inas_resnet(arch, **kwargs)

    entrypoint.__name__ = timm_name(arch)
    entrypoint.__qualname__ = timm_name(arch)
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"A(B, {arch.blocks}, {arch.stacks}) from inas_plugins."
    return entrypoint


def _register_with_timm() -> None:
    module = sys.modules[__name__]
    for stacks in range(1, REGISTERED_MAX_STACKS + 1):
        for blocks in range(1, REGISTERED_MAX_BLOCKS + 1):
            fn = register_model(_make_entrypoint(Arch(blocks, stacks)))
            setattr(module, fn.__name__, fn)


_register_with_timm()
