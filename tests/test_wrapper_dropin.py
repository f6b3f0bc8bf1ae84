"""INASModelWrapper in a real baal project: streamed data with per-epoch transforms, V' scored without
augmentation, every registered heuristic in baal's loops, the device contract and bad input."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from baal.active import ActiveLearningDataset, ActiveLearningLoop
from baal.active.stopping_criteria import LabellingBudgetStoppingCriterion
from baal.experiments.base import ActiveLearningExperiment
from baal.modelwrapper import TrainingArgs
from torch.utils.data import Dataset, TensorDataset

from inas_plugins.heuristics import heuristic_names, k_center_greedy
from inas_plugins.models import build_inas_resnet
from inas_plugins.settings import SearchOptions
from inas_plugins.space import Arch, SearchSpace
from inas_plugins.wrapper import INASModelWrapper

CLASSES = 3
SPACE = SearchSpace(max_blocks=2, max_stacks=2)


def blobs(n: int, seed: int = 0) -> TensorDataset:
    """8x8 grayscale images whose class is a bright quadrant."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    images = torch.randn(n, 1, 8, 8, generator=generator) * 0.5
    for cls, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8)),
                                        (slice(0, 4), slice(4, 8))]):
        images[labels == cls, :, rows, cols] += 2.0
    return TensorDataset(images, labels)


class Noise:
    """A random transform, like RandomCrop: adds fresh noise on every call and logs each draw."""

    def __init__(self) -> None:
        self.draws: dict[int, list[float]] = {}

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        shift = float(torch.rand(()))
        self.draws.setdefault(index, []).append(shift)
        return image + shift


class Plain:
    """The test transform: counts reads, changes nothing."""

    def __init__(self) -> None:
        self.reads: Counter = Counter()

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        self.reads[index] += 1
        return image


class TransformedDataset(Dataset):
    """A user's dataset with a ``transform`` attribute that baal's pool_specifics can replace."""

    def __init__(self, base: TensorDataset, transform) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image, index), label


def make_wrapper(*, epoch: int = 3, batch_size: int = 16, **kwargs) -> INASModelWrapper:
    model = build_inas_resnet(Arch(1, 1), num_classes=CLASSES, in_chans=1, base_width=4, drop_rate=0.0)
    args = TrainingArgs(batch_size=batch_size, epoch=epoch, workers=0, use_cuda=False,
                        criterion=torch.nn.CrossEntropyLoss())
    kwargs.setdefault("space", SPACE)
    return INASModelWrapper(model, args, progress=False, **kwargs)


def transformed_al_dataset(n: int = 60, labelled: int = 20):
    noise, plain = Noise(), Plain()
    al_dataset = ActiveLearningDataset(TransformedDataset(blobs(n), noise), pool_specifics={"transform": plain})
    al_dataset.label_randomly(labelled)
    noise.draws.clear()  # baal itself reads a few items when it checks the pool for randomness
    plain.reads.clear()
    return al_dataset, noise, plain


def test_training_streams_the_dataset_with_transforms_drawn_every_epoch() -> None:
    al_dataset, noise, plain = transformed_al_dataset()
    labelled = set(al_dataset.get_indices_for_active_step())
    wrapper = make_wrapper(search=False)
    wrapper.train_on_dataset(al_dataset)
    # Every labelled item went through the random transform once per epoch, each time a new draw.
    assert set(noise.draws) == labelled
    assert all(len(draws) == 3 and len(set(draws)) == 3 for draws in noise.draws.values())
    # Scoring used the test transform only: the input format's first batch; the train metrics are
    # running averages over the training batches, as in baal (no extra pass).
    assert set(plain.reads) <= labelled and sum(plain.reads.values()) == 16


def test_the_search_trains_candidates_on_streamed_data_and_scores_v_prime_without_augmentation() -> None:
    al_dataset, noise, plain = transformed_al_dataset(labelled=30)
    wrapper = make_wrapper(search=SearchOptions(premature_fraction=0.34))
    wrapper.train_on_dataset(al_dataset)
    record = wrapper.search_history[-1]
    train_size, val_size = record["train_size"], record["val_size"]
    assert (train_size, val_size) == (24, 6) and record["premature_epochs"] == 1
    candidates = len(SPACE.candidates(Arch(1, 1)))
    # Final training: 3 epochs of 30 samples; each candidate: 1 premature epoch of the same size, drawn
    # from S' only (epochs have a fixed size: one pass over S here, as in baal).
    assert sum(len(d) for d in noise.draws.values()) == 3 * 30 + candidates * 30
    validation = set(range(60)) - set(i for i, d in noise.draws.items() if len(d) > 3)
    assert len(validation & set(al_dataset.get_indices_for_active_step())) == val_size
    # V' is read through the test transform: once per candidate, plus the input format's first batch.
    assert sum(plain.reads.values()) == candidates * val_size + 16


def test_without_pool_specifics_the_dataset_is_scored_through_its_own_transforms() -> None:
    noise = Noise()
    dataset = TransformedDataset(blobs(20), noise)
    make_wrapper(search=False, epoch=2).train_on_dataset(dataset)
    assert sum(len(d) for d in noise.draws.values()) == 2 * 20 + 16


@pytest.fixture(scope="module")
def trained():
    """A wrapper trained once on 20 labelled blobs, and that labelled map."""
    torch.manual_seed(0)
    al_dataset = ActiveLearningDataset(blobs(60))
    al_dataset.label_randomly(20)
    wrapper = make_wrapper(search=False, epoch=2)
    wrapper.train_on_dataset(al_dataset)
    return wrapper, al_dataset.labelled_map.copy()


