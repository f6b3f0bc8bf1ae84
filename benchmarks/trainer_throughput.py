"""Trainer throughput on CPU against a bare PyTorch loop, and samples/s per architecture.

The bare loop is the floor any trainer has to pay: the same network, SGD with the same settings and
batch size, on float tensors built (and normalised) before timing, sliced in order. ``Trainer.fit``
additionally gathers random uint8 batches, converts and normalises them, keeps the lr schedule and
the loss. Its overhead is ``1 - ratio``; the target is ratio >= 0.9. Augmentation is left out of the
ratio (the bare loop has none) and reported as its own column.

Bare and trainer runs alternate (the order flips every repetition) and the ratio is the median of
the per-repetition ratios, so load from other processes hits both sides alike.

    python benchmarks/trainer_throughput.py            # writes section "trainer-throughput" of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.device import autocast, memory_format, resolve_device  # noqa: E402
from inas_plugins.models import build_inas_resnet  # noqa: E402
from inas_plugins.space import Arch  # noqa: E402
from inas_plugins.training import Trainer, TrainRecipe  # noqa: E402

BATCH = 128
IMAGES = 2048
CLASSES = 10
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
RATIO_CONFIGS = [(Arch(1, 2), 16), (Arch(1, 2), 64), (Arch(2, 4), 16), (Arch(2, 4), 64)]
RATE_ARCHS = [Arch(1, 1), Arch(1, 2), Arch(2, 2), Arch(2, 4), Arch(3, 5)]
RATE_WIDTHS = [16, 32, 64]
TARGET = 0.9


class Timing:
    """Wall-clock and process CPU seconds of one run of ``samples`` samples."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.wall = self.cpu = 0.0

    def __enter__(self) -> "Timing":
        _synchronize()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        _synchronize()  # CUDA kernels run asynchronously: time them to completion
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    @property
    def rate(self) -> float:
        return self.samples / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.samples / self.cpu


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random 32x32 RGB uint8 images and labels, plus the bare loop's pre-built normalised floats."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (IMAGES, 3, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (IMAGES,), generator=generator)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    floats = ((images.float() / 255.0 - mean) / std).contiguous()
    return images, labels, floats


