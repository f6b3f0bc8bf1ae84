"""How long the folder loader takes to decode an ImageFolder tree into uint8 tensors.

Compares, in the same run, ``load_dataset("folder", DIR)`` with the usual alternative: torchvision's
``ImageFolder`` decoding every image through PIL and stacking them. Wall and CPU seconds are shown
because the benchmark machine may be shared.

    python benchmarks/data_loading.py --data-dir /work/data/cifar10
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.data import load_dataset  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def pil_imagefolder(data_dir: Path) -> int:
    from torchvision.datasets import ImageFolder

    count = 0
    for split in ("train", "test"):
        folder = ImageFolder(str(data_dir / split))
        images = [torch.from_numpy(np.array(image)).permute(2, 0, 1) for image, _ in folder]
        count += len(torch.stack(images))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="ImageFolder tree with train/ and test/")
    parser.add_argument("--dry-run", action="store_true", help="print the table without writing BENCHMARKS.md")
    args = parser.parse_args()

    dataset, wall, cpu = timed(lambda: load_dataset("folder", args.data_dir, progress=False))
    images = len(dataset.train) + len(dataset.test)
    rows = [["inas_plugins folder loader (torchvision.io decode)", images, f"{wall:.1f}", f"{cpu:.1f}",
             f"{images / wall:,.0f}"]]
    count, wall_pil, cpu_pil = timed(lambda: pil_imagefolder(args.data_dir))
    rows.append(["torchvision ImageFolder + PIL per image", count, f"{wall_pil:.1f}", f"{cpu_pil:.1f}",
                 f"{count / wall_pil:,.0f}"])
    table = markdown_table(["loader", "images", "wall s", "CPU s", "images/s (wall)"], rows)
    body = (f"## Loading an image folder\n\nData: {dataset.describe()}.\n\n{table}\n\n"
            f"Speed-up (wall): {wall_pil / wall:.1f}x. Machine: {machine_line()}.\n\n`{command_line()}`\n")
    print(body)
    if not args.dry_run:
        write_section("data_loading", body)


if __name__ == "__main__":
    main()
