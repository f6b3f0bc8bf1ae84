"""The A(B, i, j) networks: parameter counts from the paper's setting, shapes, timm registration, dropout."""

from __future__ import annotations

import pytest
import timm
import torch
from baal.bayesian.dropout import patch_module
from torch import nn

import inas_plugins  # noqa: F401  (registers the family with timm)
from inas_plugins.models import INASResNet, build_inas_resnet, count_parameters, timm_name
from inas_plugins.space import Arch, SearchSpace


def test_resnet18_and_smallest_parameter_counts_at_paper_width() -> None:
    assert count_parameters(build_inas_resnet(Arch(2, 4), num_classes=10)) == 11_173_962
    assert count_parameters(build_inas_resnet(Arch(1, 1), num_classes=10)) == 76_490


@pytest.mark.parametrize("in_chans,size", [(3, 32), (1, 28)])
def test_every_grid_architecture_builds_and_runs(in_chans: int, size: int) -> None:
    x = torch.randn(2, in_chans, size, size)
    for arch in SearchSpace(12, 5):
        model = build_inas_resnet(arch, num_classes=7, in_chans=in_chans, base_width=4).eval()
        with torch.no_grad():
            logits, embedding = model(x), model.embed(x)
        assert logits.shape == (2, 7)
        assert embedding.shape == (2, 4 * 2 ** (arch.stacks - 1)) == (2, model.num_features)


def test_bottleneck_block_type_expands_the_embedding() -> None:
    model = build_inas_resnet(Arch(1, 2), block="bottleneck", base_width=4).eval()
    assert model.embed(torch.randn(1, 3, 16, 16)).shape == (1, 4 * 2 * 4)


def test_stack_layout_halves_resolution_and_doubles_width() -> None:
    model = build_inas_resnet(Arch(2, 3), base_width=8).eval()
    x = model.stem(torch.randn(1, 3, 32, 32))
    assert x.shape == (1, 8, 16, 16)  # stride-1 conv then the stride-2 max-pool
    expected = [(8, 16), (16, 8), (32, 4)]
    for stack, (width, size) in zip(model.stacks, expected):
        assert len(stack) == 2
        x = stack(x)
        assert x.shape == (1, width, size, size)


def test_timm_create_model_builds_the_family_and_passes_kwargs() -> None:
    model = timm.create_model("inas_resnet_i2_j4", num_classes=10)
    assert isinstance(model, INASResNet) and model.arch == Arch(2, 4)
    assert count_parameters(model) == 11_173_962
    small = timm.create_model(timm_name(Arch(3, 2)), num_classes=5, in_chans=1, base_width=8, drop_rate=0.3)
    assert (small.arch, small.in_chans, small.base_width, small.drop_rate) == (Arch(3, 2), 1, 8, 0.3)
    assert "inas_resnet_i12_j5" in timm.list_models("inas_resnet_*")
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("inas_resnet_i1_j1", pretrained=True)


def test_last_bn_of_every_block_starts_at_zero() -> None:
    model = build_inas_resnet(Arch(3, 2), base_width=4)
    for stack in model.stacks:
        for block in stack:
            assert torch.count_nonzero(block.bn2.weight) == 0


def test_classifier_dropout_is_an_nn_dropout_that_baal_can_switch_on() -> None:
    torch.manual_seed(0)
    model = build_inas_resnet(Arch(1, 2), base_width=4, drop_rate=0.5)
    assert isinstance(model.head.drop, nn.Dropout)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic at eval
        mc_model = patch_module(model, inplace=False).eval()
        assert not torch.equal(mc_model(x), mc_model(x))  # baal's patched dropout stays on
        # The embedding is taken before the dropout, so it stays deterministic under MC-dropout.
        assert torch.equal(mc_model.embed(x), mc_model.embed(x))


def test_invalid_constructor_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown block type"):
        build_inas_resnet(Arch(1, 1), block="dense")
    with pytest.raises(ValueError, match="drop_rate"):
        build_inas_resnet(Arch(1, 1), drop_rate=1.5)
