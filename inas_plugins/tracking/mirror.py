"""A directory and its MLflow run: upload what the directory holds and the run lacks, nothing twice.

The directory is the record and MLflow a copy of it, so there is one way to bring a run up to date,
whether it is called after a round, at the end, on ``--resume`` or by ``inas track sync``: compare
and upload what is missing. A step's metrics go up in one request, and the steps already in MLflow
are read back once per process, so a process killed at any moment (after the request, before it
noted the step) never logs a step twice; a file goes up again only when it changed on disk (its
size and time, kept in ``mlflow.json``; same path: replaced, not duplicated); the final network's
weights go up once, when the run is complete. Three kinds of directory: an ``inas run`` directory, an ``inas label`` project and an
``inas sweep`` directory (whose parent run its runs are nested under).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..labelling.project import MODEL_NAME, PROJECT_NAME, STATE_NAME
from ..labelling.store import LABELS_NAME
from ..run_files import ARCHITECTURE_PNG, CONFIG_NAME, LEARNING_CURVE_PNG, RESULTS_CSV, RESULTS_JSON
from ..sweep import MANIFEST, REPORT_JSON, REPORT_PLOT, REPORT_TABLES, read_manifest
from . import content
from .client import PARENT_TAG, TrackingClient
from .link import UID_TAG, TrackingLink, read_link, write_link
from .target import TrackingTarget

FINISHED, FAILED, KILLED, RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"
MODEL_DIR, MODEL_FILE = "model", "model.pt"


@dataclass
class SyncResult:
    """What one sync did: the MLflow run, and whether it was new."""

    run_id: str
    experiment_id: str
    created: bool
    steps: int = 0
    files: int = 0


class Mirror:
    """The common part: open (find, adopt or create) the MLflow run, then steps, files and status.

    Subclasses say what their directory holds: :meth:`params`, :meth:`tags`, :meth:`steps`,
    :meth:`files`, :meth:`complete`, and optionally :meth:`final_files`.
    """

    kind = "run"
    marker = "test_accuracy"  # a metric every step of this kind logs: its history says which steps are in

    def __init__(self, directory: Path, target: TrackingTarget, parent_run_id: Optional[str] = None) -> None:
        self.directory = Path(directory)
        self.target = target
        self.parent_run_id = parent_run_id
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self._link: Optional[TrackingLink] = None
        self._logged: set[int] = set()
        self._final_done = False
        self._status: Optional[str] = None

    # --- what the directory holds (subclasses) ----------------------------------------------
    def params(self) -> dict[str, str]:
        raise NotImplementedError

    def tags(self) -> dict[str, str]:
        raise NotImplementedError

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        raise NotImplementedError

    def files(self) -> list[tuple[Path, Optional[str]]]:
        raise NotImplementedError

    def complete(self) -> bool:
        raise NotImplementedError

    def final_files(self, scratch: Path) -> list[tuple[Path, str]]:
        """Files uploaded once, when the run is complete and MLflow has no ``model/model.pt`` (written
        into ``scratch``)."""
        return []

    @property
    def name(self) -> str:
        return self.directory.resolve().name

    # --- the sync ---------------------------------------------------------------------------
    def sync(self, client: TrackingClient, status: Optional[str] = None, files: bool = True) -> SyncResult:
        """Upload what is missing and set the MLflow run's status: FINISHED once the directory says the
        run is complete, else ``status`` (RUNNING for a run going on, FAILED, KILLED) when given.
        ``files=False``: metrics and status only (the files change every round; see the tracker)."""
        created = self.run_id is None and self._open(client)
        result = SyncResult(self.run_id, self.experiment_id, created)
        for step, metrics in self.steps():
            if step not in self._logged:
                client.log_step(self.run_id, step, metrics)
                self._logged.add(step)
                result.steps += 1
        if files:
            uploaded = sum(self._upload(client, path, artifact_dir) for path, artifact_dir in self.files())
            if uploaded:
                write_link(self.directory, self._link)  # the stamps of what went up, for the next sync
            result.files += uploaded
        complete = self.complete()
        if files and complete and not self._final_done:
            if MODEL_FILE not in client.artifact_names(self.run_id, MODEL_DIR):
                with tempfile.TemporaryDirectory(prefix="inas-tracking-") as scratch:
                    for path, artifact_dir in self.final_files(Path(scratch)):
                        client.upload(self.run_id, path, artifact_dir)
                        result.files += 1
            self._final_done = True
        wanted = FINISHED if complete else status
        if wanted is not None and wanted != self._status:
            client.set_status(self.run_id, wanted)
            self._status = wanted
        return result

    def _open(self, client: TrackingClient) -> bool:
        """Find this directory's MLflow run on the target (by id, else by its uid tag) or create it;
        bring its parameters and tags up to date. True when the run was created."""
        link = read_link(self.directory)
        new_uid = link is None  # made here: no MLflow run can carry it yet
        if link is None or link.target != self.target:
            link = TrackingLink(self.target.uri, self.target.experiment, **({"uid": link.uid} if link else {}),
                                run_id=link.run_id if link else None)
        link.parent_run_id = self.parent_run_id or link.parent_run_id
        write_link(self.directory, link)  # the uid is on disk before any run carries it
        self.experiment_id = client.experiment_id(self.target.experiment)
        tags = {**self.tags(), content.KIND_TAG: self.kind, UID_TAG: link.uid}
        if link.parent_run_id:
            tags[PARENT_TAG] = link.parent_run_id
        run = None if new_uid else client.find_run(link, self.experiment_id)
        created = run is None
        if created:
            run = client.create_run(self.experiment_id, self.name, tags)
        self.run_id = run.info.run_id
        if link.run_id != self.run_id:
            link.run_id, link.files = self.run_id, {}
            write_link(self.directory, link)
        self._link = link
        present = {} if created else run.data.params
        missing = {key: value for key, value in self.params().items() if key not in present}
        if missing:
            client.log_params(self.run_id, missing)
        if not created:
            client.set_tags(self.run_id, tags)  # the directory may have moved, a resume may use another device
            self._logged = client.logged_steps(self.run_id, self.marker)
        self._status = run.info.status
        return created

    def _upload(self, client: TrackingClient, path: Path, artifact_dir: Optional[str]) -> int:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return 0
        stamp = [stat.st_mtime_ns, stat.st_size]  # taken first: a file replaced meanwhile goes up again next time
        name = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
        if self._link.files.get(name) == stamp:
            return 0
        client.upload(self.run_id, path, artifact_dir)
        self._link.files[name] = stamp
        return 1


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class RunMirror(Mirror):
    """An ``inas run`` directory: config.json, results.json/csv, the two plots, the final network."""

    kind = "run"
    marker = "test_accuracy"

    def _results(self) -> dict[str, Any]:
        path = self.directory / RESULTS_JSON
        return _read_json(path) if path.is_file() else {"rounds": [], "status": "running"}

    def _config(self) -> dict[str, Any]:
        return _read_json(self.directory / CONFIG_NAME)

    def params(self) -> dict[str, str]:
        return content.run_params(self._config())

    def tags(self) -> dict[str, str]:
        return {**content.run_tags(self._config()), "inas.run_dir": str(self.directory.resolve())}

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        return [content.round_metrics(record) for record in self._results().get("rounds", [])]

    def files(self) -> list[tuple[Path, Optional[str]]]:
        return [(self.directory / name, None) for name in (CONFIG_NAME, RESULTS_JSON, RESULTS_CSV, LEARNING_CURVE_PNG,
                                                           ARCHITECTURE_PNG)]

    def complete(self) -> bool:
        return self._results().get("status") == "complete"

    def final_files(self, scratch: Path) -> list[tuple[Path, str]]:
        """The final network: its weights and what rebuilds it (``weights_only`` loadable)."""
        import torch

        from ..checkpoint import load_checkpoint

        state = load_checkpoint(self.directory)
        if state.model_state is None:
            return []
        config = self._config()
        identity = config.get("data_identity") or {}
        payload = {"arch": list(state.arch), "block": config.get("block", "basic"),
                   "base_width": config.get("base_width"), "drop_rate": config.get("drop_rate", 0.0),
                   "num_classes": len(identity.get("classes") or []), "in_chans": identity.get("channels"),
                   "classes": list(identity.get("classes") or []), "state_dict": state.model_state}
        path = scratch / MODEL_FILE
        torch.save(payload, path)
        return [(path, MODEL_DIR)]


class LabelMirror(Mirror):
    """An ``inas label`` project: one step per round; project.json, state.json, labels.csv, the last network."""

    kind = "label"
    marker = "labelled"

    def _project(self) -> dict[str, Any]:
        return _read_json(self.directory / PROJECT_NAME)

    def _state(self) -> dict[str, Any]:
        return _read_json(self.directory / STATE_NAME)

    def params(self) -> dict[str, str]:
        return content.label_params(self._project())

    def tags(self) -> dict[str, str]:
        return {**content.label_tags(self._project()), "inas.run_dir": str(self.directory.resolve())}

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        return [content.label_round_metrics(record) for record in self._state().get("rounds", [])]

    def files(self) -> list[tuple[Path, Optional[str]]]:
        return [*((self.directory / name, None) for name in (PROJECT_NAME, STATE_NAME, LABELS_NAME)),
                (self.directory / MODEL_NAME, MODEL_DIR)]

    def complete(self) -> bool:
        return bool(self._state().get("complete"))


class SweepMirror(Mirror):
    """An ``inas sweep`` directory: the parent run (the grid, the report's table, report.png); its
    runs are :class:`RunMirror` s nested under it (:meth:`children`)."""

    kind = "sweep"
    marker = "runs_reported"

    def _manifest(self) -> dict[str, Any]:
        manifest = read_manifest(self.directory)
        if manifest is None:
            raise ValueError(f"{self.directory} holds no sweep")
        return manifest

    def params(self) -> dict[str, str]:
        return content.sweep_params(self._manifest())

    def tags(self) -> dict[str, str]:
        return {"inas.sweep_dir": str(self.directory.resolve())}

    def steps(self) -> list[tuple[int, dict[str, float]]]:
        path = self.directory / REPORT_JSON
        return [content.report_metrics(_read_json(path))] if path.is_file() else []

    def files(self) -> list[tuple[Path, Optional[str]]]:
        return [(self.directory / name, None) for name in (MANIFEST, REPORT_PLOT, REPORT_TABLES, REPORT_JSON)]

    def complete(self) -> bool:
        manifest = self._manifest()
        return all(manifest["status"].get(run.name, {}).get("status") == "complete" for run in manifest["runs"])

    def children(self) -> list[RunMirror]:
        """The sweep's runs that have started (they hold a configuration), nested under this run."""
        return [RunMirror(self.directory / run.name, self.target, parent_run_id=self.run_id)
                for run in self._manifest()["runs"] if (self.directory / run.name / CONFIG_NAME).is_file()]
