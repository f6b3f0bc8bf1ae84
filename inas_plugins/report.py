"""Compare runs: group them by configuration, average over seeds, and score the learning curves.

Grouping. Each run's configuration is read with :meth:`RunConfig.from_dict`, so a damaged or foreign
one is refused, not guessed at. Runs belong to one group when their settings are equal after dropping
the fields that only say *how* or *where* one run was executed (:data:`RUN_SPECIFIC`: the seed, the
device, the data directory), with the data itself compared by its identity's fingerprint
(:func:`experiment_of`). Everything else -- dataset, heuristic, architecture or search, preset,
widths, budget, schedule, epochs -- is part of the group, so only seeds of the same experiment are
averaged. Settings are named by their path in the configuration (``search.iterations``).

Scores, all with accuracy in [0, 1]:

* mean and sample standard deviation (ddof=1; 0 for a single run) of test accuracy at each
  labelled size, over the runs that reached that size;
* the area under the accuracy curve, normalised to [0, 1] over the labelled range: trapezoid
  rule over the labelled sizes divided by (max - min) labelled (a constant 0.7 scores 0.7);
  computed per run, then mean and standard deviation over the runs;
* the final accuracy (last round) per run, mean and standard deviation;
* runs still in progress count in the curve at the sizes they reached, but the final accuracy and
  the AUC use only the runs that reached the group's largest labelled size (all, once complete);
* AUC-GAIN (paper section 5.4): the relative reduction of the area under the 0-1 loss curve of an
  active learner against the passive learner (random queries) *with the same architecture*:
  ``(AUC_loss(passive) - AUC_loss(active)) / AUC_loss(passive)``, from the two mean curves over
  the labelled sizes both reached. It is defined for fixed-architecture groups only -- the paper
  notes it is unclear for active-iNAS, whose architecture changes -- and needs a passive group
  with the same configuration except the query function (:data:`QUERY_ONLY`), found among
  the runs (heuristic ``random``) or given explicitly.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .config import SECTIONS, RunConfig
from .results import load_results

# Fields that differ between repeats of one experiment without changing it.
RUN_SPECIFIC = frozenset({"seed", "device", "data_dir", "data_identity"})
DATA_KEY = "data"  # the data's fingerprint in a group's configuration (and label, when groups differ in it)
PASSIVE_HEURISTIC = "random"
# Settings that configure only the query function: a passive run of the same network may differ in them.
QUERY_ONLY = frozenset({"query.heuristic", "query.mc_samples", "query.mc_dropout_rate"})


# --------------------------------------------------------------------------- curve arithmetic


def normalised_auc(labelled: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under ``accuracy`` over ``labelled``, divided by the labelled range.

    Lies in [0, 1] when the accuracies do. One point has no range: its accuracy is returned.
    """
    if len(labelled) != len(accuracy) or not labelled:
        raise ValueError(f"a learning curve needs as many labelled sizes as accuracies and at least one point, "
                         f"got {len(labelled)} and {len(accuracy)}")
    pairs = sorted(zip(labelled, accuracy))
    span = pairs[-1][0] - pairs[0][0]
    if span == 0:
        return sum(value for _, value in pairs) / len(pairs)
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]))
    return area / span


def auc_gain(passive: tuple[Sequence[float], Sequence[float]],
             active: tuple[Sequence[float], Sequence[float]]) -> Optional[float]:
    """AUC-GAIN of ``active`` over ``passive``, each a ``(labelled, accuracy)`` curve.

    Both curves are restricted to the labelled sizes they share; the 0-1 loss is 1 - accuracy, so
    its normalised area is 1 - :func:`normalised_auc`. None when the curves share no labelled size
    or the passive learner has no loss to reduce.
    """
    shared = _shared_points(passive, active)
    if shared is None:
        return None
    labelled, passive_accuracy, active_accuracy = shared
    passive_loss = 1.0 - normalised_auc(labelled, passive_accuracy)
    active_loss = 1.0 - normalised_auc(labelled, active_accuracy)
    if passive_loss <= 0:
        return None
    return (passive_loss - active_loss) / passive_loss


