"""Sweeps: a grid of ``inas run`` options expanded into runs, executed as Ray tasks, then reported.

A grid maps ``inas run`` options (flag names without the dashes) to lists of values, from command-line
flags or a TOML file; its cartesian product is the list of runs, each in its own directory under the
sweep directory, named after the values that vary (``heuristic=random,seed=1``). The sweep directory
keeps the grid and the state of every run in ``sweep.json``, so a sweep is idempotent and
resumable: running it again skips complete runs, resumes interrupted ones from their checkpoints
and retries failed ones; the same directory with another grid is refused.

Every run is one Ray task that executes ``inas run`` as a subprocess (``--out RUN_DIR``, or
``--resume RUN_DIR`` when the directory already holds the run), with ``--threads`` set to the CPUs
the task was granted. Why a subprocess: each run gets its own threads, memory and CUDA context,
and nothing a run does can take the sweep down. Why Ray: it schedules the runs over the CPUs and
GPUs of one machine or of a cluster, and retries a task whose worker died (``max_retries``; the
retry resumes from the checkpoint), and it does so better than a hand-written pool would. A run
that is killed by a signal is retried the same way; a run that fails by itself (a non-zero exit)
is recorded with its one-line error and the sweep goes on. The run's subprocess dies with the
worker (``PR_SET_PDEATHSIG`` on Linux), so a retried run never races an orphan in its directory.

Run directories must be on storage every node of a cluster sees (the driver reads them for the
report). Output of each run attempt is appended to ``logs/NAME.log``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .atomic import atomic_write_json, atomic_write_text
from .config import RUN_FLAGS, SEARCHED_ARCH, SECTIONS
from .error_text import first_line
from .run_files import RESULTS_JSON
from .rundir import holds_run

MANIFEST = "sweep.json"
LOG_DIR = "logs"
REPORT_PLOT = "report.png"
REPORT_TABLES = "report.md"
REPORT_JSON = "report.json"
MANIFEST_VERSION = 1

# Options of ``inas run`` that the sweep sets for every run itself.
SWEEP_OWNED = {
    "out": "each run's directory is SWEEP_DIR/NAME",
    "resume": "the sweep resumes interrupted runs by itself",
    "quiet": "runs write their log quietly into SWEEP_DIR/logs",
    "threads": "it follows --cpus-per-run",
    "parallel-candidates": "give it to `inas sweep` itself",
    "tracking-uri": "give it to `inas sweep` itself (its runs are nested under the sweep's MLflow run)",
    "experiment": "give it to `inas sweep` itself",
    "parent-run-id": "the sweep nests its runs under its own MLflow run",
    "help": "it is no run option",
}


class SweepError(ValueError):
    """Bad input to a sweep, as one line."""


class RunInterrupted(RuntimeError):
    """An ``inas run`` killed by a signal: not the run's fault, so Ray retries the task (it resumes)."""


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its directory name and its ``inas run`` options."""

    name: str
    args: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "args": list(self.args)}


# --------------------------------------------------------------------------- the grid


def flag_name(key: str) -> str:
    """``--epoch_size``, ``epoch_size`` or ``epoch-size`` -> ``epoch-size``."""
    return key.strip().lstrip("-").replace("_", "-")


def normalise_grid(grid: dict[str, Any]) -> dict[str, list[Any]]:
    """Flag names as keys, every value a non-empty list; one-line :class:`SweepError` otherwise."""
    if not isinstance(grid, dict) or not grid:
        raise SweepError("the grid is empty: give `inas run` options with one or more values each "
                         "(e.g. --seed 0 1 2), or a --grid-file")
    normalised: dict[str, list[Any]] = {}
    for key, values in grid.items():
        flag = flag_name(str(key))
        if flag in normalised:
            raise SweepError(f"--{flag} is given twice in the grid")
        if flag in SWEEP_OWNED:
            raise SweepError(f"--{flag} cannot be part of the grid: {SWEEP_OWNED[flag]}")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise SweepError(f"--{flag} has an empty list of values; give at least one")
        for value in values:
            if isinstance(value, (dict, list, tuple)) or value is None:
                raise SweepError(f"--{flag}: {value!r} is not a single value (a string, number or true/false)")
        if len({json.dumps(v) for v in values}) != len(values):
            raise SweepError(f"--{flag} lists the same value twice: {values}")
        normalised[flag] = values
    return normalised


def load_grid_file(path: str | os.PathLike) -> dict[str, list[Any]]:
    """A grid from a TOML file: ``option = value`` or ``option = [values]``, option names as in ``inas run``."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise SweepError(f"cannot read the grid file {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SweepError(f"grid file {path} is not valid TOML: {error}") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise SweepError(f"grid file {path}: [{key}] is a table; write `inas run` options at the top level "
                             "(option = value or option = [values])")
    return data


def merge_grids(*grids: dict[str, Any]) -> dict[str, list[Any]]:
    """One grid from several (the file, then the flags); an option in two of them is an error."""
    merged: dict[str, Any] = {}
    for grid in grids:
        for key, values in normalise_grid(grid).items() if grid else ():
            if key in merged:
                raise SweepError(f"--{key} is given both in the grid file and as a flag; keep one")
            merged[key] = values
    return normalise_grid(merged)


def option_args(values: dict[str, Any]) -> list[str]:
    """``{"seed": 1, "augment": False}`` -> ``["--seed", "1", "--no-augment"]``; ``arch = "inas"`` (the
    search, the default of ``inas run``) gives no option, so a grid can compare iNAS with fixed
    networks, ``--arch inas 1x2 2x4``, and the runs of grids written before keep their options."""
    args: list[str] = []
    for flag, value in values.items():
        if flag == "arch" and value == SEARCHED_ARCH:
            continue
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args += [f"--{flag}", str(value)]
    return args


def expand(grid: dict[str, Any]) -> list[SweepRun]:
    """Every combination of the grid's values, as runs named by the values that vary."""
    grid = normalise_grid(grid)
    varying = [flag for flag, values in grid.items() if len(values) > 1]
    runs, names = [], set()
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination))
        base = ",".join(f"{flag}={_name_part(values[flag])}" for flag in varying) or "run"
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base}-{suffix}", suffix + 1
        names.add(name)
        runs.append(SweepRun(name, tuple(option_args(values))))
    return runs


