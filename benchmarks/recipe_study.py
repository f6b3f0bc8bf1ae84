"""Training recipes at 200-3,200 CIFAR-10 labels: the paper's against ``lowdata``, and how lowdata was chosen.

Every cell trains a fixed A(i, j) of base width 16 on a random labelled set drawn from the ``cpu``
preset's pool (10,000 stratified training images, data seed 0) with the ``cpu`` preset's compute
per round (24 epochs of 4,000 samples, batch 128), and evaluates it on the **whole 10,000-image
test set**. Labelled sets are nested prefixes of one random permutation of the pool per seed, so
every recipe trains on the same images, and a network's initial weights depend only on (seed,
architecture), so every recipe starts from the same weights.

Stages (``--stages``, run in this order; results are appended to ``--results`` as JSON lines, and
cells already there are skipped, so an interrupted study continues where it stopped):

* ``tune``: one change at a time on top of the draft recipe (``RECIPES["lowdata"]`` as committed
  before tuning: the airbench-style recipe of issue 21), A(2,4), 200/800/3,200 labels, tuning
  seeds 100 and 101 (never the reported seeds 0-2, so choosing on them does not flatter the tables).
  Then ``combined`` = the draft with the best value of every setting that raised the mean accuracy
  by at least ``--min-gain``, measured on the same cells; the recipe with the highest mean over
  the tuning cells becomes the study's ``lowdata`` (written to ``--picked``).
* ``main``: paper vs lowdata, A(1,2), A(2,4), A(3,4), 200-3,200 labels, seeds 0-2.
* ``compute``: lowdata with the samples per round growing as labelled^a (a = 0.5, 1) at the same
  total over a cpu-preset run (200 + 400 + ... + 3,200) as the fixed epoch, A(2,4), seeds 0-2.
* ``premature``: rank agreement of premature evaluation under lowdata. For 200/800/3,200 labels and
  seeds 0-1, the labelled set is split S'/V' as the search splits it; six networks (1x1 ... 3x4)
  are trained on S' for the full recipe (scored on the test set: the truth) and for 1/8 and 1/4 of
  it under each premature schedule (scored on V', as the search scores them).
* ``ablation``: lowdata with one component set back to the paper's, A(2,4), 800 and 3,200, seeds 0-2.
* ``mixing``: stronger regularisation for the small labelled sets, one change at a time on top of
  lowdata (MixUp, CutMix, both, more weight decay), A(2,4), 200/800/1,600/3,200 labels, tuning seeds
  100-101.
* ``mixing_check``: the best of them (highest mean over the mixing cells, or ``--mixing-variants``)
  against lowdata, A(2,4), 200-3,200 labels, the reported seeds 0-2.
* ``mixing_networks``: the same for the smaller and the bigger network, A(1,2) and A(3,4), at
  200-1,600 labels (where mixing helped A(2,4)), seeds 0-2.
* ``mixing_compute``: the same for A(2,4) at 200-800 labels (where lowdata now mixes) with the ``cpu``
  preset's epoch growing with sqrt(labelled), which gives the small sets fewer samples (0.44x at 200
  labels): does mixing still pay there?

The mixing stages report into a section of their own ("Training recipe: batch mixing"); in them,
``lowdata`` means lowdata without its batch mixing, the recipe their variants change.

``--report`` writes the tables into BENCHMARKS.md ("Training recipe") from the results file.

    python benchmarks/recipe_study.py --data-dir ~/data/cifar10 --device cuda --workers 15
    python benchmarks/recipe_study.py --data-dir ~/data/cifar10 --stages main --workers 2 --threads 1
    python benchmarks/recipe_study.py --report --results recipe_results.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("tune", "main", "compute", "premature", "ablation", "timing", "mixing", "mixing_check", "mixing_networks",
          "mixing_compute")
MIXING_STAGES = ("mixing", "mixing_check", "mixing_networks", "mixing_compute")
SIZES = (200, 400, 800, 1600, 3200)
TUNE_SIZES, TUNE_SEEDS = (200, 800, 3200), (100, 101)
SEEDS = (0, 1, 2)
ARCHS = ("1x2", "2x4", "3x4")
RANK_ARCHS = ("1x1", "1x2", "2x2", "1x3", "2x4", "3x4")
RANK_SIZES, RANK_SEEDS = (200, 800, 3200), (0, 1)
PREMATURE = (("compressed", 0.125), ("compressed", 0.25), ("early_stop", 0.125), ("early_stop", 0.25))
WIDTH = 16
COMPUTE = {"epochs": 24, "epoch_size": 4000, "batch_size": 128}  # the cpu preset's compute per round
# The recipe tuning started from (issue 21's airbench-style recipe), kept here so the tune stage
# measures the same draft whatever RECIPES["lowdata"] became.
DRAFT = {
    "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "linear", "lr_milestones": (), "lr_gamma": 0.1,
    "warmup": 0.1, "nesterov": True, "decay_norms_and_biases": False, "label_smoothing": 0.2, "ema_decay": None,
    "shift": 0.125, "shift_mode": "reflect", "rotation": 0.0, "cutout": 0.0, "test_flips": True,
    "epoch_size_exponent": 0.0, "epoch_size_reference": 1000,
}

# One change at a time on top of the draft: (knob, value label, overrides).
TUNE_VARIANTS = (
    ("lr", "0.05", {"lr": 0.05}), ("lr", "0.2", {"lr": 0.2}), ("lr", "0.4", {"lr": 0.4}),
    ("weight_decay", "1e-3", {"weight_decay": 1e-3}), ("weight_decay", "2e-3", {"weight_decay": 2e-3}),
    ("label_smoothing", "0.1", {"label_smoothing": 0.1}), ("label_smoothing", "0.3", {"label_smoothing": 0.3}),
    ("cutout", "0.25", {"cutout": 0.25}), ("cutout", "0.375", {"cutout": 0.375}),
    ("shift", "0.0625", {"shift": 0.0625}), ("rotation", "15", {"rotation": 15.0}),
    ("lr_schedule", "cosine", {"lr_schedule": "cosine"}), ("warmup", "0", {"warmup": 0.0}),
    ("warmup", "0.2", {"warmup": 0.2}), ("ema_decay", "0.99", {"ema_decay": 0.99}),
    ("ema_decay", "0.995", {"ema_decay": 0.995}),
)
# Stronger regularisation for 200-800 labels, where lowdata's networks see each image hundreds of times.
MIXING_VARIANTS = {
    "lowdata": {}, "mixup=1": {"mixup": 1.0}, "cutmix=1": {"cutmix": 1.0},
    "mixup=1 or cutmix=1": {"mixup": 1.0, "cutmix": 1.0}, "weight_decay=5e-3": {"weight_decay": 5e-3},
    "mixup=0.2": {"mixup": 0.2},
}
MIXING_SIZES = (200, 800, 1600, 3200)
MIXING_NETWORK_SIZES = (200, 400, 800, 1600)  # where mixing helped A(2,4) in mixing_check
MIXING_COMPUTE_SIZES = (200, 400, 800)  # where lowdata mixes (mixing_max_labels=1000)
NO_MIXING = {"mixup": 0.0, "cutmix": 0.0, "mixing_max_labels": None}
# The components of lowdata, each set back to the paper's value.
ABLATIONS = {
    "schedule (paper's steps, no warmup)": {"lr_schedule": "step", "lr_milestones": (0.5, 0.75), "warmup": 0.0},
    "no Nesterov": {"nesterov": False},
    "decay on norms and biases": {"decay_norms_and_biases": True},
    "no label smoothing": {"label_smoothing": 0.0},
    "paper augmentation (warp shifts, 15-degree rotations, no cutout)": {"shift_mode": "warp", "rotation": 15.0,
                                                                        "cutout": 0.0, "shift": 0.125},
    "no cutout": {"cutout": 0.0},
    "no weight average": {"ema_decay": None},
    "no flip TTA": {"test_flips": False},
    "no batch mixing": {"mixup": 0.0, "cutmix": 0.0},
    "paper lr and weight decay": {"lr": 0.1, "weight_decay": 5e-4},
}


# ----------------------------------------------------------------------------- cells


# What makes a cell (a result adds its measurements to these).
CELL_KEYS = ("stage", "variant", "recipe", "overrides", "arch", "size", "seed", "kind", "schedule", "fraction", "rep")


def cell_key(cell: dict) -> str:
    return json.dumps({k: cell.get(k) for k in CELL_KEYS}, sort_keys=True)


def run_cell(cell: dict) -> dict:
    """Train one cell in this worker and return it with its measurements."""
    import torch

    from inas_plugins.models import build_inas_resnet
    from inas_plugins.search import split_labelled
    from inas_plugins.space import Arch
    from inas_plugins.training import Trainer, TrainRecipe
    from inas_plugins.training.sources import TensorSource
    from inas_plugins.training.trainer import derive_seed

    data = _WORKER["data"]
    base = _WORKER["recipes"][cell["recipe"]]
    if cell["stage"] in MIXING_STAGES:  # their "lowdata" is lowdata without its batch mixing, which they measure
        base = {**base, **NO_MIXING}
    recipe = TrainRecipe.from_dict({**base, **_WORKER["compute"], **cell["overrides"]})
    order = np.random.default_rng(cell["seed"]).permutation(len(data["train_labels"]))[:cell["size"]]
    images, labels = data["train_images"][order], data["train_labels"][order]
    arch = Arch.parse(cell["arch"])
    trainer = Trainer(recipe, mean=data["mean"], std=data["std"], flips=True, device=_WORKER["device"],
                      seed=cell["seed"], progress=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cell["seed"], arch.blocks, arch.stacks))
        model = build_inas_resnet(arch, num_classes=10, base_width=WIDTH)
    test = TensorSource(data["test_images"], data["test_labels"], trainer.source(images[:1]).fmt)
    began = time.perf_counter()
    if cell["kind"] == "test":
        cpu_began = time.process_time()
        stats = trainer.fit(model, images, labels)
        trained, cpu_trained = time.perf_counter(), time.process_time()
        accuracy = trainer.evaluate(model, test)
        return {**cell, "device": _WORKER["device"], "accuracy": accuracy, "train_seconds": stats.seconds,
                "samples": stats.samples, "eval_seconds": time.perf_counter() - trained,
                "train_cpu_seconds": cpu_trained - cpu_began, "eval_cpu_seconds": time.process_time() - cpu_trained,
                "seconds": time.perf_counter() - began, "threads": torch.get_num_threads()}
    # rank agreement: S'/V' as the search splits them, then a full or premature run on S'
    train_index, val_index = split_labelled(len(order), 0.2, cell["seed"])
    source = trainer.source(images, labels)
    train_part, validation = source.subset(train_index), source.subset(val_index).evaluation()
    if cell["kind"] == "full":
        stats = trainer.fit(model, train_part)
        return {**cell, "device": _WORKER["device"], "accuracy": trainer.evaluate(model, test),
                "val_accuracy": trainer.evaluate(model, validation),
                "train_seconds": stats.seconds, "seconds": time.perf_counter() - began}
    short = recipe.scaled(cell["fraction"])
    run = trainer.start(model, train_part, recipe=short if cell["schedule"] == "compressed" else recipe)
    stats = run.train_until(short.epochs)
    return {**cell, "device": _WORKER["device"], "val_accuracy": trainer.evaluate(run.evaluation_model, validation),
            "train_seconds": stats.seconds, "seconds": time.perf_counter() - began}


_WORKER: dict = {}


def _init_worker(data_path: str, recipes: dict, compute: dict, device: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(data=torch.load(data_path, weights_only=True), recipes=recipes, compute=compute, device=device)


def tune_cells() -> list[dict]:
    variants = [("paper", "-", "paper", {}), ("draft", "-", "draft", {})]
    variants += [(f"{knob}={label}", knob, "draft", overrides) for knob, label, overrides in TUNE_VARIANTS]
    return [dict(stage="tune", variant=name, knob=knob, recipe=recipe, overrides=overrides, arch="2x4", size=size,
                 seed=seed, kind="test")
            for (name, knob, recipe, overrides), size, seed in itertools.product(variants, TUNE_SIZES, TUNE_SEEDS)]


def combined_overrides(results: list[dict], min_gain: float) -> dict:
    """The best value of every tuned setting that beat the draft by ``min_gain`` in mean accuracy."""
    means = _mean_by(results, "variant", stage="tune")
    draft = means.get("draft")
    best: dict[str, tuple[float, dict]] = {}
    for knob, label, overrides in TUNE_VARIANTS:
        mean = means.get(f"{knob}={label}")
        if draft is None or mean is None or mean < draft + min_gain:
            continue
        if knob not in best or mean > best[knob][0]:
            best[knob] = (mean, overrides)
    return {key: value for _, overrides in best.values() for key, value in overrides.items()}


def pick_lowdata(results: list[dict], recipes: dict) -> tuple[str, dict]:
    """The tuning variant (draft, a single change or combined) with the highest mean accuracy."""
    means = _mean_by(results, "variant", stage="tune")
    candidates = {"draft": {}, "combined": None}
    candidates.update({f"{knob}={label}": overrides for knob, label, overrides in TUNE_VARIANTS})
    cells = [r for r in results if r["stage"] == "tune" and r["variant"] == "combined"]
    candidates["combined"] = cells[0]["overrides"] if cells else None
    measured = [n for n in candidates if n in means and candidates[n] is not None]
    if not measured:
        print("no tuning cell of the draft finished: lowdata stays the draft", flush=True)
        return "draft", dict(recipes["draft"])
    name = max(measured, key=lambda n: means[n])
    return name, {**recipes["draft"], **candidates[name]}


def main_cells() -> list[dict]:
    """Seed by seed, each recipe beside the other, so an interrupted study has paired cells of every
    network and size on its first seeds."""
    return [dict(stage="main", recipe=recipe, overrides={}, arch=arch, size=size, seed=seed, kind="test")
            for seed, arch, size, recipe in itertools.product(SEEDS, ARCHS, SIZES, ("paper", "lowdata"))]


def compute_reference(exponent: float) -> int:
    """The labelled size at which the scaled epoch equals the fixed one, so a run of the cpu preset's
    sizes trains as many samples in all as with the fixed epoch."""
    return round((sum(size**exponent for size in SIZES) / len(SIZES)) ** (1 / exponent))


def compute_cells() -> list[dict]:
    return [dict(stage="compute", recipe="lowdata", arch="2x4", size=size, seed=seed, kind="test",
                 overrides={"epoch_size_exponent": exponent, "epoch_size_reference": compute_reference(exponent)})
            for seed, exponent, size in itertools.product(SEEDS, (0.5, 1.0), SIZES)]  # seed by seed


def premature_cells() -> list[dict]:
    cells = []
    for size, seed, arch in itertools.product(RANK_SIZES, RANK_SEEDS, RANK_ARCHS):
        base = dict(stage="premature", recipe="lowdata", overrides={}, arch=arch, size=size, seed=seed)
        cells.append({**base, "kind": "full", "schedule": "full", "fraction": 1.0})
        cells += [{**base, "kind": "premature", "schedule": schedule, "fraction": fraction}
                  for schedule, fraction in PREMATURE]
    return cells


# The cpu preset's compute rule (inas_plugins/config.py): samples per round grow with sqrt(labelled).
CPU_PRESET_COMPUTE = {"epoch_size_exponent": 0.5, "epoch_size_reference": 1000}


def timing_cells() -> list[dict]:
    """Seconds per round on this machine, today's cpu preset (paper recipe, fixed epoch) against the new
    one (lowdata, growing epoch), A(2,4), alternating so both see the same load."""
    return [dict(stage="timing", recipe=recipe, overrides=overrides, arch="2x4", size=size, seed=0, rep=rep,
                 kind="test")
            for rep, size, (recipe, overrides) in itertools.product(
                (0, 1), (800, 3200), (("paper", {}), ("lowdata", CPU_PRESET_COMPUTE)))]


def ablation_cells(lowdata: dict) -> list[dict]:
    """Seed by seed, so an interrupted ablation has every component on its first seeds."""
    ablations = {name: overrides for name, overrides in ABLATIONS.items()
                 # a component lowdata does not use (its value is already the paper's) has nothing to ablate
                 if not all(_same(lowdata.get(key), value) for key, value in overrides.items())}
    return [dict(stage="ablation", variant=name, recipe="lowdata", overrides=overrides, arch="2x4", size=size, seed=seed,
                 kind="test")
            for seed, (name, overrides), size in itertools.product(SEEDS, ablations.items(), (800, 3200))]


def mixing_cells() -> list[dict]:
    """Seed by seed and size by size, so an interrupted stage has every variant on its first cells."""
    return [dict(stage="mixing", variant=name, recipe="lowdata", overrides=overrides, arch="2x4", size=size, seed=seed,
                 kind="test")
            for seed, size, (name, overrides) in itertools.product(TUNE_SEEDS, MIXING_SIZES, MIXING_VARIANTS.items())]


def best_mixing(results: list[dict]) -> str:
    """The mixing variant, lowdata itself excluded, with the highest mean accuracy over the mixing cells that
    every variant finished (so an interrupted stage compares like with like)."""
    cells = _select(results, stage="mixing")
    complete = [key for key in {(r["size"], r["seed"]) for r in cells}
                if len({r["variant"] for r in cells if (r["size"], r["seed"]) == key}) == len(MIXING_VARIANTS)]
    if not complete:
        raise SystemExit("no (size, seed) of the mixing stage has all its variants: run --stages mixing first")
    means = {name: statistics.fmean(r["accuracy"] for r in cells if r["variant"] == name and (r["size"], r["seed"])
                                    in complete) for name in MIXING_VARIANTS if name != "lowdata"}
    return max(means, key=means.get)


def mixing_check_cells(variants: list[str]) -> list[dict]:
    return [dict(stage="mixing_check", variant=name, recipe="lowdata", overrides=MIXING_VARIANTS[name], arch="2x4",
                 size=size, seed=seed, kind="test")
            for seed, size, name in itertools.product(SEEDS, SIZES, ("lowdata", *variants))]


def mixing_compute_cells(variants: list[str]) -> list[dict]:
    return [dict(stage="mixing_compute", variant=name, recipe="lowdata", arch="2x4", size=size, seed=seed,
                 kind="test", overrides={**MIXING_VARIANTS[name], **CPU_PRESET_COMPUTE})
            for seed, size, name in itertools.product(SEEDS, MIXING_COMPUTE_SIZES, ("lowdata", *variants))]


def mixing_network_cells(variants: list[str]) -> list[dict]:
    return [dict(stage="mixing_networks", variant=name, recipe="lowdata", overrides=MIXING_VARIANTS[name], arch=arch,
                 size=size, seed=seed, kind="test")
            for seed, arch, size, name in itertools.product(SEEDS, ("1x2", "3x4"), MIXING_NETWORK_SIZES,
                                                            ("lowdata", *variants))]


def _same(a, b) -> bool:
    """Equal settings, a list read back from JSON and a tuple included."""
    return (list(a) if isinstance(a, tuple) else a) == (list(b) if isinstance(b, tuple) else b)


# ----------------------------------------------------------------------------- running


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cells(cells: list[dict], pool: ProcessPoolExecutor, slots: int, results_path: Path, done: set[str],
              deadline: float) -> None:
    """Run the cells not yet in the results file, appending each result as it arrives.

    Cells are handed to the pool one per free worker, not all at once: the executor moves submitted work
    into its call queue ahead of time, where it can no longer be cancelled, so a deadline would otherwise
    still start a few cells after it passed."""
    todo = [cell for cell in cells if cell_key(cell) not in done]
    print(f"{len(todo)} cells to run ({len(cells) - len(todo)} already done)", flush=True)
    if LIMIT_CELLS is not None:  # --smoke: a few cells of each stage
        todo = [cell for stage in dict.fromkeys(c["stage"] for c in todo)
                for cell in [c for c in todo if c["stage"] == stage][:LIMIT_CELLS]]
    waiting = list(reversed(todo))
    pending: set = set()
    finished = 0
    while waiting or pending:
        if waiting and time.monotonic() >= deadline:
            print(f"deadline reached: {len(waiting)} cells left undone; waiting for the {len(pending)} in training",
                  flush=True)
            waiting = []
        while waiting and len(pending) < slots:
            pending.add(pool.submit(run_cell, waiting.pop()))
        if not pending:
            break
        timeout = min(max(deadline - time.monotonic(), 1), 30) if waiting else None
        complete, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        with results_path.open("a") as handle:
            for future in complete:
                result = future.result()
                done.add(cell_key(result))
                handle.write(json.dumps(result) + "\n")
                finished += 1
        if complete:
            print(f"  {finished}/{len(todo)} done, {time.monotonic() - STARTED:.0f} s", flush=True)


STARTED = time.monotonic()
LIMIT_CELLS: int | None = None  # --smoke: a few cells per stage


def prepare_data(data_dir: Path, scratch: Path) -> Path:
    """The cpu preset's pool and the whole test set as tensors in one file the workers load."""
    import torch

    from inas_plugins.config import resolve_config
    from inas_plugins.data import load_dataset

    config = resolve_config({"dataset": "folder", "data_dir": str(data_dir), "limit_test": None}, "cpu")
    data = load_dataset(config.dataset, config.data_dir, seed=config.data_seed, limit_train=config.limit_train,
                        progress=False)
    if data.classes != ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]:
        raise SystemExit(f"{data_dir} does not hold CIFAR-10's ten classes: {data.classes}")
    path = scratch / "data.pt"
    test = slice(None) if LIMIT_CELLS is None else slice(0, None, 20)  # --smoke: every 20th test image
    torch.save({"train_images": data.train.images, "train_labels": data.train.labels,
                "test_images": data.test.images[test], "test_labels": data.test.labels[test], "mean": list(data.mean), "std": list(data.std)}, path)
    print(f"data: {len(data.train)} pool images, {len(data.test)} test images", flush=True)
    return path


