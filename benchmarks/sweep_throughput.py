"""Sweep throughput: the same runs one after another (all threads each) vs as a sweep of 1-thread runs.

    python benchmarks/sweep_throughput.py                                  # 4 digits runs, quick preset
    python benchmarks/sweep_throughput.py --runs 2 -- --budget 150         # smaller: options after -- go to inas run
    python benchmarks/sweep_throughput.py --runs 4 -- --dataset folder --data-dir ~/data/cifar10 --preset cpu

Both sides run the same ``inas run`` commands (seeds 0..N-1) as processes: serially with
``--threads`` = the CPUs of this process, then as ``inas sweep``'s Ray tasks with one CPU (one torch
thread) each. Reported: wall time and runs per hour of each, their ratio, and the start-up time of
the local Ray instance (measured apart, and counted in the sweep's time). Then an estimate of the
paper's full study in GPU-hours and of its wall time on N GPUs, with and without parallel
candidates, from the protocol's sample counts and measured per-sample throughput.

Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.config import PRESETS  # noqa: E402
from inas_plugins.ray_cluster import connect, local_cpus  # noqa: E402
from inas_plugins.results import load_results  # noqa: E402
from inas_plugins.sweep import SweepRun, execute, prepare  # noqa: E402

# Measured: `Trainer.fit` samples/s with augmentation at the paper's base width 64 on this machine's
# 2 CPU cores (BENCHMARKS.md, "Trainer throughput (CPU)"): the relative cost of each network.
CPU_SAMPLES_PER_S_WIDTH64 = {"A(1,2)": 417, "A(2,4)": 129}
# The paper's own measurement (section 4.2): one CIFAR-10 active round of active-iNAS, 1.75 x 200 epochs of
# 50,000 samples, "less than 2 GPU hours on average" on a Titan Xp -- at least this many samples/s.
PAPER_ROUND_SAMPLES = 1.75 * 200 * 50_000
PAPER_GPU_SAMPLES_PER_S = PAPER_ROUND_SAMPLES / (2 * 3600)


def run_command(options: list[str], seed: int, out: Path, threads: int) -> list[str]:
    return [sys.executable, "-m", "inas_cli.main", "run", *options, "--seed", str(seed), "--out", str(out),
            "--threads", str(threads), "--quiet"]


def serial(options: list[str], seeds: list[int], work: Path, threads: int) -> float:
    began = time.perf_counter()
    for seed in seeds:
        out = work / f"seed={seed}"
        subprocess.run(run_command(options, seed, out, threads), check=True, stdout=subprocess.DEVNULL)
        print(f"  serial seed {seed}: {time.perf_counter() - began:.0f} s so far")
    return time.perf_counter() - began


def swept(options: list[str], seeds: list[int], work: Path) -> tuple[float, float]:
    """(Ray start-up seconds, sweep seconds including the start-up)."""
    import ray

    began = time.perf_counter()
    connect(None)
    startup = time.perf_counter() - began
    try:
        runs = [SweepRun(f"seed={seed}", (*options, "--seed", str(seed))) for seed in seeds]
        prepare(work, runs, {"seeds": seeds})
        summary = execute(work, runs, cpus_per_run=1, echo=lambda line: print("  " + line))
        if summary.failed:
            raise SystemExit(f"sweep runs failed: {summary.failed}")
    finally:
        ray.shutdown()
    return startup, time.perf_counter() - began


def final_accuracies(directory: Path, seeds: list[int]) -> list[float]:
    return [load_results(directory / f"seed={seed}")["rounds"][-1]["test_accuracy"] for seed in seeds]


# --------------------------------------------------------------------------- the paper's full study


def paper_rounds() -> list[int]:
    """Labelled sizes of the paper protocol's rounds: k = 2000, +2000 to 10,000, then +5000 to 50,000."""
    preset = PRESETS["paper"]
    sizes, labelled = [], preset["initial"]
    while True:
        sizes.append(labelled)
        if labelled >= preset["budget"]:
            return sizes
        batch = [b for threshold, b in preset["query_schedule"] if labelled >= threshold][-1]
        labelled = min(preset["budget"], labelled + batch)


