"""``inas run``: one active-learning run (active-iNAS or a fixed-architecture baseline) into a run directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from inas_plugins.config import FLAGS_BY_NAME, RUN_FLAGS

from .errors import fail

PRESET_HELP = "paper (the paper's protocol, for a GPU), cpu (scaled CIFAR protocol, 2-8 min on 2 cores), quick (digits default)."


def _setting(flag: str, boolean: bool = False):
    """The Typer option of a setting: its flag name and help text come from ``RUN_FLAGS``."""
    entry = FLAGS_BY_NAME[flag]
    return typer.Option(None, f"--{flag}/--no-{flag}" if boolean else f"--{flag}", help=entry.help)


# Typer reads the options from this signature; which setting each one sets is ``RUN_FLAGS``'s business
# (inas_plugins/config.py), so a setting option is declared here by its flag name only.
def run(
    dataset: Optional[str] = _setting("dataset"),
    data_dir: Optional[Path] = _setting("data-dir"),
    heuristic: Optional[str] = _setting("heuristic"),
    arch: Optional[str] = _setting("arch"),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP + " Default: quick for digits/synthetic, paper on CUDA, else cpu."),
    initial: Optional[int] = _setting("initial"),
    query_size: Optional[int] = typer.Option(None, "--query-size", help="Labels per round (a constant schedule)."),
    schedule: Optional[str] = typer.Option(None, help="Query schedule FROM:BATCH,... (paper: 0:2000,10000:5000)."),
    budget: Optional[int] = _setting("budget"),
    epochs: Optional[int] = _setting("epochs"),
    epoch_size: Optional[int] = _setting("epoch-size"),
    batch_size: Optional[int] = _setting("batch-size"),
    lr: Optional[float] = _setting("lr"),
    base_width: Optional[int] = _setting("base-width"),
    max_blocks: Optional[int] = _setting("max-blocks"),
    max_stacks: Optional[int] = _setting("max-stacks"),
    start_arch: Optional[str] = _setting("start-arch"),
    search_iterations: Optional[int] = _setting("search-iterations"),
    premature_fraction: Optional[float] = _setting("premature-fraction"),
    inherit_weights: Optional[bool] = _setting("inherit-weights", boolean=True),
    successive_halving: Optional[bool] = _setting("successive-halving", boolean=True),
    augment: Optional[bool] = _setting("augment", boolean=True),
    mc_samples: Optional[int] = _setting("mc-samples"),
    pool_subset: Optional[int] = _setting("pool-subset"),
    limit_train: Optional[int] = _setting("limit-train"),
    limit_test: Optional[int] = _setting("limit-test"),
    seed: Optional[int] = _setting("seed"),
    device: Optional[str] = _setting("device"),
    out: Optional[Path] = typer.Option(None, help="Run directory (default: runs/<dataset>-<heuristic>-<inas|arch>-seed<N>)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; round summaries only."),
) -> None:
    """Run active learning with the iNAS search (or a fixed architecture) and write results and plots.

    Examples:
      inas run                                          # digits, bundled, a few minutes on a CPU
      inas run --dataset folder --data-dir ~/data/cifar10 --preset cpu --heuristic coreset
      inas run --dataset cifar10 --arch 2x4 --heuristic random --seed 1
      inas run --resume runs/digits-softmax_response-inas-seed0
    """
    options = dict(locals())  # the option values, by parameter name
    from inas_plugins.checkpoint import load_checkpoint
    from inas_plugins.config import RunConfig, parse_schedule, resolve_config

    if resume is not None:
        config_path = resume / "config.json"
        try:
            load_checkpoint(resume)
            config = RunConfig.from_dict(json.loads(config_path.read_text()))
        except FileNotFoundError:
            raise fail(f"{resume} holds no run to resume (config.json is missing)")
        except (ValueError, json.JSONDecodeError) as error:
            raise fail(f"cannot resume {resume}: {error}")
        if data_dir is not None:  # the copy may have moved since the run started
            config.data_dir = str(data_dir)
        run_dir = resume
    else:
        overrides = {entry.param: options[entry.param] for entry in RUN_FLAGS}
        try:
            if schedule is not None and query_size is not None:
                raise ValueError("give either --query-size or --schedule, not both")
            if schedule is not None:
                overrides["query_schedule"] = parse_schedule(schedule)
            if query_size is not None:
                overrides["query_schedule"] = [[0, query_size]]
            config = resolve_config(overrides, preset)
        except ValueError as error:
            raise fail(str(error))
        run_dir = out or _default_run_dir(config)
        if _holds_run(run_dir):
            raise fail(f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose another --out")
        _check_writable(run_dir)

    _check_choices(config)
    _check_device(config.device)
    typer.echo("configuration: " + json.dumps(config.to_dict(), sort_keys=True))

    from inas_plugins.data import DatasetError, load_dataset
    from inas_plugins.loop import ActiveRun

    try:
        data = load_dataset(config.dataset, config.data_dir, seed=config.data_seed, limit_train=config.limit_train,
                            limit_test=config.limit_test, progress=not quiet)
    except DatasetError as error:
        raise fail(str(error))
    typer.echo(data.describe())
    if config.initial > len(data.train):
        raise fail(f"--initial {config.initial} is larger than the training pool ({len(data.train)} images)")

    run_dir.mkdir(parents=True, exist_ok=True)
    typer.echo(f"run directory: {run_dir}")
    active_run = ActiveRun(config, data, run_dir, progress=not quiet, log=typer.echo)
    try:
        rounds = active_run.run(resume=resume is not None)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: continue with  inas run --resume {run_dir}", err=True)
        raise typer.Exit(130)
    final = rounds[-1]
    typer.echo(f"done: {final['labelled']} labels, final arch {final['arch'][0]}x{final['arch'][1]}, "
               f"test accuracy {final['test_accuracy']:.4f}; results in {run_dir}")


def _default_run_dir(config) -> Path:
    model = f"fixed{config.arch}" if config.arch else "inas"
    base = Path("runs") / f"{config.dataset}-{config.query.heuristic}-{model}-seed{config.seed}"
    candidate, suffix = base, 2
    while _holds_run(candidate):
        candidate, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    return candidate


def _holds_run(run_dir: Path) -> bool:
    return (run_dir / "config.json").exists() or (run_dir / "checkpoint.pt").exists()


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
    from inas_plugins.data import available_datasets
    from inas_plugins.heuristics import create_heuristic

    if config.dataset not in available_datasets():
        raise fail(f"unknown dataset {config.dataset!r}; choose one of {', '.join(available_datasets())}")
    try:
        create_heuristic(config.query.heuristic)
    except ValueError as error:
        raise fail(str(error))


def _check_device(device: str) -> None:
    import torch

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise fail(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise fail("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    resolved = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    typer.echo(f"device: {resolved}" + (" (no CUDA available)" if device == "auto" and resolved == "cpu" else ""))