def study(args: argparse.Namespace) -> None:
    from inas_plugins.training.recipe import RECIPES

    recipes = {"paper": RECIPES["paper"], "draft": DRAFT, "lowdata": RECIPES["lowdata"]}
    if args.picked.exists():
        recipes["lowdata"] = json.loads(args.picked.read_text())["recipe"]
    done = {cell_key(result) for result in load_results(args.results)}
    deadline = STARTED + args.deadline
    with tempfile.TemporaryDirectory() as scratch:
        data_path = prepare_data(args.data_dir, Path(scratch))

        def pool() -> ProcessPoolExecutor:
            return ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                       initargs=(str(data_path), recipes, COMPUTE, args.device, args.threads))

        if "tune" in args.stages:
            print("== stage tune", flush=True)
            with pool() as workers:
                run_cells(tune_cells(), workers, args.workers, args.results, done, deadline)
                combined = combined_overrides(load_results(args.results), args.min_gain)
                print(f"combined changes: {combined}", flush=True)
                if len(combined) > 1:  # with one change or none, "combined" is a variant already measured
                    run_cells([dict(cell, variant="combined", knob="-", overrides=combined)
                               for cell in tune_cells() if cell["variant"] == "draft"],
                              workers, args.workers, args.results, done, deadline)
            name, recipes["lowdata"] = pick_lowdata(load_results(args.results), recipes)
            args.picked.write_text(json.dumps({"variant": name, "recipe": recipes["lowdata"], "draft": DRAFT},
                                              indent=1) + "\n")
            print(f"picked lowdata = {name}: {recipes['lowdata']}", flush=True)
        if {"mixing_check", "mixing_networks", "mixing_compute"} & set(args.stages):
            args.mixing_variants = args.mixing_variants or [best_mixing(load_results(args.results))]
            print(f"mixing_check: lowdata against {', '.join(args.mixing_variants)}", flush=True)
        later = [stage for stage in args.stages if stage != "tune"]
        if later:
            cells = {"main": main_cells, "compute": compute_cells, "premature": premature_cells,
                     "ablation": lambda: ablation_cells(recipes["lowdata"]), "timing": timing_cells,
                     "mixing": mixing_cells, "mixing_check": lambda: mixing_check_cells(args.mixing_variants),
                     "mixing_networks": lambda: mixing_network_cells(args.mixing_variants),
                     "mixing_compute": lambda: mixing_compute_cells(args.mixing_variants)}
            print(f"== stages {', '.join(later)}", flush=True)
            with pool() as workers:  # one queue, in stage order, so no worker waits for a stage to drain
                run_cells([cell for stage in later for cell in cells[stage]()], workers, args.workers, args.results,
                          done, deadline)


