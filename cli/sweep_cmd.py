"""``inas sweep``: a grid of ``inas run`` options executed as Ray tasks, locally or on a cluster.

The grid's options are ``inas run``'s own: every option this command does not know is taken as a
grid axis (``--heuristic softmax_response random --seed 0 1 2``), and each expanded run is parsed
by the ``inas run`` command itself and its configuration resolved before anything starts, so a bad
value fails the sweep at once with one line instead of failing its runs one by one. The library
side (expansion, the sweep directory, the Ray tasks, the report) is :mod:`inas_plugins.sweep`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import fail, in_flags
from .track_cmd import Experiment, TrackingUri, new_tracker, tracking_args, tracking_target

EPILOG = "Grid: any `inas run` option with one or more values, e.g. --heuristic softmax_response random --seed 0 1 2."


def sweep(
    ctx: typer.Context,
    grid_file: Annotated[Optional[Path], typer.Option(
        "--grid-file", help="TOML file of `inas run` options: option = value, or a list of values; flags add to "
                            "it.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Sweep directory (default: sweeps/sweep-<hash of the grid>).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="Continue the sweep in this directory, with its own grid.")] = None,
    address: Annotated[Optional[str], typer.Option(
        "--address", help="Join a Ray cluster: auto (the one `ray start` made on this machine), HOST:PORT or "
                          "ray://HOST:PORT. Default: a local Ray.")] = None,
    cpus_per_run: Annotated[float, typer.Option(
        "--cpus-per-run", min=0.01, help="CPUs per run; a run trains with that many torch threads (at least "
                                         "1).")] = 1.0,
    gpus_per_run: Annotated[Optional[float], typer.Option(
        "--gpus-per-run", min=0.0, help="GPUs per run (fractions share one). Default: 1 when the cluster has GPUs, "
                                        "else 0.")] = None,
    parallel_candidates: Annotated[bool, typer.Option(
        "--parallel-candidates", help="Each run trains its iNAS candidates in parallel (a third of --cpus-per-run "
                                      "each, or a GPU each).")] = False,
    max_retries: Annotated[int, typer.Option(
        "--max-retries", min=0, help="Retries of a run whose worker dies (it resumes).")] = 3,
    log_x: Annotated[bool, typer.Option(
        "--log-x", help="Logarithmic labelled-size axis in the sweep's report plot.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and their options, start nothing.")] = False,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Run a grid of `inas run` configurations as Ray tasks, then report them all.

    Each run gets its own directory under the sweep directory. Rerunning a sweep skips complete
    runs, resumes interrupted ones from their checkpoints and retries failed ones; a run whose
    worker dies is retried and resumes. At the end report.md, report.json and report.png
    (`inas report` of every run) are written into the sweep directory. With --tracking-uri the
    sweep is one MLflow run (the grid, the report) and each of its runs a run nested under it.

    Examples:
      inas sweep --dataset synthetic --heuristic softmax_response random --seed 0 1 --out sweeps/demo
      inas sweep --grid-file study.toml --cpus-per-run 2 --out sweeps/study
      inas sweep --resume sweeps/study --address auto
    """
    from inas_plugins.sweep import SweepError, expand, merge_grids, prepare, read_manifest

    try:
        flags = parse_grid_args(list(ctx.args))
        if resume is not None:
            if flags or grid_file is not None or out is not None:
                raise SweepError("--resume continues the stored grid; give no grid options, --grid-file or --out with it")
            manifest = read_manifest(resume)
            if manifest is None:
                raise SweepError(f"{resume} holds no sweep to resume (sweep.json is missing)")
            runs, grid, sweep_dir = manifest["runs"], manifest.get("grid"), resume
        else:
            grid = check_grid(merge_grids(load_file(grid_file), flags))
            runs = expand(grid)
            for run in runs:
                check_run(run.name, list(run.args))
            sweep_dir = out or Path("sweeps") / f"sweep-{_digest(grid)}"
            prepare(sweep_dir, runs, grid, write=False)
    except SweepError as error:
        raise fail(str(error))
    if dry_run:
        for run in runs:
            typer.echo(f"{sweep_dir / run.name}: inas run {' '.join(run.args)}")
        typer.echo(f"{len(runs)} runs in {sweep_dir}")
        return
    target = tracking_target(tracking_uri, experiment, resume)
    _execute(sweep_dir, runs, grid, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
             parallel_candidates=parallel_candidates, max_retries=max_retries, log_x=log_x, target=target)


