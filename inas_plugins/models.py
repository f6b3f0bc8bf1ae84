"""The A(B, i, j) networks of the paper (section 5.1), composed from timm's building blocks.

timm's own ``ResNet`` class hard-codes four stages and a large strided stem, so the family is
assembled here from ``timm.models.resnet.BasicBlock`` / ``Bottleneck``, timm's downsample
shortcut and timm's ``ClassifierHead``. The networks are registered with timm as
``inas_resnet_i{i}_j{j}`` so ``timm.create_model`` builds them by name, through timm's own
``build_model_with_cfg``: each name has a ``pretrained_cfg`` (no weights; the input size and the
normalisation statistics) so ``timm.data.resolve_data_config(model=model)`` works, a
``pretrained_cfg_overlay`` sets them, ``num_classes=0`` gives a feature extractor and
``features_only=True`` the feature map of the stem and of every stack.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import torch
from torch import nn
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, downsample_conv

from .settings import check_positive_int
from .space import Arch, BLOCK_LAYERS

BLOCK_TYPES: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
assert set(BLOCK_TYPES) == set(BLOCK_LAYERS)

# Names registered with timm cover the paper's 12 x 5 grid; larger spaces use build_inas_resnet.
REGISTERED_MAX_BLOCKS = 12
REGISTERED_MAX_STACKS = 5
# What a network expects until it is told what it was trained on (:meth:`INASResNet.set_data_config`):
# the paper's data, CIFAR-10, at 32 x 32, normalised with the per-channel mean and standard deviation
# of its 50,000 training images (on the 0..1 scale, as timm's configs and the trainer use them).
DEFAULT_INPUT_SIZE = 32
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def data_config(in_chans: int = 3, num_classes: int = 10, *, input_size: Optional[int] = None,
                mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> dict:
    """The ``pretrained_cfg`` of an A(B, i, j) network: no weights, its input and its classes.

    Without statistics, CIFAR-10's (for one channel or any other count, their averages per channel).
    """
    side = input_size or DEFAULT_INPUT_SIZE
    mean = tuple(float(m) for m in mean) if mean is not None else _per_channel(CIFAR10_MEAN, in_chans)
    std = tuple(float(s) for s in std) if std is not None else _per_channel(CIFAR10_STD, in_chans)
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean and std need one value per input channel ({in_chans}), got {len(mean)} and {len(std)}")
    return {"url": "", "num_classes": num_classes, "input_size": (in_chans, side, side), "pool_size": None,
            "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bilinear", "mean": mean, "std": std,
            "first_conv": "stem.0", "classifier": "head.fc", "license": "apache-2.0"}


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    return values if channels == len(values) else (sum(values) / len(values),) * channels


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
        for name, value in (("base_width", base_width), ("in_chans", in_chans)):
            check_positive_int("", name, value)
        _check_num_classes(num_classes)
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
        # timm's feature description: the stem (after its max-pool) and each stack, for features_only=True.
        self.feature_info = [{"num_chs": base_width, "reduction": 2, "module": "stem.3"}] + [
            {"num_chs": base_width * 2**index * block_cls.expansion, "reduction": 2 ** (index + 1),
             "module": f"stacks.{index}"} for index in range(arch.stacks)]
        self.pretrained_cfg = self.default_cfg = data_config(in_chans, num_classes)
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

    def get_classifier(self) -> nn.Module:
        """The final linear layer (``head.fc``; an ``nn.Identity`` without classes, ``num_classes=0``)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the classifier with a freshly initialised ``nn.Linear`` to ``num_classes`` outputs.

        It is created on the old classifier's device and dtype, in the model's train/eval mode.
        ``num_classes=0`` removes it, as in timm: the network then returns its pooled features.
        ``global_pool`` may only be None or ``"avg"``: another pooling (e.g. timm's ``catavgmax``)
        would change the pre-logits width, which the heuristics rely on being ``num_features``.
        """
        _check_num_classes(num_classes)
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool {global_pool!r} is not supported; INASResNet pools with 'avg'")
        self.head.reset(num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg = self.default_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def set_data_config(self, *, input_size: Optional[int] = None, mean: Optional[Sequence[float]] = None,
                        std: Optional[Sequence[float]] = None) -> None:
        """Record what the network was trained on (square input side, per-channel mean and std on the
        0..1 scale) in its ``pretrained_cfg``, where ``timm.data.resolve_data_config`` reads them."""
        cfg = self.pretrained_cfg
        self.pretrained_cfg = self.default_cfg = {**cfg, **data_config(
            self.in_chans, self.num_classes, input_size=input_size or cfg["input_size"][-1],
            mean=mean if mean is not None else cfg["mean"], std=std if std is not None else cfg["std"])}

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


def _check_num_classes(num_classes: int) -> None:
    """timm's rule: a positive number of classes, or 0 for no classifier (a feature extractor)."""
    if num_classes != 0:
        check_positive_int("", "num_classes", num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def timm_name(arch: Arch) -> str:
    """The name under which ``arch`` is registered with timm."""
    return f"inas_resnet_i{arch.blocks}_j{arch.stacks}"


def _make_entrypoint(arch: Arch):
    name = timm_name(arch)

    def entrypoint(pretrained: bool = False, **kwargs) -> INASResNet:
        if pretrained:
            raise ValueError(f"{name} has no pretrained weights")
        in_chans = kwargs.get("in_chans", 3)
        overlay = {**_channel_stats(in_chans), **(kwargs.pop("pretrained_cfg_overlay", None) or {})}
        return build_model_with_cfg(INASResNet, name, False, pretrained_cfg_overlay=overlay, arch=arch,
                                    feature_cfg={"flatten_sequential": True,
                                                 "out_indices": tuple(range(arch.stacks + 1))}, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"A(B, {arch.blocks}, {arch.stacks}) from inas_plugins."
    return entrypoint


def _channel_stats(in_chans: int) -> dict:
    """The registered config's input size and statistics for ``in_chans`` channels."""
    cfg = data_config(in_chans)
    return {key: cfg[key] for key in ("input_size", "mean", "std")}


def _registered() -> list[Arch]:
    return [Arch(blocks, stacks) for stacks in range(1, REGISTERED_MAX_STACKS + 1)
            for blocks in range(1, REGISTERED_MAX_BLOCKS + 1)]


# timm's register_model reads each name's pretrained config from this module's ``default_cfgs``.
default_cfgs = generate_default_cfgs({timm_name(arch): data_config() for arch in _registered()})


def _register_with_timm() -> None:
    module = sys.modules[__name__]
    for arch in _registered():
        fn = register_model(_make_entrypoint(arch))
        setattr(module, fn.__name__, fn)


_register_with_timm()