# ----------------------------------------------------------------------------- the report


def _mean_by(results: list[dict], key: str, **where) -> dict:
    groups: dict = {}
    for result in results:
        if all(result.get(k) == v for k, v in where.items()) and "accuracy" in result:
            groups.setdefault(result[key], []).append(result["accuracy"])
    return {name: statistics.fmean(values) for name, values in groups.items()}


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def _select(results: list[dict], **where) -> list[dict]:
    return [r for r in results if all(r.get(k) == v for k, v in where.items())]


def _accuracies(results: list[dict], **where) -> list[float]:
    return [r["accuracy"] for r in _select(results, **where)]


def report(results: list[dict], picked: dict | None, command: str) -> str:
    from _report import markdown_table

    lines = ["## Training recipe: the paper's against lowdata (CIFAR-10, 200-3,200 labels, whole test set)", "",
             f"Command: `{command}`. Script: `benchmarks/recipe_study.py` (its docstring says what every stage does).", ""]
    devices = sorted({r.get("device", "?") for r in results})
    lines += [f"Cells: {len(results)}, trained on {', '.join(devices)}.", ""]
    if picked is not None:
        lines += [f"`lowdata` as measured (picked by the tune stage: `{picked['variant']}`): "
                  f"`{json.dumps(picked['recipe'], sort_keys=True)}`", ""]
    main = _select(results, stage="main")
    if main:
        lines += ["### Test accuracy, mean ± std over seeds 0-2 (fixed networks, width 16, random labels)", ""]
        rows = []
        for arch, recipe in itertools.product(ARCHS, ("paper", "lowdata")):
            cells = [_cell(_accuracies(main, arch=arch, recipe=recipe, size=size)) for size in SIZES]
            seconds = [r["train_seconds"] + r["eval_seconds"] for r in _select(main, arch=arch, recipe=recipe)]
            rows.append([f"A({arch.replace('x', ',')})", recipe, *cells,
                         f"{statistics.fmean(seconds):.1f}" if seconds else "-"])
        lines += [markdown_table(["network", "recipe", *map(str, SIZES), "seconds per cell (train + test)"], rows), ""]
        gains = []
        for arch in ARCHS:
            row = [f"A({arch.replace('x', ',')})"]
            for size in SIZES:
                paper = {r["seed"]: r["accuracy"] for r in _select(main, arch=arch, recipe="paper", size=size)}
                low = {r["seed"]: r["accuracy"] for r in _select(main, arch=arch, recipe="lowdata", size=size)}
                diffs = [low[s] - paper[s] for s in paper if s in low]
                row.append(f"{statistics.fmean(diffs):+.3f}" if diffs else "-")
            gains.append(row)
        lines += ["Gain of lowdata over paper, paired per seed:", "",
                  markdown_table(["network", *map(str, SIZES)], gains), ""]
    tune = _select(results, stage="tune")
    if tune:
        lines += ["### How lowdata was chosen: one change at a time on the draft (A(2,4), tuning seeds 100-101)", ""]
        variants = list(dict.fromkeys(r["variant"] for r in tune))
        rows = [[variant, *[_cell(_accuracies(tune, variant=variant, size=size)) for size in TUNE_SIZES],
                 f"{statistics.fmean(_accuracies(tune, variant=variant)):.3f}"] for variant in variants]
        rows.sort(key=lambda row: -float(row[-1]))
        lines += [markdown_table(["variant", *map(str, TUNE_SIZES), "mean"], rows), ""]
    ablation = _select(results, stage="ablation")
    if ablation:
        lines += ["### Ablation: lowdata with one component set back to the paper's (A(2,4), seeds 0-2)", ""]
        rows = []
        for variant in dict.fromkeys(r["variant"] for r in ablation):
            row = [variant]
            for size in (800, 3200):
                base = {r["seed"]: r["accuracy"] for r in _select(main, arch="2x4", recipe="lowdata", size=size)}
                ablated = {r["seed"]: r["accuracy"] for r in _select(ablation, variant=variant, size=size)}
                diffs = [ablated[s] - base[s] for s in ablated if s in base]
                row += [_cell(list(ablated.values())), f"{statistics.fmean(diffs):+.3f}" if diffs else "-"]
            rows.append(row)
        lines += [markdown_table(["without", "800", "change at 800", "3200", "change at 3200"], rows), ""]
    # Only seeds the compute stage finished, and the fixed row (the main stage's) on those seeds, so every
    # row sees the same labelled images and initial weights.
    compute = _select(results, stage="compute")
    cells_per_seed = len(compute_cells()) // len(SEEDS)
    seeds = sorted(seed for seed in {r["seed"] for r in compute} if len(_select(compute, seed=seed)) == cells_per_seed)
    compute = [r for r in compute if r["seed"] in seeds]
    if compute:
        fixed = [r for r in _select(main, arch="2x4", recipe="lowdata") if r["seed"] in seeds]
        lines += ["### Compute per round: samples per round growing with the labelled set, same total per run "
                  f"(lowdata, A(2,4), seeds {', '.join(map(str, seeds))})", ""]
        rows = [["fixed (exponent 0)", *[_cell(_accuracies(fixed, size=size)) for size in SIZES], _auc(fixed)]]
        for exponent in (0.5, 1.0):
            where = {"stage": "compute"}
            chosen = [r for r in compute if r["overrides"]["epoch_size_exponent"] == exponent]
            rows.append([f"exponent {exponent} (reference {compute_reference(exponent)} labels)",
                         *[_cell(_accuracies(chosen, size=size)) for size in SIZES], _auc(chosen, **where)])
        lines += [markdown_table(["samples per round", *map(str, SIZES), "mean over sizes"], rows), ""]
    timing = _select(results, stage="timing")
    if timing:
        lines += ["### Seconds per round on 2 CPU cores: today's cpu preset (paper recipe, fixed epoch) against "
                  "lowdata with the cpu preset's growing epoch (A(2,4), seed 0, 1 torch thread, alternating)", "",
                  *timing_table(timing), ""]
    premature = _select(results, stage="premature")
    if premature:
        lines += ["### Premature evaluation under lowdata: does V' after a short run rank networks as a full run "
                  "does? (6 networks per round, 3 sizes x 2 seeds)", "", *premature_table(premature), ""]
    return "\n".join(lines)


