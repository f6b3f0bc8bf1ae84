"""iNAS (Algorithm 1): candidate sets, the stopping rule, records, caching, ties, inheritance (V' unseen by
inherited weights), halving, the two premature schedules."""

import json

import numpy as np
from collections import Counter

import pytest
import torch

from inas_plugins.models import build_inas_resnet, count_parameters
from inas_plugins.settings import SearchOptions
from inas_plugins.search import halving_rungs, inas_search, split_labelled
from inas_plugins.space import Arch, SearchSpace, deepen, widen
from inas_plugins.training import Trainer, TrainRecipe, inherit_weights
from inas_plugins.training.trainer import derive_seed

CLASSES = 3



def separable_set(n: int = 90, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    images = torch.randint(0, 100, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    images[torch.arange(n), labels] += 120
    return images, labels


def make_trainer(epochs: int = 4) -> Trainer:
    recipe = TrainRecipe(epochs=epochs, epoch_size=64, batch_size=32)
    return Trainer(recipe, mean=[0.5] * 3, std=[0.25] * 3, device="cpu", progress=False)


class CountingFactory:
    """Builds tiny A(i, j) networks and remembers every architecture it was asked for, in order."""

    def __init__(self) -> None:
        self.built: list[Arch] = []

    def __call__(self, arch: Arch) -> torch.nn.Module:
        self.built.append(arch)
        return build_inas_resnet(arch, num_classes=CLASSES, base_width=4)


def scripted(trainer: Trainer, monkeypatch, score_of) -> list[Arch]:
    """Replace validation by ``score_of(arch)``; returns the list of evaluated architectures."""
    evaluated: list[Arch] = []

    def evaluate(model, data, labels=None):
        evaluated.append(model.arch)
        return score_of(model.arch)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    return evaluated


_OPTION_NAMES = {"max_iterations": "iterations", "val_fraction": "val_fraction",
                 "premature_fraction": "premature_fraction", "premature_schedule": "premature_schedule",
                 "inherit_weights": "inherit_weights",
                 "successive_halving": "successive_halving"}


def search(trainer, factory, start, space=SearchSpace(), **kwargs):
    """inas_search on the separable set; search options may be given as keywords."""
    images, labels = separable_set()
    options = SearchOptions(**{_OPTION_NAMES[k]: kwargs.pop(k) for k in list(kwargs) if k in _OPTION_NAMES})
    return inas_search(trainer.source(images, labels), start, space, trainer, factory, options=options,
                       progress=False, **kwargs)


def test_real_search_records_are_complete():
    factory = CountingFactory()
    result = search(make_trainer(), factory, Arch(1, 1), max_iterations=1, premature_fraction=0.5)
    assert result.iterations == 1
    assert [r.arch for r in result.candidates] == sorted(SearchSpace().candidates(Arch(1, 1)),
                                                         key=lambda a: count_parameters(factory(a)))
    assert result.arch in {r.arch for r in result.candidates}
    assert result.train_size == 72 and result.val_size == 18 and result.premature_epochs == 2
    for record in result.candidates:
        assert record.params == count_parameters(result.models[record.arch])
        assert 0.0 <= record.val_accuracy <= 1.0 and record.val_accuracy * 18 == pytest.approx(round(record.val_accuracy * 18))
        assert record.seconds > 0 and record.iteration == 1 and record.epochs == 2 and not record.inherited
    assert result.seconds >= sum(r.seconds for r in result.candidates)
    best = max(result.candidates, key=lambda r: (r.val_accuracy, -r.params))
    assert result.arch == best.arch
    data = json.loads(json.dumps(result.to_dict()))
    assert data["arch"] == result.arch.as_list() and len(data["candidates"]) == 3
    assert set(data["candidates"][0]) >= {"arch", "params", "val_accuracy", "seconds", "iteration"}


def test_candidate_sets_follow_the_space_and_search_stops_at_max_iterations(monkeypatch):
    trainer, factory = make_trainer(), CountingFactory()
    scripted(trainer, monkeypatch, lambda arch: arch.blocks / 10)  # deepening always wins
    space = SearchSpace(max_blocks=4, max_stacks=3)
    result = search(trainer, factory, Arch(1, 2), space, max_iterations=2)
    assert result.iterations == 2 and result.arch == Arch(3, 2)
    expected_iteration_1 = space.candidates(Arch(1, 2))
    expected_iteration_2 = [a for a in space.candidates(Arch(2, 2)) if a not in expected_iteration_1]
    assert factory.built == expected_iteration_1 + expected_iteration_2
    assert {r.arch: r.iteration for r in result.candidates} == {
        **{a: 1 for a in expected_iteration_1}, **{a: 2 for a in expected_iteration_2}}


def test_candidates_are_clipped_to_the_space(monkeypatch):
    trainer, factory = make_trainer(), CountingFactory()
    scripted(trainer, monkeypatch, lambda arch: 0.5)
    space = SearchSpace(max_blocks=2, max_stacks=1)
    result = search(trainer, factory, Arch(2, 1), space, max_iterations=3)
    assert factory.built == [Arch(2, 1)] and result.arch == Arch(2, 1) and result.iterations == 1


def test_search_stops_when_the_choice_does_not_change(monkeypatch):
    trainer, factory = make_trainer(), CountingFactory()
    scripted(trainer, monkeypatch, lambda arch: 0.9 if arch == Arch(2, 1) else 0.2)
    result = search(trainer, factory, Arch(1, 1), max_iterations=5)
    # iteration 1 moves to 2x1, iteration 2 keeps it: stop after 2 of 5 allowed iterations
    assert result.arch == Arch(2, 1) and result.iterations == 2
    assert len(result.candidates) == 5


def test_no_candidate_is_trained_twice(monkeypatch):
    trainer, factory = make_trainer(), CountingFactory()
    fits = Counter()
    original_start = trainer.start

    def counting_start(model, *args, **kwargs):
        fits[model.arch] += 1
        return original_start(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "start", counting_start)
    evaluated = scripted(trainer, monkeypatch, lambda arch: 0.9 if arch == Arch(3, 1) else 0.1)
    # 2x1 -> {2x1, widen 2x2, deepen 3x1}; 3x1 -> {3x1, widen 2x2 (again), deepen 4x1}
    assert widen(Arch(3, 1)) == widen(Arch(2, 1)) == Arch(2, 2)
    result = search(trainer, factory, Arch(2, 1), max_iterations=4)
    assert result.arch == Arch(3, 1) and result.iterations == 2
    assert Counter(factory.built) == Counter({Arch(2, 1): 1, Arch(2, 2): 1, Arch(3, 1): 1, Arch(4, 1): 1})
    assert fits == Counter(factory.built) and Counter(evaluated) == fits


def test_ties_go_to_the_smaller_network(monkeypatch):
    trainer, factory = make_trainer(), CountingFactory()
    start = Arch(2, 2)
    scripted(trainer, monkeypatch, lambda arch: 0.1 if arch == start else 0.5)
    result = search(trainer, factory, start, max_iterations=1)
    grown = {r.arch: r.params for r in result.candidates if r.arch != start}
    assert set(grown) == {widen(start), deepen(start)} and len(set(grown.values())) == 2
    assert result.arch == min(grown, key=grown.get)
    # a full tie keeps the current (smallest) architecture
    trainer = make_trainer()
    scripted(trainer, monkeypatch, lambda arch: 0.5)
    assert search(trainer, CountingFactory(), start).arch == start


def test_same_seed_same_search():
    first = search(make_trainer(), CountingFactory(), Arch(1, 1), seed=3)
    second = search(make_trainer(), CountingFactory(), Arch(1, 1), seed=3)
    assert [r.val_accuracy for r in first.candidates] == [r.val_accuracy for r in second.candidates]
    for arch, model in first.models.items():
        assert all(torch.equal(v, second.models[arch].state_dict()[k]) for k, v in model.state_dict().items())


def test_split_is_random_disjoint_and_sized():
    train, val = split_labelled(50, 0.2, seed=0)
    assert len(val) == 10 and len(train) == 40
    assert sorted(torch.cat([train, val]).tolist()) == list(range(50))
    assert not torch.equal(val, split_labelled(50, 0.2, seed=1)[1])
    with pytest.raises(ValueError):
        split_labelled(1, 0.2, seed=0)
    with pytest.raises(ValueError):
        search(make_trainer(), CountingFactory(), Arch(1, 1), val_fraction=1.0)
    with pytest.raises(ValueError):
        search(make_trainer(), CountingFactory(), Arch(13, 1))


def _trained_parent(arch: Arch) -> torch.nn.Module:
    parent = build_inas_resnet(arch, num_classes=CLASSES, base_width=4)
    images, labels = separable_set(64)
    make_trainer(epochs=1).fit(parent, images, labels)
    return parent


def test_deepened_child_computes_exactly_what_its_parent_does():
    parent = _trained_parent(Arch(1, 2))
    torch.manual_seed(5)
    child = build_inas_resnet(deepen(parent.arch), num_classes=CLASSES, base_width=4)
    report = inherit_weights(child, parent)
    assert set(report.fresh) == {"stacks.0.1", "stacks.1.1"}
    x = torch.randn(6, 3, 8, 8)
    parent.eval(), child.eval()
    with torch.no_grad():
        torch.testing.assert_close(child(x), parent(x), atol=1e-5, rtol=1e-5)
        fresh_child = build_inas_resnet(deepen(parent.arch), num_classes=CLASSES, base_width=4).eval()
        assert not torch.allclose(fresh_child(x), parent(x), atol=1e-3)


def test_widened_child_inherits_the_stem_and_shared_blocks():
    parent = _trained_parent(Arch(2, 2))
    child = build_inas_resnet(widen(parent.arch), num_classes=CLASSES, base_width=4)  # 2x3
    report = inherit_weights(child, parent)
    assert set(report.inherited) == {"stem", "stacks.0.0", "stacks.0.1", "stacks.1.0", "stacks.1.1"}
    assert set(report.fresh) == {"stacks.2.0", "stacks.2.1", "head"}
    parent_state = parent.state_dict()
    for key, value in child.state_dict().items():
        if key.startswith(("stem.", "stacks.0.", "stacks.1.")):
            assert torch.equal(value, parent_state[key])


def test_search_with_inheritance_starts_candidates_from_the_parent(monkeypatch):
    parent = _trained_parent(Arch(1, 1))
    trainer, started = make_trainer(), {}
    original_start = trainer.start

    def spy(model, *args, **kwargs):
        started[model.arch] = {k: v.clone() for k, v in model.state_dict().items()}
        return original_start(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "start", spy)
    seen = torch.arange(90) < 45  # the parent was trained on the first half of S
    result = search(trainer, CountingFactory(), Arch(1, 1), inherit_weights=True, parent_model=parent,
                    parent_seen=seen)
    assert all(r.inherited for r in result.candidates)
    parent_state = parent.state_dict()
    factory = CountingFactory()
    for arch, state in started.items():
        assert torch.equal(state["stem.0.weight"], parent_state["stem.0.weight"]), arch
        # every candidate keeps the classifier it was built with: the one its seeded factory call gives
        torch.manual_seed(derive_seed(0, arch.blocks, arch.stacks))
        fresh = factory(arch).state_dict()
        assert torch.equal(state["head.fc.weight"], fresh["head.fc.weight"]), arch
    assert Arch(1, 1) in started and Arch(2, 1) in started  # the same-width ones could have kept the parent's head
    # without the flag the parent is ignored, and needs no parent_seen
    plain = search(make_trainer(), CountingFactory(), Arch(1, 1), parent_model=parent)
    assert not any(r.inherited for r in plain.candidates)


def test_inheritance_needs_to_know_what_the_parent_saw_and_starts_fresh_when_it_saw_everything():
    parent = _trained_parent(Arch(1, 1))
    with pytest.raises(ValueError, match="needs parent_seen"):
        search(make_trainer(), CountingFactory(), Arch(1, 1), inherit_weights=True, parent_model=parent)
    with pytest.raises(ValueError, match="one entry per labelled sample"):
        search(make_trainer(), CountingFactory(), Arch(1, 1), inherit_weights=True, parent_model=parent,
               parent_seen=torch.ones(10, dtype=torch.bool))
    everything = search(make_trainer(), CountingFactory(), Arch(1, 1), inherit_weights=True, parent_model=parent,
                        parent_seen=torch.ones(90, dtype=torch.bool))
    assert not any(r.inherited for r in everything.candidates) and everything.val_size == 18
    # positions work as well as a mask
    by_position = search(make_trainer(), CountingFactory(), Arch(1, 1), inherit_weights=True, parent_model=parent,
                         parent_seen=torch.arange(80))
    assert by_position.val_size == 10 and all(r.inherited for r in by_position.candidates)


def test_split_with_a_mask_draws_v_prime_only_from_eligible_samples():
    eligible = torch.arange(50) >= 30  # 20 eligible
    train, val = split_labelled(50, 0.2, seed=0, eligible=eligible)
    assert len(val) == 10 and bool(eligible[val].all())
    assert sorted(torch.cat([train, val]).tolist()) == list(range(50))
    # fewer eligible than V' should hold: V' is all of them
    train, val = split_labelled(50, 0.2, seed=0, eligible=torch.arange(50) >= 46)
    assert sorted(val.tolist()) == [46, 47, 48, 49] and len(train) == 46
    # all eligible: exactly the unmasked split
    assert [t.tolist() for t in split_labelled(50, 0.2, 3, eligible=torch.ones(50, dtype=torch.bool))] == \
        [t.tolist() for t in split_labelled(50, 0.2, 3)]


def test_v_prime_unseen_by_inherited_weights_scores_at_chance_on_noise_labels():
    """Labels that are pure noise: only memorisation beats chance, so V' accuracy measures the leak."""
    classes, half = 4, 120
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2 * half, 3, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, classes, (2 * half,), generator=generator)

    def noise_trainer(epochs: int) -> Trainer:
        return Trainer(TrainRecipe(epochs=epochs, epoch_size=256, batch_size=32), mean=[0.5] * 3, std=[0.25] * 3,
                       augment=False, device="cpu", progress=False)

    def factory(arch: Arch) -> torch.nn.Module:
        return build_inas_resnet(arch, num_classes=classes, base_width=8)

    torch.manual_seed(1)
    parent = factory(Arch(1, 1))  # last round's model, trained on S_{t-1} = the first half
    noise_trainer(30).fit(parent, images[:half], labels[:half])
    assert noise_trainer(1).evaluate(parent, images[:half], labels[:half]) > 0.95  # it memorised the noise

    def v_prime_accuracies(parent_seen: torch.Tensor) -> list[float]:
        trainer = noise_trainer(8)
        result = inas_search(trainer.source(images, labels), Arch(1, 1), SearchSpace(max_blocks=2, max_stacks=2),
                             trainer, factory, options=SearchOptions(val_fraction=0.5, inherit_weights=True),
                             parent_model=parent, parent_seen=parent_seen, progress=False)
        assert result.val_size == half and all(r.inherited for r in result.candidates)
        return [r.val_accuracy for r in result.candidates]

    chance, spread = 1 / classes, 3 * (0.25 * 0.75 / half) ** 0.5
    unseen = v_prime_accuracies(torch.arange(2 * half) < half)
    assert all(accuracy < chance + spread for accuracy in unseen), unseen
    # The check can fail: told the parent saw nothing, V' is a random half of S, half of it memorised.
    leaky = v_prime_accuracies(torch.zeros(2 * half, dtype=torch.bool))
    assert all(accuracy > chance + 2 * spread for accuracy in leaky), leaky


def _spy_runs(trainer: Trainer, monkeypatch) -> dict:
    runs = {}
    original_start = trainer.start

    def spy(model, *args, **kwargs):
        runs[model.arch] = original_start(model, *args, **kwargs)
        return runs[model.arch]

    monkeypatch.setattr(trainer, "start", spy)
    return runs


@pytest.mark.parametrize("schedule", ["compressed", "early_stop"])
def test_premature_schedules(monkeypatch, schedule):
    trainer = make_trainer(epochs=8)  # full schedule: lr 0.1, x0.1 at epoch 4, x0.01 at epoch 6
    runs = _spy_runs(trainer, monkeypatch)
    result = search(trainer, CountingFactory(), Arch(1, 1), premature_fraction=0.5, premature_schedule=schedule)
    assert result.premature_epochs == 4 and {r.epochs for r in result.candidates} == {4}
    lr = trainer.recipe.lr
    for run in runs.values():
        assert run.epochs_done == 4
        if schedule == "compressed":  # the whole schedule in 4 epochs: both decays happened
            assert run.recipe.epochs == 4 and run.current_lr == pytest.approx(lr * 0.01)
        else:  # the full run's schedule stopped at epoch 4 of 8: its lr is still the initial one
            assert run.recipe == trainer.recipe and run.current_lr == pytest.approx(lr)


def test_premature_schedule_setting_is_validated_and_named_by_each_preset():
    from inas_plugins.config import resolve_config

    assert SearchOptions().premature_schedule == "compressed"
    with pytest.raises(ValueError, match="premature_schedule must be one of compressed, early_stop, got 'late'"):
        SearchOptions(premature_schedule="late")
    assert resolve_config({"dataset": "cifar10"}, preset="paper").search.premature_schedule == "early_stop"
    assert resolve_config({"dataset": "cifar10"}, preset="cpu").search.premature_schedule == "compressed"
    assert resolve_config({"dataset": "digits"}, preset="quick").search.premature_schedule == "compressed"
    flagged = resolve_config({"dataset": "cifar10", "premature_schedule": "early_stop"}, preset="cpu")
    assert flagged.search.premature_schedule == "early_stop"


def test_halving_rungs_rule():
    assert halving_rungs(3, 8) == [4, 8]
    assert halving_rungs(2, 8) == [4, 8]
    assert halving_rungs(1, 8) == [8]
    assert halving_rungs(4, 8) == [2, 4, 8]
    assert halving_rungs(3, 1) == [1]


def test_successive_halving_trains_losers_briefly_and_winner_as_the_plain_search(monkeypatch):
    scores = {Arch(1, 1): 0.2, Arch(1, 2): 0.4, Arch(2, 1): 0.6}
    halving_trainer, plain_trainer = make_trainer(epochs=8), make_trainer(epochs=8)
    scripted(halving_trainer, monkeypatch, scores.get)
    scripted(plain_trainer, monkeypatch, scores.get)
    halving = search(halving_trainer, CountingFactory(), Arch(1, 1), successive_halving=True, premature_fraction=0.5)
    plain = search(plain_trainer, CountingFactory(), Arch(1, 1), premature_fraction=0.5)
    assert halving.arch == plain.arch == Arch(2, 1)
    assert {r.arch: r.epochs for r in halving.candidates} == {Arch(1, 1): 2, Arch(1, 2): 2, Arch(2, 1): 4}
    assert {r.epochs for r in plain.candidates} == {4}
    winner_h, winner_p = halving.models[Arch(2, 1)].state_dict(), plain.models[Arch(2, 1)].state_dict()
    assert all(torch.equal(v, winner_p[k]) for k, v in winner_h.items())


def _spy_searches(monkeypatch) -> list[dict]:
    """Record what the round service (every entry point's round) hands inas_search, and still run it."""
    import inas_plugins.active_round as module

    calls: list[dict] = []
    real = module.inas_search

    def spy(data, *args, **kwargs):
        result = real(data, *args, **kwargs)
        calls.append({"size": len(data), "parent": kwargs.get("parent_model") is not None,
                      "seen": kwargs.get("parent_seen"), "inherited": [r.inherited for r in result.candidates]})
        return result

    monkeypatch.setattr(module, "inas_search", spy)
    return calls


def test_active_loop_tells_the_search_which_labels_the_parent_was_trained_on(tmp_path, monkeypatch):
    import inas_plugins.loop as loop
    from inas_plugins.config import resolve_config
    from inas_plugins.data import load_dataset

    data = load_dataset("synthetic", seed=0, progress=False, n_train=120, n_test=30, num_classes=3, image_size=8)
    config = resolve_config({"dataset": "synthetic", "initial": 24, "query_schedule": [[0, 16]], "budget": 56,
                             "epochs": 2, "epoch_size": 64, "batch_size": 32, "base_width": 4, "max_blocks": 2,
                             "max_stacks": 2, "inherit_weights": True}, preset="quick")
    calls = _spy_searches(monkeypatch)
    loop.ActiveRun(config, data, tmp_path, progress=False, log=lambda _: None).run()
    assert [call["size"] for call in calls] == [24, 40, 56]
    assert not calls[0]["parent"]
    for call, before in zip(calls[1:], (24, 40)):  # the parent saw every label but the last query's 16
        assert call["parent"] and call["seen"].dtype == torch.bool and int(call["seen"].sum()) == before
        assert all(call["inherited"])


def test_labelling_session_tells_the_search_which_labels_the_parent_was_trained_on(tmp_path, monkeypatch):
    """``inas label``'s parent is the saved network of the last round, which records the images it
    was trained on: V' comes from the batch labelled since."""
    from PIL import Image

    from inas_plugins.config import RunConfig
    from inas_plugins.labelling.project import load_project
    from inas_plugins.labelling.session import init_project, sync
    from inas_plugins.labelling.store import Answer, LabelStore
    from inas_plugins.training import TrainRecipe

    rng = np.random.default_rng(0)
    for i in range(30):
        pixels = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
        pixels[:4] += 150 * (i % 2)
        path = tmp_path / "data" / "unlabelled" / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    config = RunConfig(dataset="folder", initial=8, query_schedule=[[0, 6]], budget=20, base_width=4, max_blocks=2,
                       max_stacks=2, device="cpu", train=TrainRecipe(epochs=2, epoch_size=64, batch_size=32),
                       search=SearchOptions(inherit_weights=True, premature_fraction=0.5)).validate()
    init_project(tmp_path / "run", tmp_path / "data", ["dark", "bright"], config, log=lambda _: None)
    calls = _spy_searches(monkeypatch)
    batches = []
    for _ in range(2):
        batch = load_project(tmp_path / "run")[1].batch.paths
        batches.append(batch)
        LabelStore(tmp_path / "run").add(Answer(path, ["dark", "bright"][int(path[-6:-4]) % 2], "import", "oracle")
                                         for path in batch)
        sync(tmp_path / "run", log=lambda _: None)
    assert [call["size"] for call in calls] == [8, 14] and not calls[0]["parent"]
    labelled = sorted(batches[0] + batches[1])  # the round's labelled images, in the order it reads them
    assert calls[1]["seen"].tolist() == [path in batches[0] for path in labelled] and all(calls[1]["inherited"])


def test_wrapper_tells_the_search_which_items_its_last_model_was_trained_on(monkeypatch):
    import inas_plugins.wrapper as wrapper_module
    from baal.active.dataset import ActiveLearningDataset
    from baal.modelwrapper import TrainingArgs
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, CLASSES, (60,), generator=generator)
    items = TensorDataset(torch.randn(60, 3, 8, 8, generator=generator) + labels[:, None, None, None], labels)
    args = TrainingArgs(batch_size=16, epoch=2, workers=0, use_cuda=False, criterion=torch.nn.CrossEntropyLoss())

    def wrapper():
        return wrapper_module.INASModelWrapper(build_inas_resnet(Arch(1, 1), num_classes=CLASSES, base_width=4), args,
                                               space=SearchSpace(2, 2), progress=False,
                                               search=SearchOptions(inherit_weights=True, premature_fraction=0.5))

    calls = _spy_searches(monkeypatch)
    al_dataset = ActiveLearningDataset(items)
    al_dataset.label_randomly(20)
    first = al_dataset.labelled_map.copy()
    baal_wrapper = wrapper()
    baal_wrapper.train_on_dataset(al_dataset)
    al_dataset.label_randomly(10)
    baal_wrapper.train_on_dataset(al_dataset)
    expected = np.isin(np.flatnonzero(al_dataset.labelled_map), np.flatnonzero(first))
    assert calls[1]["parent"] and calls[1]["seen"].tolist() == expected.tolist() and all(calls[1]["inherited"])
    # A plain dataset does not say which items are new: nothing is inherited rather than V' leaking.
    plain = wrapper()
    plain.train_on_dataset(torch.utils.data.Subset(items, range(20)))
    plain.train_on_dataset(torch.utils.data.Subset(items, range(30)))
    assert not calls[3]["parent"] and calls[3]["seen"] is None and not any(calls[3]["inherited"])
