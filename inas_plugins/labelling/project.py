"""The labelling run directory: what a project is (``project.json``), where it stands (``state.json``).

``project.json`` is written once, by ``inas label init``: the data directory, the class list, how
images are decoded, the Label Studio project (URL, id, the local-files root) if there is one, and
the run's training, search and query settings as a :class:`~inas_plugins.config.RunConfig`
(so presets, flags and validation are those of ``inas run``; ``initial`` is the cold-start batch,
``query_schedule`` the batch per round and ``budget`` where labelling stops).

``state.json`` changes after every round: the rounds done, the current architecture, and the batch
people are labelling now (``posted`` false until Label Studio has it, so a sync that failed half-way
posts it again). ``model.pt`` holds the last round's network. The labels are in ``labels.csv``
(:mod:`.store`). The API key is never written here: it comes from ``--api-key`` or
``LABEL_STUDIO_API_KEY`` on every command, so a run directory can be shared without the secret.

Every file is replaced atomically; a sync that is killed leaves the previous round's state, and
the next sync starts that round again.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from ..atomic import atomic_write_json
from ..config import RunConfig

PROJECT_NAME = "project.json"
STATE_NAME = "state.json"
MODEL_NAME = "model.pt"
LOCK_NAME = ".lock"
UNLABELLED, SEEDS, TEST = "unlabelled", "labelled", "test"
FORMAT_VERSION = 1


class ProjectError(ValueError):
    """Bad input or a run directory that is not a labelling project; the message is one line."""


@dataclass
class StudioLink:
    """The Label Studio project a run posts to; ``document_root`` is the server's
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, which the data directory lies strictly below."""

    url: str
    project_id: int
    document_root: str
    storage_id: Optional[int] = None


@dataclass
class Project:
    """The fixed description of a labelling run (``project.json``)."""

    data_dir: str
    classes: list[str]
    config: RunConfig
    image_size: Optional[list[int]] = None
    color: str = "auto"
    flips: bool = True
    cv_folds: int = 3
    studio: Optional[StudioLink] = None

    def __post_init__(self) -> None:
        self.classes = check_classes(self.classes)
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) or self.cv_folds < 2:
            raise ProjectError(f"--cv-folds must be an integer of at least 2, got {self.cv_folds!r}")

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "data_dir": self.data_dir, "classes": list(self.classes),
                "image_size": self.image_size, "color": self.color, "flips": self.flips,
                "cv_folds": self.cv_folds, "studio": asdict(self.studio) if self.studio else None,
                "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Project":
        studio = data.get("studio")
        return cls(data_dir=data["data_dir"], classes=data["classes"], config=RunConfig.from_dict(data["config"]),
                   image_size=data.get("image_size"), color=data.get("color", "auto"),
                   flips=data.get("flips", True), cv_folds=data.get("cv_folds", 3),
                   studio=StudioLink(**studio) if studio else None)


@dataclass
class BatchItem:
    """One image of the batch being labelled, with what the model thought of it when it was chosen."""

    path: str
    query_score: Optional[float] = None
    predicted: Optional[str] = None
    confidence: Optional[float] = None


@dataclass
class Batch:
    """The images of one round that people are asked to label."""

    round: int
    items: list[BatchItem]
    posted: bool = False
    model_version: str = "cold start (random)"

    @property
    def paths(self) -> list[str]:
        return [item.path for item in self.items]


@dataclass
class State:
    """Where a labelling run stands (``state.json``)."""

    rounds: list[dict] = field(default_factory=list)
    arch: Optional[list[int]] = None
    batch: Optional[Batch] = None
    complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "arch": self.arch, "complete": self.complete,
                "batch": asdict(self.batch) if self.batch else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "State":
        batch = data.get("batch")
        if batch:
            batch = Batch(round=batch["round"], items=[BatchItem(**item) for item in batch["items"]],
                          posted=batch["posted"], model_version=batch.get("model_version", ""))
        return cls(rounds=list(data.get("rounds", [])), arch=data.get("arch"), batch=batch,
                   complete=bool(data.get("complete", False)))


def check_classes(classes: Any) -> list[str]:
    """At least two distinct, non-empty class names without commas or surrounding spaces."""
    if isinstance(classes, str):
        classes = [name.strip() for name in classes.split(",")]
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes):
        raise ProjectError("classes must be a list of names, e.g. --classes cat,dog")
    classes = [name.strip() for name in classes]
    if any(not name or "," in name for name in classes):
        raise ProjectError(f"class names must be non-empty and contain no commas, got {classes}")
    duplicates = sorted({name for name in classes if classes.count(name) > 1})
    if duplicates:
        raise ProjectError(f"class names given twice: {', '.join(duplicates)}")
    if len(classes) < 2:
        raise ProjectError(f"a labelling project needs at least two classes, got {classes}")
    return classes


def read_classes_file(path: Path) -> list[str]:
    """One class per line (blank lines and ``#`` comments ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ProjectError(f"cannot read the classes file {path}: {error.strerror or error}") from None
    return check_classes([line.strip() for line in lines if line.strip() and not line.strip().startswith("#")])


def is_project(run_dir: Path) -> bool:
    return (Path(run_dir) / PROJECT_NAME).is_file()


def load_project(run_dir: Path) -> tuple[Project, State]:
    """The project and its state; ProjectError (one line) if ``run_dir`` is not a labelling run."""
    run_dir = Path(run_dir)
    if not is_project(run_dir):
        raise ProjectError(f"{run_dir} is not a labelling run (no {PROJECT_NAME}); create one with `inas label init`")
    try:
        project = Project.from_dict(json.loads((run_dir / PROJECT_NAME).read_text()))
        state = State.from_dict(json.loads((run_dir / STATE_NAME).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ProjectError(f"{run_dir} holds a damaged labelling run: {type(error).__name__}: {error}") from None
    return project, state


def save_project(run_dir: Path, project: Project) -> None:
    atomic_write_json(Path(run_dir) / PROJECT_NAME, project.to_dict())


def save_state(run_dir: Path, state: State) -> None:
    atomic_write_json(Path(run_dir) / STATE_NAME, state.to_dict())


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Only one ``sync`` or ``import`` at a time per run (two would each write labels.csv from
    what they read before the other wrote); a second one stops with one line instead of waiting."""
    with open(Path(run_dir) / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProjectError(f"another `inas label` command is working on {run_dir}; run this one when it ends") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
