"""Label efficiency and search cost of active-iNAS against fixed architectures (issue: the CPU CIFAR-10 protocol).

Runs every (configuration, seed) pair of the study as an independent run directory under --runs-dir,
as the tasks of one sweep (``inas_plugins.sweep``: each run an ``inas run`` process, on a local Ray or
a cluster with --address), skipping finished runs and resuming interrupted ones, so the study can be
run in pieces:

    python benchmarks/label_efficiency.py --data-dir ~/data/cifar10 --only inas-sr fixed1x2-sr --seeds 0
    python benchmarks/label_efficiency.py --data-dir ~/data/cifar10            # everything, 3 seeds
    python benchmarks/label_efficiency.py --report-only --data-dir ~/data/cifar10   # tables from what exists

(--report-only reads the data only for the class-balance table, and leaves that table out without it.)

Then it prints and writes into BENCHMARKS.md: per heuristic, accuracy at each labelled size
(mean +- std over seeds), normalised area under the curve and final accuracy; the search / final
training time per round; the query time per heuristic; and a plot of the curves with spreads.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402

from inas_plugins.checkpoint import load_checkpoint  # noqa: E402
from inas_plugins.config import RunConfig, resolve_config  # noqa: E402
from inas_plugins.data import DatasetError, load_dataset  # noqa: E402
from inas_plugins.ray_cluster import connect, local_cpus  # noqa: E402
from inas_plugins.plots import plot_report  # noqa: E402
from inas_plugins.report import (build_report, format_curve_table, format_report_table, normalised_auc,  # noqa: E402
                                 settings_of)
from inas_plugins.results import load_results as _load_results  # noqa: E402
from inas_plugins.run_files import CONFIG_NAME  # noqa: E402
from inas_plugins.sweep import SweepRun, execute, flags_from_overrides, option_args, prepare  # noqa: E402

# The plain search of the paper: candidates trained for 1/4 of the schedule. Pinned in the paper-recipe
# study, so it stays the same when the cpu preset adopts a cheaper search (it now uses 1/8).
PAPER_SEARCH = {"premature_fraction": 0.25}
# The cpu preset as the paper-recipe study ran it (before issue 21): the paper's training recipe, a fixed
# epoch whatever the labelled size, and a 2,000-image test subset.
PAPER_RECIPE = {"recipe": "paper", "limit_test": 2000, "train": {"epoch_size_exponent": 0.0}}


def study(heuristic: str, arch: str | None = None, **search) -> dict:
    """Overrides of the cpu preset in the nested layout: a query heuristic, the paper's search
    (changed by ``search``, settings of ``SearchOptions``), a fixed ``arch`` or None for iNAS, and
    the paper's recipe (the first study's configuration)."""
    overrides: dict = {**PAPER_RECIPE, "query": {"heuristic": heuristic}, "search": {**PAPER_SEARCH, **search}}
    if arch is not None:
        overrides["arch"] = arch
    return overrides


def lowdata(heuristic: str, arch: str | None = None, **own) -> dict:
    """Overrides of the cpu preset as it is now (lowdata recipe, its own search), on the whole test set
    (the preset tests on 2,000 images: the whole set with flip TTA costs ~10% of a round on 2 cores)."""
    overrides: dict = {"query": {"heuristic": heuristic}, "limit_test": 10_000, **own}
    if arch is not None:
        overrides["arch"] = arch
    return overrides


# name -> overrides of the cpu preset. The first study: the paper's recipe. The first four are the
# paper's main comparison.
PAPER_RECIPE_STUDY: dict[str, dict] = {
    "inas-sr": study("softmax_response"),
    "fixed1x2-sr": study("softmax_response", arch="1x2"),
    "fixed2x4-sr": study("softmax_response", arch="2x4"),
    "inas-random": study("random"),
    "inas-mc": study("mc_dropout"),
    "inas-coreset": study("coreset"),
    # Cheaper searches, each against inas-sr on the same seeds (the cpu preset's premature 1/8 rests on
    # inas-sr-premature8: BENCHMARKS.md, "The cost of the search").
    "inas-sr-halving": study("softmax_response", successive_halving=True),
    "inas-sr-premature8": study("softmax_response", premature_fraction=0.125),
    # The low-budget query functions with iNAS.
    "inas-badge": study("badge"),
    "inas-typiclust": study("typiclust"),
    "inas-probcover": study("probcover"),
    # Fair baselines: each fixed network with every query function iNAS is run with, so every
    # "iNAS vs fixed" cell compares equal query functions (the -sr ones are above).
    **{f"fixed{arch}-{short}": study(heuristic, arch=arch)
       for arch in ("1x2", "2x4")
       for short, heuristic in (("random", "random"), ("mc", "mc_dropout"), ("coreset", "coreset"),
                                ("badge", "badge"), ("typiclust", "typiclust"), ("probcover", "probcover"))},
    # What might close the gap to the hindsight-best fixed network (issue 13), each against its plain search
    # on the same seeds. The gap is the early gain BADGE gives fixed A(2,4); iNAS + BADGE grows too slowly
    # to get it, so the changes that let the search grow faster run with BADGE. The changes to how the
    # candidates are scored run with random querying, iNAS's best query function in the study, which
    # keeps the query function out of the comparison. Inheritance draws V' from labels the parent never
    # saw (issue 13); runs of the leaky version were named -inherit.
    "inas-badge-iter2": study("badge", iterations=2),
    # Up to 7 iterations reach 4x4 from 1x1 in the cpu preset's 4x4 space: the search runs until A stops changing.
    "inas-badge-iterconverge": study("badge", iterations=7),
    "inas-badge-start2x2": {**study("badge"), "start_arch": "2x2"},
    "inas-random-earlystop": study("random", premature_schedule="early_stop"),  # the paper's schedule
    "inas-random-inherit-unseen": study("random", inherit_weights=True),
}
# The study rerun on the lowdata recipe (issue 21): three fixed networks and the search, each with random
# querying and the last study's best query functions (BADGE, coreset), and the README's recommended
# setting (BADGE from a 2x2 start with the paper's 1/4 premature training, as the first study ran it).
LOWDATA_STUDY: dict[str, dict] = {
    **{f"{network}-{short}": lowdata(heuristic, arch=None if network == "inas" else network.removeprefix("fixed"))
       for network in ("fixed1x2", "fixed2x4", "fixed3x4", "inas")
       for short, heuristic in (("random", "random"), ("badge", "badge"), ("coreset", "coreset"))},
    "inas-badge-start2x2": lowdata("badge", start_arch="2x2", search={"premature_fraction": 0.25}),
    # Does label smoothing change what softmax response and MC-dropout measure? On the network where the
    # first study saw MC-dropout keep up with random.
    "fixed2x4-sr": lowdata("softmax_response", arch="2x4"),
    "fixed2x4-mc": lowdata("mc_dropout", arch="2x4"),
}
STUDIES = {"lowdata": LOWDATA_STUDY, "paper-recipe": PAPER_RECIPE_STUDY}
SECTION = {"lowdata": "label-efficiency-lowdata", "paper-recipe": "label-efficiency"}
PLOTS = {name: Path(__file__).resolve().parent / f"label_efficiency{'' if name == 'paper-recipe' else '_' + name}.png"
         for name in STUDIES}
# Each report table reads the runs' results.json; read each file once per invocation (runs are complete by then).
load_results = functools.cache(_load_results)


def sweep_run(overrides: dict, name: str, seed: int, data_dir: Path, runs_dir: Path) -> SweepRun:
    """A study's (configuration, seed) -- ``overrides`` of the cpu preset -- as one run of the sweep,
    into ``runs_dir/<name>-seed<N>``."""
    run_dir = runs_dir / f"{name}-seed{seed}"
    config = resolve_config({"dataset": "folder", "seed": seed, **overrides}, preset="cpu")
    saved = run_dir / CONFIG_NAME
    if saved.exists() and _comparable(saved_config(saved)) != _comparable(config.to_dict()):
        raise SystemExit(f"{run_dir} was made with another configuration (the cpu preset changed?); "
                         "pass a new --runs-dir or move the old runs away")
    flags = {"dataset": "folder", "data-dir": str(data_dir.resolve()), "preset": "cpu", "seed": seed,
             **flags_from_overrides(overrides)}
    return SweepRun(run_dir.name, tuple(option_args(flags)))


def _comparable(config: dict | None) -> dict | None:
    """A configuration without where the data lives (the sweep passes --data-dir; older runs had none)."""
    return None if config is None else {k: v for k, v in config.items() if k not in ("data_dir", "data_identity")}


def run_study(runs: list[SweepRun], runs_dir: Path, cpus_per_run: float, address: str | None) -> None:
    """Every run as a task of one sweep (inas_plugins.sweep): complete runs skipped, interrupted ones resumed."""
    import ray

    prepare(runs_dir, runs, None, extend=True)
    owned = connect(address)
    try:
        summary = execute(runs_dir, runs, cpus_per_run=cpus_per_run)
    finally:
        if owned:
            ray.shutdown()
    for name, error in summary.failed.items():
        print(f"{name}: failed: {error} (log: {runs_dir / 'logs' / name}.log)")


def saved_config(path: Path) -> dict | None:
    """A run directory's configuration in the nested layout, or None if unreadable."""
    try:
        return RunConfig.from_dict(json.loads(path.read_text())).to_dict()
    except (ValueError, json.JSONDecodeError):
        return None


