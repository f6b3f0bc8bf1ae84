"""One round of human-in-the-loop active-iNAS: search, train, measure, and choose the next batch.

This is the library's active round (:mod:`inas_plugins.loop` does the same on a simulated oracle)
driven by the labels people gave instead of known ones: the labelled images and the pool are
decoded into :class:`~inas_plugins.training.sources.TensorSource` s, :func:`~inas_plugins.search.inas_search`
grows the architecture from the previous round's, a :class:`~inas_plugins.training.trainer.Trainer`
trains the winner on every label, and :func:`~inas_plugins.heuristics.collect_outputs` with the run's
heuristic ranks the pool.

Accuracy: on ``DIR/test/`` when the project has one (``accuracy_kind`` "test"). Without a test set
the only labels are the ones the model chose to ask for, so the round reports a *k-fold
cross-validated estimate on the labelled set* (scikit-learn's StratifiedKFold, fresh networks of
the chosen architecture; ``accuracy_kind`` "cross-validated") and says so everywhere it is shown: it
is optimistic or pessimistic depending on the heuristic, and not comparable with a test accuracy.

Every image of the next batch carries what the model thinks of it (its class and softmax
probability, posted to Label Studio as a pre-annotation) and its query score (the heuristic's score
where it has one, higher = asked first; for heuristics that pick a set, such as coreset or random,
the pick order n..1).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..active_round import Parent, pick, round_seed, search_and_train
from ..atomic import atomic_open
from ..data.base import channel_stats
from ..heuristics import create_heuristic
from ..models import build_inas_resnet, count_parameters
from ..space import Arch
from ..training.sources import InputFormat, TensorSource
from ..training.trainer import Trainer, derive_seed
from .images import decode_groups, scan_pool, scan_test
from .project import MODEL_NAME, Batch, BatchItem, Project, ProjectError

Log = Callable[[str], None]
Fresh = Callable[[Arch, int], nn.Module]


@dataclass
class RoundResult:
    """What a round recorded (one entry of ``state.json``'s rounds) and the batch it chose."""

    record: dict
    batch: Optional[Batch]
    arch: Arch


@dataclass
class RoundData:
    """The round's images, decoded: the labelled set, the pool and the test set (None without ``test/``)."""

    labelled_paths: list[str]
    labelled: TensorSource
    pool_paths: list[str]
    pool: TensorSource
    test: Optional[TensorSource]
    channels: int
    left_out: int


def accuracy_text(record: dict) -> str:
    """``test accuracy 0.8125`` / ``cross-validated accuracy 0.75 (3 folds on the labelled set)``."""
    if record.get("accuracy") is None:
        return f"no accuracy ({record.get('accuracy_detail', 'not measured')})"
    if record.get("accuracy_kind") == "test":
        return f"test accuracy {record['accuracy']:.4f}"
    return f"cross-validated accuracy {record['accuracy']:.4f} ({record.get('accuracy_detail', '')})"


def run_round(project: Project, labels: dict[str, str], answered: set[str], round_index: int, start: Arch,
              query_size: int, run_dir: Path, *, progress: bool = False, log: Log = print) -> RoundResult:
    """Train on ``labels`` (path -> class), measure, and choose ``query_size`` images of the pool.

    ``answered`` holds every image with an answer (labelled or skipped): they are not in the pool.
    The round itself is :mod:`inas_plugins.active_round`'s; this adapter decodes the images, seeds
    the networks from the round, and stores the network with the images it was trained on, so the
    next round's weight inheritance knows which labels its parent has seen.
    """
    config, classes = project.config, project.classes
    data = load_round_data(project, labels, answered, log)
    seed = round_seed(config.seed, round_index)
    build = partial(build_inas_resnet, num_classes=len(classes), in_chans=data.channels, base_width=config.base_width,
                    drop_rate=config.drop_rate, block=config.block)
    fresh = partial(_fresh, build, seed)
    trainer = Trainer(config.train, augment=True if config.augment is None else config.augment, flips=project.flips,
                      device=config.device, seed=seed, progress=progress)
    search = config.search if config.uses_search else None
    parent = _load_parent(run_dir, start, build, data.labelled_paths) if search and search.inherit_weights else None
    trained = search_and_train(data.labelled, start, trainer, space=config.space, search=search, build=build,
                               final=partial(fresh, salt=1), seed=seed, parent=parent, progress=progress,
                               desc=f"round {round_index} train")
    began = time.perf_counter()
    accuracy, kind, detail = measure(trainer, trained.model, data, fresh, trained.arch, project.cv_folds, seed)
    eval_seconds = time.perf_counter() - began
    _save_model(run_dir, trained.model, trained.arch, classes, data.labelled.fmt, data.labelled_paths)
    began = time.perf_counter()
    batch = next_batch(trained.model, trained.arch, data, query_size, project, round_index, seed)
    record = {
        "round": round_index, "labelled": len(data.labelled_paths), "arch": trained.arch.as_list(),
        "params": count_parameters(trained.model), "depth": config.space.depth(trained.arch),
        "accuracy": None if accuracy is None else round(float(accuracy), 5), "accuracy_kind": kind,
        "accuracy_detail": detail, "candidates": [c.to_dict() for c in trained.candidates],
        "search_seconds": round(trained.search_seconds, 3), "train_seconds": round(trained.stats.seconds, 3),
        "eval_seconds": round(eval_seconds, 3), "query_seconds": round(time.perf_counter() - began, 3),
        "queried": len(batch.items) if batch else 0, "left_out": data.left_out,
    }
    return RoundResult(record, batch, trained.arch)


def load_round_data(project: Project, labels: dict[str, str], answered: set[str], log: Log) -> RoundData:
    """Decode the labelled images, the pool (every image without an answer) and ``test/``; images deleted
    or unreadable since they were labelled are left out with a warning (their labels are kept)."""
    root, classes = project.root, project.classes
    test_pairs = dict(scan_test(root, classes))
    decoded = decode_groups(root, {"labelled": sorted(labels), "test": list(test_pairs),
                                   "pool": [path for path in scan_pool(root) if path not in answered]},
                            project.image_size, project.color)
    for what, paths in (("no longer exist", decoded.missing), ("cannot be read", decoded.unreadable)):
        if paths:
            log(f"warning: {len(paths)} image(s) {what} and are left out (their labels are kept): "
                + ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else ""))
    labelled_paths, labelled_images = decoded.groups["labelled"]
    pool_paths, pool_images = decoded.groups["pool"]
    if len(labelled_paths) < 2:
        raise ProjectError(f"a round needs at least 2 labelled images that can be read, got {len(labelled_paths)}")
    index = {name: i for i, name in enumerate(classes)}

    def targets(paths: list[str], names: dict[str, str]) -> torch.Tensor:
        return torch.tensor([index[names[path]] for path in paths], dtype=torch.int64)

    fmt = InputFormat.uint8(*channel_stats(torch.cat([labelled_images, pool_images])))
    test_paths, test_images = decoded.groups["test"]
    return RoundData(
        labelled_paths=labelled_paths, labelled=TensorSource(labelled_images, targets(labelled_paths, labels), fmt),
        pool_paths=pool_paths, pool=TensorSource(pool_images, None, fmt),
        test=TensorSource(test_images, targets(test_paths, test_pairs), fmt) if len(test_paths) else None,
        channels=decoded.channels,
        left_out=len(decoded.missing) + len(decoded.unreadable))