def _name_part(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._:+-]+", "_", text).strip("_") or "_"


def flags_from_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested overrides (``{"query": {"heuristic": "random"}, "arch": "1x2"}``) -> ``inas run`` options
    through ``RUN_FLAGS``; a setting without an option is a :class:`SweepError`."""
    by_field = {(entry.section, entry.field): entry.flag for entry in RUN_FLAGS}
    flags: dict[str, Any] = {}
    for key, value in overrides.items():
        items = value.items() if key in SECTIONS else [(None, value)]
        for name, setting in items:
            section, field_name = (key, name) if key in SECTIONS else (None, key)
            flag = by_field.get((section, field_name))
            if flag is None:
                where = f"{section}.{field_name}" if section else field_name
                raise SweepError(f"setting {where} has no `inas run` option, so a sweep cannot set it")
            flags[flag] = setting
    return flags


# --------------------------------------------------------------------------- the sweep directory


def read_manifest(sweep_dir: Path) -> Optional[dict[str, Any]]:
    path = Path(sweep_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        runs = [SweepRun(str(run["name"]), tuple(str(arg) for arg in run["args"])) for run in manifest["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SweepError(f"{path} is not a readable sweep manifest: {error}") from None
    manifest["runs"] = runs
    manifest.setdefault("status", {})
    return manifest


def write_manifest(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    data = {**manifest, "runs": [run.to_dict() for run in manifest["runs"]]}
    atomic_write_json(Path(sweep_dir) / MANIFEST, data)


def prepare(sweep_dir: str | os.PathLike, runs: Sequence[SweepRun], grid: Optional[dict[str, Any]] = None,
            *, extend: bool = False, write: bool = True) -> dict[str, Any]:
    """Create the sweep directory for ``runs``, or check that it already holds this sweep.

    The same runs (names and options) continue the sweep. Other runs are refused naming
    ``--resume`` and a new directory -- unless ``extend``, which adds runs of new names to the sweep
    (the study of ``benchmarks/label_efficiency.py`` grows in pieces) but still refuses a known
    name with other options. A non-empty directory that is not a sweep is refused too. Nothing is
    written before these checks pass, nothing at all without ``write``.
    """
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise SweepError(f"{sweep_dir} exists and is not a directory; choose another --out")
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise SweepError("two runs of the sweep have the same name")
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        if sweep_dir.exists() and any(sweep_dir.iterdir()) and not extend:
            raise SweepError(f"{sweep_dir} is not empty and holds no sweep ({MANIFEST}); choose a new --out")
        manifest = {"version": MANIFEST_VERSION, "grid": grid, "runs": list(runs), "status": {}}
    else:
        known = {run.name: run for run in manifest["runs"]}
        changed = [run.name for run in runs if run.name in known and known[run.name] != run]
        new = [run for run in runs if run.name not in known]
        if changed or (not extend and (new or len(runs) != len(known))):  # the runs are the grid, expanded
            raise SweepError(f"{sweep_dir} holds a sweep of another grid ({MANIFEST}); continue that sweep with "
                             f"`inas sweep --resume {sweep_dir}`, or give this grid a new --out")
        manifest["runs"] = manifest["runs"] + new
    if not write:
        return manifest
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / LOG_DIR).mkdir(exist_ok=True)
    write_manifest(sweep_dir, manifest)
    return manifest


def run_complete(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished run (its results say ``complete``)."""
    try:
        return json.loads((Path(run_dir) / RESULTS_JSON).read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):
        return False


