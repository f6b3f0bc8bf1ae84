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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- timm's model interface


def test_forward_is_forward_head_of_forward_features_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = build_inas_resnet(Arch(2, 2), num_classes=6, base_width=4, drop_rate=0.5).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (3, model.num_features, 4, 4)
        assert torch.equal(model(x), model.forward_head(features))
        logits = model.get_classifier()(features.mean(dim=(2, 3)))  # avg pool then the Linear, no dropout at eval
        assert torch.allclose(model(x), logits, atol=1e-6)


def test_pre_logits_are_the_pooled_features_of_width_num_features() -> None:
    model = build_inas_resnet(Arch(1, 3), num_classes=4, base_width=4).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (2, model.num_features) == (2, 16)
        assert torch.allclose(pre_logits, features.mean(dim=(2, 3)), atol=1e-6)
        assert torch.equal(model.embed(x), pre_logits)
        assert torch.equal(model.get_classifier()(pre_logits), model(x))  # eval: the head is pool -> fc


def test_get_classifier_is_the_linear_layer_forward_uses() -> None:
    model = build_inas_resnet(Arch(1, 1), num_classes=5, base_width=4).eval()
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear) and classifier is model.head.fc
    assert (classifier.in_features, classifier.out_features) == (model.num_features, 5)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.fill_(3.0)
        assert torch.equal(model(torch.randn(2, 3, 8, 8)), torch.full((2, 5), 3.0))


def test_reset_classifier_changes_the_output_width_and_still_trains() -> None:
    torch.manual_seed(0)
    model = build_inas_resnet(Arch(1, 2), num_classes=10, base_width=4, drop_rate=0.2)
    old = model.get_classifier()
    model.reset_classifier(3)
    new = model.get_classifier()
    assert new is not old and isinstance(new, nn.Linear)
    assert (new.in_features, new.out_features, model.num_classes) == (model.num_features, 3, 3)
    assert new in list(model.modules())  # registered, so it is in parameters() and state_dict()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    assert model(x).shape == (8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = new.weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert new.weight.grad is not None and not torch.equal(new.weight.detach(), before)
    model.reset_classifier(4, global_pool="avg")
    assert model.eval()(x).shape == (8, 4) and model.pretrained_cfg["num_classes"] == 4
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)
    model.reset_classifier(0)  # timm's way to drop the classifier: the pooled features come out
    assert isinstance(model.get_classifier(), nn.Identity) and model(x).shape == (8, model.num_features)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(4, global_pool="max")


def test_pre_logits_in_train_mode_skip_the_dropout_but_logits_do_not() -> None:
    torch.manual_seed(0)
    model = build_inas_resnet(Arch(1, 2), num_classes=10, base_width=8, drop_rate=0.5).train()
    with torch.no_grad():
        features = model.eval().forward_features(torch.randn(4, 3, 16, 16))  # fixed BN statistics
        model.train()
        first = model.forward_head(features, pre_logits=True)
        second = model.forward_head(features, pre_logits=True)
        assert torch.equal(first, second)
        assert torch.equal(first, model.head.global_pool(features))
        # The logits do go through the dropout in train mode (timm's order: pool, drop, fc).
        assert not torch.equal(model.forward_head(features), model.forward_head(features))


def test_timm_create_model_gives_the_timm_interface() -> None:
    model = timm.create_model("inas_resnet_i1_j2", num_classes=7, base_width=4).eval()
    assert isinstance(model, INASResNet) and model.arch == Arch(1, 2)
    assert model.get_classifier().out_features == 7
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))


# --------------------------------------------------------------------------- timm's configs and feature extraction


def test_timm_resolves_the_data_config_of_every_registered_name() -> None:
    from timm.data import resolve_data_config

    from inas_plugins.models import CIFAR10_MEAN, CIFAR10_STD

    model = timm.create_model("inas_resnet_i2_j3", num_classes=5, base_width=4)
    config = resolve_data_config(model=model)
    assert (config["input_size"], config["mean"], config["std"]) == ((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)
    assert model.pretrained_cfg["architecture"] == "inas_resnet_i2_j3" and not model.pretrained_cfg["url"]
    gray = resolve_data_config(model=timm.create_model("inas_resnet_i1_j1", in_chans=1, base_width=4))
    assert gray["input_size"] == (1, 32, 32) and len(gray["mean"]) == len(gray["std"]) == 1
    mine = timm.create_model("inas_resnet_i1_j1", base_width=4,
                             pretrained_cfg_overlay={"input_size": (3, 64, 64), "mean": (0.1, 0.2, 0.3)})
    assert resolve_data_config(model=mine)["input_size"] == (3, 64, 64)
    assert resolve_data_config(model=mine)["mean"] == (0.1, 0.2, 0.3)


def test_set_data_config_records_the_training_statistics_for_timm() -> None:
    from timm.data import resolve_data_config

    model = build_inas_resnet(Arch(1, 1), in_chans=1, base_width=4)
    model.set_data_config(input_size=8, mean=[0.3], std=[0.2])
    assert resolve_data_config(model=model) == {"input_size": (1, 8, 8), "interpolation": "bilinear",
                                                "mean": (0.3,), "std": (0.2,), "crop_pct": 1.0,
                                                "crop_mode": "center"}
    with pytest.raises(ValueError, match="one value per input channel"):
        model.set_data_config(mean=[0.1, 0.2, 0.3])


def test_num_classes_zero_is_a_feature_extractor_as_in_timm() -> None:
    torch.manual_seed(0)
    model = timm.create_model("inas_resnet_i1_j2", num_classes=0, base_width=4).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    assert model(x).shape == (3, model.num_features) and model.num_classes == 0


def test_features_only_gives_the_stem_and_every_stack() -> None:
    extractor = timm.create_model("inas_resnet_i1_j3", features_only=True, base_width=4).eval()
    with torch.no_grad():
        maps = extractor(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(4, 16, 16), (4, 16, 16), (8, 8, 8), (16, 4, 4)]
    assert extractor.feature_info.reduction() == [2, 2, 4, 8]
