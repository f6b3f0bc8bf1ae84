"""The training recipe's fields, each against an independent reference: schedules in closed form,
weight decay groups by parameter shape, smoothing by torch's formula, the weight average step by step,
flip TTA by hand, named recipes and the presets that use them."""

import math

import pytest
import torch
import torch.nn.functional as F

from inas_plugins.config import RECIPES, resolve_config
from inas_plugins.models import build_inas_resnet
from inas_plugins.space import Arch
from inas_plugins.training import Trainer, TrainRecipe
from inas_plugins.training.recipe import recipe_settings
from inas_plugins.training.trainer import lr_scheduler, parameter_groups

MEAN, STD = [0.5] * 3, [0.25] * 3


def _data(n: int = 96, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randint(0, 100, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    images[torch.arange(n), labels] += 120
    return images, labels


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_inas_resnet(Arch(1, 1), num_classes=3, base_width=4)


def _trainer(recipe: TrainRecipe, **kwargs) -> Trainer:
    return Trainer(recipe, mean=MEAN, std=STD, device="cpu", progress=False, **kwargs)


def _lrs(recipe: TrainRecipe) -> list[float]:
    """The lr of every optimizer step of a run of ``recipe``, read off torch's scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    scheduler = lr_scheduler(optimizer, recipe)
    seen = []
    for _ in range(recipe.total_steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def _reference_lr(recipe: TrainRecipe, step: int) -> float:
    """The schedule in closed form: a linear ramp to lr over the warmup, then steps, linear or cosine to 0."""
    total, warm = recipe.total_steps, recipe.warmup_steps
    if step < warm:
        return recipe.lr * (1 + step) / (warm + 1)
    k, span = step - warm, total - warm
    if recipe.lr_schedule == "step":
        passed = sum(step >= round(m * total) for m in recipe.lr_milestones)
        return recipe.lr * recipe.lr_gamma**passed
    if recipe.lr_schedule == "linear":
        return recipe.lr * (1 - k / span)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * k / span))


@pytest.mark.parametrize("schedule", ["step", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0.0, 0.25])
def test_schedules_follow_their_closed_form(schedule, warmup):
    recipe = TrainRecipe(epochs=5, epoch_size=80, batch_size=10, lr=0.4, lr_schedule=schedule, warmup=warmup)
    expected = [_reference_lr(recipe, step) for step in range(recipe.total_steps)]
    assert _lrs(recipe) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_the_paper_schedule_decays_at_its_epoch_milestones():
    paper = TrainRecipe()
    assert paper.milestone_steps() == [100 * 391, 150 * 391]
    short = TrainRecipe(epochs=4, epoch_size=64, batch_size=32, lr=0.2)  # 8 steps: x0.1 at steps 4 and 6
    assert _lrs(short) == pytest.approx([0.2] * 4 + [0.02] * 2 + [0.002] * 2)


def test_linear_decay_reaches_zero_and_warmup_starts_small():
    lrs = _lrs(TrainRecipe(epochs=10, epoch_size=100, batch_size=10, lr=1.0, lr_schedule="linear", warmup=0.1))
    assert lrs[0] == pytest.approx(1 / 11) and max(lrs) == pytest.approx(1.0)
    assert 0 < lrs[-1] <= 1 / 90 + 1e-9  # the last step's rate; the one after it would be 0


def test_weight_decay_leaves_norms_and_biases_alone_when_asked():
    model = _model()
    everything = parameter_groups(model, TrainRecipe())
    assert len(everything) == 1 and everything[0]["weight_decay"] == 5e-4
    decayed, free = parameter_groups(model, TrainRecipe(decay_norms_and_biases=False))
    names = {id(p): name for name, p in model.named_parameters()}
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in free["params"])
    assert free["weight_decay"] == 0.0 and any("bn" in names[id(p)] for p in free["params"])
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))


def test_nesterov_and_smoothing_reach_the_optimizer_and_the_loss():
    images, labels = _data()
    recipe = TrainRecipe(epochs=1, epoch_size=64, batch_size=32, nesterov=True, label_smoothing=0.3)
    run = _trainer(recipe).start(_model(), images, labels)
    assert run.optimizer.param_groups[0]["nesterov"] is True
    losses = []
    run.on_batch = lambda logits, target, loss: losses.append((logits, target, loss))
    run.finish()
    for logits, target, loss in losses:
        # Trained with augmentation, so compare the loss with the logits of the same (augmented) batch.
        assert loss.item() == pytest.approx(F.cross_entropy(logits, target, label_smoothing=0.3).item(), rel=1e-5)


@pytest.mark.parametrize("mixing", [{"mixup": 1.0}, {"cutmix": 1.0}, {"mixup": 1.0, "cutmix": 1.0}])
def test_batch_mixing_trains_on_each_batch_blended_with_its_roll(mixing):
    """Cross-entropy is linear in the target, so a step that mixed its batch with the batch rolled by one
    (weight lam on the batch itself) has loss lam * CE(y) + (1 - lam) * CE(y rolled), with lam in [0, 1]."""
    images, labels = _data(n=96)
    recipe = TrainRecipe(epochs=2, epoch_size=192, batch_size=32, label_smoothing=0.1, **mixing)
    run = _trainer(recipe).start(_model(), images, labels, run_seed=5)
    lams = []

    def check(logits, target, loss):
        assert target.dtype == torch.int64 and target.ndim == 1  # the hook still sees the true labels
        own = F.cross_entropy(logits, target, label_smoothing=0.1).item()
        rolled = F.cross_entropy(logits, target.roll(1), label_smoothing=0.1).item()
        lams.append((loss.item() - rolled) / (own - rolled))

    run.on_batch = check
    run.finish()
    assert len(lams) == recipe.total_steps
    assert all(-1e-3 <= lam <= 1 + 1e-3 for lam in lams), lams
    assert max(lams) - min(lams) > 0.1  # one Beta(1, 1) draw per batch, not one per run


def test_batch_mixing_is_seeded_by_the_run_and_needs_a_class_count():
    images, labels = _data(n=64)
    recipe = TrainRecipe(epochs=1, epoch_size=128, batch_size=32, mixup=0.5, cutmix=0.5)
    weights = []
    for _ in range(2):
        model = _model()
        caller = torch.get_rng_state()
        _trainer(recipe, seed=4).fit(model, images, labels)
        assert torch.equal(torch.get_rng_state(), caller)  # the caller's global RNG is left as it was
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    plain = _model()
    _trainer(TrainRecipe(epochs=1, epoch_size=128, batch_size=32), seed=4).fit(plain, images, labels)
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in plain.parameters()]))
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    with pytest.raises(ValueError, match="train.mixup and train.cutmix need the network's class count") as error:
        _trainer(recipe).start(bare, images, labels)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="num_classes"):  # the recipe mixes even where the trainer does not augment
        _trainer(recipe, augment=False).start(bare, images, labels)
    _trainer(TrainRecipe.from_dict({**recipe.to_dict(), "mixup": 0.0, "cutmix": 0.0})).fit(bare, images, labels)


def test_mixing_stops_above_its_labelled_size():
    recipe = TrainRecipe(epochs=1, epoch_size=64, batch_size=32, mixup=1.0, cutmix=0.5, mixing_max_labels=48)
    assert (recipe.for_labels(48).mixup, recipe.for_labels(48).cutmix) == (1.0, 0.5)
    assert (recipe.for_labels(49).mixup, recipe.for_labels(49).cutmix) == (0.0, 0.0)
    assert recipe.for_labels(49).mixing_max_labels is None  # a fitted recipe has no size rule left
    images, labels = _data(n=64)
    run = _trainer(recipe).start(_model(), images, labels)
    assert run.recipe.mixup == 0.0
    losses = []
    run.on_batch = lambda logits, target, loss: losses.append(
        (loss.item(), F.cross_entropy(logits, target).item()))
    run.finish()
    assert losses and all(loss == pytest.approx(plain, rel=1e-5) for loss, plain in losses)  # no mixing at 64 > 48


def test_the_weight_average_is_what_the_run_ends_with():
    images, labels = _data()
    base = dict(epochs=2, epoch_size=64, batch_size=16, lr=0.05)
    decay = 0.8
    # The same run without averaging, its weights recorded after every step: the reference average.
    plain = _trainer(TrainRecipe(**base), augment=False)
    model = _model()
    run = plain.start(model, images, labels, run_seed=3)
    snapshots = []
    run.on_batch = lambda *_: snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    run.finish()
    average = {k: v.clone() for k, v in snapshots[0].items()}
    for state in snapshots[1:]:
        for key, value in state.items():
            if value.is_floating_point():
                average[key] = decay * average[key] + (1 - decay) * value
            else:
                average[key] = value
    averaged = _model()
    run = _trainer(TrainRecipe(**base, ema_decay=decay), augment=False).start(averaged, images, labels, run_seed=3)
    run.train_until(1)
    assert run.evaluation_model is not averaged  # mid-run, the average is evaluated
    run.finish()
    assert run.evaluation_model is averaged
    for key, value in averaged.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, average[key], rtol=1e-4, atol=1e-5)


def test_flip_tta_sums_each_image_and_its_mirror():
    images, labels = _data(n=40)
    model = _model()
    model.eval()
    recipe = TrainRecipe(epochs=1, epoch_size=32, batch_size=16, eval_batch_size=16, test_flips=True)
    trainer = _trainer(recipe)
    x = trainer.preprocess(images)
    with torch.no_grad():
        logits = model(x) + model(x.flip(-1))
    expected = (logits.argmax(1) == labels).float().mean().item()
    assert trainer.evaluate(model, images, labels) == pytest.approx(expected)
    with torch.no_grad():
        plain = (model(x).argmax(1) == labels).float().mean().item()
    assert _trainer(recipe, flips=False).evaluate(model, images, labels) == pytest.approx(plain)  # digits: no mirror


def test_epoch_size_follows_the_labelled_set():
    recipe = TrainRecipe(epochs=2, epoch_size=4000, batch_size=100, epoch_size_exponent=0.5, epoch_size_reference=1000)
    assert recipe.for_labels(1000).epoch_size == 4000
    assert recipe.for_labels(250).epoch_size == 2000 and recipe.for_labels(4000).epoch_size == 8000
    assert recipe.for_labels(1).epoch_size == 126  # at least... one batch of 100
    assert TrainRecipe(epoch_size=300).for_labels(7).epoch_size == 300  # exponent 0: the paper's fixed epoch
    images, labels = _data(n=64)
    run = _trainer(TrainRecipe(epochs=1, epoch_size=256, batch_size=16, epoch_size_exponent=1.0,
                               epoch_size_reference=256)).start(_model(), images, labels)
    assert run.recipe.epoch_size == 64 and run.finish().samples == 64


@pytest.mark.parametrize("bad, field", [
    ({"label_smoothing": -0.1}, "label_smoothing"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"ema_decay": 1.0}, "ema_decay"), ({"ema_decay": 0.0}, "ema_decay"), ({"cutout": 1.5}, "cutout"),
    ({"warmup": 1.0}, "warmup"), ({"lr_schedule": "exponential"}, "lr_schedule"), ({"shift_mode": "wrap"}, "shift_mode"),
    ({"rotation": 200.0}, "rotation"), ({"shift": 0.6}, "shift"), ({"nesterov": "yes"}, "nesterov"),
    ({"nesterov": True, "momentum": 0.0}, "nesterov"), ({"epoch_size_exponent": -1.0}, "epoch_size_exponent"),
    ({"mixup": -0.2}, "mixup"), ({"cutmix": 11.0}, "cutmix"), ({"mixup": float("nan")}, "mixup"),
    ({"mixing_max_labels": 0}, "mixing_max_labels"), ({"mixing_max_labels": 2.5}, "mixing_max_labels"),
])
def test_bad_fields_are_one_line_naming_the_field(bad, field):
    with pytest.raises(ValueError, match=field) as error:
        TrainRecipe(**bad)
    assert "\n" not in str(error.value)


def test_named_recipes_and_the_presets_that_use_them():
    assert TrainRecipe.named("paper") == TrainRecipe()  # "paper" spells out the paper's defaults
    low = TrainRecipe.named("lowdata", epochs=3)
    assert low.epochs == 3 and low.lr_schedule != "step" and low.test_flips
    with pytest.raises(ValueError, match="unknown recipe 'fast'; choose one of paper, lowdata"):
        recipe_settings("fast")
    for preset, name in (("paper", "paper"), ("cpu", "lowdata")):
        config = resolve_config({"dataset": "synthetic"}, preset)
        assert config.recipe == name
        assert {k: v for k, v in config.train.to_dict().items() if k in RECIPES[name] and k not in
                ("epoch_size_exponent", "epoch_size_reference")} == \
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in RECIPES[name].items()
             if k not in ("epoch_size_exponent", "epoch_size_reference")}
    # a flag changes one field of the named recipe; the rest stays the recipe's
    config = resolve_config({"dataset": "synthetic", "recipe": "paper", "label_smoothing": 0.1}, "cpu")
    assert config.recipe == "paper" and config.train.label_smoothing == 0.1 and config.train.lr_schedule == "step"
    assert config.train.epochs == 24  # the preset's compute