# --------------------------------------------------------------------------- one run (a Ray task)


def run_command(run: SweepRun, run_dir: Path, threads: int, parallel_candidates: bool = False,
                run_options: Sequence[str] = ()) -> list[str]:
    """The ``inas run`` command line of a run's next attempt: resume when its directory holds the run.
    ``run_options``: options every run of this session gets that are no setting (MLflow tracking)."""
    where = ["--resume", str(run_dir)] if holds_run(run_dir) else [*run.args, "--out", str(run_dir)]
    return [sys.executable, "-m", "inas_cli.main", "run", *where, "--threads", str(threads), "--quiet",
            *(["--parallel-candidates"] if parallel_candidates else []), *run_options]


def execute_run(run: SweepRun, run_dir: str, log_path: str, threads: int, parallel_candidates: bool,
                run_options: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) one ``inas run`` in a subprocess; the body of the sweep's Ray task.

    Returns the run's state for the manifest. A subprocess killed by a signal raises
    :class:`RunInterrupted`, which the task's retry policy retries.
    """
    run_dir_path = Path(run_dir)
    if run_complete(run_dir_path):
        return {"status": "complete", "seconds": 0.0, "skipped": True}
    command = run_command(run, run_dir_path, threads, parallel_candidates, run_options)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
    began = time.time()
    with open(log_path, "a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()} (worker pid {os.getpid()}): "
                  f"{shlex.join(command[1:])}\n")
        log.flush()
        process = subprocess.run(command, stdout=log, stderr=subprocess.PIPE, text=True, env=env,
                                 preexec_fn=_death_signal(), cwd=run_dir_path.parent)
        log.write(process.stderr)
        log.write(f"=== exit code {process.returncode} after {time.time() - began:.0f} s\n")
    if process.returncode < 0:
        raise RunInterrupted(f"inas run was killed by signal {-process.returncode}")
    if process.returncode != 0:
        return {"status": "failed", "error": error_line(process.stderr), "exit_code": process.returncode,
                "seconds": time.time() - began}
    return {"status": "complete", "seconds": time.time() - began}


def error_line(stderr: str) -> str:
    """The last ``error:`` line of a run's stderr (``inas run`` reports bad input so), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    return lines[-1] if lines else "no error message"


def _death_signal() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child get SIGKILL when the worker that started it dies (Linux's
    ``PR_SET_PDEATHSIG``), or None elsewhere. Resolved before the fork: the child only calls it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


# --------------------------------------------------------------------------- the sweep


