"""The tracking id file (``mlflow.json``): which MLflow run a directory is mirrored into, and which of
its files that run has.

Written atomically, before anything is logged: ``uid`` first (a random id the MLflow run carries
as the tag ``inas.uid``), then, once the run exists, its ``run_id``. A process killed between
creating the MLflow run and writing its id leaves a file with the ``uid`` only, and the next sync
finds the run by that tag instead of creating a second one. A directory whose file names another
server or experiment than the one asked for gets a run there (found by the same tag when it exists).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..atomic import atomic_write_json
from ..run_files import TRACKING_NAME
from .target import TrackingError, TrackingTarget

UID_TAG = "inas.uid"


@dataclass
class TrackingLink:
    """Where a directory is tracked: the target, the MLflow run, and for sweep runs their parent."""

    uri: str
    experiment: str
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    run_id: Optional[str] = None
    parent_run_id: Optional[str] = None
    # The files uploaded to that run, by name: [mtime_ns, size] as they were uploaded (a file that
    # changed since goes up again; one that did not is not uploaded twice, by any process).
    files: dict[str, list[int]] = field(default_factory=dict)

    @property
    def target(self) -> TrackingTarget:
        return TrackingTarget(self.uri, self.experiment)


def read_link(directory: Path) -> Optional[TrackingLink]:
    """The directory's link, None when it was never tracked; one-line TrackingError when damaged."""
    path = Path(directory) / TRACKING_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        link = TrackingLink(**{key: data[key] for key in ("uri", "experiment", "uid")},
                            run_id=data.get("run_id"), parent_run_id=data.get("parent_run_id"),
                            files=dict(data.get("files") or {}))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrackingError(f"{path} is damaged ({type(error).__name__}: {error}); delete it to track the directory "
                            "as a new MLflow run") from None
    if not all(isinstance(value, str) and value for value in (link.uri, link.experiment, link.uid)):
        raise TrackingError(f"{path} is damaged (uri, experiment and uid must be non-empty strings); delete it to "
                            "track the directory as a new MLflow run")
    return link


def write_link(directory: Path, link: TrackingLink) -> None:
    atomic_write_json(Path(directory) / TRACKING_NAME, asdict(link))
