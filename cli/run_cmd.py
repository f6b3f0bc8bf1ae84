"""``inas run``: one active-learning run (active-iNAS or a fixed-architecture baseline) into a run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from inas_plugins.config import RUN_FLAGS
from inas_plugins.error_text import first_line
from inas_plugins.progress import draw_bars
from inas_plugins.run_files import CHECKPOINT_NAME, CONFIG_NAME
from inas_plugins.rundir import holds_run

from .errors import fail, in_flags
from .options import PRESET_HELP, Preset, value, with_settings
from .track_cmd import Experiment, TrackingUri, new_tracker, tracked, tracking_target


# Typer reads the options from this signature; the setting options (--epochs, --heuristic, ...) are
# added by ``with_settings`` from ``RUN_FLAGS`` (inas_plugins/config.py), the one table of them.
@with_settings(entry.flag for entry in RUN_FLAGS)
def run(
    settings: dict[str, Any],
    preset: Annotated[Optional[Preset], typer.Option(
        help=PRESET_HELP + " Default: quick for digits/synthetic, paper on CUDA, else cpu.")] = None,
    query_size: Annotated[Optional[int], typer.Option(
        "--query-size", min=1, help="Labels per round (a constant schedule).")] = None,
    schedule: Annotated[Optional[str], typer.Option(
        help="Query schedule FROM:BATCH,... (paper: 0:2000,10000:5000).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Run directory (default: runs/<dataset>-<heuristic>-<inas|arch>-seed<N>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue the interrupted run in this directory (a complete run: its files are rewritten, nothing "
             "is trained). Setting flags may only repeat the run's values, except --data-dir (a moved copy of "
             "the same data) and --device.")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bars (they are only drawn on a terminal; otherwise one line per "
                              "round).")] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="Torch threads (default: the CPUs this process may use). Not a setting: free to "
                                 "change on --resume.")] = None,
    parallel_candidates: Annotated[bool, typer.Option(
        "--parallel-candidates", help="Train each search's candidates as parallel Ray tasks, each with --threads "
                                      "threads (or a GPU); same choices. Needs inas-plugins[ray]; plain search "
                                      "only.")] = False,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
    parent_run_id: Annotated[Optional[str], typer.Option(
        "--parent-run-id", hidden=True, help="MLflow run to nest this run under (inas sweep sets it).")] = None,
) -> None:
    """Run active learning with the iNAS search (or a fixed architecture) and write results and plots.

    One process owns a run directory at a time; a second `inas run` on it is refused. A run killed at
    any moment continues with --resume, ending as an uninterrupted run would.

    Exit status: 0 done (also: resuming a complete run), 2 bad input or a directory in use, 130 interrupted.

    Examples:
      inas run                                          # digits, bundled, a few minutes on a CPU
      inas run --dataset folder --data-dir ~/data/cifar10 --preset cpu --heuristic coreset
      inas run --dataset folder --data-dir ~/photos --image-size 64
      inas run --dataset cifar10 --arch 2x4 --heuristic random --seed 1
      inas run --resume runs/digits-softmax_response-inas-seed0
    """
    options = {**settings, "preset": value(preset), "query_size": query_size, "schedule": schedule, "out": out,
               "resume": resume}
    lock = None
    try:
        # The runs of a sweep are not refused for a server that went down: the sweep checked it at its start.
        target = tracking_target(tracking_uri, experiment, resume, check=parent_run_id is None)
        if resume is not None:
            config, lock = _prepare_resume(options)
            run_dir = resume
        else:
            config, run_dir, lock = _prepare_new(options)
        _execute(config, run_dir, resuming=resume is not None, quiet=quiet, threads=threads,
                 parallel_candidates=parallel_candidates, tracking=(target, parent_run_id))
    except KeyboardInterrupt:
        started = lock is not None and holds_run(lock.run_dir)
        hint = (f"continue with  inas run --resume {lock.run_dir}" if started
                else "the run had not started; nothing was written")
        typer.echo(f"\ninterrupted: {hint}", err=True)
        raise typer.Exit(130)
    finally:
        if lock is not None:
            lock.release(remove_if_unused=True)


def resolve_options(options: dict[str, Any]):
    """The run configuration of ``inas run``'s option values (by parameter name): the setting
    options, --preset and the schedule (--schedule or --query-size). A ValueError on bad input."""
    from inas_plugins.config import parse_schedule, resolve_config

    overrides = {entry.param: options.get(entry.param) for entry in RUN_FLAGS}
    schedule, query_size = options.get("schedule"), options.get("query_size")
    if schedule is not None and query_size is not None:
        raise ValueError("give either --query-size or --schedule, not both")
    if schedule is not None:
        overrides["query_schedule"] = parse_schedule(schedule)
    if query_size is not None:
        overrides["query_schedule"] = [[0, query_size]]
    return resolve_config(overrides, value(options.get("preset")))


def _prepare_new(options: dict):
    """Resolve and check the configuration, then own the run directory: (config, run_dir, lock)."""
    try:
        config = resolve_options(options)
    except ValueError as error:
        raise fail(in_flags(error))
    _check_choices(config)
    if options["out"] is not None:
        run_dir = options["out"]
        _check_writable(run_dir)
        lock = _lock(run_dir)
        if holds_run(run_dir):
            lock.release()
            raise fail(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose another --out")
        return config, run_dir, lock
    return (config, *_lock_default_run_dir(config))


def _prepare_resume(options: dict):
    """Own the run directory, read its configuration and refuse conflicting flags: (config, lock)."""
    from inas_plugins.checkpoint import load_checkpoint
    from inas_plugins.config import RESUME_MAY_CHANGE, RunConfig, resume_conflicts

    run_dir = options["resume"]
    if options["out"] is not None:
        raise fail("--out and --resume both name the run directory; give only --resume DIR")
    others = [f"--{name.replace('_', '-')}" for name in ("preset", "query_size", "schedule") if options[name] is not None]
    if others:
        raise fail(f"{', '.join(others)} cannot change a run being resumed; leave {'them' if len(others) > 1 else 'it'} "
                   f"out (may change on resume: {', '.join('--' + flag for flag in RESUME_MAY_CHANGE)})")
    if not run_dir.is_dir() or not holds_run(run_dir):
        raise fail(f"{run_dir} holds no run to resume (config.json is missing)")
    lock = _lock(run_dir)
    try:
        config_path = run_dir / CONFIG_NAME
        try:
            values = json.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise fail(f"{run_dir} holds no run to resume (config.json is missing)")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise fail(f"cannot resume {run_dir}: {config_path} is not valid JSON ({first_line(error)})")
        try:
            config = RunConfig.from_dict(values)
        except ValueError as error:
            raise fail(f"cannot resume {run_dir}: {config_path} is not a valid run configuration: {error}")
        conflicts = resume_conflicts(config, {entry.param: options[entry.param] for entry in RUN_FLAGS})
        if conflicts:
            raise fail(f"cannot resume {run_dir} with {'; '.join(conflicts)}: a resumed run keeps its configuration "
                       f"(may change on resume: {', '.join('--' + flag for flag in RESUME_MAY_CHANGE)}); "
                       f"start a new run with --out for other settings")
        if (run_dir / CHECKPOINT_NAME).exists():
            try:
                load_checkpoint(run_dir)  # fail on a bad file before loading the data
            except ValueError as error:
                raise fail(f"cannot resume {run_dir}: {error}")
        if options["data_dir"] is not None:  # the copy may have moved; the data identity is checked on load
            config.data_dir = str(options["data_dir"])
        if options["device"] is not None:
            config.device = options["device"]
        _check_choices(config)
    except BaseException:
        lock.release()
        raise
    return config, lock


def _execute(config, run_dir: Path, resuming: bool, quiet: bool, threads: Optional[int] = None,
             parallel_candidates: bool = False, tracking: tuple = (None, None)) -> None:
    """Load the data, check it against the run, and run (or continue) the active loop."""
    progress = draw_bars(not quiet)  # bars redraw in place: only on a terminal
    _check_device(config.device)
    pool = _candidate_pool(parallel_candidates, _set_threads(threads), config)
    typer.echo("configuration: " + json.dumps(config.to_dict(), sort_keys=True))

    from inas_plugins.data import DatasetError, load_dataset
    from inas_plugins.loop import ActiveRun

    options = {"image_size": config.image_size} if config.image_size is not None else {}
    try:
        data = load_dataset(config.dataset, config.data_dir, seed=config.data_seed, limit_train=config.limit_train,
                            limit_test=config.limit_test, progress=progress, **options)
        data.check_for_run()
    except DatasetError as error:
        raise fail(in_flags(error))
    typer.echo(data.describe())
    if config.initial > len(data.train):
        raise fail(f"--initial {config.initial} is larger than the training pool ({len(data.train)} images); "
                   f"lower --initial")
    what = f"cannot resume {run_dir}" if resuming else "cannot start the run"
    try:
        active_run = ActiveRun(config, data, run_dir, progress=progress, log=typer.echo, **pool)
        state = active_run.start_state(resume=resuming)
    except ValueError as error:
        hint = " (--data-dir may only point to a copy of the same data)" if "not the run's" in str(error) else ""
        raise fail(f"{what}: {error}{hint}")
    typer.echo(f"run directory: {run_dir}")
    active_run.tracker = new_tracker("run", run_dir, *tracking)
    with tracked(active_run.tracker):
        rounds = active_run.run(resume=resuming, state=state)
    final = rounds[-1]
    typer.echo(f"done: {final['labelled']} labels, final arch {final['arch'][0]}x{final['arch'][1]}, "
               f"test accuracy {final['test_accuracy']:.4f}; results in {run_dir}")


def _lock(run_dir: Path):
    """Own ``run_dir`` (created if needed) before anything is written into it; stale temp files go."""
    from inas_plugins.rundir import RunDirError, RunDirLock, remove_stale_temp_files

    lock = RunDirLock(run_dir)
    try:
        lock.acquire()
    except RunDirError as error:
        raise fail(str(error))
    removed = remove_stale_temp_files(run_dir)
    if removed:
        typer.echo(f"removed {len(removed)} temporary file(s) an interrupted write left in {run_dir}")
    return lock


def _lock_default_run_dir(config):
    """runs/<dataset>-<heuristic>-<inas|fixedAxB>-seed<N>, or the first -2, -3, ... free and not in use."""
    from inas_plugins.rundir import RunDirBusy, RunDirLock, remove_stale_temp_files

    model = f"fixed{config.arch}" if config.arch else "inas"
    base = Path("runs") / f"{config.dataset}-{config.query.heuristic}-{model}-seed{config.seed}"
    candidate, suffix = base, 2
    while True:
        if not holds_run(candidate):
            _check_writable(candidate)
            lock = RunDirLock(candidate)
            try:
                lock.acquire()
            except RunDirBusy:
                lock = None
            except Exception as error:
                raise fail(str(error))
            if lock is not None:
                if not holds_run(candidate):
                    remove_stale_temp_files(candidate)
                    return candidate, lock
                lock.release()
        candidate, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1



def _check_writable(run_dir: Path) -> None:
    """Fail before any work if the run directory cannot be created or written."""
    if run_dir.exists() and not run_dir.is_dir():
        raise fail(f"--out {run_dir} exists and is not a directory")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise fail(f"cannot write the run directory {run_dir}: {existing} is not writable")


def _check_choices(config) -> None:
    from inas_plugins.data import available_datasets, get_spec
    from inas_plugins.heuristics import create_heuristic

    if config.dataset not in available_datasets():
        raise fail(f"unknown dataset {config.dataset!r}; choose one of {', '.join(available_datasets())}")
    if config.image_size is not None and not get_spec(config.dataset).uses_data_dir:
        raise fail(f"--image-size applies to images read from disk (--dataset folder); {config.dataset} is built in")
    try:
        create_heuristic(config.query.heuristic)
    except ValueError as error:
        raise fail(in_flags(error))


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise fail("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    resolved = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    typer.echo(f"device: {resolved}" + (" (no CUDA available)" if device == "auto" and resolved == "cpu" else ""))


def _set_threads(threads: Optional[int]) -> int:
    """Torch's thread count for this run: --threads, or the CPUs this process may use. Runs side by
    side (``inas sweep``) each get their share; two runs with all cores each oversubscribe the CPU."""
    import torch

    from inas_plugins.ray_cluster import local_cpus

    threads = threads or local_cpus()
    torch.set_num_threads(threads)
    return threads


def _candidate_pool(parallel: bool, threads: int, config) -> dict:
    """``{"candidate_pool": CandidatePool}`` for ``ActiveRun`` with --parallel-candidates, else ``{}``."""
    if not parallel or not config.uses_search:
        return {}
    if config.search.successive_halving:
        raise fail("--parallel-candidates trains the plain search only; drop --successive-halving or --parallel-candidates")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise fail("--parallel-candidates needs Ray: pip install 'inas-plugins[ray]'")
    from inas_plugins.parallel import CandidatePool

    typer.echo(f"parallel candidates: Ray tasks with {threads} thread(s) each")
    return {"candidate_pool": CandidatePool(threads)}