@dataclass
class Progress:
    """Counts of the sweep's runs and an ETA from the pace of the runs finished in this session."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    started: float = field(default_factory=time.monotonic)
    finished_here: int = 0

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def eta_seconds(self, now: Optional[float] = None) -> Optional[float]:
        if self.remaining == 0:
            return 0.0
        if self.finished_here == 0:
            return None
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return elapsed / self.finished_here * self.remaining

    def line(self) -> str:
        eta = self.eta_seconds()
        eta_text = "unknown" if eta is None else _duration(eta)
        return (f"sweep: {self.done}/{self.total} done, {self.running} running, {self.failed} failed, "
                f"{self.remaining - self.running} queued; ETA {eta_text}")


def _duration(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class SweepSummary:
    complete: list[str]
    failed: dict[str, str]
    skipped: list[str]
    seconds: float


def execute(sweep_dir: str | os.PathLike, runs: Sequence[SweepRun], *, cpus_per_run: float = 1,
            gpus_per_run: float = 0, parallel_candidates: bool = False, max_retries: int = 3,
            echo: Callable[[str], None] = print, refresh_s: float = 30.0,
            run_options: Sequence[str] = ()) -> SweepSummary:
    """Execute ``runs`` (prepared with :func:`prepare`) as Ray tasks on the Ray of this process.

    Each task asks Ray for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; its run trains with
    that many torch threads (a third of them per candidate with ``parallel_candidates``, which then
    trains up to three candidates at once); ``run_options`` go to every run's command line (see
    :func:`run_command`). Prints a progress line whenever a count changes (and
    every ``refresh_s``), records every run's state in the manifest, and returns the summary.
    """
    import ray

    sweep_dir = Path(sweep_dir).resolve()
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        raise SweepError(f"{sweep_dir} holds no sweep ({MANIFEST}); prepare it first")
    status: dict[str, Any] = manifest["status"]
    began = time.monotonic()
    skipped = [run.name for run in runs if run_complete(sweep_dir / run.name)]
    for name in skipped:
        status[name] = {**status.get(name, {}), "status": "complete"}
    session_start = time.time()
    pending = _submit([run for run in runs if run.name not in skipped], sweep_dir, cpus_per_run=cpus_per_run,
                      gpus_per_run=gpus_per_run, parallel_candidates=parallel_candidates, max_retries=max_retries,
                      run_options=run_options)
    for run in pending.values():
        status[run.name] = {"status": "queued"}
    write_manifest(sweep_dir, manifest)
    progress = Progress(total=len(runs), done=len(skipped))
    complete, failed = [], {}
    last_counts, last_time = None, 0.0
    try:
        while True:
            progress.running = sum(1 for run in pending.values() if _started_since(sweep_dir, run, session_start))
            # A line when the counts change, else every refresh_s (the ETA alone moves every second:
            # printing it each time would fill a log with near-identical lines).
            counts = (progress.done, progress.failed, progress.running)
            if counts != last_counts or time.monotonic() - last_time >= refresh_s:
                echo(progress.line())
                last_counts, last_time = counts, time.monotonic()
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                run = pending.pop(ref)
                status[run.name] = _result(ref, max_retries)
                _count(run.name, status[run.name], progress, complete, failed)
                if run.name in failed:
                    echo(f"run {run.name} failed: {failed[run.name]} (log: {sweep_dir / LOG_DIR / run.name}.log)")
                write_manifest(sweep_dir, manifest)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        for run in pending.values():
            status[run.name] = {"status": "interrupted"}
        write_manifest(sweep_dir, manifest)
        raise
    return SweepSummary(complete=complete, failed=failed, skipped=skipped, seconds=time.monotonic() - began)


def _submit(runs: Sequence[SweepRun], sweep_dir: Path, *, cpus_per_run: float, gpus_per_run: float,
            parallel_candidates: bool, max_retries: int, run_options: Sequence[str] = ()) -> dict[Any, SweepRun]:
    """One Ray task per run (retried when its worker dies), by the task's object reference."""
    import ray

    task = ray.remote(execute_run).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries,
                                           retry_exceptions=[RunInterrupted])
    threads = max(1, int(cpus_per_run) // (3 if parallel_candidates else 1))
    return {task.remote(run, str(sweep_dir / run.name), str(sweep_dir / LOG_DIR / f"{run.name}.log"), threads,
                        parallel_candidates, tuple(run_options)): run for run in runs}


def _count(name: str, result: dict[str, Any], progress: Progress, complete: list[str], failed: dict[str, str]) -> None:
    """Count a finished run as complete or failed (with its one-line error)."""
    progress.finished_here += 1
    if result["status"] == "complete":
        progress.done += 1
        complete.append(name)
    else:
        progress.failed += 1
        failed[name] = result["error"]


def _started_since(sweep_dir: Path, run: SweepRun, since: float) -> bool:
    """A run's task has started in this session when it has written to its log since then."""
    try:
        return (sweep_dir / LOG_DIR / f"{run.name}.log").stat().st_mtime >= since
    except OSError:
        return False


def _result(ref: Any, max_retries: int) -> dict[str, Any]:
    import ray

    try:
        return ray.get(ref)
    except RunInterrupted as error:
        return {"status": "failed", "error": f"killed {max_retries + 1} times: {_task_error(error)}"}
    except ray.exceptions.RayError as error:  # the worker died on every try, or the task could not run
        return {"status": "failed", "error": f"{type(error).__name__} after {max_retries + 1} tries: {_task_error(error)}"}


def _task_error(error: BaseException) -> str:
    """A Ray task's error in one line: the text of the exception the task raised (``cause``), not the
    traceback Ray wraps around it."""
    return first_line(getattr(error, "cause", None) or error)


# --------------------------------------------------------------------------- the report


def write_report(sweep_dir: str | os.PathLike, runs: Sequence[SweepRun], *, log_x: bool = False) -> Optional[Path]:
    """``inas report`` of every run that has results: tables in report.md and report.json, curves in
    report.png. Returns the tables' path, or None when no run has results yet."""
    from .plots import plot_report
    from .report import build_report, format_curve_table, format_report_table, report_to_dict

    sweep_dir = Path(sweep_dir)
    run_dirs = [sweep_dir / run.name for run in runs if (sweep_dir / run.name / RESULTS_JSON).exists()]
    if not run_dirs:
        return None
    groups = build_report(run_dirs)
    plot_report(groups, sweep_dir / REPORT_PLOT, title=f"sweep {sweep_dir.name}", log_x=log_x)
    atomic_write_json(sweep_dir / REPORT_JSON, report_to_dict(groups))
    text = "\n".join([f"# Sweep {sweep_dir.name}", "", format_report_table(groups), "",
                      "## Test accuracy at each labelled size", "", format_curve_table(groups), "",
                      f"![learning curves]({REPORT_PLOT})", ""])
    path = sweep_dir / REPORT_TABLES
    atomic_write_text(path, text)
    return path
