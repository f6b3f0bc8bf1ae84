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
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_open
from ..data.base import channel_stats
from ..heuristics import ScoreHeuristic, collect_outputs, create_heuristic
from ..loop import round_seed
from ..models import build_inas_resnet, count_parameters
from ..search import inas_search
from ..space import Arch
from ..training.sources import InputFormat, TensorSource
from ..training.trainer import Trainer, derive_seed
from .images import decode_groups, scan_pool, scan_test
from .project import MODEL_NAME, Batch, BatchItem, Project, ProjectError

Log = Callable[[str], None]


@dataclass
class RoundResult:
    """What a round recorded (one entry of ``state.json``'s rounds) and the batch it chose."""

    record: dict
    batch: Optional[Batch]
    arch: Arch


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
    """
    config, root, classes = project.config, project.root, project.classes
    pool_paths = [path for path in scan_pool(root) if path not in answered]
    test_pairs = scan_test(root, classes)
    labelled_paths = sorted(labels)
    decoded = decode_groups(root, {"labelled": labelled_paths, "pool": pool_paths,
                                   "test": [path for path, _ in test_pairs]}, project.image_size, project.color)
    if decoded.missing:
        log(f"warning: {len(decoded.missing)} image(s) no longer exist and are left out (their labels are kept): "
            + ", ".join(decoded.missing[:5]) + (" ..." if len(decoded.missing) > 5 else ""))
    if decoded.unreadable:
        log(f"warning: {len(decoded.unreadable)} image(s) cannot be read and are left out (their labels are kept): "
            + ", ".join(decoded.unreadable[:5]) + (" ..." if len(decoded.unreadable) > 5 else ""))
    labelled_paths, labelled_images = decoded.groups["labelled"]
    pool_paths, pool_images = decoded.groups["pool"]
    if len(labelled_paths) < 2:
        raise ProjectError(f"a round needs at least 2 labelled images that can be read, got {len(labelled_paths)}")
    index = {name: i for i, name in enumerate(classes)}
    labelled_targets = torch.tensor([index[labels[path]] for path in labelled_paths], dtype=torch.int64)
    mean, std = channel_stats(torch.cat([labelled_images, pool_images]))
    fmt = InputFormat.uint8(mean, std)
    labelled = TensorSource(labelled_images, labelled_targets, fmt)
    channels, image_size = decoded.channels, decoded.image_size

    def build(arch: Arch) -> nn.Module:
        return build_inas_resnet(arch, num_classes=len(classes), in_chans=channels, base_width=config.base_width,
                                 drop_rate=config.drop_rate, block=config.block)

    seed = round_seed(config.seed, round_index)

    def fresh(arch: Arch, salt: int) -> nn.Module:
        """A new network whose initial weights depend only on (round seed, salt, arch), not on global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, salt, arch.blocks, arch.stacks))
            return build(arch)

    trainer = Trainer(config.train, augment=True if config.augment is None else config.augment, flips=project.flips,
                      device=config.device, seed=seed, progress=progress)
    parent = _load_parent(run_dir, start, build)
    arch, candidates, search_seconds = start, [], 0.0
    if config.uses_search:
        result = inas_search(labelled, start, config.space, trainer, build, options=config.search, seed=seed,
                             parent_model=parent, progress=progress)
        arch, candidates, search_seconds = result.arch, [c.to_dict() for c in result.candidates], result.seconds
    model = fresh(arch, 1)
    stats = trainer.fit(model, labelled, desc=f"round {round_index} train {arch}")

    began = time.perf_counter()
    test_paths, test_images = decoded.groups["test"]
    if len(test_paths):
        test_targets = torch.tensor([index[dict(test_pairs)[path]] for path in test_paths], dtype=torch.int64)
        accuracy = trainer.evaluate(model, TensorSource(test_images, test_targets, fmt))
        kind, detail = "test", f"{len(test_paths)} test images"
    else:
        accuracy, kind, detail = cross_validate(trainer, labelled, fresh, arch, project.cv_folds, seed)
    eval_seconds = time.perf_counter() - began
    _save_model(run_dir, model, arch, classes, fmt)

    began = time.perf_counter()
    n = min(query_size, len(pool_paths))
    batch = None
    if n > 0:
        rng = np.random.default_rng(seed + 1)
        items = choose(model, TensorSource(pool_images, None, fmt), labelled, pool_paths, n, project, rng)
        batch = Batch(round=round_index + 1, items=items, posted=False,
                      model_version=f"round {round_index} A({arch.blocks},{arch.stacks}) {config.query.heuristic}")
    record = {
        "round": round_index, "labelled": len(labelled_paths), "arch": arch.as_list(),
        "params": count_parameters(model), "depth": config.space.depth(arch),
        "accuracy": None if accuracy is None else round(float(accuracy), 5), "accuracy_kind": kind,
        "accuracy_detail": detail, "candidates": candidates, "search_seconds": round(search_seconds, 3),
        "train_seconds": round(stats.seconds, 3), "eval_seconds": round(eval_seconds, 3),
        "query_seconds": round(time.perf_counter() - began, 3), "queried": n,
        "left_out": len(decoded.missing) + len(decoded.unreadable),
    }
    return RoundResult(record, batch, arch)


