"""baal drop-in: a plain baal ``ModelWrapper`` against ``INASModelWrapper`` (search off, search on).

One baal script, written the way baal's own CIFAR-10 example is: a torchvision ``ImageFolder`` over
the CIFAR-10 JPEG copy with per-sample random transforms, baal's ``ActiveLearningDataset`` (the pool
read with the test transform), baal's ``ActiveLearningExperiment`` with BALD over ``--iterations``
MC-dropout samples. Three configurations, same seed, same initial labels, same starting network
(an A(1, 2) INASResNet, base width 16, dropout 0.5):

* ``plain``:    ``ModelWrapper(patch_module(network), args)`` -- baal as a baal user runs it (the
  network patched for MC dropout, as in baal's CIFAR example, so that BALD has samples to compare);
* ``inas-off``: ``INASModelWrapper(network, args, search=False)`` -- the wrapper with a fixed network;
* ``inas-on``:  ``INASModelWrapper(network, args, space=SearchSpace(max_blocks=3, max_stacks=3))``.

Each configuration runs in its own subprocess (the script re-invokes itself with ``--only NAME
--json-out FILE``), so its peak resident set size is its own. Per active step it records the seconds of
the step (train + test + query + label), the training samples/s (labelled x epochs / seconds of
``train_on_dataset``, search included for ``inas-on``), the test accuracy and the architecture.

    python benchmarks/baal_dropin.py --data-dir ~/data/cifar10     # ~8-10 min on 2 CPU cores (estimated); writes BENCHMARKS.md
    python benchmarks/baal_dropin.py --smoke                       # 1 step on 200 images, to check the script
    python benchmarks/baal_dropin.py --smoke --device cuda

Get the data with ``mkdir -p ~/data && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C ~/data``
(outside the repository). Writes the section "baal-dropin" of BENCHMARKS.md (not with --smoke).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

CONFIGS = ("plain", "inas-off", "inas-on")
SIDE_BY_SIDE = "side-by-side"  # training throughput, plain vs inas-off alternating in one process
SIDE_BY_SIDE_REPS = 3
START_ARCH = (1, 2)
BASE_WIDTH = 16
DROP_RATE = 0.5
SPACE = (3, 3)  # max_blocks, max_stacks of the search
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10 channel statistics
SMOKE = dict(pool=200, test=100, initial=100, query=50, steps=1, epochs=1, batch_size=32, iterations=2)
TARGETS = {"throughput": 0.9, "memory": 1.2, "search_time": 2.0}
LAYOUT = "DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (torchvision ImageFolder layout)"


# -- arguments ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("~/data/cifar10"),
                        help=f"image folder with {LAYOUT}")
    parser.add_argument("--pool", type=int, default=5000, help="stratified subset of the training images (the AL pool)")
    parser.add_argument("--test", type=int, default=1000, help="stratified subset of the test images")
    parser.add_argument("--initial", type=int, default=500, help="random labels before the first step")
    parser.add_argument("--query", type=int, default=500, help="labels per active step")
    parser.add_argument("--steps", type=int, default=3, help="active steps (train + test + query + label)")
    parser.add_argument("--epochs", type=int, default=8, help="TrainingArgs.epoch: epochs per training")
    parser.add_argument("--batch-size", type=int, default=64, help="TrainingArgs.batch_size")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9, weight decay 5e-4)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="MC-dropout samples for BALD and for the averaged test predictions")
    parser.add_argument("--workers", type=int, default=0,
                        help="TrainingArgs.workers (DataLoader processes; 0 on a 2-core machine, and the peak RSS "
                             "is then the whole footprint)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="TrainingArgs.use_cuda: cuda, cpu, or auto (cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets, the initial labels and the networks")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings (1 step on 200 images, 1 epoch, 2 MC samples) to check the script; "
                             "implies --no-write")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--verbose", action="store_true", help="keep baal's log lines and progress bars")
    parser.add_argument("--only", choices=(*CONFIGS, SIDE_BY_SIDE), help=argparse.SUPPRESS)  # one configuration, in this process
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)  # where --only writes its result
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    if parser.parse_known_args(argv)[0].smoke:  # tiny defaults; options given explicitly still win
        parser.set_defaults(**SMOKE, no_write=True)
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.expanduser()
    missing = [sub for sub in ("train", "test") if not (args.data_dir / sub).is_dir()]
    if missing:
        parser.error(f"--data-dir {args.data_dir} has no {' or '.join(s + '/' for s in missing)}: expected {LAYOUT}; "
                     "unpack it with: mkdir -p ~/data && tar xzf ../shared/data/cifar10-jpeg.tar.gz -C ~/data")
    for name in ("pool", "test", "initial", "query", "steps", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.iterations < 2:
        parser.error(f"--iterations must be at least 2 (BALD compares MC-dropout samples), got {args.iterations}")
    if args.workers < 0 or args.threads < 0:
        parser.error("--workers and --threads must be >= 0")
    if args.initial + args.query * args.steps > args.pool:
        parser.error(f"--initial {args.initial} + --steps {args.steps} x --query {args.query} labels exceed "
                     f"the pool (--pool {args.pool})")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or not configs:
        parser.error(f"--configs: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(CONFIGS)}")
    args.configs = [c for c in CONFIGS if c in configs]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    return args


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- one configuration, in this process ----------------------------------------------------------------

def stratified_image_folder(root: Path, size: int, transform: Any, seed: int):
    """``ImageFolder(root)`` restricted to a stratified random ``size`` of its images."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from torchvision import datasets

    dataset = datasets.ImageFolder(str(root), transform=transform)
    if size < len(dataset):
        if size < len(dataset.classes):
            raise SystemExit(f"{root}: a stratified subset needs at least one image per class "
                             f"({len(dataset.classes)}), got {size}")
        keep, _ = train_test_split(np.arange(len(dataset)), train_size=size, stratify=dataset.targets,
                                   random_state=seed)
        dataset.samples = [dataset.samples[i] for i in sorted(keep)]
        dataset.imgs = dataset.samples
        dataset.targets = [label for _, label in dataset.samples]
    return dataset