def auc_gain_by_budget(passive: tuple[Sequence[float], Sequence[float]],
                       active: tuple[Sequence[float], Sequence[float]]) -> list[tuple[float, float]]:
    """AUC-GAIN(passive, active, m) for every shared labelled size m, as in the paper's Figure 6(b)."""
    shared = _shared_points(passive, active)
    if shared is None:
        return []
    labelled, passive_accuracy, active_accuracy = shared
    gains = []
    for end in range(1, len(labelled) + 1):
        gain = auc_gain((labelled[:end], passive_accuracy[:end]), (labelled[:end], active_accuracy[:end]))
        if gain is not None:
            gains.append((labelled[end - 1], gain))
    return gains


def _shared_points(passive, active):
    passive_at = dict(zip(*passive))
    active_at = dict(zip(*active))
    labelled = sorted(set(passive_at) & set(active_at))
    if not labelled:
        return None
    return labelled, [passive_at[n] for n in labelled], [active_at[n] for n in labelled]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1), 0 for a single value."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


# --------------------------------------------------------------------------- runs and groups


@dataclass
class RunSummary:
    """One run directory's learning curve."""

    run_dir: str
    config: RunConfig
    status: str
    labelled: list[int]
    accuracy: list[float]
    given_as_passive: bool = False

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def fixed_arch(self) -> Optional[str]:
        """``"2x4"`` when the run trained one fixed architecture, None when iNAS searched it."""
        return None if self.config.fixed_arch is None else str(self.config.fixed_arch)

    @property
    def running(self) -> bool:
        return self.status != "complete"

    @property
    def final_accuracy(self) -> Optional[float]:
        return self.accuracy[-1] if self.accuracy else None

    @property
    def auc(self) -> Optional[float]:
        return normalised_auc(self.labelled, self.accuracy) if self.labelled else None


def summarise_run(run_dir: str | os.PathLike, given_as_passive: bool = False) -> RunSummary:
    """Load ``run_dir`` and extract its curve; a ValueError naming it if it holds no valid run."""
    results = load_results(run_dir)
    try:
        config = RunConfig.from_dict(results["config"])
    except ValueError as error:
        raise ValueError(f"{run_dir}: results.json holds no valid run configuration: {error}") from None
    rounds = sorted(results["rounds"], key=lambda row: row["labelled"])
    return RunSummary(
        run_dir=str(run_dir),
        config=config,
        status=results["status"],
        labelled=[row["labelled"] for row in rounds],
        accuracy=[float(row["test_accuracy"]) for row in rounds],
        given_as_passive=given_as_passive,
    )


def settings_of(config: RunConfig) -> dict[str, Any]:
    """Every setting of ``config`` by its path: the run's own fields, then ``section.field``."""
    data = config.to_dict()
    paths = {key: value for key, value in data.items() if key not in SECTIONS}
    for section in SECTIONS:
        paths.update({f"{section}.{name}": value for name, value in data[section].items()})
    return paths


def experiment_of(config: RunConfig) -> dict[str, Any]:
    """What runs of one group share: every setting but :data:`RUN_SPECIFIC`, by path.

    The data enters as one key, :data:`DATA_KEY`: the fingerprint of the run's data identity (the
    decoded images and labels, see ``LoadedDataset.identity``), so runs on different folders never
    average together while a moved copy of the same data still does. A run without a stored
    identity has no such key.
    """
    shared = {path: value for path, value in settings_of(config).items() if path not in RUN_SPECIFIC}
    if config.data_identity is not None:
        shared[DATA_KEY] = config.data_identity["fingerprint"][:12]
    return shared


def _frozen(config: dict, drop: Iterable[str] = ()) -> str:
    dropped = set(drop)
    return json.dumps({k: v for k, v in config.items() if k not in dropped}, sort_keys=True, default=str)


