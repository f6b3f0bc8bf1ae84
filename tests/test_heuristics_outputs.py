"""collect_outputs: computes only what is asked, and its head-only MC sampling is baal's MC-dropout."""

import copy

import numpy as np
import pytest
import torch
from baal.bayesian.dropout import MCDropoutModule

from inas_plugins import Arch, build_inas_resnet
from inas_plugins.heuristics import collect_outputs, create_heuristic, heuristic_names, predicted_class_variance
from inas_plugins.training.sources import InputFormat, TensorSource

FORMAT = InputFormat.uint8([0.5] * 3, [1.0] * 3)  # x / 255 - 0.5


def preprocess(batch: torch.Tensor) -> torch.Tensor:
    return batch.float() / 255.0 - 0.5


def source(images: torch.Tensor) -> TensorSource:
    return TensorSource(images, fmt=FORMAT)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    network = build_inas_resnet(Arch(1, 1), num_classes=5, base_width=8, drop_rate=0.5)
    with torch.no_grad():
        network.head.fc.weight.mul_(4.0)  # spread the untrained softmax so the dropout variance is not ~0
    return network.eval()


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


class _CallCounter:
    """Counts trunk passes (forward_features) and classifier calls."""

    def __init__(self, model):
        self.embed = self.classify = 0
        self._features = model.forward_features

    def wrap(self, model, monkeypatch):
        def forward_features(x):
            self.embed += 1
            return self._features(x)

        def count_classifier(module, inputs, output):
            self.classify += 1

        monkeypatch.setattr(model, "forward_features", forward_features)
        handle = model.get_classifier().register_forward_hook(count_classifier)
        monkeypatch.setattr(self, "_handle", handle, raising=False)
        return self


def test_collect_outputs_computes_only_what_is_needed(model, images, monkeypatch):
    with torch.no_grad():
        expected_probs = torch.softmax(model(preprocess(images)), 1).numpy()
        expected_labelled = model.embed(preprocess(images[:10]))
    calls = _CallCounter(model).wrap(model, monkeypatch)
    nothing = collect_outputs(model, source(images), source(images[:10]), set())
    assert (calls.embed, calls.classify) == (0, 0)
    assert nothing.pool_size == 48 and nothing.probs is None and nothing.pool_embeddings is None

    only_probs = collect_outputs(model, source(images), source(images[:10]), {"probs"}, batch_size=16)
    assert (calls.embed, calls.classify) == (3, 3)  # pool only, one classify per batch, no MC
    assert only_probs.mc_probs is None and only_probs.pool_embeddings is None and only_probs.labelled_embeddings is None
    np.testing.assert_allclose(only_probs.probs, expected_probs, atol=1e-6)

    embeddings = collect_outputs(model, source(images), source(images[:10]), {"embeddings"}, batch_size=16)
    assert calls.classify == 3  # no head evaluated for coreset
    assert embeddings.probs is None and embeddings.mc_probs is None
    assert embeddings.pool_embeddings.shape == (48, model.num_features)
    assert embeddings.labelled_embeddings.shape == (10, model.num_features)
    torch.testing.assert_close(embeddings.labelled_embeddings, expected_labelled)

    empty_labelled = collect_outputs(model, source(images), source(images[:0]), {"embeddings"})
    assert empty_labelled.labelled_embeddings.shape == (0, model.num_features)


def test_mc_sampling_is_seeded_and_leaves_model_and_global_rng_alone(model, images):
    model.train()
    rate_before, rng_before = model.head.drop.p, torch.get_rng_state()
    first = collect_outputs(model, source(images), None, {"mc_probs"}, mc_samples=7, seed=3)
    again = collect_outputs(model, source(images), None, {"mc_probs"}, mc_samples=7, seed=3)
    other = collect_outputs(model, source(images), None, {"mc_probs"}, mc_samples=7, seed=4)
    assert first.mc_probs.shape == (48, 5, 7)
    np.testing.assert_allclose(first.mc_probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first.mc_probs, again.mc_probs)
    assert not np.array_equal(first.mc_probs, other.mc_probs)
    assert model.training and model.head.drop.p == rate_before
    assert torch.equal(torch.get_rng_state(), rng_before)
    model.eval()


def _mean_scores(mc_probs: np.ndarray, predicted: np.ndarray) -> float:
    return float(predicted_class_variance(mc_probs, predicted).mean())