RUN_NAME = re.compile(r"(?P<configuration>.+)-seed(?P<seed>\d+)")  # run directories: <configuration>-seed<N>


def configuration_of(run_name: str) -> str:
    """``inas-sr-seed2`` -> ``inas-sr``."""
    return RUN_NAME.fullmatch(run_name)["configuration"]


def seed_of(run_name: str) -> int:
    """``inas-sr-seed2`` -> 2."""
    return int(RUN_NAME.fullmatch(run_name)["seed"])


def complete_runs(run_dirs: list[Path]) -> dict[str, dict]:
    """Run name -> results, for the runs that finished every round (a stopped run would skew the means)."""
    finished = {run_dir.name: load_results(run_dir) for run_dir in run_dirs}
    return {name: results for name, results in finished.items() if results.get("status") == "complete"}


def cost_rows(run_dirs: list[Path]) -> list[list[object]]:
    """Per configuration: search / final-training seconds, summed over rounds and seeds, query seconds,
    and the minutes one run spends in search + training + queries (evaluation and loading are extra)."""
    by_name: dict[str, list[dict]] = {}
    runs_of: dict[str, int] = {}
    for run_dir in run_dirs:
        name = configuration_of(run_dir.name)
        by_name.setdefault(name, []).extend(load_results(run_dir)["rounds"])
        runs_of[name] = runs_of.get(name, 0) + 1
    rows = []
    for name, rounds in by_name.items():
        search = sum(r["search_seconds"] for r in rounds)
        train = sum(r["train_seconds"] for r in rounds)
        query = sum(r["query_seconds"] for r in rounds)
        queried = max(1, sum(1 for r in rounds if r.get("queried")))
        ratios = [r["search_seconds"] / r["train_seconds"] for r in rounds if r["search_seconds"] > 0 < r["train_seconds"]]
        per_round = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        rows.append([name, len(rounds), f"{train:.0f}", f"{search:.0f}", f"{search / train:.2f}" if search and train else "-",
                     per_round, f"{query / queried:.1f}", f"{query / train:.3f}" if train else "-",
                     f"{(search + train + query) / runs_of[name] / 60:.1f}"])
    return rows