@dataclass
class GroupSummary:
    """Runs that share a configuration except the seed, with their statistics over seeds."""

    label: str
    config: dict
    runs: list[RunSummary]
    labelled: list[int]
    mean_accuracy: list[float]
    std_accuracy: list[float]
    runs_at: list[int]
    final_mean: Optional[float]
    final_std: Optional[float]
    auc_mean: Optional[float]
    auc_std: Optional[float]
    fixed_arch: Optional[str]
    auc_gain: Optional[float] = None
    auc_gain_by_budget: list[tuple[float, float]] = field(default_factory=list)
    passive_label: Optional[str] = None
    auc_gain_note: str = ""

    @property
    def heuristic(self) -> str:
        return self.config["query.heuristic"]

    @property
    def is_passive(self) -> bool:
        """A random-query group, or one whose runs were all given as the passive reference."""
        return self.heuristic == PASSIVE_HEURISTIC or all(run.given_as_passive for run in self.runs)

    @property
    def scored_runs(self) -> list[RunSummary]:
        """The runs behind the final accuracy and AUC statistics (see the module docstring)."""
        return _scored_runs(self.runs, self.labelled[-1] if self.labelled else None)

    @property
    def n_running(self) -> int:
        return sum(run.running for run in self.runs)

    @property
    def plot_label(self) -> str:
        running = f", {self.n_running} running" if self.n_running else ""
        return f"{self.label} (n={len(self.runs)}{running})"

    def to_dict(self) -> dict:
        """Plain numbers for ``inas report --json`` and benchmark scripts."""
        scored = {id(run) for run in self.scored_runs}
        return {
            "label": self.label,
            "config": self.config,
            "fixed_arch": self.fixed_arch,
            "runs": [{"run_dir": run.run_dir, "seed": run.seed, "status": run.status,
                      "final_accuracy": run.final_accuracy, "auc": run.auc,
                      "scored": id(run) in scored} for run in self.runs],
            "labelled": self.labelled,
            "mean_accuracy": self.mean_accuracy,
            "std_accuracy": self.std_accuracy,
            "runs_at": self.runs_at,
            "final_accuracy": {"mean": self.final_mean, "std": self.final_std},
            "auc": {"mean": self.auc_mean, "std": self.auc_std},
            "auc_gain": self.auc_gain,
            "auc_gain_by_budget": [list(point) for point in self.auc_gain_by_budget],
            "passive": self.passive_label,
            "auc_gain_note": self.auc_gain_note,
        }


def group_runs(runs: Sequence[RunSummary]) -> list[GroupSummary]:
    """Group ``runs`` by :func:`experiment_of`, in order of first appearance, and compute statistics."""
    buckets: dict[str, list[RunSummary]] = {}
    for run in runs:
        buckets.setdefault(_frozen(experiment_of(run.config)), []).append(run)
    groups = [_summarise_group(members) for members in buckets.values()]
    _label_groups(groups)
    return groups


def _summarise_group(runs: list[RunSummary]) -> GroupSummary:
    by_size: dict[int, list[float]] = {}
    for run in runs:
        for size, accuracy in dict(zip(run.labelled, run.accuracy)).items():
            by_size.setdefault(size, []).append(accuracy)
    labelled = sorted(by_size)
    stats = [_mean_std(by_size[size]) for size in labelled]
    scored = _scored_runs(runs, labelled[-1] if labelled else None)
    finals = [run.final_accuracy for run in scored]
    aucs = [run.auc for run in scored]
    final_mean, final_std = _mean_std(finals) if finals else (None, None)
    auc_mean, auc_std = _mean_std(aucs) if aucs else (None, None)
    architectures = {run.fixed_arch for run in runs}
    return GroupSummary(
        label="", config=experiment_of(runs[0].config), runs=runs, labelled=labelled,
        mean_accuracy=[mean for mean, _ in stats], std_accuracy=[std for _, std in stats],
        runs_at=[len(by_size[size]) for size in labelled],
        final_mean=final_mean, final_std=final_std, auc_mean=auc_mean, auc_std=auc_std,
        fixed_arch=architectures.pop() if len(architectures) == 1 else None,
    )


def _scored_runs(runs: Sequence[RunSummary], largest: Optional[int]) -> list[RunSummary]:
    """The runs that reached the group's largest labelled size: a run still in progress would
    otherwise lower the final accuracy and measure its AUC over a shorter range."""
    return [run for run in runs if run.labelled and run.labelled[-1] == largest]


def _label_groups(groups: list[GroupSummary]) -> None:
    """``dataset heuristic arch`` plus ``path=value`` for the other settings on which the groups differ.

    When most groups share a value (an ablation: one setting changed at a time), only the groups
    that depart from it show the key, so labels name what was changed instead of every setting.
    """
    shown = {"dataset", "query.heuristic", "arch"}
    keys = [key for group in groups for key in group.config if key not in shown]
    usual: dict[str, Optional[str]] = {}
    for key in dict.fromkeys(keys):
        values = Counter(_value_text(group.config.get(key)) for group in groups)
        if len(values) > 1:
            value, count = values.most_common(1)[0]
            usual[key] = value if count > len(groups) / 2 else None
    for group in groups:
        parts = [str(group.config["dataset"]), group.heuristic]
        parts.append(f"fixed {group.fixed_arch}" if group.fixed_arch else "iNAS")
        parts += [f"{key}={_short(group.config[key])}" for key, value in usual.items()
                  if key in group.config and _value_text(group.config[key]) != value]
        group.label = " ".join(parts)