class StepClock:
    """Times baal's experiment from outside: the adapter's train / evaluate calls and step ends.

    ``ActiveLearningExperiment.start`` runs reset -> train -> evaluate -> predict + rank -> label ->
    ``criterion.should_stop`` each step; the criterion's call marks the end of a step.
    """

    def __init__(self, wrapper: Any, al_dataset: Any, epochs: int, arch_of: Callable[[], str]) -> None:
        self.wrapper, self.al_dataset, self.epochs, self.arch_of = wrapper, al_dataset, epochs, arch_of
        self.steps: list[dict[str, Any]] = []
        self.current: dict[str, Any] = {}
        self.mark = time.perf_counter()

    def attach(self, experiment: Any) -> None:
        adapter = experiment.adapter
        adapter.train = self._timed("train_s", adapter.train, before=self._train_started)
        adapter.evaluate = self._timed("test_s", adapter.evaluate)
        should_stop = experiment.criterion.should_stop

        def timed_should_stop(metrics: dict, uncertainty: Any) -> bool:
            self.step_done(metrics)
            return should_stop(metrics, uncertainty)

        experiment.criterion.should_stop = timed_should_stop

    def _train_started(self) -> None:
        self.current["labelled"] = len(self.al_dataset)

    def _timed(self, key: str, method: Callable, before: Callable[[], None] | None = None) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if before:
                before()
            start = time.perf_counter()
            result = method(*args, **kwargs)
            self.current[key] = time.perf_counter() - start
            return result
        return timed

    def step_done(self, metrics: dict) -> None:
        now = time.perf_counter()
        step = dict(self.current)
        step["step_s"] = now - self.mark
        step["query_s"] = step["step_s"] - step.get("train_s", 0.0) - step.get("test_s", 0.0)
        step["train_samples_per_s"] = step["labelled"] * self.epochs / step["train_s"]
        step["test_accuracy"] = float(metrics["test_accuracy"])
        step["arch"] = self.arch_of()
        step["labelled_after"] = len(self.al_dataset)
        self.steps.append(step)
        print(f"  step {len(self.steps)}: {step['labelled']} labels, arch {step['arch']}, "
              f"{step['step_s']:.1f} s (train {step['train_s']:.1f}, test {step['test_s']:.1f}, "
              f"query {step['query_s']:.1f}), {step['train_samples_per_s']:.0f} samples/s, "
              f"test accuracy {step['test_accuracy']:.3f}", flush=True)
        self.current = {}
        self.mark = time.perf_counter()