def balance_rows(run_dirs: list[Path], train_labels: np.ndarray, class_names: list[str]) -> list[list[object]]:
    """Per configuration: how unevenly the final labelled set covers the classes (mean over seeds).

    Uncertainty sampling tends to over-draw the hard classes; a skewed labelled set is one reason a
    query function can trail random sampling.
    """
    counts: dict[str, list[np.ndarray]] = {}
    for run_dir in run_dirs:
        labelled = np.asarray(load_checkpoint(run_dir).labelled_map) > 0
        name = configuration_of(run_dir.name)
        counts.setdefault(name, []).append(np.bincount(train_labels[labelled], minlength=len(class_names)))
    rows = []
    for name, per_seed in counts.items():
        mean = np.mean(per_seed, axis=0)
        ratios = [c.max() / max(1, c.min()) for c in per_seed]
        rows.append([name, int(round(mean.sum())), f"{np.mean(ratios):.1f}",
                     f"{class_names[int(mean.argmax())]} {mean.max() / mean.sum():.0%}",
                     f"{class_names[int(mean.argmin())]} {mean.min() / mean.sum():.0%}"])
    return rows


def plain_search_of(name: str) -> str | None:
    """``inas-random-iter2`` -> ``inas-random``: a search variant is ``inas-<query>-<change>``, compared with
    the plain search of the same query function; None for anything else."""
    parts = name.split("-")
    return "-".join(parts[:2]) if len(parts) > 2 and parts[0] == "inas" else None