def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def attach_auc_gains(groups: Sequence[GroupSummary]) -> None:
    """Set AUC-GAIN on every active fixed-architecture group that has a passive counterpart."""
    passive_groups = [group for group in groups if group.is_passive]
    for group in groups:
        if group.is_passive:
            group.auc_gain_note = "passive reference"
            continue
        if group.fixed_arch is None:
            group.auc_gain_note = "architecture changes with the search (undefined, paper 5.4)"
            continue
        key = _frozen(group.config, QUERY_ONLY)
        match = next((p for p in passive_groups if p.fixed_arch == group.fixed_arch
                      and _frozen(p.config, QUERY_ONLY) == key), None)
        if match is None:
            group.auc_gain_note = f"no passive ({PASSIVE_HEURISTIC}) run of fixed {group.fixed_arch} with this configuration"
            continue
        passive_curve = (match.labelled, match.mean_accuracy)
        active_curve = (group.labelled, group.mean_accuracy)
        group.auc_gain = auc_gain(passive_curve, active_curve)
        group.auc_gain_by_budget = auc_gain_by_budget(passive_curve, active_curve)
        group.passive_label = match.label
        if group.auc_gain is None:
            group.auc_gain_note = f"{match.label} shares no labelled size or has zero loss"


def build_report(run_dirs: Sequence[str | os.PathLike],
                 passive_dirs: Sequence[str | os.PathLike] = ()) -> list[GroupSummary]:
    """Load, group and score ``run_dirs`` (plus ``passive_dirs``, the passive references).

    A directory listed twice counts once. Raises a ValueError naming the first bad directory.
    """
    if not run_dirs:
        raise ValueError("no run directories given")
    passive_paths = {Path(path).resolve() for path in passive_dirs}
    runs, seen = [], set()
    for path in [*run_dirs, *passive_dirs]:
        resolved = Path(path).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        runs.append(summarise_run(path, given_as_passive=resolved in passive_paths))
    groups = group_runs(runs)
    attach_auc_gains(groups)
    return groups


# --------------------------------------------------------------------------- tables


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std:.3f}"


def format_report_table(groups: Sequence[GroupSummary]) -> str:
    """Markdown: group, runs (how many are still running, and how many reached the largest labelled
    size when not all did), labelled range, final accuracy, normalised AUC (mean ± std over seeds)
    and AUC-GAIN against the passive run, or "-"."""
    rows = []
    for group in groups:
        notes = [f"{group.n_running} running"] if group.n_running else []
        if len(group.scored_runs) < len(group.runs):
            notes.append(f"{len(group.scored_runs)} scored")
        runs = str(len(group.runs)) + (f" ({', '.join(notes)})" if notes else "")
        span = "-" if not group.labelled else "-".join(dict.fromkeys(map(str, (group.labelled[0], group.labelled[-1]))))
        gain = "-" if group.auc_gain is None else f"{group.auc_gain:+.3f}"
        rows.append([group.label, runs, span, _pm(group.final_mean, group.final_std),
                     _pm(group.auc_mean, group.auc_std), gain])
    return _markdown(["group", "runs", "labelled", "final accuracy", "AUC", "AUC-GAIN"], rows)


def format_curve_table(groups: Sequence[GroupSummary]) -> str:
    """Markdown: test accuracy mean ± std at each labelled size (rows) for each group (columns)."""
    sizes = sorted({size for group in groups for size in group.labelled})
    rows = []
    for size in sizes:
        row = [str(size)]
        for group in groups:
            at = dict(zip(group.labelled, zip(group.mean_accuracy, group.std_accuracy)))
            row.append(_pm(*at[size]) if size in at else "")
        rows.append(row)
    return _markdown(["labelled", *[group.label for group in groups]], rows)


def report_to_dict(groups: Sequence[GroupSummary]) -> dict:
    return {"groups": [group.to_dict() for group in groups]}