def cross_validate(trainer: Trainer, labelled: TensorSource, fresh: Callable[[Arch, int], nn.Module], arch: Arch,
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


def choose(model: nn.Module, pool: TensorSource, labelled: TensorSource, pool_paths: list[str], n: int,
           project: Project, rng: np.random.Generator) -> list[BatchItem]:
    """The ``n`` pool images the run's heuristic wants labelled, most wanted first."""
    query = project.config.query
    heuristic = create_heuristic(query.heuristic)
    candidates = np.arange(len(pool))
    if query.pool_subset is not None and query.pool_subset < len(pool):
        candidates = np.sort(rng.choice(len(pool), size=max(query.pool_subset, n), replace=False))
    ranked = pool.subset(torch.from_numpy(candidates))
    outputs = collect_outputs(model, ranked, labelled, heuristic.needs | {"probs"}, mc_samples=query.mc_samples,
                              mc_dropout_rate=query.mc_dropout_rate, seed=int(rng.integers(2**31)))
    picks = np.asarray(heuristic.select(outputs, n, rng), dtype=np.int64)
    if len(np.unique(picks)) != n:
        raise RuntimeError(f"heuristic {query.heuristic!r} returned {len(picks)} picks, not {n} distinct ones")
    if isinstance(heuristic, ScoreHeuristic):
        scores = np.asarray(heuristic.scores(outputs), dtype=np.float64)[picks]
    else:
        scores = np.arange(n, 0, -1, dtype=np.float64)
    probs = outputs.probs[picks]
    return [BatchItem(path=pool_paths[int(candidates[pick])], query_score=round(float(score), 6),
                      predicted=project.classes[int(row.argmax())], confidence=round(float(row.max()), 6))
            for pick, score, row in zip(picks, scores, probs)]


def random_batch(pool_paths: list[str], n: int, seed: int) -> Batch:
    """The cold-start batch: ``n`` images drawn uniformly at random (no labels, no model needed)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool_paths), size=min(n, len(pool_paths)), replace=False)
    return Batch(round=0, items=[BatchItem(path=pool_paths[int(i)]) for i in picks], posted=False)


def _save_model(run_dir: Path, model: nn.Module, arch: Arch, classes: list[str], fmt: InputFormat) -> None:
    payload = {"arch": arch.as_list(), "classes": list(classes), "input_format": fmt.to_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_open(Path(run_dir) / MODEL_NAME) as handle:
        torch.save(payload, handle)


def _load_parent(run_dir: Path, arch: Arch, build: Callable[[Arch], nn.Module]) -> Optional[nn.Module]:
    """The previous round's network (weight inheritance starts from it), if it is the current one."""
    path = Path(run_dir) / MODEL_NAME
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if Arch(*payload["arch"]) != arch:
            return None
        model = build(arch)
        model.load_state_dict(payload["state_dict"])
        return model
    except Exception:  # a network of another shape (channels changed): inheritance simply starts fresh
        return None
