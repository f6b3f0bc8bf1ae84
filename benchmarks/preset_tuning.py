"""How the cpu preset was chosen: passive learning curves of the two fixed baselines, A(1,2) and A(2,4).

The label-efficiency study needs a preset in which the small network beats the big one early and the
big one wins later (the paper's premise), with one run near 10 minutes on 2 cores. This script tunes
only what the issue allows (base width, SGD per round, the labelled range) and looks only at the two
*fixed* networks trained on *random* labelled subsets, so the choice cannot favour iNAS or a query
function. Every training is appended to a JSON-lines cache, so the sweep can be stopped and resumed.

    python benchmarks/preset_tuning.py --data-dir DIR/cifar10 --recipes 16:12 16:24 8:24 --sizes 100 400 1600 4000

A recipe ``W:E`` is base width W and E epochs of the cpu preset's epoch size (4,000 samples).
Writes section "preset-tuning" of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.config import resolve_config  # noqa: E402
from inas_plugins.data import load_dataset  # noqa: E402
from inas_plugins.models import build_inas_resnet  # noqa: E402
from inas_plugins.space import Arch  # noqa: E402
from inas_plugins.training import Trainer, TrainRecipe  # noqa: E402

ARCHS = (Arch(1, 2), Arch(2, 4))
TIE = 0.01  # accuracy gap below which neither net "wins": about the test-set noise with 2,000 images


def parse_recipe(text: str) -> tuple[int, int]:
    """``"16:24"`` -> (16, 24); anything else is one clear argparse error."""
    parts = text.split(":")
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"recipe {text!r} is not WIDTH:EPOCHS with positive integers, e.g. 16:24")
    return int(parts[0]), int(parts[1])


def train_once(data, arch: Arch, width: int, epochs: int, size: int, seed: int, epoch_size: int) -> dict:
    """Train ``arch`` on a random labelled subset of ``size`` images and return its test accuracy."""
    subset = np.random.default_rng(seed).permutation(len(data.train))[:size]
    images, labels = data.train.images[subset], data.train.labels[subset]
    recipe = TrainRecipe(epochs=epochs, epoch_size=epoch_size)
    trainer = Trainer(recipe, mean=data.mean, std=data.std, flips=data.flips_valid,
                      seed=seed, progress=False)
    model = build_inas_resnet(arch, num_classes=data.num_classes, in_chans=data.channels, base_width=width)
    began = time.perf_counter()
    trainer.fit(model, images, labels)
    seconds = time.perf_counter() - began
    accuracy = trainer.evaluate(model, data.test.images, data.test.labels)
    return dict(arch=str(arch), width=width, epochs=epochs, epoch_size=epoch_size, size=size, seed=seed,
                accuracy=accuracy, train_seconds=seconds)


def load_cache(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def key(entry: dict) -> tuple:
    return entry["arch"], entry["width"], entry["epochs"], entry["epoch_size"], entry["size"], entry["seed"]


def report(entries: list[dict], commands: list[str]) -> None:
    recipes = sorted({(e["width"], e["epochs"], e["epoch_size"]) for e in entries})
    sizes = sorted({e["size"] for e in entries})
    rows = []
    for width, epochs, epoch_size in recipes:
        mine = [e for e in entries if (e["width"], e["epochs"], e["epoch_size"]) == (width, epochs, epoch_size)]
        cells = []
        for size in sizes:
            accs = {}
            for arch in ARCHS:
                found = [e["accuracy"] for e in mine if e["size"] == size and e["arch"] == str(arch)]
                accs[arch] = float(np.mean(found)) if found else None
            small, big = accs[ARCHS[0]], accs[ARCHS[1]]
            if small is None or big is None:
                cells.append("-")
            else:
                winner = "tie" if abs(small - big) < TIE else ("**small**" if small > big else "big")
                cells.append(f"{small:.3f} / {big:.3f} ({winner})")
        seconds = {str(a): np.mean([e["train_seconds"] for e in mine if e["arch"] == str(a)] or [np.nan]) for a in ARCHS}
        seeds = len({e["seed"] for e in mine})
        rows.append([width, f"{epochs} x {epoch_size}", seeds, *cells,
                     f"{seconds[str(ARCHS[0])]:.0f} / {seconds[str(ARCHS[1])]:.0f}"])
    headers = ["base width", "SGD samples (epochs x size)", "seeds", *[f"{s} labels" for s in sizes],
               "train s, A(1,2) / A(2,4)"]
    body = "\n".join([
        "## How the cpu preset was chosen (passive curves of the fixed baselines)",
        "",
        "Commands (each training is cached, so reruns only add what is missing):",
        "",
        *[f"    {command}" for command in commands],
        "",
        f"Machine: {machine_line()}.",
        "",
        "Each cell: test accuracy of A(1,2) / A(2,4), mean over seeds, trained on a random labelled subset "
        "of the 10,000-image cpu pool and tested on the 2,000-image cpu test set; the winner in brackets "
        f"(a tie when they are less than {TIE:.2f} apart). "
        "Only fixed networks and random subsets are looked at, so this choice cannot favour iNAS or a query function.",
        "",
        markdown_table(headers, rows),
    ])
    print(body)
    write_section("preset-tuning", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path.home() / "data" / "cifar10")
    parser.add_argument("--cache", type=Path, default=Path.home() / "inas-bench-runs" / "preset-tuning.jsonl")
    parser.add_argument("--recipes", nargs="+", type=parse_recipe, default=[(16, 12)], help="W:E = base width : epochs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600, 4000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    cache = load_cache(args.cache)
    commands_file = args.cache.with_suffix(".commands")
    if not args.report_only:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        preset = resolve_config({"dataset": "folder"}, preset="cpu")
        data = load_dataset("folder", args.data_dir, seed=preset.data_seed, limit_train=preset.limit_train,
                            limit_test=preset.limit_test, progress=False)
        done = {key(e) for e in cache}
        for width, epochs in args.recipes:
            for seed in args.seeds:
                for size in args.sizes:
                    for arch in ARCHS:
                        wanted = (str(arch), width, epochs, preset.train.epoch_size, size, seed)
                        if wanted in done:
                            continue
                        entry = train_once(data, arch, width, epochs, size, seed, preset.train.epoch_size)
                        print(json.dumps(entry), flush=True)
                        with args.cache.open("a") as handle:
                            handle.write(json.dumps(entry) + "\n")
                        cache.append(entry)
        with commands_file.open("a") as handle:
            handle.write(f"{command_line()}  # {(time.perf_counter() - began) / 60:.0f} min\n")
    commands = commands_file.read_text().splitlines() if commands_file.exists() else []
    report(cache, commands)


if __name__ == "__main__":
    main()