def mixing_report(results: list[dict], command: str) -> str:
    """The mixing stages' tables: every variant on the tuning cells, then the pick against lowdata."""
    from _report import markdown_table

    lines = ["## Training recipe: batch mixing and stronger regularisation at 200-3,200 labels (whole test set)", "",
             f"Command: `{command}`. Script: `benchmarks/recipe_study.py` (stages `mixing`, "
             "`mixing_check`, `mixing_networks`, `mixing_compute`; its docstring says what each measures).", "",
             "`lowdata` in these tables is lowdata *without* batch mixing, the recipe each variant changes; "
             "each cell trains A(i, j) of width 16 on a random labelled set with 24 epochs of 4,000 samples "
             "(96,000 per cell, the `mixing_compute` stage excepted) and tests on all 10,000 test images.", ""]
    stages = [("mixing", TUNE_SEEDS, MIXING_SIZES, "tuning seeds 100-101", "2x4"),
              ("mixing_check", SEEDS, SIZES, "the reported seeds 0-2", "2x4")]
    stages += [("mixing_networks", SEEDS, SIZES, "the reported seeds 0-2", arch) for arch in ("1x2", "3x4")]
    stages += [("mixing_compute", SEEDS, SIZES, "the reported seeds 0-2, the cpu preset's growing epoch", "2x4")]
    for stage, seeds, sizes, title, arch in stages:
        cells = _select(results, stage=stage, arch=arch)
        if not cells:
            continue
        sizes = [size for size in sizes if _select(cells, size=size)]
        lines += [f"### Stage `{stage}`, A({arch.replace('x', ',')}): test accuracy, mean ± std over {title}; "
                  "change against lowdata paired per seed", ""]
        rows = []
        for name in [n for n in MIXING_VARIANTS if _select(cells, variant=n)]:
            row = [name]
            for size in sizes:
                base = {r["seed"]: r["accuracy"] for r in _select(cells, variant="lowdata", size=size)}
                mine = {r["seed"]: r["accuracy"] for r in _select(cells, variant=name, size=size)}
                diffs = [mine[s] - base[s] for s in mine if s in base]
                row.append(_cell(list(mine.values())) + ("" if name == "lowdata" or not diffs
                                                         else f" ({statistics.fmean(diffs):+.3f})"))
            seconds = [r["train_seconds"] for r in _select(cells, variant=name)]
            row.append(f"{statistics.fmean(seconds):.0f}")
            rows.append(row)
        lines += [markdown_table(["variant", *map(str, sizes), "train seconds per cell"], rows), ""]
    return "\n".join(lines)


