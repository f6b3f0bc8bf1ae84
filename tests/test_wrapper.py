"""INASModelWrapper as a drop-in for baal's ModelWrapper: ActiveLearningLoop, ActiveLearningExperiment,
metrics, MC dropout, state dicts, and the TrainingArgs it honours."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.active.heuristics import BALD
from baal.active.stopping_criteria import LabellingBudgetStoppingCriterion
from baal.experiments.base import ActiveLearningExperiment
from baal.modelwrapper import ModelWrapper, TrainingArgs
from baal.utils.metrics import Accuracy
from torch.utils.data import TensorDataset

import inas_plugins.active_round as active_round
from inas_plugins.heuristics import SoftmaxResponse
from inas_plugins.models import build_inas_resnet
from inas_plugins.search import SearchResult
from inas_plugins.space import Arch, SearchSpace, deepen
from inas_plugins.training import TrainRecipe
from inas_plugins.settings import QueryOptions, SearchOptions
from inas_plugins.baal_args import recipe_from_args
from inas_plugins.wrapper import INASModelWrapper

CLASSES = 3
SPACE = SearchSpace(max_blocks=2, max_stacks=2)



def blobs(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> TensorDataset:
    """8x8 grayscale images whose class is a bright quadrant, as a baal user's (image, label) dataset."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    images = torch.randn(n, 1, 8, 8, generator=generator) * 0.5
    quadrants = [(slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8)), (slice(0, 4), slice(4, 8))]
    for cls, (rows, cols) in enumerate(quadrants):
        images[labels == cls, :, rows, cols] += 2.0
    if dtype == torch.uint8:
        images = ((images + 2.0) * 50.0).clamp(0, 255).to(torch.uint8)
    return TensorDataset(images, labels)


def make_wrapper(*, start: Arch = Arch(1, 1), epoch: int = 2, drop_rate: float = 0.5, **kwargs) -> INASModelWrapper:
    model = build_inas_resnet(start, num_classes=CLASSES, in_chans=1, base_width=4, drop_rate=drop_rate)
    args = TrainingArgs(batch_size=32, epoch=epoch, workers=0, use_cuda=False)
    kwargs.setdefault("space", SPACE)
    return INASModelWrapper(model, args, progress=False, **kwargs)


@pytest.fixture
def forced_growth(monkeypatch):
    """Replace the search by one that always deepens (within the space), recording where it started."""
    starts: list[Arch] = []

    def fake_search(data, start, space, trainer, model_factory, **kwargs):
        starts.append(start)
        chosen = deepen(start) if deepen(start) in space else start
        return SearchResult(arch=chosen, candidates=[], iterations=1, seconds=0.0)

    monkeypatch.setattr(active_round, "inas_search", fake_search)
    return starts


def test_runs_the_search_inside_baal_active_learning_loop() -> None:
    dataset = blobs(90)
    al_dataset = ActiveLearningDataset(dataset)
    al_dataset.label_randomly(20)
    wrapper = make_wrapper()
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, SoftmaxResponse(), query_size=10,
                              iterations=3, verbose=False)
    previous = wrapper.arch
    for step in range(2):
        history = wrapper.train_on_dataset(al_dataset)
        assert len(history) == 2 and all(np.isfinite(history))
        record = wrapper.search_history[-1]
        assert record["round"] == step and record["labelled"] == len(al_dataset)
        searched = sorted(candidate["arch"] for candidate in record["candidates"])
        assert searched == sorted(arch.as_list() for arch in SPACE.candidates(previous))
        assert record["arch"] == wrapper.arch.as_list() and wrapper.model.arch == wrapper.arch
        previous = wrapper.arch
        pool_predictions = wrapper.predict_on_dataset(al_dataset.pool, iterations=3)
        assert pool_predictions.shape == (len(al_dataset.pool), CLASSES, 3)
        assert loop.step()
    assert len(al_dataset) == 40 and wrapper.rounds == 2


def test_every_search_option_works_in_baal_loop() -> None:
    """The wrapper runs the same round as `inas run` and `inas label`: two iterations, the paper's
    early-stop schedule, weight inheritance and successive halving together."""
    al_dataset = ActiveLearningDataset(blobs(60))
    al_dataset.label_randomly(20)
    wrapper = make_wrapper(epoch=4, search=SearchOptions(iterations=2, premature_fraction=0.5, inherit_weights=True,
                                                         premature_schedule="early_stop", successive_halving=True))
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, wrapper.heuristic("softmax_response", 10),
                              query_size=10, verbose=False)
    for _ in range(2):
        wrapper.train_on_dataset(al_dataset)
        assert loop.step()
    first, second = wrapper.search_history
    # Iteration 1 starts from the previous step's network (none before the first step); a second
    # iteration's new candidates start from the first iteration's winner.
    assert not any(c["inherited"] for c in first["candidates"] if c["iteration"] == 1)
    assert all(c["inherited"] for c in second["candidates"] if c["iteration"] == 1)
    for record in (first, second):
        epochs = {tuple(c["arch"]): c["epochs"] for c in record["candidates"]}
        assert record["premature_epochs"] == 2 and epochs[tuple(record["arch"])] == 2  # the winner: all of E
        assert 1 in epochs.values()  # halving stopped a loser after E / 2