def side_by_side_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """``train_on_dataset`` of plain baal and of ``INASModelWrapper(search=False)`` on the same labelled
    set, alternating in one process (order flipped each repetition): the throughput ratio without the
    drift of one process after another. Returns the seconds of each run and the median ratio."""
    import statistics

    import torch
    from baal.bayesian.dropout import patch_module
    from baal.modelwrapper import ModelWrapper, TrainingArgs
    from torch import nn
    from torchvision import transforms

    from inas_plugins import Arch, INASModelWrapper, build_inas_resnet

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train_transform = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.RandomCrop(32, padding=4),
                                          transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    labelled = stratified_image_folder(args.data_dir / "train", min(args.pool, args.initial + args.query),
                                       train_transform, args.seed)
    seconds: dict[str, list[float]] = {"plain": [], "inas-off": []}
    for rep in range(SIDE_BY_SIDE_REPS):
        for name in (("plain", "inas-off") if rep % 2 == 0 else ("inas-off", "plain")):
            torch.manual_seed(args.seed)
            model = build_inas_resnet(Arch(*START_ARCH), num_classes=len(labelled.classes), in_chans=3,
                                      base_width=BASE_WIDTH, drop_rate=DROP_RATE)
            model = patch_module(model) if name == "plain" else model
            train_args = TrainingArgs(optimizer=torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                                                                weight_decay=5e-4),
                                      criterion=nn.CrossEntropyLoss(), batch_size=args.batch_size, epoch=args.epochs,
                                      use_cuda=device == "cuda", workers=args.workers)
            wrapper = (ModelWrapper(model.cuda() if device == "cuda" else model, train_args) if name == "plain"
                       else INASModelWrapper(model, train_args, search=False, seed=args.seed, progress=False))
            began = time.perf_counter()
            wrapper.train_on_dataset(labelled)
            seconds[name].append(time.perf_counter() - began)
    ratio = statistics.median(p / o for p, o in zip(seconds["plain"], seconds["inas-off"]))
    return {"labelled": len(labelled), "seconds": seconds, "ratio": ratio}


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration's active-learning experiment here and return its measurements."""
    if not args.verbose:
        os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported (through baal)
    import logging
    import random

    import numpy as np
    import structlog
    import torch
    from baal.active import ActiveLearningDataset
    from baal.active.heuristics import BALD
    from baal.active.stopping_criteria import LabellingBudgetStoppingCriterion
    from baal.bayesian.dropout import patch_module
    from baal.experiments.base import ActiveLearningExperiment
    from baal.modelwrapper import ModelWrapper, TrainingArgs
    from baal.utils.metrics import Accuracy
    from torch import nn
    from torchvision import transforms

    from inas_plugins import Arch, INASModelWrapper, SearchSpace, build_inas_resnet

    if not args.verbose:
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")  # baal's Loss metric
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    device = resolve_device(args.device)
    use_cuda = device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    train_transform = transforms.Compose([
        transforms.RandomHorizontalFlip(),
        transforms.RandomCrop(32, padding=4),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    test_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train_set = stratified_image_folder(args.data_dir / "train", args.pool, train_transform, args.seed)
    test_set = stratified_image_folder(args.data_dir / "test", args.test, test_transform, args.seed)
    needed = args.initial + args.query * args.steps
    if len(train_set) < needed:
        raise SystemExit(f"{args.data_dir / 'train'} holds {len(train_set)} images, fewer than the {needed} labels "
                         "the run needs (--initial + --steps x --query)")
    al_dataset = ActiveLearningDataset(train_set, pool_specifics={"transform": test_transform},
                                       random_state=args.seed)
    al_dataset.label_randomly(args.initial)
    initial_sha = hashlib.sha1(np.flatnonzero(al_dataset.labelled).tobytes()).hexdigest()[:12]

    torch.manual_seed(args.seed)  # the same starting weights in every configuration
    model = build_inas_resnet(Arch(*START_ARCH), num_classes=len(train_set.classes), in_chans=3,
                              base_width=BASE_WIDTH, drop_rate=DROP_RATE)
    if name == "plain":
        model = patch_module(model)  # baal's MC dropout: the head's dropout stays on at inference
        if use_cuda:
            model = model.cuda()
    args_ = TrainingArgs(
        optimizer=torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4),
        criterion=nn.CrossEntropyLoss(),
        batch_size=args.batch_size,
        epoch=args.epochs,
        use_cuda=use_cuda,
        workers=args.workers,
    )
    if name == "plain":
        wrapper = ModelWrapper(model, args_)
    elif name == "inas-off":
        wrapper = INASModelWrapper(model, args_, search=False, seed=args.seed, progress=args.verbose)
    else:
        wrapper = INASModelWrapper(model, args_, space=SearchSpace(max_blocks=SPACE[0], max_stacks=SPACE[1]),
                                   seed=args.seed, progress=args.verbose)
    wrapper.add_metric("accuracy", lambda: Accuracy())

    experiment = ActiveLearningExperiment(
        trainer=wrapper,
        al_dataset=al_dataset,
        eval_dataset=test_set,
        heuristic=BALD(),
        query_size=args.query,
        iterations=args.iterations,
        criterion=LabellingBudgetStoppingCriterion(al_dataset, labelling_budget=args.query * args.steps),
    )

    def arch_of() -> str:
        arch = getattr(wrapper, "arch", None)
        return f"{arch.blocks}x{arch.stacks}" if arch is not None else f"{START_ARCH[0]}x{START_ARCH[1]}"

    clock = StepClock(wrapper, al_dataset, args.epochs, arch_of)
    clock.attach(experiment)
    if use_cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{name}: {len(train_set)} pool images, {len(test_set)} test images, {args.initial} initial labels "
          f"(sha {initial_sha}), device {device}, {torch.get_num_threads()} torch threads", flush=True)
    began = clock.mark = time.perf_counter()
    experiment.start()
    total = time.perf_counter() - began
    result = {
        "config": name,
        "device": device,
        "threads": torch.get_num_threads(),
        "steps": clock.steps,
        "total_s": total,
        "rss_before_mib": rss_before_kib / 1024,  # high-water mark after imports and data set-up
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "children_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if use_cuda else None,
        "initial_labels_sha": initial_sha,
        "pool_images": len(train_set),
        "test_images": len(test_set),
        "candidates": [
            [f"{c['arch'][0]}x{c['arch'][1]}: {c['val_accuracy']:.2f}" for c in record["candidates"]]
            for record in getattr(wrapper, "search_history", [])
        ],
    }
    return result