def timing_table(results: list[dict]) -> list[str]:
    """Process CPU seconds (less disturbed by other jobs than wall time) of training and of testing on the
    whole test set, per round, and the ratio lowdata / paper; the machine was shared while this ran."""
    from _report import markdown_table

    rows, per_sample = [], {}
    for size in sorted({r["size"] for r in results}):
        cost = {}
        for recipe in ("paper", "lowdata"):
            cells = _select(results, size=size, recipe=recipe)
            if not cells:
                continue
            train = statistics.fmean(r["train_cpu_seconds"] for r in cells)
            test = statistics.fmean(r["eval_cpu_seconds"] for r in cells)
            per_sample.setdefault(recipe, []).extend(1000 * r["train_cpu_seconds"] / r["samples"] for r in cells)
            cost[recipe] = train + test
            rows.append([size, recipe, len(cells), cells[0]["samples"], f"{train:.0f}", f"{test:.1f}",
                         f"{test / (train + test):.1%}", f"{cells[0]['accuracy']:.3f}",
                         f"{cost[recipe] / cost['paper']:.2f}" if "paper" in cost else "-"])
    table = markdown_table(["labelled", "recipe", "repetitions", "samples trained", "train CPU s", "test CPU s "
                            "(10,000 images)", "test share", "test accuracy", "round / paper's"], rows)
    ratio = statistics.fmean(per_sample["lowdata"]) / statistics.fmean(per_sample["paper"]) \
        if {"paper", "lowdata"} <= set(per_sample) else float("nan")
    return [table, "", f"Training cost per sample, lowdata / paper: {ratio:.2f}. "
            "With the growing epoch a run of the cpu preset trains as many samples as with the fixed one, so its "
            f"training costs about {ratio:.2f}x the paper recipe's; the rounds above 1,000 labels cost more than "
            "before, those below less. The test pass with flip TTA (two views) is the share shown of a round's "
            "final training and test; a round also searches (iNAS) and queries."]