@pytest.mark.parametrize("name", heuristic_names())
def test_every_registered_heuristic_runs_in_baal_active_learning_loop(trained, name) -> None:
    wrapper, labelled_map = trained
    al_dataset = ActiveLearningDataset(blobs(60), labelled=labelled_map.copy())
    pool_before = set(np.flatnonzero(labelled_map == 0).tolist())
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=wrapper.heuristic(name, query_size=5),
                              query_size=5, iterations=4, verbose=False)
    assert loop.step()
    new = set(np.flatnonzero(al_dataset.labelled_map > 0).tolist()) - set(np.flatnonzero(labelled_map).tolist())
    assert len(new) == 5 and new <= pool_before


def test_coreset_in_baal_loop_picks_what_k_center_greedy_picks_on_the_embeddings(trained) -> None:
    wrapper, labelled_map = trained
    dataset = blobs(60)
    al_dataset = ActiveLearningDataset(dataset, labelled=labelled_map.copy())
    pool_oracle = np.flatnonzero(labelled_map == 0)
    images = dataset.tensors[0]
    wrapper.model.eval()
    with torch.no_grad():  # the reference: embeddings straight from the network, greedy k-center on them
        pool_embeddings = wrapper.model.embed(images[pool_oracle])
        labelled_embeddings = wrapper.model.embed(images[np.flatnonzero(labelled_map)])
    expected = pool_oracle[k_center_greedy(pool_embeddings, 6, labelled_embeddings)]
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=wrapper.heuristic("coreset", 6),
                              query_size=6, verbose=False)
    assert loop.step()
    new = np.setdiff1d(np.flatnonzero(al_dataset.labelled_map > 0), np.flatnonzero(labelled_map))
    np.testing.assert_array_equal(np.sort(new), np.sort(expected))


def test_coreset_runs_in_baal_active_learning_experiment() -> None:
    train, test = blobs(70, seed=3), blobs(20, seed=4)
    al_dataset = ActiveLearningDataset(train)
    al_dataset.label_randomly(20)
    wrapper = make_wrapper(epoch=1)
    experiment = ActiveLearningExperiment(
        trainer=wrapper, al_dataset=al_dataset, eval_dataset=test, heuristic=wrapper.heuristic("coreset", 10),
        query_size=10, iterations=2, criterion=LabellingBudgetStoppingCriterion(al_dataset, labelling_budget=20),
    )
    records = experiment.start()
    assert len(records) == 2 and len(al_dataset) == 40 and wrapper.rounds == 2


def test_a_heuristic_whose_needs_cannot_be_met_names_the_fix(trained) -> None:
    wrapper, labelled_map = trained
    al_dataset = ActiveLearningDataset(blobs(60), labelled=labelled_map.copy())
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=wrapper.heuristic("bald", 5),
                              query_size=5, verbose=False)  # no iterations: one deterministic pass
    with pytest.raises(ValueError, match="iterations=20"):
        loop.step()
    with pytest.raises(ValueError, match="unknown heuristic"):
        wrapper.heuristic("no_such_heuristic", 5)


def test_outputs_live_on_the_models_device_and_baal_batch_methods_work() -> None:
    wrapper = make_wrapper(search=False, epoch=1)
    wrapper.train_on_dataset(blobs(30))
    images, labels = blobs(10).tensors
    logits = wrapper.predict_on_batch(images, iterations=3)
    assert logits.shape == (10, CLASSES, 3) and logits.device == next(wrapper.model.parameters()).device
    loss = wrapper.test_on_batch(images, labels)  # baal's own method on top of predict_on_batch
    assert torch.isfinite(loss)


class Pairs(Dataset):
    def __init__(self, items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_bad_datasets_get_one_clear_line() -> None:
    images, labels = blobs(20).tensors
    wrapper = make_wrapper(search=False, epoch=1)
    with pytest.raises(ValueError, match="label 5 is not a class index of the network .0..2."):
        wrapper.train_on_dataset(TensorDataset(images, torch.full((20,), 5)))
    with pytest.raises(ValueError, match=r"\(image, label\) pairs"):
        wrapper.train_on_dataset(TensorDataset(images))
    with pytest.raises(ValueError, match="ToTensor"):
        wrapper.train_on_dataset(Pairs([("not an image", 0)] * 4))
    with pytest.raises(ValueError, match="one integer class index"):
        wrapper.train_on_dataset(TensorDataset(images, torch.rand(20)))
    empty = ActiveLearningDataset(blobs(10))
    with pytest.raises(ValueError, match="label_randomly"):
        wrapper.train_on_dataset(empty)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_contract() -> None:
    model = build_inas_resnet(Arch(1, 1), num_classes=CLASSES, in_chans=1, base_width=8, drop_rate=0.2)
    args = TrainingArgs(batch_size=16, epoch=2, workers=0, use_cuda=True, criterion=torch.nn.CrossEntropyLoss())
    wrapper = INASModelWrapper(model, args, space=SPACE, progress=False)
    train, test = blobs(60), blobs(30, seed=1)
    al_dataset = ActiveLearningDataset(train)
    al_dataset.label_randomly(30)
    history = wrapper.train_and_test_on_datasets(al_dataset, test)
    assert np.isfinite(history[-1]["test_loss"])
    assert next(wrapper.model.parameters()).device.type == "cuda"
    images, labels = test.tensors
    assert wrapper.predict_on_batch(images, iterations=2).device.type == "cuda"
    assert torch.isfinite(wrapper.test_on_batch(images, labels))  # baal moves the target to CUDA
    assert wrapper.predict_on_dataset(al_dataset.pool, iterations=3).shape == (30, CLASSES, 3)
    loop = ActiveLearningLoop(al_dataset, wrapper.predict_on_dataset, heuristic=wrapper.heuristic("coreset", 5),
                              query_size=5, verbose=False)
    assert loop.step() and len(al_dataset) == 35
