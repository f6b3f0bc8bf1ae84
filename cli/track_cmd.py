"""``inas track``: MLflow tracking. ``inas track sync DIR`` uploads what a directory holds and its MLflow
run lacks; the ``--tracking-uri`` / ``--experiment`` options and the start-up checks that ``inas run``,
``inas sweep`` and ``inas label init`` share live here too. The work is :mod:`inas_plugins.tracking`'s.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from .errors import fail

TRACKING_URI_HELP = ("Record the run in this MLflow tracking server, e.g. http://127.0.0.1:5000 (default: "
                     "$MLFLOW_TRACKING_URI; neither: not tracked). Needs inas-plugins[track].")
EXPERIMENT_HELP = "MLflow experiment to record in (default: inas)."


TrackingUri = Annotated[Optional[str], typer.Option("--tracking-uri", help=TRACKING_URI_HELP, show_default=False)]
Experiment = Annotated[Optional[str], typer.Option("--experiment", help=EXPERIMENT_HELP, show_default=False)]


def tracking_target(uri: Optional[str], experiment: Optional[str], directory: Optional[Path] = None,
                    check: bool = True):
    """The target of a command, or None (not tracked); bad input is one ``error:`` line.

    ``directory``: a run being continued, whose own target (its ``mlflow.json``) is used when no
    --tracking-uri is given. That stored target is not checked at start: a server that is down then
    costs the run nothing (the tracker warns once and catches up later). Neither is one with
    ``check=False`` (the runs of a sweep, which checked it itself).
    """
    from inas_plugins.tracking import TrackingError, check_target, require_client, resolve_target

    stored = stored_target(directory) if directory is not None else None
    try:
        target = resolve_target(uri, experiment, stored)
        if target is not None:
            require_client()
            if check and target != stored:
                check_target(target)
    except TrackingError as error:
        raise fail(str(error))
    return target


def stored_target(directory: Path):
    """The target ``directory`` is tracked in (its ``mlflow.json``), or None; a damaged file is one line."""
    from inas_plugins.tracking import TrackingError
    from inas_plugins.tracking.link import read_link

    try:
        link = read_link(directory)
    except TrackingError as error:
        raise fail(str(error))
    return link.target if link is not None else None


def tracking_args(target, parent_run_id: Optional[str]) -> list[str]:
    """The options that make an ``inas run`` of a sweep record into ``target``, nested under the sweep's run."""
    if target is None or parent_run_id is None:
        return []
    return ["--tracking-uri", target.uri, "--experiment", target.experiment, "--parent-run-id", parent_run_id]


def new_tracker(kind: str, directory: Path, target, parent_run_id: Optional[str] = None):
    """A tracker of ``directory`` (``run``, ``sweep`` or ``label``) into ``target``; None when not tracked."""
    if target is None:
        return None
    from inas_plugins.tracking.mirror import LabelMirror, RunMirror, SweepMirror
    from inas_plugins.tracking.tracker import Tracker

    mirror = {"run": RunMirror, "sweep": SweepMirror, "label": LabelMirror}[kind](directory, target, parent_run_id)
    return Tracker(mirror, log=typer.echo)


@contextmanager
def tracked(tracker) -> Iterator[None]:
    """Finish ``tracker`` (None: nothing) as the block ends: done, interrupted (Ctrl-C) or failed."""
    if tracker is None:
        yield
        return
    try:
        yield
    except KeyboardInterrupt:
        tracker.finish("interrupted")
        raise
    except typer.Exit as exit_:
        tracker.finish({0: "done", 130: "interrupted"}.get(exit_.exit_code, "failed"))
        raise
    except BaseException:
        tracker.finish("failed")
        raise
    tracker.finish("done")


# --------------------------------------------------------------------------- inas track sync

app = typer.Typer(name="track", help="MLflow tracking of runs, sweeps and labelling sessions.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


@app.command("sync")
def sync(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A run, sweep or labelling directory.")],
    tracking_uri: Annotated[Optional[str], typer.Option(
        "--tracking-uri", help="MLflow tracking server (default: the one DIR is tracked in, else "
                               "$MLFLOW_TRACKING_URI).", show_default=False)] = None,
    experiment: Experiment = None,
) -> None:
    """Upload to MLflow what DIR holds and its MLflow run lacks: rounds, files, the final network, the status.

    For a run whose tracking server was down (or never tracked: give --tracking-uri); a sweep
    directory syncs its own run and every run of it, nested. Nothing is logged twice.

    Examples:
      inas track sync runs/digits-softmax_response-inas-seed0
      inas track sync sweeps/study --tracking-uri http://127.0.0.1:5000
    """
    from inas_plugins.tracking.client import TrackingClient, first_line

    kind = _kind_of(directory)
    target = tracking_target(tracking_uri, experiment, directory)
    if target is None:
        raise fail(f"{directory} is not tracked yet: give --tracking-uri URI (or set MLFLOW_TRACKING_URI)")
    client = TrackingClient(target)
    mirrors = [kind(directory, target)]
    while mirrors:
        mirror = mirrors.pop(0)
        with _owned(mirror.directory):
            try:
                result = mirror.sync(client)
            except Exception as error:  # the server's or the network's answer, as one line
                raise fail(f"cannot sync {mirror.directory} to {target}: {first_line(error)}", code=1)
        typer.echo(f"{mirror.directory}: MLflow run {result.run_id}" + (" (new)" if result.created else "")
                   + f", {result.steps} step(s) and {result.files} file(s) uploaded")
        if hasattr(mirror, "children"):
            mirrors += mirror.children()


def _kind_of(directory: Path):
    """The mirror class for what ``directory`` holds: a labelling project, a sweep or a run."""
    from inas_plugins.labelling.project import PROJECT_NAME
    from inas_plugins.run_files import CONFIG_NAME
    from inas_plugins.sweep import MANIFEST
    from inas_plugins.tracking.mirror import LabelMirror, RunMirror, SweepMirror

    for name, kind in ((PROJECT_NAME, LabelMirror), (MANIFEST, SweepMirror), (CONFIG_NAME, RunMirror)):
        if (directory / name).is_file():
            return kind
    raise fail(f"{directory} holds no run, sweep or labelling project ({CONFIG_NAME}, {MANIFEST} or {PROJECT_NAME})")


@contextmanager
def _owned(directory: Path) -> Iterator[None]:
    """The directory's own lock while it is synced, so a run that is going on (and uploads itself) is not
    synced twice at once; a sweep's own directory has no lock (its runs do)."""
    from inas_plugins.labelling import ProjectError
    from inas_plugins.labelling.project import is_project, locked
    from inas_plugins.rundir import RunDirError, RunDirLock, holds_run

    if is_project(directory):
        try:
            with locked(directory):
                yield
        except ProjectError as error:
            raise fail(str(error))
        return
    if not holds_run(directory):
        yield
        return
    lock = RunDirLock(directory)
    try:
        lock.acquire()
    except RunDirError as error:
        raise fail(f"{error} (a run that is going on uploads itself)")
    try:
        yield
    finally:
        lock.release()