def _auc(results: list[dict], **where) -> str:
    means = [statistics.fmean(values) for size in SIZES if (values := _accuracies(results, size=size, **where))]
    return f"{statistics.fmean(means):.3f}" if len(means) == len(SIZES) else "-"


def premature_table(results: list[dict]) -> list[str]:
    from scipy.stats import kendalltau

    from _report import markdown_table

    rows = []
    for schedule, fraction in PREMATURE:
        taus, agree, regrets = [], 0, []
        rounds = 0
        for size, seed in itertools.product(RANK_SIZES, RANK_SEEDS):
            truth = {r["arch"]: r["accuracy"] for r in _select(results, kind="full", size=size, seed=seed)}
            short = {r["arch"]: r["val_accuracy"] for r in _select(results, kind="premature", size=size, seed=seed,
                                                                     schedule=schedule, fraction=fraction)}
            archs = [a for a in RANK_ARCHS if a in truth and a in short]
            if len(archs) < 3:
                continue
            rounds += 1
            taus.append(kendalltau([short[a] for a in archs], [truth[a] for a in archs]).statistic)
            pick = max(archs, key=lambda a: (short[a], -RANK_ARCHS.index(a)))
            best = max(truth[a] for a in archs)
            agree += truth[pick] == best
            regrets.append(best - truth[pick])
        if rounds:
            rows.append([schedule, f"1/{round(1 / fraction)}", rounds, f"{statistics.fmean(taus):+.2f}",
                         f"{agree}/{rounds}", f"{statistics.fmean(regrets):.3f}"])
    full = [r for r in results if r["kind"] == "full"]
    head = ["schedule", "fraction", "rounds", "Kendall tau (V' after the short run vs test after the full run)",
            "best network picked", "mean test accuracy lost by the pick"]
    note = (f"For reference, V' after the *full* run ranks with Kendall tau "
            f"{_full_tau(full):+.2f} against the test accuracy (V' holds 20% of the labelled set).")
    return [markdown_table(head, rows), "", note]


