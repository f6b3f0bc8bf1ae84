"""The trainer: it learns, it is reproducible, epochs have a fixed size, the lr schedule is the paper's."""

import json

import pytest
import torch

from inas_plugins.models import build_inas_resnet
from inas_plugins.space import Arch
from inas_plugins.training import Trainer, TrainRecipe, resolve_device

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]



def separable_set(n: int, classes: int = 3, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images in which class k has a bright channel k: easy for a tiny network, hard by chance."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    images = torch.randint(0, 100, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    images[torch.arange(n), labels % 3] += 120
    return images, labels


def tiny_model(arch: Arch = Arch(1, 1), classes: int = 3, seed: int = 0, width: int = 4):
    torch.manual_seed(seed)
    return build_inas_resnet(arch, num_classes=classes, base_width=width)


def make_trainer(recipe: TrainRecipe | None = None, **kwargs) -> Trainer:
    recipe = recipe or TrainRecipe(epochs=2, epoch_size=256, batch_size=64)
    return Trainer(recipe, mean=MEAN, std=STD, device="cpu", progress=False, **kwargs)


def test_trainer_learns_a_separable_problem():
    images, labels = separable_set(600)
    trainer = make_trainer(TrainRecipe(epochs=2, epoch_size=512, batch_size=64, lr=0.05))
    model = tiny_model()
    stats = trainer.fit(model, images[:400], labels[:400])
    assert stats.epochs == 2 and stats.samples == 2 * 512 and stats.seconds > 0
    assert stats.samples_per_second == pytest.approx(stats.samples / stats.seconds)
    assert trainer.evaluate(model, images[400:], labels[400:]) > 0.85  # chance is 1/3


def test_same_seed_gives_identical_weights_and_different_seed_does_not():
    images, labels = separable_set(100)

    def train(seed: int, fits: int = 1) -> dict:
        trainer = make_trainer(seed=seed)
        for _ in range(fits):
            model = tiny_model()
            trainer.fit(model, images, labels)
        return model.state_dict()

    first, again, other = train(0), train(0), train(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())
    # The second fit of a trainer draws from a different stream than the first...
    second_fit = train(0, fits=2)
    assert any(not torch.equal(first[k], second_fit[k]) for k in first if first[k].is_floating_point())
    # ...and reproduces given the same call order.
    assert all(torch.equal(second_fit[k], v) for k, v in train(0, fits=2).items())


def test_training_leaves_the_callers_global_rng_alone():
    images, labels = separable_set(50)
    model = tiny_model()
    state = torch.get_rng_state()
    make_trainer().fit(model, images, labels)
    assert torch.equal(torch.get_rng_state(), state)


def test_training_in_pieces_equals_training_in_one_go():
    images, labels = separable_set(80)
    trainer = make_trainer(TrainRecipe(epochs=3, epoch_size=128, batch_size=32))
    whole = tiny_model()
    trainer.fit(whole, images, labels, run_seed=11)
    pieces = tiny_model()
    run = trainer.start(pieces, images, labels, run_seed=11)
    run.train_until(1)
    run.train_until(2)
    stats = run.finish()
    assert stats.epochs == 3 and run.finished
    assert all(torch.equal(whole.state_dict()[k], v) for k, v in pieces.state_dict().items())


class _IndexCounter:
    """Images carry their index as pixel value; count how often each index is trained on."""

    def __init__(self, n: int) -> None:
        self.counts = torch.zeros(n, dtype=torch.int64)

    def __call__(self, module, inputs) -> None:
        if module.training:
            index = (inputs[0][:, 0, 0, 0] * 255).round().long()
            self.counts += torch.bincount(index, minlength=self.counts.numel())


@pytest.mark.parametrize("labelled", [10, 250])
def test_an_epoch_has_epoch_size_samples_whatever_the_labelled_size(labelled):
    images = torch.arange(labelled, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 8, 8).contiguous()
    labels = torch.arange(labelled) % 3
    recipe = TrainRecipe(epochs=2, epoch_size=100, batch_size=32)
    trainer = Trainer(recipe, mean=[0.0] * 3, std=[1.0] * 3, augment=False, device="cpu", progress=False)
    model = tiny_model()
    counter = _IndexCounter(labelled)
    model.register_forward_pre_hook(counter)
    stats = trainer.fit(model, images, labels)
    assert stats.samples == 200 and counter.counts.sum().item() == 200
    if labelled == 10:  # oversampled by whole permutations: every sample exactly 10 times per epoch
        assert torch.equal(counter.counts, torch.full((10,), 20))
    else:  # undersampled: no sample twice within an epoch
        assert counter.counts.max().item() <= 2


def test_lr_schedule_hits_the_milestones():
    paper = TrainRecipe()
    assert paper.steps_per_epoch == 391
    assert paper.milestone_steps() == [100 * 391, 150 * 391]

    images, labels = separable_set(64)
    recipe = TrainRecipe(epochs=4, epoch_size=64, batch_size=32, lr=0.2)
    run = make_trainer(recipe).start(tiny_model(), images, labels)
    seen = []
    for epoch in range(1, 5):
        run.train_until(epoch)
        seen.append(run.current_lr)
    # the lr used in the last step of each epoch: decays at 50% (step 4) and 75% (step 6) of 8 steps
    assert seen == pytest.approx([0.2, 0.2, 0.02, 0.002])


def test_recipe_round_trips_scales_and_validates():
    recipe = TrainRecipe(epochs=200, lr_milestones=(0.3, 0.6))
    data = json.loads(json.dumps(recipe.to_dict()))
    assert TrainRecipe.from_dict(data) == recipe
    assert recipe.scaled(0.25).epochs == 50 and recipe.scaled(0.25).lr_milestones == (0.3, 0.6)
    assert TrainRecipe(epochs=2).scaled(0.1).epochs == 1
    for bad in ({"epochs": 0}, {"batch_size": 1.5}, {"lr": -1.0}, {"momentum": 1.0},
                {"lr_milestones": (0.75, 0.5)}, {"lr_milestones": (0.5, 1.5)}, {"lr_gamma": 0.0}):
        with pytest.raises(ValueError):
            TrainRecipe(**bad)
    with pytest.raises(ValueError, match="unknown recipe keys"):
        TrainRecipe.from_dict({"epochz": 3})
    with pytest.raises(ValueError):
        recipe.scaled(0.0)


def test_resolve_device_never_falls_back_silently():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert "cpu" in make_trainer().describe()


def test_inference_helpers_shapes_modes_and_normalisation():
    images, labels = separable_set(37)
    trainer = make_trainer(TrainRecipe(epochs=1, epoch_size=64, batch_size=32, eval_batch_size=16))
    model = tiny_model()
    model.train()
    logits = trainer.predict_logits(model, images)
    assert logits.shape == (37, 3) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert model.training  # mode restored
    embeddings = trainer.embed(model, images)
    assert embeddings.shape == (37, model.num_features)
    model.eval()
    with torch.no_grad():
        direct = model(trainer.preprocess(images))
    torch.testing.assert_close(logits, direct)
    accuracy = trainer.evaluate(model, images, labels)
    assert accuracy == (logits.argmax(1) == labels).sum().item() / 37
    x = trainer.preprocess(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    torch.testing.assert_close(x, torch.full((1, 3, 2, 2), 2.0))  # (1 - 0.5) / 0.25


def test_bad_inputs_raise_clear_errors():
    trainer = make_trainer()
    images, labels = separable_set(10)
    with pytest.raises(ValueError, match="float .already normalised. or uint8"):
        trainer.fit(tiny_model(), images.to(torch.int32), labels)
    with pytest.raises(ValueError, match="not a class index"):
        trainer.fit(tiny_model(), images, labels + 10)
    with pytest.raises(ValueError, match="channels"):
        trainer.fit(tiny_model(), images[:, :1], labels)
    with pytest.raises(ValueError, match="one label per image"):
        trainer.fit(tiny_model(), images, labels[:5])
    with pytest.raises(ValueError):
        Trainer(TrainRecipe(), mean=[0.5], std=[0.0, 1.0])