def _fresh(build: Callable[[Arch], nn.Module], seed: int, arch: Arch, salt: int) -> nn.Module:
    """A new network whose initial weights depend only on (round seed, salt, arch), not on global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, salt, arch.blocks, arch.stacks))
        return build(arch)


def measure(trainer: Trainer, model: nn.Module, data: RoundData, fresh: Fresh, arch: Arch, folds: int,
            seed: int) -> tuple[Optional[float], str, str]:
    """``model``'s accuracy on ``test/``; without one, the cross-validated estimate on the labelled set."""
    if data.test is not None:
        return trainer.evaluate(model, data.test), "test", f"{len(data.test)} test images"
    return cross_validate(trainer, data.labelled, fresh, arch, folds, seed)


def cross_validate(trainer: Trainer, labelled: TensorSource, fresh: Fresh, arch: Arch,
                   folds: int, seed: int) -> tuple[Optional[float], str, str]:
    """Accuracy of fresh ``arch`` networks (``fresh(arch, salt)``) over stratified folds of the labelled set,
    pooled over the folds (every labelled image is predicted once, by the network that did not see it)."""
    from sklearn.model_selection import StratifiedKFold

    targets = labelled.labels.numpy()
    largest = int(np.bincount(targets).max())
    k = min(folds, largest)
    if k < 2 or len(np.unique(targets)) < 2:
        return None, "none", "no test/ folder, and too few labels per class for cross-validation"
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
    correct = 0
    with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits": expected early on
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(targets)), targets))
    for fold, (train_index, test_index) in enumerate(splits):
        model = fresh(arch, 100 + fold)
        trainer.fit(model, labelled.subset(torch.from_numpy(train_index)), desc=f"cv fold {fold + 1}/{k}",
                    run_seed=derive_seed(seed, 7919, fold))
        correct += trainer.evaluate(model, labelled.subset(torch.from_numpy(test_index))) * len(test_index)
    return correct / len(targets), "cross-validated", f"{k}-fold cross-validation on the {len(targets)} labelled images"