def _full_tau(full: list[dict]) -> float:
    from scipy.stats import kendalltau

    taus = []
    for size, seed in itertools.product(RANK_SIZES, RANK_SEEDS):
        cells = _select(full, size=size, seed=seed)
        if len(cells) >= 3:
            taus.append(kendalltau([c["val_accuracy"] for c in cells], [c["accuracy"] for c in cells]).statistic)
    return statistics.fmean(taus) if taus else float("nan")


# ----------------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path.home() / "data" / "cifar10",
                        help="CIFAR-10 as an image folder (train/<class>/, test/<class>/)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--results", type=Path, default=Path("recipe_results.jsonl"))
    parser.add_argument("--picked", type=Path, default=Path("recipe_picked.json"),
                        help="where the tune stage writes the chosen lowdata (later stages read it)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=1, help="cells trained side by side, each in its own process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="stop starting cells after this many seconds")
    parser.add_argument("--min-gain", type=float, default=0.005,
                        help="accuracy a tuned change must add (mean over the tuning cells) to enter 'combined'")
    parser.add_argument("--mixing-variants", nargs="+", choices=[n for n in MIXING_VARIANTS if n != "lowdata"],
                        help="what mixing_check compares with lowdata (default: the mixing stage's best)")
    parser.add_argument("--report", action="store_true", help="write the tables from --results into BENCHMARKS.md")
    parser.add_argument("--smoke", action="store_true", help="a tiny training per cell, to check the script runs")
    args = parser.parse_args()
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be at least 1")
    if args.report:
        from _report import write_section

        results = load_results(args.results)
        if not results:
            parser.error(f"{args.results} holds no results")
        command = " ".join(["python", *sys.argv])
        mixing = [r for r in results if r["stage"] in MIXING_STAGES]
        if mixing:  # a section of its own, so a results file of these stages alone leaves the others' tables be
            body = mixing_report(mixing, command)
            print(body)
            write_section("recipe_mixing", body)
        if len(mixing) < len(results):
            picked = json.loads(args.picked.read_text()) if args.picked.exists() else None
            body = report([r for r in results if r["stage"] not in MIXING_STAGES], picked, command)
            print(body)
            write_section("recipe_study", body)
        return
    if not (args.data_dir / "train").is_dir():
        parser.error(f"--data-dir {args.data_dir} has no train/ folder (unpack cifar10-jpeg.tar.gz there)")
    if args.smoke:
        global LIMIT_CELLS
        COMPUTE.update(epochs=1, epoch_size=128)
        LIMIT_CELLS = 4
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    study(args)


if __name__ == "__main__":
    main()