def study_estimate(gpu_samples_per_s: float, seeds: int) -> tuple[list[list[object]], list[list[object]], list[str]]:
    """GPU-hours per kind of run and of the whole study, and wall times on N GPUs."""
    rounds = len(paper_rounds())
    per_round = PRESETS["paper"]["train"]["epochs"] * PRESETS["paper"]["train"]["epoch_size"]
    relative = {arch: CPU_SAMPLES_PER_S_WIDTH64["A(2,4)"] / rate for arch, rate in CPU_SAMPLES_PER_S_WIDTH64.items()}
    datasets, queries = 3, 4  # CIFAR-10, CIFAR-100, SVHN x softmax response, MC-dropout, coreset, random (passive)
    # iNAS: final training + 3 candidates at 1/4 of the schedule, networks assumed to cost about A(2,4) on average.
    kinds = {
        "active-iNAS": (1.75, 1.0, 1.25),
        "fixed A(2,4) (ResNet-18)": (1.0, relative["A(2,4)"], 1.0),
        "fixed A(1,2)": (1.0, relative["A(1,2)"], 1.0),
    }
    rows, total, longest, longest_parallel = [], 0.0, 0.0, 0.0
    for kind, (factor, cost, parallel_factor) in kinds.items():
        hours = rounds * per_round * factor * cost / gpu_samples_per_s / 3600
        runs = datasets * queries * seeds
        total += hours * runs
        longest = max(longest, hours)
        longest_parallel = max(longest_parallel, hours * parallel_factor / factor)
        rows.append([kind, runs, f"{rounds * per_round * factor / 1e6:.0f} M", f"{cost:.2f}", f"{hours:.1f}",
                     f"{hours * runs:,.0f}"])
    runs_total = datasets * queries * seeds * len(kinds)
    walls = []
    for gpus in (1, 8, 32, runs_total, 3 * runs_total):
        plain = max(total / gpus, longest)
        parallel = max(total / gpus, longest_parallel)
        walls.append([gpus, f"{plain:,.1f} h ({plain / 24:,.1f} d)", f"{parallel:,.1f} h ({parallel / 24:,.1f} d)"])
    notes = [f"{runs_total} runs, {total:,.0f} GPU-hours in all at {gpus_text(gpu_samples_per_s)}."]
    return rows, walls, notes