def search_variant_rows(run_dirs: list[Path], curves: dict) -> list[list[object]]:
    """Each variant of the search (cheaper ones, and those meant to close the gap to the best fixed
    network) against the plain search with the same query function, on the seeds both have finished.

    The rule for a new default: AUC no more than one standard deviation (over the plain search's seeds)
    below the plain search's AUC on the same seeds, and less search time on those seeds -- checked on
    every seed the plain search has.
    """
    finished = complete_runs(run_dirs)

    def auc_and_search(name: str, seed: int) -> tuple[float, float]:
        search = sum(r["search_seconds"] for r in finished[f"{name}-seed{seed}"]["rounds"])
        return _auc(curves[name][seed]), search

    rows = []
    for name in sorted(name for name in curves if plain_search_of(name)):  # each a change of one plain search
        plain_name = plain_search_of(name)
        plain_seeds = sorted(curves.get(plain_name, {}))
        seeds = [seed for seed in plain_seeds if seed in curves.get(name, {})]
        if len(plain_seeds) < 2 or not seeds:
            continue
        plain_std = float(np.std([auc_and_search(plain_name, seed)[0] for seed in plain_seeds], ddof=1))
        mine = [auc_and_search(name, seed) for seed in seeds]
        plain = [auc_and_search(plain_name, seed) for seed in seeds]
        auc, plain_auc = np.mean([m[0] for m in mine]), np.mean([p[0] for p in plain])
        search, plain_search = sum(m[1] for m in mine), sum(p[1] for p in plain)
        qualifies = auc >= plain_auc - plain_std and search < plain_search
        rows.append([name, plain_name, ", ".join(map(str, seeds)), f"{auc:.3f}", f"{plain_auc:.3f}",
                     f"{auc - plain_auc:+.3f}", f"{plain_std:.3f}", f"{search / plain_search:.2f}",
                     ("yes" if qualifies else "no") + ("" if seeds == plain_seeds else f", on {len(seeds)} of {len(plain_seeds)} seeds")])
    return rows


def search_path_rows(run_dirs: list[Path]) -> tuple[list[int], list[list[object]]]:
    """Per complete iNAS run: the network the search trained at each labelled size, with its test accuracy.

    The means in the other tables hide why a search falls behind; the path of one seed shows it (a search
    that stays at 1x3 while the best fixed network is 2x4).
    """
    paths = {(configuration_of(name), seed_of(name)): {
                 r["labelled"]: "x".join(map(str, r["arch"])) + f" {r['test_accuracy']:.3f}" for r in results["rounds"]}
             for name, results in complete_runs(run_dirs).items() if name.startswith("inas-")}
    sizes = sorted({size for path in paths.values() for size in path})
    rows = [[name, seed] + [path.get(size, "-") for size in sizes] for (name, seed), path in sorted(paths.items())]
    return sizes, rows


# Names of the study's configurations: "<network>-<query>[-<variant>]"; the network is "inas" or "fixed<arch>".
QUERY_SHORT = {"random": "random", "sr": "softmax response", "mc": "MC-dropout", "coreset": "coreset",
               "badge": "BADGE", "typiclust": "TypiClust", "probcover": "ProbCover"}


def complete_curves(run_dirs: list[Path]) -> dict[str, dict[int, tuple[list[int], list[float]]]]:
    """configuration -> seed -> (labelled sizes, test accuracies) of its complete runs."""
    curves: dict[str, dict[int, tuple[list[int], list[float]]]] = {}
    for name, results in complete_runs(run_dirs).items():
        rounds = sorted(results["rounds"], key=lambda row: row["labelled"])
        curves.setdefault(configuration_of(name), {})[seed_of(name)] = (
            [r["labelled"] for r in rounds], [float(r["test_accuracy"]) for r in rounds])
    return curves