def next_batch(model: nn.Module, arch: Arch, data: RoundData, query_size: int, project: Project, round_index: int,
               seed: int) -> Optional[Batch]:
    """The pool images the run's heuristic wants labelled next, most wanted first, each with the model's
    guess and its query score; None when there is nothing left to ask (budget reached, pool empty)."""
    n = min(query_size, len(data.pool_paths))
    if n == 0:
        return None
    query = project.config.query
    picks = pick(model, create_heuristic(query.heuristic), data.pool, data.labelled, n, query,
                 np.random.default_rng(seed + 1), describe=True)
    items = [BatchItem(path=data.pool_paths[int(position)], query_score=round(float(score), 6),
                       predicted=project.classes[int(row.argmax())], confidence=round(float(row.max()), 6))
             for position, score, row in zip(picks.positions, picks.scores, picks.probs)]
    return Batch(round=round_index + 1, items=items, posted=False,
                 model_version=f"round {round_index} A({arch.blocks},{arch.stacks}) {query.heuristic}")


def random_batch(pool_paths: list[str], n: int, seed: int) -> Batch:
    """The cold-start batch: ``n`` images drawn uniformly at random (no labels, no model needed)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool_paths), size=min(n, len(pool_paths)), replace=False)
    return Batch(round=0, items=[BatchItem(path=pool_paths[int(i)]) for i in picks], posted=False)


def _save_model(run_dir: Path, model: nn.Module, arch: Arch, classes: list[str], fmt: InputFormat,
                trained_on: list[str]) -> None:
    payload = {"arch": arch.as_list(), "classes": list(classes), "input_format": fmt.to_dict(),
               "trained_on": list(trained_on),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_open(Path(run_dir) / MODEL_NAME) as handle:
        torch.save(payload, handle)


def _load_parent(run_dir: Path, arch: Arch, build: Callable[[Arch], nn.Module],
                 labelled_paths: list[str]) -> Optional[Parent]:
    """The previous round's network (weight inheritance starts from it) if it is the current architecture,
    with which of this round's labelled images it was trained on (``trained_on`` in ``model.pt``)."""
    path = Path(run_dir) / MODEL_NAME
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if Arch(*payload["arch"]) != arch or "trained_on" not in payload:  # no record of its labels: start fresh
            return None
        model = build(arch)
        model.load_state_dict(payload["state_dict"])
    except Exception:  # a network of another shape (channels changed): inheritance simply starts fresh
        return None
    trained_on = set(payload["trained_on"])
    return Parent(model, torch.tensor([path in trained_on for path in labelled_paths], dtype=torch.bool))
