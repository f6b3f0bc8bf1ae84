"""``inas label``: active-iNAS on a real, unlabelled pool, with people labelling in Label Studio or in files.

    inas label init RUN --data-dir DIR --classes cat,dog [--label-studio URL --api-key KEY]
    inas label sync RUN            # pull answers; when the batch is done: a round, and the next batch
    inas label status RUN [--json]
    inas label export RUN --format csv|json [--what batch|labels] [--out FILE]
    inas label import RUN FILE

The work is done by :mod:`inas_plugins.labelling`; this module turns options into calls and bad
input (ProjectError, StudioError, ValueError) into one ``error:`` line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from inas_plugins.config import RUN_FLAGS

from .errors import fail
from .run_cmd import PRESET_HELP, _setting
from .track_cmd import experiment_option, new_tracker, stored_target, tracking_target, tracking_uri_option

app = typer.Typer(name="label", help="Label a real pool: human-in-the-loop active-iNAS with Label Studio or plain files.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

API_KEY_HELP = "Label Studio API token (Account & Settings); default: $LABEL_STUDIO_API_KEY. Never stored in RUN."
RUN_ARG = typer.Argument(..., metavar="RUN", help="The labelling run directory.")
# The inas run settings that mean something here (data set, data limits and --arch stay with inas run).
INIT_FLAGS = ("heuristic", "initial", "budget", "epochs", "epoch-size", "batch-size", "lr", "base-width", "max-blocks",
              "max-stacks", "start-arch", "search-iterations", "premature-fraction", "premature-schedule", "inherit-weights",
              "successive-halving", "augment", "mc-samples", "pool-subset", "seed", "device")


def _studio(url: Optional[str], api_key: Optional[str]):
    from inas_plugins.labelling.studio import Studio

    return Studio(url, api_key or os.environ.get("LABEL_STUDIO_API_KEY")) if url else None


@app.command("init")
def init(
    run_dir: Path = RUN_ARG,
    data_dir: Path = typer.Option(..., "--data-dir", help="DIR with unlabelled/**/*.{jpg,png}; optional labelled/<class>/ and test/<class>/."),
    classes: Optional[str] = typer.Option(None, help="Class names, comma-separated: cat,dog,bird."),
    classes_file: Optional[Path] = typer.Option(None, help="A file with one class name per line (instead of --classes)."),
    label_studio: Optional[str] = typer.Option(None, "--label-studio", help="Label Studio URL, e.g. http://localhost:8080; without it, label through export/import."),
    api_key: Optional[str] = typer.Option(None, help=API_KEY_HELP),
    document_root: Optional[Path] = typer.Option(None, help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the parent of DIR)."),
    title: Optional[str] = typer.Option(None, help="Label Studio project title (default: inas label RUN)."),
    preset: Optional[str] = typer.Option(None, help=PRESET_HELP + " Default: paper on CUDA, else cpu."),
    query_size: Optional[int] = typer.Option(None, "--query-size", help="Images per batch after the first (a constant schedule)."),
    image_size: Optional[int] = typer.Option(None, help="Fit every image to N x N on load, as `inas run --image-size`: shorter side to N, centre crop (needed when sizes differ)."),
    color: str = typer.Option("auto", help="auto (RGB unless all images are gray), rgb or gray."),
    flips: bool = typer.Option(True, "--flips/--no-flips", help="Mirror images in augmentation (off for text, digits)."),
    cv_folds: int = typer.Option(3, help="Folds of the cross-validated accuracy estimate, used without DIR/test/."),
    heuristic: Optional[str] = _setting("heuristic"),
    initial: Optional[int] = _setting("initial"),
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
    premature_schedule: Optional[str] = _setting("premature-schedule"),
    inherit_weights: Optional[bool] = _setting("inherit-weights", boolean=True),
    successive_halving: Optional[bool] = _setting("successive-halving", boolean=True),
    augment: Optional[bool] = _setting("augment", boolean=True),
    mc_samples: Optional[int] = _setting("mc-samples"),
    pool_subset: Optional[int] = _setting("pool-subset"),
    seed: Optional[int] = _setting("seed"),
    device: Optional[str] = _setting("device"),
    tracking_uri: Optional[str] = tracking_uri_option(),
    experiment: Optional[str] = experiment_option(),
) -> None:
    """Create a labelling run over DIR and post the first (random) batch.

    With --tracking-uri the run is one MLflow run, with a step per round (every `inas label sync`
    that runs a round logs it).

    Example:
      inas label init runs/pets --data-dir ~/data/pets --classes cat,dog --label-studio http://localhost:8080 --api-key $TOKEN
    """
    options = dict(locals())
    target = tracking_target(tracking_uri, experiment)
    from inas_plugins.config import resolve_config
    from inas_plugins.labelling import ProjectError, StudioError
    from inas_plugins.labelling.project import check_classes, read_classes_file
    from inas_plugins.labelling.session import init_project

    try:
        if (classes is None) == (classes_file is None):
            raise ProjectError("give the classes with either --classes a,b,c or --classes-file FILE")
        names = read_classes_file(classes_file) if classes_file else check_classes(classes)
        if color not in ("auto", "rgb", "gray"):
            raise ProjectError(f"unknown --color {color!r}; choose auto, rgb or gray")
        if image_size is not None and image_size < 1:
            raise ProjectError(f"--image-size must be a positive number of pixels, got {image_size}")
        overrides = {entry.param: options[entry.param] for entry in RUN_FLAGS if entry.flag in INIT_FLAGS}
        overrides.update(dataset="folder", data_dir=str(data_dir))
        if query_size is not None:
            overrides["query_schedule"] = [[0, query_size]]
        config = resolve_config(overrides, preset)
        from inas_plugins.heuristics import create_heuristic

        create_heuristic(config.query.heuristic)
        init_project(run_dir, data_dir, names, config, image_size=[image_size, image_size] if image_size else None,
                     color=color, flips=flips, cv_folds=cv_folds, studio=_studio(label_studio, api_key),
                     document_root=document_root, title=title, log=typer.echo)
    except (ProjectError, StudioError, ValueError, KeyError) as error:
        raise fail(_one_line(error))
    _track(run_dir, target)
    typer.echo(f"next: label the batch, then `inas label sync {run_dir}`"
               + ("" if label_studio else f" (files: `inas label export {run_dir}` ... `inas label import {run_dir} FILE`)"))


@app.command("sync")
def sync(
    run_dir: Path = RUN_ARG,
    api_key: Optional[str] = typer.Option(None, help=API_KEY_HELP),
    force: bool = typer.Option(False, "--force", help="Run the round now, even if the batch is not fully labelled."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Pull the answers; when the batch is labelled, run a round (iNAS, training, accuracy) and post the next batch."""
    from inas_plugins.labelling import ProjectError, StudioError
    from inas_plugins.labelling.project import load_project
    from inas_plugins.labelling.session import sync as run_sync

    try:
        project, _ = load_project(run_dir)
        studio = _studio(project.studio.url, api_key) if project.studio else None
        report = run_sync(run_dir, studio, force=force, progress=not quiet, log=typer.echo)
    except (ProjectError, StudioError, ValueError) as error:
        raise fail(_one_line(error))
    _track(run_dir, stored_target(run_dir))
    for problem in report.problems:
        typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
    if report.problems:
        raise typer.Exit(1)


