"""What ``inas label init``, ``sync`` and ``status`` do, as functions the CLI and the tests call.

The loop: ``init`` writes the run directory and posts a cold-start batch; people label it (in Label
Studio, or in any tool through :mod:`.files`); each ``sync`` pulls the answers into ``labels.csv``
and, once every image of the batch has an answer, runs a round (:mod:`.rounds`) and posts the next
batch. A sync that fails anywhere leaves the files of the last complete step, so running it again
is always safe; a sync with nothing new changes nothing.

Answers: a label puts the image in the training set. A *skip* (Label Studio's "Skip" button, i.e. a
cancelled annotation) counts as an answer too: the image leaves the pool, is never trained on and
is not asked again, unless someone labels it later (then the label counts, the latest answer wins).
Deleting a task in Label Studio does not delete answers already synced.

Cold start: the first batch is drawn uniformly at random from the pool (``--initial`` images; no
labels or model needed, and it gives an unbiased first estimate of the class balance). Seed labels
under ``DIR/labelled/<class>/`` are added on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..config import RunConfig
from ..space import Arch
from .images import scan_pool, scan_seeds, scan_test
from .project import (Project, ProjectError, State, StudioLink, UNLABELLED, is_project, load_project, locked,
                      save_project, save_state)
from .store import Answer, LabelStore, write_answers
from .studio import Studio, StudioError, check_document_root

Log = Callable[[str], None]


def init_project(run_dir: Path, data_dir: Path, classes: list[str], config: RunConfig, *,
                 image_size: Optional[list[int]] = None, color: str = "auto", flips: bool = True, cv_folds: int = 3,
                 studio: Optional[Studio] = None, document_root: Optional[Path] = None, title: Optional[str] = None,
                 log: Log = print) -> tuple[Project, State]:
    """Check everything, then write the run directory and post the cold-start batch.

    Nothing is written when a check fails or the Label Studio project cannot be created.
    """
    run_dir, root = Path(run_dir), Path(data_dir).expanduser().resolve()
    if is_project(run_dir):
        raise ProjectError(f"{run_dir} already holds a labelling run; continue it with `inas label sync {run_dir}`")
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ProjectError(f"{run_dir} exists and is not an empty directory; choose a new run directory")
    if not (root / UNLABELLED).is_dir():
        raise ProjectError(f"{root} has no {UNLABELLED}/ folder; expected DIR/{UNLABELLED}/**/*.{{jpg,png}}, "
                           "optionally DIR/labelled/<class>/ and DIR/test/<class>/")
    project = Project(data_dir=str(root), classes=classes, config=config, image_size=image_size, color=color,
                      flips=flips, cv_folds=cv_folds)
    seeds = scan_seeds(root, project.classes)
    scan_test(root, project.classes)  # class folders checked now rather than at the first round
    pool = scan_pool(root)
    if not pool:
        raise ProjectError(f"{root / UNLABELLED} holds no images")
    from .rounds import random_batch

    batch = random_batch(pool, config.initial, config.seed)
    if studio is not None:
        document_root = Path(document_root).expanduser().resolve() if document_root else root.parent
        check_document_root(str(document_root), str(root))
        studio.check()
        project_id, storage_id = studio.create_project(title or f"inas label {run_dir.name}", project.classes,
                                                       str(root), description=f"active-iNAS over {root}")
        project.studio = StudioLink(url=studio.url, project_id=project_id, document_root=str(document_root),
                                    storage_id=storage_id)
        log(f"Label Studio project {project_id}: {studio.url}/projects/{project_id}/data")
    run_dir.mkdir(parents=True, exist_ok=True)
    store = LabelStore(run_dir)
    store.add(Answer(path, name, "seed", "labelled/") for path, name in seeds)
    if not store.path.exists():
        write_answers(store.path, [])
    state = State(arch=config.fixed_arch.as_list() if config.fixed_arch else Arch.parse(config.start_arch).as_list(),
                  batch=batch)
    save_project(run_dir, project)
    save_state(run_dir, state)
    log(f"labelling run in {run_dir}: {len(pool)} unlabelled images, {len(seeds)} seed labels, "
        f"classes {', '.join(project.classes)}; first batch: {len(batch.items)} random images")
    if studio is not None:
        _post(run_dir, project, state, studio, log)
    return project, state


@dataclass
class SyncReport:
    """What one sync did."""

    added: int = 0
    problems: list[str] = field(default_factory=list)
    missing: int = 0
    rounds_run: int = 0
    complete: bool = False


def sync(run_dir: Path, studio: Optional[Studio] = None, *, force: bool = False, progress: bool = False,
         log: Log = print) -> SyncReport:
    """Pull the answers, and run the round when the batch is complete (or ``force``)."""
    run_dir = Path(run_dir)
    load_project(run_dir)  # a clear error before the lock file is created in a directory that is no run
    with locked(run_dir):
        return _sync(run_dir, studio, force=force, progress=progress, log=log)


def _sync(run_dir: Path, studio: Optional[Studio], *, force: bool, progress: bool, log: Log) -> SyncReport:
    from .rounds import accuracy_text, run_round

    project, state = load_project(run_dir)
    store = LabelStore(run_dir)
    report = SyncReport(complete=state.complete)
    if project.studio is not None:
        if studio is None:
            raise StudioError(f"this run labels in Label Studio at {project.studio.url}: pass --api-key or set "
                              "LABEL_STUDIO_API_KEY")
        if state.batch is not None and not state.batch.posted:
            _post(run_dir, project, state, studio, log)
        pulled = studio.pull(project.studio.project_id, project.classes)
        report.problems = pulled.problems
        report.added = len(store.add(pulled.answers))
        log(f"pulled {report.added} new answer(s) from {pulled.tasks} task(s) at {project.studio.url}")
    if state.complete:
        log(f"the run is complete ({len(state.rounds)} rounds); the labels are in {store.path}")
        return report
    outstanding = pending(project, state, store)
    report.missing = len(outstanding)
    batch_size = len(state.batch.items) if state.batch else 0
    if outstanding and not force:
        log(f"{len(outstanding)} of the {batch_size} images of batch {state.batch.round if state.batch else 0} "
            "still need an answer; the round runs when they have one (or sync with --force)")
        return report
    labels = store.labelled()
    labelled = len(labels)
    round_index = len(state.rounds)
    query_size = max(0, min(project.config.batch_size_at(labelled), project.config.budget - labelled))
    log(f"round {round_index}: {labelled} labels, searching from A{tuple(state.arch)}")
    result = run_round(project, labels, set(store.current()), round_index, Arch(*state.arch), query_size, run_dir,
                       progress=progress, log=log)
    answers = store.current()  # where the answers stood for this round (an MLflow step records it)
    result.record.update(skipped=sum(1 for name in answers.values() if not name), conflicts=len(store.conflicts()))
    state.rounds.append(result.record)
    state.arch = result.arch.as_list()
    state.batch = result.batch
    state.complete = result.batch is None
    save_state(run_dir, state)
    report.rounds_run, report.complete = 1, state.complete
    record = result.record
    log(f"round {round_index}: A({record['arch'][0]},{record['arch'][1]}) {record['params']:,} params, "
        f"{accuracy_text(record)}, trained on {record['labelled']} labels")
    if state.complete:
        log("the budget is reached (or the pool is empty): the run is complete")
    else:
        log(f"next batch: {len(state.batch.items)} images chosen by {project.config.query.heuristic}")
        if project.studio is not None and studio is not None:
            _post(run_dir, project, state, studio, log)
    return report


def pending(project: Project, state: State, store: LabelStore) -> list[str]:
    """Images of the current batch without an answer whose files still exist."""
    if state.batch is None:
        return []
    answered = store.current()
    return [path for path in state.batch.paths if path not in answered and (project.root / path).is_file()]


def status(run_dir: Path) -> dict:
    """Counts and the latest round, for ``inas label status``."""
    project, state = load_project(run_dir)
    store = LabelStore(run_dir)
    current = store.current()
    labelled = {path: name for path, name in current.items() if name}
    pool = [path for path in scan_pool(project.root) if path not in current]
    last = state.rounds[-1] if state.rounds else None
    per_class = {name: 0 for name in project.classes}
    for name in labelled.values():
        if name in per_class:
            per_class[name] += 1
    return {
        "run_dir": str(run_dir), "data_dir": project.data_dir, "classes": project.classes,
        "labelled": len(labelled), "per_class": per_class,
        "skipped": sum(1 for name in current.values() if not name),
        "pending": len(pending(project, state, store)),
        "batch": {"round": state.batch.round, "size": len(state.batch.items), "posted": state.batch.posted}
        if state.batch else None,
        "pool": len(pool), "conflicts": len(store.conflicts()), "rounds": len(state.rounds),
        "arch": state.arch, "accuracy": last.get("accuracy") if last else None,
        "accuracy_kind": last.get("accuracy_kind") if last else None,
        "accuracy_detail": last.get("accuracy_detail") if last else None,
        "history": [{"round": r["round"], "labelled": r["labelled"], "arch": r["arch"], "accuracy": r["accuracy"],
                     "accuracy_kind": r["accuracy_kind"]} for r in state.rounds],
        "complete": state.complete,
        "label_studio": {"url": project.studio.url, "project_id": project.studio.project_id}
        if project.studio else None,
    }


def _post(run_dir: Path, project: Project, state: State, studio: Studio, log: Log) -> None:
    """Post the batch (tasks that exist already are not posted again), then mark it posted."""
    assert project.studio is not None and state.batch is not None
    created = studio.post_batch(project.studio.project_id, state.batch, document_root=project.studio.document_root,
                                data_dir=project.data_dir)
    state.batch.posted = True
    save_state(run_dir, state)
    log(f"posted batch {state.batch.round}: {created} new task(s) in project {project.studio.project_id}")