def _execute(sweep_dir: Path, runs, grid, *, address, cpus_per_run, gpus_per_run, parallel_candidates,
             max_retries, log_x, target=None) -> None:
    try:
        import ray
    except ImportError:
        raise fail("inas sweep needs Ray: pip install 'inas-plugins[ray]'")
    from inas_plugins.ray_cluster import ClusterError, check_fits, connect, largest_node
    from inas_plugins.sweep import MANIFEST, SweepError, execute, prepare, write_report

    try:
        owned = connect(address)
    except ClusterError as error:
        raise fail(str(error))
    try:
        try:
            if gpus_per_run is None:
                gpus_per_run = 1.0 if largest_node()["GPU"] >= 1 else 0.0
            check_fits(cpus_per_run, gpus_per_run)
            prepare(sweep_dir, runs, grid)
        except (ClusterError, SweepError) as error:
            raise fail(str(error))
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        if parallel_candidates and cpus_per_run < 3 and gpus_per_run < 1:
            typer.echo("note: --parallel-candidates trains up to 3 candidates of a run at once, each with a third of "
                       "--cpus-per-run (at least one thread): give --cpus-per-run 3 or more so they get a CPU each")
        typer.echo(f"sweep of {len(runs)} runs in {sweep_dir} on {where} "
                   f"({cpus_per_run:g} CPUs, {gpus_per_run:g} GPUs per run)")
        # The runs are nested under the sweep's MLflow run, so it is made first; without it (the server
        # went down) they run untracked, and `inas track sync SWEEP_DIR` uploads them all later.
        tracker = new_tracker("sweep", sweep_dir, target)
        run_options = tracking_args(target, tracker.run_id) if tracker is not None and tracker.open() else []
        try:
            summary = execute(sweep_dir, runs, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                              parallel_candidates=parallel_candidates, max_retries=max_retries, echo=typer.echo,
                              run_options=run_options)
        except KeyboardInterrupt:
            if tracker is not None:
                tracker.finish("interrupted")
            typer.echo(f"\ninterrupted: continue with  inas sweep --resume {sweep_dir}", err=True)
            raise typer.Exit(130)
        tables = write_report(sweep_dir, runs, log_x=log_x)
        if tables is not None:
            typer.echo(tables.read_text().split("\n## ")[0].split("\n", 2)[-1].strip())
            typer.echo(f"report: {tables}, {sweep_dir / 'report.png'}")
        typer.echo(f"sweep done in {summary.seconds / 60:.1f} min: {len(summary.complete)} runs complete, "
                   f"{len(summary.skipped)} skipped (already complete), {len(summary.failed)} failed")
        if tracker is not None:
            tracker.finish("failed" if summary.failed else "done")
        if summary.failed:
            raise fail(f"{len(summary.failed)} of {len(runs)} runs failed (errors in {sweep_dir / MANIFEST}); "
                       f"fix the cause and rerun with  inas sweep --resume {sweep_dir}", code=1)
    finally:
        if owned:
            ray.shutdown()


# --------------------------------------------------------------------------- the grid on the command line


def _run_command():
    """``inas run`` as Typer's click command: the one authority on its options and their values."""
    from . import run_cmd

    app = typer.Typer(add_completion=False)
    app.command()(run_cmd.run)
    return typer.main.get_command(app)


def _options(command) -> list:
    return [param for param in command.params if getattr(param, "param_type_name", None) == "option"]


def _boolean_flags(command) -> dict[str, bool]:
    """``{"augment": True, "no-augment": False, ...}`` for ``inas run``'s on/off options."""
    flags: dict[str, bool] = {}
    for param in _options(command):
        if param.is_flag:
            flags.update({opt.lstrip("-"): True for opt in param.opts if opt.startswith("--")})
            flags.update({opt.lstrip("-"): False for opt in param.secondary_opts if opt.startswith("--")})
    return flags


def _value_flags(command) -> set[str]:
    return {opt.lstrip("-") for param in _options(command) if not param.is_flag
            for opt in param.opts if opt.startswith("--")}