def test_architecture_changes_between_steps_and_prediction_uses_the_current_network(forced_growth) -> None:
    dataset = blobs(40)
    wrapper = make_wrapper()
    for expected in (Arch(2, 1), Arch(2, 1)):  # deepen once, then the space stops it
        wrapper.train_on_dataset(dataset)
        assert wrapper.arch == expected and wrapper.model.arch == expected
    assert forced_growth == [Arch(1, 1), Arch(2, 1)]  # each search starts where the last one ended
    images = dataset.tensors[0]
    wrapper.model.eval()
    with torch.no_grad():
        direct = wrapper.model(images)
    predicted = wrapper.predict_on_dataset(dataset, iterations=1)
    np.testing.assert_allclose(predicted[:, :, 0], direct.numpy(), rtol=1e-5, atol=1e-5)


def test_mc_dropout_samples_the_head_and_iterations_one_is_deterministic() -> None:
    dataset = blobs(40)
    wrapper = make_wrapper(search=False, epoch=1)
    wrapper.train_on_dataset(dataset)
    once = wrapper.predict_on_dataset(dataset, iterations=1)
    np.testing.assert_array_equal(once, wrapper.predict_on_dataset(dataset, iterations=1))
    samples = wrapper.predict_on_dataset(dataset, iterations=8)
    assert samples.shape == (40, CLASSES, 8) and samples.dtype == np.float32
    assert samples.std(axis=-1).mean() > 1e-3  # dropout 0.5 makes the samples differ
    assert wrapper.predict_on_dataset(dataset, iterations=2, half=True).dtype == np.float16

    # A network trained without dropout is sampled at the query's rate (0.5), never K identical samples.
    no_dropout = make_wrapper(search=False, epoch=1, drop_rate=0.0)
    no_dropout.train_on_dataset(dataset)
    sampled = no_dropout.predict_on_dataset(dataset, iterations=np.int64(4))  # numpy integers, as baal allows
    assert sampled.shape == (40, CLASSES, 4) and sampled.std(axis=-1).mean() > 1e-3
    # MC samples centre on the deterministic prediction (inverted dropout keeps the expectation).
    many = no_dropout.predict_on_dataset(dataset, iterations=400)
    probs = torch.softmax(torch.from_numpy(many), dim=1).mean(-1).argmax(1)
    agreement = (probs == torch.from_numpy(no_dropout.predict_on_dataset(dataset, 1)[:, :, 0]).argmax(1)).float()
    assert agreement.mean() > 0.8
    with pytest.raises(ValueError, match="identical"):
        make_wrapper(search=False, query=QueryOptions(mc_dropout_rate=0.0)).predict_on_dataset(dataset, 3)
    with pytest.raises(ValueError, match="positive integer"):
        wrapper.predict_on_dataset(dataset, iterations=0)