@app.command("status")
def status(
    run_dir: Path = RUN_ARG,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Labelled / pending / skipped counts, rounds done, the current architecture and the accuracy so far."""
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.session import status as read_status

    try:
        info = read_status(run_dir)
    except (ProjectError, ValueError) as error:
        raise fail(_one_line(error))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    batch = info["batch"]
    typer.echo(f"run {info['run_dir']} over {info['data_dir']}" + (" (complete)" if info["complete"] else ""))
    typer.echo(f"labelled {info['labelled']} ({', '.join(f'{k} {v}' for k, v in info['per_class'].items())}), "
               f"skipped {info['skipped']}, pending {info['pending']}"
               + (f" of batch {batch['round']} ({batch['size']} images"
                  f"{', not posted yet' if info['label_studio'] and not batch['posted'] else ''})"
                  if batch else "")
               + f", unanswered in the pool {info['pool']}, conflicts {info['conflicts']}")
    arch = info["arch"]
    typer.echo(f"rounds done {info['rounds']}, architecture A({arch[0]},{arch[1]})")
    for entry in info["history"]:
        from inas_plugins.labelling.rounds import accuracy_text

        typer.echo(f"  round {entry['round']}: {entry['labelled']} labels, A({entry['arch'][0]},{entry['arch'][1]}), "
                   + accuracy_text(entry))
    if info["label_studio"]:
        typer.echo(f"Label Studio: {info['label_studio']['url']}/projects/{info['label_studio']['project_id']}/data")


@app.command("export")
def export(
    run_dir: Path = RUN_ARG,
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    what: str = typer.Option("batch", help="batch (the images to label now, with the model's guess) or labels (every label so far)."),
    out: Optional[Path] = typer.Option(None, help="Write to this file (default: standard output)."),
) -> None:
    """Write the batch to label (fill in the class column, then `inas label import`) or the labels so far."""
    from inas_plugins.atomic import atomic_write_text
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.files import export_text

    try:
        text = export_text(run_dir, fmt, what)
    except (ProjectError, ValueError) as error:
        raise fail(_one_line(error))
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


@app.command("import")
def import_(
    run_dir: Path = RUN_ARG,
    file: Path = typer.Argument(..., help="CSV or JSON with columns path,class (as `inas label export` writes)."),
) -> None:
    """Store the answers of FILE (all or nothing); then `inas label sync RUN` runs the round when the batch is done."""
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.files import import_file

    try:
        added = import_file(run_dir, file)
    except (ProjectError, ValueError) as error:
        raise fail(_one_line(error))
    typer.echo(f"imported {added} new answer(s) from {file}")


def _track(run_dir: Path, target) -> None:
    """Bring the run's MLflow run up to date (when it is tracked); a server that is down is one warning."""
    tracker = new_tracker("label", run_dir, target)
    if tracker is not None:
        tracker.finish("done")


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