def parse_grid_args(tokens: list[str]) -> dict[str, list[Any]]:
    """``--seed 0 1 --augment --no-augment --arch 1x2`` -> ``{"seed": ["0", "1"], "augment": [True, False], ...}``.

    An on/off option is a value by itself (``--augment``, ``--no-augment``) or takes true/false
    values (``--augment true false``). Values stay strings: ``inas run`` parses them.
    """
    from inas_plugins.sweep import SweepError

    grid: dict[str, list[Any]] = {}
    flag: Optional[str] = None
    implicit = False  # the flag's list holds only the value of a bare on/off option
    booleans = _boolean_flags(_run_command()) if tokens else {}
    for token in tokens:
        if token.startswith("--"):
            name, _, inline = token[2:].partition("=")
            if name in booleans and not inline:
                key = _positive(name, booleans)
                values = grid.setdefault(key, [])
                if booleans[name] in values:
                    raise SweepError(f"--{name} is given twice")
                values.append(booleans[name])
                flag, implicit = (key, True) if booleans[name] else (None, False)
                continue
            if name in grid:
                raise SweepError(f"--{name} is given twice; list all its values after one --{name}")
            grid[name] = [inline] if inline else []
            flag, implicit = name, False
        elif flag is None:
            raise SweepError(f"unexpected value {token!r}: values follow their option, e.g. --seed 0 1 2")
        else:
            if implicit:
                grid[flag], implicit = [], False
            grid[flag].append(token)
    for name, values in grid.items():
        if not values:
            raise SweepError(f"--{name} has no values; give one or more after it")
    return grid


def check_grid(grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Every key an ``inas run`` option the sweep does not set itself; on/off options get booleans."""
    from inas_plugins.sweep import SWEEP_OWNED, SweepError

    command = _run_command()
    booleans, valued = _boolean_flags(command), _value_flags(command)
    for name, values in list(grid.items()):
        if name in booleans and not booleans[name]:  # no-augment = true -> augment = false
            positive = _positive(name, booleans)
            if positive in grid:
                raise SweepError(f"--{positive} and --{name} are given both; list true/false values of --{positive}")
            grid = {(positive if key == name else key): ([not _boolean(name, v) for v in vals] if key == name else vals)
                    for key, vals in grid.items()}
            name, values = positive, grid[positive]
        if name in SWEEP_OWNED:
            raise SweepError(f"--{name} cannot be part of the grid: {SWEEP_OWNED[name]}")
        if name in booleans:
            grid[name] = [_boolean(name, value) for value in values]
        elif name not in valued:
            raise SweepError(f"unknown option --{name} in the grid; `inas run` options are "
                             + ", ".join(f"--{f}" for f in sorted(valued | booleans.keys())))
        elif any(isinstance(value, bool) for value in values):
            raise SweepError(f"--{name} takes values, not true/false")
    return grid


def _positive(name: str, booleans: dict[str, bool]) -> str:
    """The positive name of an on/off option (``no-augment`` -> ``augment``)."""
    if booleans[name]:
        return name
    return name[len("no-"):] if name.startswith("no-") and name[len("no-"):] in booleans else name


def _boolean(name: str, value: Any) -> bool:
    from inas_plugins.sweep import SweepError

    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SweepError(f"--{name}: {value!r} is not true or false")


def load_file(path: Optional[Path]) -> dict[str, Any]:
    from inas_plugins.sweep import load_grid_file

    return load_grid_file(path) if path is not None else {}


def check_run(name: str, args: list[str]) -> None:
    """Parse one run's options with ``inas run`` itself and resolve its configuration; one line
    (:class:`~inas_plugins.sweep.SweepError`) naming the run on the first problem."""
    from inas_plugins.data import available_datasets
    from inas_plugins.heuristics import create_heuristic
    from inas_plugins.sweep import SweepError

    from typer._click import ClickException  # Typer's own click, which its commands raise

    from .run_cmd import resolve_options

    try:
        params = _run_command().make_context("run", list(args)).params
    except ClickException as error:
        raise SweepError(f"{_which(name)}: {error.format_message()}") from None
    try:
        config = resolve_options(params)
        if config.dataset not in available_datasets():
            raise ValueError(f"unknown dataset {config.dataset!r}; choose one of {', '.join(available_datasets())}")
        create_heuristic(config.query.heuristic)
    except ValueError as error:
        raise SweepError(f"{_which(name)}: {in_flags(error)}") from None


def _which(name: str) -> str:
    return "the run" if name == "run" else f"run {name}"



def _digest(grid: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(grid, sort_keys=True).encode()).hexdigest()[:8]