def test_head_only_sampling_matches_full_network_mc_dropout(model, images):
    passes = 300
    ours = collect_outputs(model, source(images), None, {"probs", "mc_probs"}, mc_samples=passes,
                           mc_dropout_rate=model.head.drop.p, seed=0)
    predicted = ours.probs.argmax(1)

    # Reference: baal's MCDropoutModule over the whole network, the batch replicated `passes` times.
    full_model = MCDropoutModule(copy.deepcopy(model)).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        logits = full_model(preprocess(images).repeat(passes, 1, 1, 1))
    full = torch.softmax(logits, 1).reshape(passes, len(images), -1).permute(1, 2, 0).numpy()

    reference = _mean_scores(full, predicted)
    assert reference > 1e-3  # the test has something to compare
    assert _mean_scores(ours.mc_probs, predicted) == pytest.approx(reference, rel=0.1)
    np.testing.assert_allclose(ours.mc_probs.mean(-1), full.mean(-1), atol=0.08)
    # The comparison has the power to notice a wrong dropout rate.
    wrong = collect_outputs(model, source(images), None, {"mc_probs"}, mc_samples=passes, mc_dropout_rate=0.2,
                            seed=0)
    assert _mean_scores(wrong.mc_probs, predicted) < 0.5 * reference
    # And the registered heuristic ranks with exactly these outputs.
    picks = create_heuristic("mc_dropout").select(ours, 5, np.random.default_rng(0))
    assert picks.tolist() == np.argsort(-predicted_class_variance(ours.mc_probs, predicted), kind="stable")[:5].tolist()


def test_collect_outputs_rejects_bad_arguments(model, images):
    with pytest.raises(ValueError, match="valid needs"):
        collect_outputs(model, source(images), source(images), {"logits"})
    with pytest.raises(ValueError, match="mc_samples"):
        collect_outputs(model, source(images), source(images), {"mc_probs"}, mc_samples=0)
    with pytest.raises(ValueError, match="mc_dropout_rate"):
        collect_outputs(model, source(images), source(images), {"mc_probs"}, mc_dropout_rate=1.0)
    with pytest.raises(ValueError, match="identical"):
        collect_outputs(model, source(images), source(images), {"mc_probs"}, mc_samples=5, mc_dropout_rate=0.0)
    with pytest.raises(ValueError, match="labelled"):
        collect_outputs(model, source(images), None, {"embeddings"})


def test_every_registered_heuristic_runs_on_what_collect_outputs_gives_it(model, images):
    by_needs = {}
    for name in heuristic_names():
        heuristic = create_heuristic(name)
        if heuristic.needs not in by_needs:
            by_needs[heuristic.needs] = collect_outputs(model, source(images[10:]), source(images[:10]),
                                                        heuristic.needs, mc_samples=10)
        outputs = by_needs[heuristic.needs]
        picks = heuristic.select(outputs, 6, np.random.default_rng(0))
        assert picks.dtype == np.int64 and len(set(picks.tolist())) == 6 and 0 <= picks.min() <= picks.max() < 38, name


def test_a_network_trained_without_dropout_still_gets_distinct_mc_samples(images):
    """One meaning of MC-dropout: the query's rate applies at inference whatever the training rate."""
    torch.manual_seed(0)
    no_dropout = build_inas_resnet(Arch(1, 1), num_classes=5, base_width=8, drop_rate=0.0).eval()
    outputs = collect_outputs(no_dropout, source(images), None, {"mc_probs"}, mc_samples=4, seed=0)
    assert np.abs(outputs.mc_probs[..., 0] - outputs.mc_probs[..., 1]).max() > 1e-3


def test_a_network_without_timm_interface_or_dropout_is_refused_for_mc_samples(images):
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    with pytest.raises(ValueError, match="no dropout layer"):
        collect_outputs(plain, source(images), None, {"mc_probs"}, mc_samples=4)
    with pytest.raises(ValueError, match="forward_head"):
        collect_outputs(plain, source(images), source(images), {"embeddings"})
    # Its deterministic predictions still work, and a dropout layer makes MC sampling possible.
    probs = collect_outputs(plain, source(images), None, {"probs"}).probs
    assert probs.shape == (48, 5)
    with_dropout = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(3 * 8 * 8, 5))
    mc = collect_outputs(with_dropout, source(images), None, {"mc_probs"}, mc_samples=3, seed=1).mc_probs
    assert mc.shape == (48, 5, 3) and not np.allclose(mc[..., 0], mc[..., 1])
