"""Label efficiency and search cost of active-iNAS against fixed architectures (issue: the CPU CIFAR-10 protocol).

Runs every (configuration, seed) pair of the study as an independent run directory under --runs-dir,
skipping finished runs and resuming interrupted ones, so the study can be run in pieces:

    python benchmarks/label_efficiency.py --data-dir ~/data/cifar10 --only inas-sr fixed1x2-sr --seeds 0
    python benchmarks/label_efficiency.py --data-dir ~/data/cifar10            # everything, 3 seeds
    python benchmarks/label_efficiency.py --report-only                        # tables from what exists

Then it prints and writes into BENCHMARKS.md: per heuristic, accuracy at each labelled size
(mean +- std over seeds), normalised area under the curve and final accuracy; the search / final
training time per round; the query time per heuristic; and a plot of the curves with spreads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.config import resolve_config  # noqa: E402
from inas_plugins.data import load_dataset  # noqa: E402
from inas_plugins.loop import ActiveRun  # noqa: E402
from inas_plugins.plots import plot_report  # noqa: E402
from inas_plugins.report import build_report, format_curve_table, format_report_table  # noqa: E402
from inas_plugins.results import load_results  # noqa: E402

# name -> overrides of the cpu preset. The first four are the paper's main comparison.
STUDY: dict[str, dict] = {
    "inas-sr": dict(heuristic="softmax_response"),
    "fixed1x2-sr": dict(heuristic="softmax_response", arch="1x2"),
    "fixed2x4-sr": dict(heuristic="softmax_response", arch="2x4"),
    "inas-random": dict(heuristic="random"),
    "inas-mc": dict(heuristic="mc_dropout"),
    "inas-coreset": dict(heuristic="coreset"),
    # Cheaper searches, each against inas-sr on the same seeds.
    "inas-sr-inherit": dict(heuristic="softmax_response", inherit_weights=True),
    "inas-sr-halving": dict(heuristic="softmax_response", successive_halving=True),
    "inas-sr-premature8": dict(heuristic="softmax_response", premature_fraction=0.125),
}
PLOT_PATH = Path(__file__).resolve().parent / "label_efficiency.png"


def run_one(name: str, seed: int, data, runs_dir: Path, quiet: bool) -> Path:
    run_dir = runs_dir / f"{name}-seed{seed}"
    config = resolve_config({"dataset": "folder", "seed": seed, **STUDY[name]}, preset="cpu")
    resume = (run_dir / "checkpoint.pt").exists()
    if resume and load_results(run_dir).get("status") == "complete":
        print(f"{run_dir.name}: complete, skipped")
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{run_dir.name}: {'resuming' if resume else 'starting'}")
    began = time.perf_counter()
    ActiveRun(config, data, run_dir, progress=not quiet, log=lambda line: print(f"  {line}")).run(resume=resume)
    print(f"{run_dir.name}: {time.perf_counter() - began:.0f} s")
    return run_dir


def cost_rows(run_dirs: list[Path]) -> list[list[object]]:
    """Per configuration: search / final-training seconds, summed over rounds and seeds, and query seconds."""
    by_name: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        by_name.setdefault(run_dir.name.rsplit("-seed", 1)[0], []).extend(load_results(run_dir)["rounds"])
    rows = []
    for name, rounds in by_name.items():
        search = sum(r["search_seconds"] for r in rounds)
        train = sum(r["train_seconds"] for r in rounds)
        query = sum(r["query_seconds"] for r in rounds)
        queried = max(1, sum(1 for r in rounds if r.get("queried")))
        ratios = [r["search_seconds"] / r["train_seconds"] for r in rounds if r["search_seconds"] > 0 < r["train_seconds"]]
        per_round = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        rows.append([name, len(rounds), f"{train:.0f}", f"{search:.0f}", f"{search / train:.2f}" if search and train else "-",
                     per_round, f"{query / queried:.1f}", f"{query / train:.3f}" if train else "-"])
    return rows


def report(run_dirs: list[Path], wall_seconds: float | None) -> None:
    groups = build_report(run_dirs)
    if not groups:
        print("no runs to report")
        return
    plot_report(groups, PLOT_PATH, title="CIFAR-10, cpu preset: test accuracy vs labels (mean, +-1 std over seeds)")
    config = resolve_config({"dataset": "folder"}, preset="cpu").to_dict()
    sections = [
        "## Label efficiency on CIFAR-10 (cpu preset)",
        "",
        "Command: `python benchmarks/label_efficiency.py --data-dir DIR/cifar10` (DIR: where "
        "`../shared/data/cifar10-jpeg.tar.gz` was unpacked). Runs in `--runs-dir`, one directory each.",
        f"Machine: {machine_line()}." + (f" Wall time of this invocation: {wall_seconds / 60:.1f} min." if wall_seconds else ""),
        "",
        "cpu preset: " + json.dumps({k: config[k] for k in (
            "initial", "query_schedule", "budget", "epochs", "epoch_size", "batch_size", "base_width",
            "max_blocks", "max_stacks", "limit_train", "limit_test", "premature_fraction", "val_fraction")}),
        "",
        "### Summary (final accuracy, normalised AUC; mean +- std over seeds)",
        "",
        format_report_table(groups),
        "",
        "### Test accuracy at each labelled size",
        "",
        format_curve_table(groups),
        "",
        f"![learning curves](benchmarks/{PLOT_PATH.name})",
        "",
        "### Cost: search vs final training, and query time",
        "",
        markdown_table(
            ["configuration", "rounds", "train s", "search s", "search / train", "per round", "query s / round",
             "query / train"],
            cost_rows(run_dirs)),
        "",
        "The paper's search costs 0.75 x the final training per round (3 candidates at a quarter of the schedule).",
    ]
    body = "\n".join(sections)
    print(body)
    write_section("label-efficiency", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path.home() / "data" / "cifar10",
                        help="CIFAR-10 in ImageFolder layout (train/, test/)")
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / "inas-bench-runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(STUDY), help="configurations to run (default: all)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the tables from existing runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()

    began = time.perf_counter()
    if not args.report_only:
        preset = resolve_config({"dataset": "folder"}, preset="cpu")
        data = load_dataset("folder", args.data_dir, seed=preset.data_seed, limit_train=preset.limit_train,
                            limit_test=preset.limit_test, progress=not args.quiet)
        print(data.describe())
        for name in args.only or list(STUDY):
            for seed in args.seeds:
                run_one(name, seed, data, args.runs_dir, args.quiet)
    finished = sorted(path.parent for path in args.runs_dir.glob("*-seed*/results.json"))
    report(finished, None if args.report_only else time.perf_counter() - began)


if __name__ == "__main__":
    main()