# -- the driver: one subprocess per configuration, then the report ------------------------------------------

def run_in_subprocess(name: str, argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--only", name, "--json-out", str(out)]
        completed = subprocess.run(command)
        if completed.returncode != 0 or not out.exists():
            raise SystemExit(f"configuration {name} failed (exit status {completed.returncode}); "
                             f"rerun it alone with: {' '.join(command[:-2])}")
        return json.loads(out.read_text())


def accuracy_noise(p: float, q: float, n: int) -> float:
    """Two standard errors of the difference of two accuracies measured on ``n`` test images each."""
    return 2.0 * math.sqrt((p * (1 - p) + q * (1 - q)) / n)


def aggregate_throughput(result: dict[str, Any], epochs: int) -> float:
    steps = result["steps"]
    return sum(s["labelled"] for s in steps) * epochs / sum(s["train_s"] for s in steps)


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, minutes: float, load: tuple[float, float],
           side: dict[str, Any] | None = None) -> str:
    from _report import command_line, machine_line, markdown_table

    def per_step(result: dict[str, Any], key: str, fmt: str) -> str:
        return " / ".join(format(step[key], fmt) for step in result["steps"])

    cuda = any(r.get("cuda_peak_mib") for r in results.values())
    children = any(r.get("children_peak_rss_mib", 0) > 1 for r in results.values()) and args.workers > 0
    headers = ["config", "labelled per step", "arch per step", "step s per step", "train / test / query s (total)",
               "train samples/s", "test accuracy per step", "peak RSS MiB", "RSS before the loop MiB",
               "RSS growth in the loop MiB"]
    headers += ["DataLoader workers' peak RSS MiB"] if children else []
    headers += ["CUDA peak MiB"] if cuda else []
    rows = []
    for name, r in results.items():
        steps = r["steps"]
        row = [f"`{name}`", " / ".join(str(s["labelled"]) for s in steps), " / ".join(s["arch"] for s in steps),
               per_step(r, "step_s", ".1f"),
               " / ".join(f"{sum(s[k] for s in steps):.1f}" for k in ("train_s", "test_s", "query_s")),
               f"{aggregate_throughput(r, args.epochs):.0f}", per_step(r, "test_accuracy", ".3f"),
               f"{r['peak_rss_mib']:.0f}", f"{r['rss_before_mib']:.0f}",
               f"{r['peak_rss_mib'] - r['rss_before_mib']:.0f}"]
        row += [f"{r['children_peak_rss_mib']:.0f}"] if children else []
        row += [f"{r['cuda_peak_mib']:.0f}" if r.get("cuda_peak_mib") else "-"] if cuda else []
        rows.append(row)

    ratio_rows = []
    plain, off, on = results.get("plain"), results.get("inas-off"), results.get("inas-on")
    if plain and off:
        throughput = aggregate_throughput(off, args.epochs) / aggregate_throughput(plain, args.epochs)
        memory = off["peak_rss_mib"] / plain["peak_rss_mib"]
        p, q = plain["steps"][-1]["test_accuracy"], off["steps"][-1]["test_accuracy"]
        test_images = plain["test_images"]
        noise = accuracy_noise(p, q, test_images)
        mean_diff = sum(o["test_accuracy"] - b["test_accuracy"] for o, b in zip(off["steps"], plain["steps"])) / len(off["steps"])
        if side:
            times = ", ".join(f"{name} {[round(t, 1) for t in ts]} s" for name, ts in side["seconds"].items())
            ratio_rows.append([
                f"search off: training samples/s, `inas-off` / `plain`, side by side in one process "
                f"({side['labelled']} labels x {args.epochs} epochs, alternating, median of {SIDE_BY_SIDE_REPS}: "
                f"{times})", f"**{side['ratio']:.2f}x**", f">= {TARGETS['throughput']}x",
                "yes" if side["ratio"] >= TARGETS["throughput"] else "**no**"])
        ratio_rows += [
            ["search off: training samples/s, `inas-off` / `plain`, over the experiments' steps (one process "
             "after another; for information)", f"{throughput:.2f}x", "-", "-"],
            ["search off: peak RSS, `inas-off` / `plain`", f"**{memory:.2f}x**", f"<= {TARGETS['memory']}x",
             "yes" if memory <= TARGETS["memory"] else "**no**"],
            ["search off: test accuracy at the last step, `inas-off` - `plain`",
             f"**{q - p:+.3f}** (mean over steps {mean_diff:+.3f})",
             f"within noise (+-{noise:.3f}: 2 s.e. of {test_images} test images)",
             "yes" if abs(q - p) <= noise else "**no**"],
            ["step time, `inas-off` / `plain` (for information)",
             f"{off['total_s'] / plain['total_s']:.2f}x", "-", "-"],
        ]
    if off and on:
        per_step_ratio = [a["step_s"] / b["step_s"] for a, b in zip(on["steps"], off["steps"])]
        worst = max(per_step_ratio)
        ratio_rows.append(["search on: step time, `inas-on` / `inas-off`, per step",
                           "**" + " / ".join(f"{x:.2f}x" for x in per_step_ratio) + "**"
                           + f" (total {on['total_s'] / off['total_s']:.2f}x)",
                           f"<= {TARGETS['search_time']}x", "yes" if worst <= TARGETS["search_time"] else "**no**"])
    if plain and off:
        growth = [max(r["peak_rss_mib"] - r["rss_before_mib"], 1.0) for r in (off, plain)]
        ratio_rows.insert(2, ["search off: RSS growth in the loop, `inas-off` / `plain` (for information: the "
                              "peak less the common imports + data set-up)", f"{growth[0] / growth[1]:.2f}x", "-", "-"])
    if plain and on:
        ratio_rows.append(["search on: peak RSS, `inas-on` / `plain` (for information)",
                           f"{on['peak_rss_mib'] / plain['peak_rss_mib']:.2f}x", "-", "-"])

    shas = {r["initial_labels_sha"] for r in results.values()}
    searched = on["candidates"] if on else []
    first = next(iter(results.values()))
    lines = [
        "## baal drop-in: plain ModelWrapper vs INASModelWrapper",
        "",
        f"Command: `{command_line()}` ({minutes:.1f} min)  ",
        f"Machine: {machine_line()}; load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f}",
        "",
        f"One baal script (`benchmarks/baal_dropin.py`): `ImageFolder` over `{args.data_dir}`, a stratified "
        f"{first['pool_images']}-image pool and {first['test_images']} test images, per-sample RandomHorizontalFlip + RandomCrop(32, 4) + "
        f"ToTensor + Normalize (the pool read with the test transform), baal's `ActiveLearningExperiment` with BALD "
        f"over {args.iterations} MC-dropout samples, {args.initial} initial labels "
        f"({'the same' if len(shas) == 1 else '**different!**'} in every configuration), steps: {args.steps} of "
        f"{args.query} labels, epochs per training: {args.epochs}, batch {args.batch_size}, SGD lr {args.lr}, seed {args.seed}, "
        f"{args.workers} DataLoader workers. Network: A{START_ARCH} INASResNet, base width {BASE_WIDTH}, dropout "
        f"{DROP_RATE}. `plain` = `ModelWrapper(patch_module(net), args)` (baal's MC dropout, full network per "
        "sample); `inas-off` = `INASModelWrapper(net, args, search=False)`; `inas-on` = `INASModelWrapper(net, "
        f"args, space=SearchSpace(max_blocks={SPACE[0]}, max_stacks={SPACE[1]}))`. Each configuration runs in its "
        "own process, one after another.",
        "",
        "A step = train + test + query (+ label), as `ActiveLearningExperiment.start` runs it; *train samples/s* "
        "= labelled x epochs / seconds in `train_on_dataset`, summed over steps (for `inas-on` those seconds "
        "include the search); *query* is the rest of the step (predicting the pool, ranking, labelling). Peak "
        "RSS: `ru_maxrss` of the configuration's process at the end (imports, data set and all).",
        "",
        markdown_table(headers, rows),
        "",
        markdown_table(["measure", "measured", "target", "met"], ratio_rows),
    ]
    if searched:
        lines += ["", "`inas-on` candidates (validation accuracy) per step: "
                  + "; ".join(f"step {i + 1}: " + ", ".join(c) for i, c in enumerate(searched))]
    lines += [
        "",
        "Noise: one seed; the accuracy band is only the test-sampling error, not seed-to-seed variation, and "
        "timings on a shared machine move with its load (the configurations run one after another, not "
        "interleaved).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.only:
        result = side_by_side_throughput(args) if args.only == SIDE_BY_SIDE else run_config(args.only, args)
        if args.json_out:
            args.json_out.write_text(json.dumps(result, indent=1))
        else:
            print(json.dumps(result, indent=1))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import write_section

    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    results = {name: run_in_subprocess(name, raw) for name in args.configs}
    side = run_in_subprocess(SIDE_BY_SIDE, raw) if {"plain", "inas-off"} <= set(args.configs) else None
    minutes = (time.perf_counter() - began) / 60
    body = report(results, args, minutes, (load_before, os.getloadavg()[0]), side)
    print(body)
    if not args.no_write:
        write_section("baal-dropin", body)


if __name__ == "__main__":
    main()