def new_model(arch: Arch, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_inas_resnet(arch, num_classes=CLASSES, base_width=width)


DEVICE = torch.device("cpu")


def _synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def bare_loop(model: torch.nn.Module, floats: torch.Tensor, labels: torch.Tensor, steps: int,
              recipe: TrainRecipe) -> Timing:
    """The plainest correct training loop, on pre-built floats on the device, sliced in order; on
    CUDA in the same numeric mode as the Trainer (autocast, channels_last), so the ratio compares loops."""
    model = model.to(DEVICE, memory_format=memory_format(DEVICE))
    floats = floats.to(DEVICE).contiguous(memory_format=memory_format(DEVICE))
    labels = labels.to(DEVICE)
    with Timing(steps * BATCH) as timing:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        for step in range(steps):
            start = (step * BATCH) % (IMAGES - BATCH + 1)
            with autocast(DEVICE):
                loss = F.cross_entropy(model(floats[start:start + BATCH]), labels[start:start + BATCH])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return timing


def trainer_fit(trainer: Trainer, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                steps: int) -> Timing:
    """``Trainer.fit`` for ``steps`` steps, timed around the whole call (set-up included)."""
    recipe = TrainRecipe(epochs=1, epoch_size=steps * BATCH, batch_size=BATCH)
    with Timing(steps * BATCH) as timing:
        trainer.fit(model, images, labels, recipe=recipe)
    return timing


def steps_for(seconds_per_step: float, target_seconds: float) -> int:
    return max(3, min(60, round(target_seconds / max(seconds_per_step, 1e-6))))


def measure_ratio(arch: Arch, width: int, data, reps: int, target_seconds: float) -> list[object]:
    images, labels, floats = data
    recipe = TrainRecipe(batch_size=BATCH)
    plain = Trainer(recipe, mean=MEAN, std=STD, augment=False, device=DEVICE, progress=False)
    augmented = Trainer(recipe, mean=MEAN, std=STD, augment=True, device=DEVICE, progress=False)
    models = {name: new_model(arch, width) for name in ("bare", "trainer", "augmented")}
    runs: dict[str, Callable[[int], Timing]] = {
        "bare": lambda steps: bare_loop(models["bare"], floats, labels, steps, recipe),
        "trainer": lambda steps: trainer_fit(plain, models["trainer"], images, labels, steps),
        "augmented": lambda steps: trainer_fit(augmented, models["augmented"], images, labels, steps),
    }
    warm_cpu_rate = min(run(2).cpu_rate for run in runs.values())  # warm-up, and a step-time estimate
    steps = steps_for(BATCH / warm_cpu_rate, target_seconds)
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for rep in range(reps):
        for name in (list(runs) if rep % 2 == 0 else list(reversed(runs))):
            timings[name].append(runs[name](steps))

    def median_ratio(name: str, cpu: bool = False) -> float:
        rate: Callable[[Timing], float] = (lambda t: t.cpu_rate) if cpu else (lambda t: t.rate)
        return statistics.median(rate(t) / rate(b) for t, b in zip(timings[name], timings["bare"]))

    def median_rate(name: str) -> float:
        return statistics.median(t.rate for t in timings[name])

    print(f"{arch} w{width} x{steps} steps: " + ", ".join(
        f"{name} {[round(t.rate) for t in runs_]} cpu {[round(t.cpu_rate) for t in runs_]}" for name, runs_ in timings.items()), flush=True)
    ratio = median_ratio("trainer")
    return [f"A({arch.blocks},{arch.stacks})", width, steps, f"{median_rate('bare'):.0f}",
            f"{median_rate('trainer'):.0f}", f"**{ratio:.2f}**" + ("" if ratio >= TARGET else " (below 0.9)"),
            f"{median_ratio('trainer', cpu=True):.2f}", f"{median_rate('augmented'):.0f}",
            f"{median_ratio('augmented'):.2f}"]


def measure_rates(data, reps: int, target_seconds: float) -> list[list[object]]:
    images, labels, _ = data
    trainer = Trainer(TrainRecipe(batch_size=BATCH), mean=MEAN, std=STD, augment=True, device=DEVICE, progress=False)
    rows = []
    for arch in RATE_ARCHS:
        row: list[object] = [f"A({arch.blocks},{arch.stacks})"]
        for width in RATE_WIDTHS:
            model = new_model(arch, width)
            steps = steps_for(BATCH / trainer_fit(trainer, model, images, labels, 2).cpu_rate, target_seconds)
            rate = statistics.median(trainer_fit(trainer, model, images, labels, steps).rate for _ in range(reps))
            print(f"{arch} w{width}: {rate:.0f} samples/s", flush=True)
            row.append(f"{rate:.0f}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="alternating repetitions per ratio configuration")
    parser.add_argument("--seconds", type=float, default=1.5, help="target CPU seconds per timed run")
    parser.add_argument("--rate-reps", type=int, default=2, help="repetitions per samples/s cell")
    parser.add_argument("--only-ratio", action="store_true", help="skip the samples/s table (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    parser.add_argument("--device", default="cpu", help="cpu (the BENCHMARKS.md table), cuda or auto")
    args = parser.parse_args()
    global DEVICE
    try:
        DEVICE = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if DEVICE.type != "cpu":
        args.no_write = True  # the written table is the CPU one; GPU numbers are printed

    began = time.perf_counter()
    data = make_data()
    ratio_rows = [measure_ratio(arch, width, data, args.reps, args.seconds) for arch, width in RATIO_CONFIGS]
    rate_rows = [] if args.only_ratio else measure_rates(data, args.rate_reps, args.seconds)
    minutes = (time.perf_counter() - began) / 60

    body = "\n\n".join([
        f"## Trainer throughput ({DEVICE.type.upper()})",
        f"Command: `{command_line()}` ({minutes:.1f} min). Machine: {machine_line()}.",
        f"Batch {BATCH}, random 32x32 RGB images, 10 classes, SGD (momentum 0.9, weight decay 5e-4). "
        "*bare* = the plainest loop on pre-built normalised float tensors; *Trainer* = `Trainer.fit` timed "
        "around the whole call (random uint8 batch gather, conversion, normalisation, lr schedule, loss "
        "bookkeeping, set-up). Runs alternate bare/Trainer/Trainer+augmentation with the order flipped each "
        f"repetition; a ratio is the median of {args.reps} per-repetition ratios of wall-clock samples/s. The "
        "CPU-time column is the same ratio from process CPU time, which other jobs on the machine disturb "
        f"less. Target: ratio >= {TARGET}.",
        markdown_table(["network", "base width", "steps/run", "bare samples/s", "Trainer samples/s",
                        "ratio Trainer/bare", "ratio (CPU time)", "Trainer + augmentation samples/s",
                        "ratio with augmentation"], ratio_rows),
        f"Samples/s of `Trainer.fit` with augmentation (flips, shifts, rotations), median of {args.rate_reps} runs:",
        markdown_table(["network"] + [f"base width {w}" for w in RATE_WIDTHS], rate_rows),
        "Noise: the machine's 2 cores were shared with other jobs while this ran, so absolute samples/s "
        "can vary by a factor of 2 or more between runs and cells; the ratios, measured side by side, are "
        "the meaningful numbers.",
    ])
    print(body)
    if not (args.no_write or args.only_ratio):
        write_section("trainer-throughput", body)


if __name__ == "__main__":
    main()