def plain_configurations(curves: dict) -> dict[tuple[str, str], str]:
    """(network, query) -> configuration name, for the configurations that change only those two."""
    plain = {}
    for name in curves:
        parts = name.split("-")
        if len(parts) == 2 and parts[1] in QUERY_SHORT:
            plain[(parts[0], parts[1])] = name
    return plain


def _auc(curve: tuple[list[int], list[float]]) -> float:
    return normalised_auc(*curve)


def _mean_std_text(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def best_query_rows(curves: dict) -> tuple[list[str], list[list[object]]]:
    """Per network, which query function has the highest mean test accuracy at each labelled size (and
    the highest mean AUC), with the runner-up: the answer to "which query function at which budget".

    A cell names the leader and its mean, then the runner-up's; "(n seeds)" when seeds differ. A lead
    smaller than the leader's standard deviation over seeds is marked "~" (within the noise)."""
    plain = plain_configurations(curves)
    networks = sorted({network for network, _ in plain}, key=lambda n: (n != "inas", n))
    sizes = sorted({n for per_seed in curves.values() for labelled, _ in per_seed.values() for n in labelled})

    def ranked(network: str, score) -> str:
        scores = []
        for (net, query), name in plain.items():
            values = [v for v in (score(curve) for curve in curves[name].values()) if v is not None]
            if net == network and values:
                scores.append((float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                               query, len(values)))
        if not scores:
            return "-"
        scores.sort(reverse=True)
        (mean, std, query, seeds), rest = scores[0], scores[1:]
        text = f"{QUERY_SHORT[query]} {mean:.3f}" + ("" if seeds == 3 else f" ({seeds} seeds)")
        if rest:
            close = "~ " if mean - rest[0][0] < std else ""
            text += f"; {close}next {QUERY_SHORT[rest[0][2]]} {rest[0][0]:.3f}"
        return text + f" [{len(scores)} compared]"

    rows = []
    for size in sizes[1:]:  # the first size is the initial random set: no query function has acted yet
        rows.append([size] + [ranked(net, lambda c, size=size: dict(zip(*c)).get(size)) for net in networks])
    rows.append(["AUC"] + [ranked(net, _auc) for net in networks])
    return ["labelled"] + networks, rows


def hindsight_rows(curves: dict) -> tuple[str | None, list[str], list[list[object]]]:
    """Every iNAS configuration against the hindsight-best fixed network with its best query function
    (the fixed (network, query) pair with the highest mean AUC), and against the fixed networks with the
    same query function. Gaps are AUC differences; "paired" is the mean +- std of the per-seed
    differences over the seeds both have (same seed: same initial labelled set and data order)."""
    plain = plain_configurations(curves)
    fixed = {name: float(np.mean([_auc(c) for c in curves[name].values()]))
             for (network, _), name in plain.items() if network.startswith("fixed")}
    if not fixed:
        return None, [], []
    networks = sorted({network for network, _ in plain if network.startswith("fixed")})
    best_fixed = max(fixed, key=fixed.get)

    def gap(name: str, reference: str) -> str:
        if reference not in curves:
            return "-"
        seeds = sorted(set(curves[name]) & set(curves[reference]))
        if not seeds:
            return "-"
        differences = [_auc(curves[name][s]) - _auc(curves[reference][s]) for s in seeds]
        spread = f" ± {np.std(differences, ddof=1):.3f}" if len(differences) > 1 else ""
        return f"{np.mean(differences):+.3f}{spread} ({len(seeds)})"

    rows = []
    for name in sorted(n for n in curves if n.startswith("inas-")):
        query = name.split("-")[1]
        aucs = [_auc(c) for c in curves[name].values()]
        rows.append([name, len(aucs), _mean_std_text(aucs), gap(name, best_fixed),
                     *[gap(name, f"{network}-{query}") for network in networks]])
    rows.sort(key=lambda row: -float(row[2].split()[0]))
    return best_fixed, [f"gap to {network.removeprefix('fixed')}, same query (seeds)" for network in networks], rows


def threads_line(run_dirs: list[Path]) -> str:
    """How many torch threads the runs trained with, from the command each sweep log records: timings of
    runs with 1 thread, two side by side, are not comparable with those of runs with 2, one at a time."""
    threads = Counter()
    for run_dir in run_dirs:
        log = run_dir.parent / "logs" / f"{run_dir.name}.log"
        found = re.search(r"--threads (\d+)", log.read_text()) if log.exists() else None
        threads[found.group(1) if found else "unknown"] += 1
    return ", ".join(f"{count} runs with {value} torch thread{'s' if value != '1' else ''}"
                     for value, count in sorted(threads.items()))


def total_minutes(run_dirs: list[Path]) -> float:
    rounds = [r for run_dir in run_dirs for r in load_results(run_dir)["rounds"]]
    return sum(r["search_seconds"] + r["train_seconds"] + r["query_seconds"] for r in rounds) / 60


def report(study_name: str, run_dirs: list[Path], wall_seconds: float | None, data=None) -> None:
    groups = build_report(run_dirs)
    plot_path = PLOTS[study_name]
    plot_report(groups, plot_path, title="CIFAR-10, cpu preset: test accuracy vs labels (mean, +-1 std over seeds)",
                log_x=True)
    config = settings_of(resolve_config({"dataset": "folder", **STUDIES[study_name]["inas-random"]}, preset="cpu"))
    title, search_note = {
        "paper-recipe": ("the first study, on the paper's training recipe",
                         f"Every configuration but inas-sr-premature8 runs the paper's search ({json.dumps(PAPER_SEARCH)})."),
        "lowdata": ("the lowdata recipe, whole test set",
                    "Every configuration but inas-badge-start2x2 (premature 1/4, the first study's) runs the preset's "
                    "search."),
    }[study_name]
    sections = [
        f"## Label efficiency on CIFAR-10 (cpu preset): {title}",
        "",
        f"Command: `python benchmarks/label_efficiency.py --study {study_name} --data-dir DIR/cifar10` (DIR: where "
        "`../shared/data/cifar10-jpeg.tar.gz` was unpacked). Runs in `--runs-dir`, one directory each.",
        f"Machine: {machine_line()}." + (f" Wall time of this invocation: {wall_seconds / 60:.1f} min." if wall_seconds else ""),
        f"Runs: {threads_line(run_dirs)} (a sweep runs as many side by side as the CPUs allow).",
        "",
        "cpu preset: " + json.dumps({k: config[k] for k in (
            "initial", "query_schedule", "budget", "recipe", "train.epochs", "train.epoch_size",
            "train.epoch_size_exponent", "train.batch_size", "base_width", "max_blocks", "max_stacks", "limit_train",
            "limit_test", "search.premature_fraction", "search.val_fraction")}) + f". {search_note}",
        "",
        "### Summary (final accuracy, normalised AUC; mean +- std over seeds)",
        "",
        format_report_table(groups),
        "",
        "### Test accuracy at each labelled size",
        "",
        format_curve_table(groups),
        "",
        f"![learning curves](benchmarks/{plot_path.name})",
        "",
        "### Cost: search vs final training, and query time",
        "",
        markdown_table(
            ["configuration", "rounds", "train s", "search s", "search / train", "per round", "query s / round",
             "query / train", "min / run"],
            cost_rows(run_dirs)),
        "",
        "The paper's search costs 0.75 x the final training per round (3 candidates at a quarter of the schedule).",
        f"All {len(run_dirs)} runs together: {total_minutes(run_dirs):.0f} min of search + training + queries.",
    ]
    curves = complete_curves(run_dirs)
    headers, rows = best_query_rows(curves)
    sections += [
        "",
        "### Which query function is best at each labelled size (complete runs, mean over seeds)",
        "",
        markdown_table(headers, rows),
        "",
        "Each cell: the query function with the highest mean test accuracy for that network, then the runner-up; "
        "\"~\" when the lead is smaller than the leader's standard deviation over seeds. The initial labelled "
        "set (the smallest size) is drawn at random, the same for every query function of a seed, so it is left out.",
    ]
    best_fixed, network_headers, rows = hindsight_rows(curves)
    if rows:
        sections += [
            "",
            f"### active-iNAS against the hindsight-best fixed network ({best_fixed}, the fixed network and query "
            "function with the highest mean AUC)",
            "",
            markdown_table(["configuration", "seeds", "AUC", f"gap to {best_fixed}, paired (seeds)", *network_headers],
                           rows),
            "",
            "Gaps are AUC differences, mean ± std of the per-seed differences over the seeds both configurations "
            "have (a seed fixes the initial labelled set and the data order); negative: iNAS is behind.",
        ]
    variants = search_variant_rows(run_dirs, curves)
    if variants:
        sections += [
            "",
            "### Variants of the search against the plain search with the same query function, on the same seeds",
            "",
            markdown_table(["technique", "plain search", "seeds", "AUC", "plain AUC (same seeds)", "difference",
                            "plain AUC std (all its seeds)", "search time / plain", "meets the default rule"],
                           variants),
            "",
            "Rule for a new default: an AUC at most one standard deviation below the plain search's and less "
            "search time, on every seed of the plain search (a higher AUC passes).",
        ]
    sizes, paths = search_path_rows(run_dirs)
    if paths:
        sections += [
            "",
            "### The network each iNAS run trained at each labelled size, and its test accuracy",
            "",
            markdown_table(["configuration", "seed"] + [f"{size} labels" for size in sizes], paths),
            "",
            "A network i x j is A(B, i, j): i residual blocks in each of j stacks. Each cell is the search's "
            "choice for that round, trained on the whole labelled set.",
        ]
    if data is not None:
        sections += [
            "",
            "### Class balance of the labelled set at the end (mean over seeds; the pool is balanced)",
            "",
            markdown_table(["configuration", "labelled", "largest / smallest class count", "most drawn class",
                            "least drawn class"],
                           balance_rows(run_dirs, data.train.labels.numpy(), data.classes)),
        ]
    body = "\n".join(sections)
    print(body)
    write_section(SECTION[study_name], body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path.home() / "data" / "cifar10",
                        help="CIFAR-10 in ImageFolder layout (train/, test/)")
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / "inas-bench-runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--study", choices=sorted(STUDIES), default="lowdata",
                        help="lowdata: the cpu preset as it is (issue 21); paper-recipe: the first study, on the "
                             "paper's recipe")
    parser.add_argument("--only", nargs="+", help="configurations to run (default: all of the study)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the tables from existing runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--cpus-per-run", type=float, default=local_cpus(),
                        help="CPUs (torch threads) per run; the default runs one at a time, so timings stay comparable")
    parser.add_argument("--address", help="run the study on this Ray cluster (see `inas sweep --address`)")
    args = parser.parse_args()

    began = time.perf_counter()
    data = None
    if not args.report_only or args.data_dir.is_dir():  # the report uses the labels for the class-balance table
        preset = resolve_config({"dataset": "folder"}, preset="cpu")
        try:
            data = load_dataset("folder", args.data_dir, seed=preset.data_seed, limit_train=preset.limit_train,
                                limit_test=preset.limit_test, progress=not args.quiet)
        except DatasetError as error:
            parser.error(f"--data-dir: {error}")
        print(data.describe())
    if not args.report_only:
        configurations = STUDIES[args.study]
        unknown = sorted(set(args.only or ()) - set(configurations))
        if unknown:
            parser.error(f"--only: {', '.join(unknown)} not in the {args.study} study; its configurations: "
                         f"{', '.join(configurations)}")
        # Seed by seed: a study stopped early has every configuration on its first seeds.
        runs = [sweep_run(configurations[name], name, seed, args.data_dir, args.runs_dir)
                for seed in args.seeds for name in args.only or list(configurations)]
        run_study(runs, args.runs_dir, args.cpus_per_run, args.address)
    finished = sorted(path.parent for path in args.runs_dir.glob("*-seed*/results.json")
                      if RUN_NAME.fullmatch(path.parent.name))
    if not finished:
        parser.error(f"--runs-dir: no runs in {args.runs_dir} (expected <configuration>-seed<N>/results.json)")
    try:
        for run_dir in finished:
            load_results(run_dir)  # every table reads these (cached): a broken one stops here, in one line
    except ValueError as error:
        parser.error(f"--runs-dir: {error}; move that run out of {args.runs_dir} to report the others")
    report(args.study, finished, None if args.report_only else time.perf_counter() - began, data)


if __name__ == "__main__":
    main()