def gpus_text(rate: float) -> str:
    return f"{rate:,.0f} samples/s for A(2,4) on one GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs on each side (seeds 0..N-1)")
    parser.add_argument("--serial-threads", type=int, default=local_cpus(), help="torch threads of each serial run")
    parser.add_argument("--work", type=Path, help="where the runs go (default: a temporary directory)")
    parser.add_argument("--gpu-samples-per-s", type=float, default=PAPER_GPU_SAMPLES_PER_S,
                        help="A(2,4) training samples/s on one GPU for the study estimate (default: the paper's "
                             "Titan Xp figure, a lower bound; benchmarks/gpu_check.sh measures a modern GPU)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration in the study estimate")
    args, options = parser.parse_known_args()
    options = [option for option in options if option != "--"] or ["--dataset", "digits", "--preset", "quick"]
    if not any(option == "--dataset" for option in options):
        options = ["--dataset", "digits", *options]
    seeds = list(range(args.runs))
    work = args.work or Path(tempfile.mkdtemp(prefix="sweep-throughput-"))
    print(f"runs: inas run {' '.join(options)} --seed 0..{args.runs - 1}; work in {work}")

    began = time.perf_counter()
    print(f"serial, {args.serial_threads} threads each:")
    serial_s = serial(options, seeds, work / "serial", args.serial_threads)
    print("sweep, 1 CPU (thread) per run:")
    startup_s, sweep_s = swept(options, seeds, work / "sweep")
    total_min = (time.perf_counter() - began) / 60

    serial_acc, sweep_acc = final_accuracies(work / "serial", seeds), final_accuracies(work / "sweep", seeds)
    rows = [
        [f"serial, {args.serial_threads} threads per run", args.runs, f"{serial_s:.0f}", f"{args.runs / serial_s * 3600:.1f}",
         "-", f"{sum(serial_acc) / len(serial_acc):.3f}"],
        [f"sweep, 1 thread per run, {local_cpus()} at once", args.runs, f"{sweep_s:.0f}",
         f"{args.runs / sweep_s * 3600:.1f}", f"{startup_s:.1f}", f"{sum(sweep_acc) / len(sweep_acc):.3f}"],
    ]
    estimate, walls, notes = study_estimate(args.gpu_samples_per_s, args.seeds)
    body = "\n".join([
        "## Sweep throughput and the cost of the paper's study",
        "",
        f"Command: `{command_line()}` ({total_min:.1f} min). Machine: {machine_line()}, {local_cpus()} CPUs for this process.",
        "",
        f"The same {args.runs} runs (`inas run {' '.join(options)} --seed 0..{args.runs - 1}`, each a process) one after "
        "another with all threads each, then as `inas sweep` tasks of one thread each (Ray start-up included in its time).",
        "",
        markdown_table(["how", "runs", "wall s", "runs / hour", "Ray start-up s", "mean final accuracy"], rows),
        "",
        f"**Throughput ratio sweep / serial: {serial_s / sweep_s:.2f}x** (without the Ray start-up: "
        f"{serial_s / max(1e-9, sweep_s - startup_s):.2f}x). Final accuracies differ a little between the sides: a "
        "different number of torch threads changes float summation order, hence the weights.",
        "",
        "### The paper's full study, estimated",
        "",
        f"Protocol (`--preset paper`): {len(paper_rounds())} rounds (labelled {paper_rounds()[0]:,} to "
        f"{paper_rounds()[-1]:,}), each training {PRESETS['paper']['train']['epochs']} epochs of "
        f"{PRESETS['paper']['train']['epoch_size']:,} samples; active-iNAS adds 3 candidates at 1/4 of that (1.75x). "
        "Study: CIFAR-10, CIFAR-100, SVHN x softmax response, MC-dropout, coreset and random (the passive reference "
        f"of AUC-GAIN) x active-iNAS, A(2,4), A(1,2) x {args.seeds} seeds. GPU throughput: {gpus_text(args.gpu_samples_per_s)}"
        + (" -- the paper's own figure (a CIFAR-10 round of active-iNAS in under 2 Titan Xp GPU-hours), so a lower "
           "bound on speed and the GPU-hours an upper bound; a modern GPU with bfloat16 autocast is several times faster, "
           "rerun with --gpu-samples-per-s from a measurement" if args.gpu_samples_per_s == PAPER_GPU_SAMPLES_PER_S else "")
        + ". Other networks scale by their measured CPU cost per sample at width 64 (Trainer throughput: A(1,2) "
        f"{CPU_SAMPLES_PER_S_WIDTH64['A(1,2)']} vs A(2,4) {CPU_SAMPLES_PER_S_WIDTH64['A(2,4)']} samples/s); iNAS's "
        "networks are taken to cost about A(2,4) on average (they start at A(1,1) and grow). Evaluation and queries "
        "are left out (a few % of training).",
        "",
        markdown_table(["runs of", "runs", "samples trained per run", "cost per sample vs A(2,4)", "GPU-hours per run",
                        "GPU-hours"], estimate),
        "",
        *notes,
        "",
        "Wall time on N GPUs, at least max(GPU-hours / N, the longest run) with one run per GPU at a time. With "
        "`--parallel-candidates` an iNAS round's three candidates train at once, each on its own GPU, so a round "
        "takes 1.25 instead of 1.75 trainings: the same GPU-hours, a shorter longest run (it pays once there are "
        "GPUs to spare: up to 3 per iNAS run).",
        "",
        markdown_table(["GPUs", "wall time", "wall time with parallel candidates"], walls),
    ])
    print(body)
    write_section("sweep-throughput", body)


if __name__ == "__main__":
    main()