def test_metrics_via_add_metric_and_get_metrics() -> None:
    train, test = blobs(60, seed=1), blobs(40, seed=2)
    wrapper = make_wrapper(search=False)
    wrapper.add_metric("accuracy", lambda: Accuracy())
    wrapper.train_on_dataset(train)
    loss = wrapper.test_on_dataset(test)
    metrics = wrapper.get_metrics()
    assert {"train_loss", "test_loss", "train_accuracy", "test_accuracy"} <= set(metrics)
    assert metrics["dataset_size"] == 60 and metrics["test_loss"] == pytest.approx(loss)
    labels = test.tensors[1].numpy()
    logits = wrapper.predict_on_dataset(test, iterations=1)[:, :, 0]
    # baal's Accuracy averages per batch (batch_size 32: items 0-31, then 32-39), as ModelWrapper's does.
    per_batch = [(logits[s:s + 32].argmax(1) == labels[s:s + 32]).mean() for s in (0, 32)]
    assert metrics["test_accuracy"] == pytest.approx(np.mean(per_batch))
    assert wrapper.active_learning_metrics[60]["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_state_dict_round_trips_architecture_weights_and_search_history(tmp_path, forced_growth) -> None:
    dataset = blobs(40)
    wrapper = make_wrapper()
    wrapper.train_on_dataset(dataset)
    assert wrapper.arch == Arch(2, 1)
    torch.save(wrapper.state_dict(), tmp_path / "wrapper.pt")

    restored = make_wrapper()  # starts at 1x1, a different network
    restored.load_state_dict(torch.load(tmp_path / "wrapper.pt", weights_only=True))
    assert restored.arch == Arch(2, 1) and restored.model.arch == Arch(2, 1)
    assert restored.rounds == 1 and restored.search_history == wrapper.search_history
    np.testing.assert_array_equal(restored.predict_on_dataset(dataset, 1), wrapper.predict_on_dataset(dataset, 1))

    with pytest.raises(ValueError, match="not an INASModelWrapper state dict"):
        restored.load_state_dict(wrapper.model.state_dict())


def test_reloading_an_earlier_snapshot_resets_weights_but_keeps_the_search(forced_growth) -> None:
    """What ModelWrapperAdapter.reset_weights does before every training call."""
    dataset = blobs(40)
    wrapper = make_wrapper()
    snapshot = {k: v for k, v in wrapper.state_dict().items()}
    wrapper.train_on_dataset(dataset)
    wrapper.load_state_dict(snapshot)
    assert wrapper.arch == Arch(2, 1) and wrapper.model.arch == Arch(2, 1) and wrapper.rounds == 1

    fixed = make_wrapper(search=False)
    initial = {k: v.clone() for k, v in fixed.model.state_dict().items()}
    snapshot = fixed.state_dict()
    snapshot["model"] = {k: v.clone() for k, v in snapshot["model"].items()}
    fixed.train_on_dataset(dataset)
    assert not torch.equal(fixed.model.state_dict()["head.fc.weight"], initial["head.fc.weight"])
    fixed.load_state_dict(snapshot)  # same architecture: exactly the snapshot's weights, as in baal
    for key, value in fixed.model.state_dict().items():
        assert torch.equal(value, initial[key]), key


def test_works_with_baal_active_learning_experiment(forced_growth) -> None:
    train, test = blobs(70, seed=3), blobs(20, seed=4)
    al_dataset = ActiveLearningDataset(train)
    al_dataset.label_randomly(20)
    wrapper = make_wrapper(epoch=1)
    experiment = ActiveLearningExperiment(
        trainer=wrapper, al_dataset=al_dataset, eval_dataset=test, heuristic=BALD(), query_size=10,
        iterations=2, criterion=LabellingBudgetStoppingCriterion(al_dataset, labelling_budget=20),
    )
    records = experiment.start()
    assert len(records) == 2 and len(al_dataset) == 40
    assert all(np.isfinite(r["test_loss"]) and np.isfinite(r["train_loss"]) for r in records)
    # reset_weights before each round must not rewind the architecture to the constructor's 1x1.
    assert forced_growth == [Arch(1, 1), Arch(2, 1)] and wrapper.arch == Arch(2, 1)


def test_uint8_images_are_normalised_with_their_training_statistics() -> None:
    dataset = blobs(40, dtype=torch.uint8)
    wrapper = make_wrapper(search=False, epoch=1)
    wrapper.train_on_dataset(dataset)
    state = wrapper.state_dict()["input"]
    pixels = dataset.tensors[0].float() / 255.0
    assert state["kind"] == "uint8" and state["mean"][0] == pytest.approx(pixels.mean().item(), rel=1e-4)
    assert wrapper.predict_on_dataset(dataset, iterations=2).shape == (40, CLASSES, 2)
    with pytest.raises(ValueError, match="trained on uint8 images"):
        wrapper.predict_on_dataset(blobs(8), iterations=1)


def test_training_args_set_the_recipe() -> None:
    model = torch.nn.Linear(2, 2)
    args = TrainingArgs(optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.8, weight_decay=1e-4),
                        batch_size=16, epoch=3)
    recipe = recipe_from_args(args, None, dataset_size=50)
    assert (recipe.epochs, recipe.batch_size, recipe.epoch_size) == (3, 16, 50)
    assert (recipe.lr, recipe.momentum, recipe.weight_decay) == (0.05, 0.8, 1e-4)
    assert recipe.lr_milestones == () and recipe.lr_schedule == "step" and recipe.warmup == 0  # constant, as in baal
    explicit = recipe_from_args(TrainingArgs(batch_size=16), TrainRecipe(epochs=7, epoch_size=500), dataset_size=50)
    assert (explicit.epochs, explicit.epoch_size, explicit.batch_size) == (7, 500, 16)
    assert explicit.lr_milestones == TrainRecipe().lr_milestones  # an explicit recipe keeps its schedule
    with pytest.raises(ValueError, match="TrainingArgs.epoch is 0"):
        recipe_from_args(TrainingArgs(epoch=0), None, dataset_size=50)
    adam = TrainingArgs(optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), epoch=2, workers=0, use_cuda=False)
    assert recipe_from_args(adam, None, 50).lr == TrainRecipe().lr
    with pytest.warns(UserWarning, match="Adam"):
        INASModelWrapper(build_inas_resnet(Arch(1, 1), num_classes=CLASSES, in_chans=1, base_width=4), adam)


def test_bad_constructor_input_names_the_problem() -> None:
    args = TrainingArgs(epoch=1, workers=0, use_cuda=False)
    with pytest.raises(ValueError, match="INASResNet"):
        INASModelWrapper(torch.nn.Linear(4, 2), args)
    with pytest.raises(ValueError, match="outside the search space"):
        make_wrapper(start=Arch(3, 1))
    with pytest.raises(ValueError, match="val_fraction"):
        make_wrapper(search=SearchOptions(val_fraction=1.0))
    with pytest.raises(ValueError, match="SearchOptions"):
        make_wrapper(search="yes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factory_wrapper = INASModelWrapper(
            lambda arch: build_inas_resnet(arch, num_classes=CLASSES, in_chans=1, base_width=4), args,
            space=SPACE, start=Arch(1, 2), progress=False)
    assert factory_wrapper.model.arch == Arch(1, 2)
