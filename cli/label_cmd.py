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
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from inas_plugins.choices import COLOR_MODES, LABEL_EXPORT_FORMATS, LABEL_EXPORTS, LABEL_STUDIO_API_KEY_ENV
from inas_plugins.config import RUN_FLAGS
from inas_plugins.progress import draw_bars

from .errors import fail, one_line
from .options import PRESET_HELP, Preset, choices, value, with_settings
from .track_cmd import Experiment, TrackingUri, new_tracker, stored_target, tracking_target

app = typer.Typer(name="label", help="Label a real pool: human-in-the-loop active-iNAS with Label Studio or plain files.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

RunDir = Annotated[Path, typer.Argument(metavar="RUN", help="The labelling run directory.")]
ApiKey = Annotated[Optional[str], typer.Option(envvar=LABEL_STUDIO_API_KEY_ENV, show_envvar=True, help=(
    "Label Studio API token (Account & Settings). Never stored in RUN."))]
Color = choices("Color", COLOR_MODES)
ExportFormat = choices("ExportFormat", LABEL_EXPORT_FORMATS)
Export = choices("Export", LABEL_EXPORTS)
# The inas run settings that mean something here: all but the data set and its limits (the pool is
# DIR, whole) and a fixed --arch, which would leave nothing to search while people label.
RUN_ONLY = ("dataset", "data-dir", "arch", "limit-train", "limit-test")


def _studio(url: Optional[str], api_key: Optional[str]):
    from inas_plugins.labelling.studio import Studio

    return Studio(url, api_key) if url else None


@app.command("init")
@with_settings(entry.flag for entry in RUN_FLAGS if entry.flag not in RUN_ONLY)
def init(
    run_dir: RunDir,
    settings: dict[str, Any],
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="DIR with unlabelled/**/*.{jpg,png}; optional labelled/<class>/ and test/<class>/.")],
    classes: Annotated[Optional[str], typer.Option(help="Class names, comma-separated: cat,dog,bird.")] = None,
    classes_file: Annotated[Optional[Path], typer.Option(
        help="A file with one class name per line (instead of --classes).")] = None,
    label_studio: Annotated[Optional[str], typer.Option(
        "--label-studio", help="Label Studio URL, e.g. http://localhost:8080; without it, label through "
                               "export/import.")] = None,
    api_key: ApiKey = None,
    document_root: Annotated[Optional[Path], typer.Option(
        help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the parent of DIR).")] = None,
    title: Annotated[Optional[str], typer.Option(help="Label Studio project title (default: inas label RUN).")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help=PRESET_HELP + " Default: paper on CUDA, else cpu.")] = None,
    query_size: Annotated[Optional[int], typer.Option(
        "--query-size", min=1, help="Images per batch after the first (a constant schedule).")] = None,
    color: Annotated[Color, typer.Option(help="auto (RGB unless all images are gray), rgb or gray.")] = Color.auto,
    flips: Annotated[bool, typer.Option(
        "--flips/--no-flips", help="Mirror images in augmentation (off for text, digits).")] = True,
    cv_folds: Annotated[int, typer.Option(
        help="Folds of the cross-validated accuracy estimate, used without DIR/test/.")] = 3,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = None,
) -> None:
    """Create a labelling run over DIR and post the first (random) batch.

    With --tracking-uri the run is one MLflow run, with a step per round (every `inas label sync`
    that runs a round logs it).

    Example:
      inas label init runs/pets --data-dir ~/data/pets --classes cat,dog --label-studio http://localhost:8080 --api-key $TOKEN
    """
    target = tracking_target(tracking_uri, experiment)
    from inas_plugins.config import resolve_config
    from inas_plugins.heuristics import create_heuristic
    from inas_plugins.labelling import ProjectError, StudioError
    from inas_plugins.labelling.project import check_classes, read_classes_file
    from inas_plugins.labelling.session import init_project

    try:
        if (classes is None) == (classes_file is None):
            raise ProjectError("give the classes with either --classes a,b,c or --classes-file FILE")
        names = read_classes_file(classes_file) if classes_file else check_classes(classes)
        overrides = {**settings, "dataset": "folder", "data_dir": str(data_dir)}
        if query_size is not None:
            overrides["query_schedule"] = [[0, query_size]]
        config = resolve_config(overrides, value(preset))
        create_heuristic(config.query.heuristic)
        size = config.image_size
        init_project(run_dir, data_dir, names, config, image_size=[size, size] if size else None,
                     color=value(color), flips=flips, cv_folds=cv_folds, studio=_studio(label_studio, api_key),
                     document_root=document_root, title=title, log=typer.echo)
    except (ProjectError, StudioError, ValueError, KeyError) as error:
        raise fail(one_line(error))
    _track(run_dir, target)
    typer.echo(f"next: label the batch, then `inas label sync {run_dir}`"
               + ("" if label_studio else f" (files: `inas label export {run_dir}` ... `inas label import {run_dir} FILE`)"))


@app.command("sync")
def sync(
    run_dir: RunDir,
    api_key: ApiKey = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Run the round now, even if the batch is not fully labelled.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Pull the answers; when the batch is labelled, run a round (iNAS, training, accuracy) and post the next batch."""
    from inas_plugins.labelling import ProjectError, StudioError
    from inas_plugins.labelling.project import load_project
    from inas_plugins.labelling.session import sync as run_sync

    try:
        project, _ = load_project(run_dir)
        studio = _studio(project.studio.url, api_key) if project.studio else None
        report = run_sync(run_dir, studio, force=force, progress=draw_bars(not quiet), log=typer.echo)
    except (ProjectError, StudioError, ValueError) as error:
        raise fail(one_line(error))
    _track(run_dir, stored_target(run_dir))
    for problem in report.problems:
        typer.secho(f"error: {problem}", err=True, fg=typer.colors.RED)
    if report.problems:
        raise typer.Exit(1)


@app.command("status")
def status(
    run_dir: RunDir,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Labelled / pending / skipped counts, rounds done, the current architecture and the accuracy so far."""
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.session import status as read_status

    try:
        info = read_status(run_dir)
    except (ProjectError, ValueError) as error:
        raise fail(one_line(error))
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
    run_dir: RunDir,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = ExportFormat.csv,
    what: Annotated[Export, typer.Option(help="batch (the images to label now, with the model's guess) or labels "
                                              "(every label so far).")] = Export.batch,
    out: Annotated[Optional[Path], typer.Option(help="Write to this file (default: standard output).")] = None,
) -> None:
    """Write the batch to label (fill in the class column, then `inas label import`) or the labels so far."""
    from inas_plugins.atomic import atomic_write_text
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.files import export_text

    try:
        text = export_text(run_dir, value(fmt), value(what))
    except (ProjectError, ValueError) as error:
        raise fail(one_line(error))
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


@app.command("import")
def import_(
    run_dir: RunDir,
    file: Annotated[Path, typer.Argument(help="CSV or JSON with columns path,class (as `inas label export` writes).")],
) -> None:
    """Store the answers of FILE (all or nothing); then `inas label sync RUN` runs the round when the batch is done."""
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.files import import_file

    try:
        added = import_file(run_dir, file)
    except (ProjectError, ValueError) as error:
        raise fail(one_line(error))
    typer.echo(f"imported {added} new answer(s) from {file}")


def _track(run_dir: Path, target) -> None:
    """Bring the run's MLflow run up to date (when it is tracked); a server that is down is one warning."""
    tracker = new_tracker("label", run_dir, target)
    if tracker is not None:
        tracker.finish("done")
