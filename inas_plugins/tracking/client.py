"""The MLflow client, and the one module that imports MLflow (about 1.7 s of imports; only ever loaded
when tracking is on, and then on the tracker's thread).

Every call to the server goes through a `tenacity` retry policy: a few attempts within a short
deadline for transient failures (connection refused or reset, timeouts, 5xx), none for definitive
answers (a bad parameter, a missing run). MLflow's own HTTP layer would retry each request for
minutes with a 120 s timeout -- right for a job whose only output is the server, wrong for a run
whose directory is the record and which must never wait on its tracker -- so this module lowers
those two settings (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``) unless
the user set them (:data:`HTTP_SETTINGS`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from ..error_text import first_line as _first_line
from .link import UID_TAG, TrackingLink
from .target import TrackingTarget

# The tracker names the run's page itself, once: MLflow's own two lines at every run's end are not printed.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# MLflow error codes that a retry cannot change.
DEFINITIVE = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                        "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST", "INVALID_STATE",
                        "CUSTOMER_UNAUTHORIZED", "ENDPOINT_NOT_FOUND", "FEATURE_DISABLED"})
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH = 1000, 100  # MLflow's log_batch limits


def is_transient(error: BaseException) -> bool:
    """Worth another try: anything but an MLflow answer that says the request itself is wrong."""
    return getattr(error, "error_code", None) not in DEFINITIVE


class TrackingClient:
    """The few MLflow operations a mirror needs, each retried as the module docstring says."""

    def __init__(self, target: TrackingTarget, attempts: int = 3, patience_s: float = 15.0) -> None:
        for name, value in HTTP_SETTINGS.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient

        self.target = target
        self._mlflow = MlflowClient(tracking_uri=target.uri)
        self.set_patience(attempts, patience_s)

    def set_patience(self, attempts: int, patience_s: float) -> None:
        """How hard each call tries: fewer attempts once the server is known to be down."""
        self._retrying = Retrying(stop=stop_after_attempt(attempts) | stop_after_delay(patience_s),
                                  wait=wait_exponential(multiplier=0.5, max=4), retry=retry_if_exception(is_transient),
                                  reraise=True)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(getattr(self._mlflow, method), *args, **kwargs)

    # --- runs -----------------------------------------------------------------------------
    def ping(self) -> None:
        self._call("search_experiments", max_results=1)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, creating the experiment on first use (another process may race us to it)."""
        found = self._call("get_experiment_by_name", name)
        if found is not None:
            return found.experiment_id
        try:
            return self._call("create_experiment", name)
        except Exception as error:
            if getattr(error, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._call("get_experiment_by_name", name).experiment_id

    def find_run(self, link: TrackingLink, experiment_id: str) -> Optional[Any]:
        """The directory's MLflow run in this experiment: by the stored id, else by its ``inas.uid`` tag."""
        if link.run_id:
            try:
                run = self._call("get_run", link.run_id)
            except Exception as error:
                if getattr(error, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                    raise
            else:
                if run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active":
                    return run
        found = self._call("search_runs", [experiment_id], filter_string=f"tags.`{UID_TAG}` = '{link.uid}'",
                           max_results=1)
        return found[0] if found else None

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> Any:
        return self._call("create_run", experiment_id, run_name=name, tags=tags)

    def set_status(self, run_id: str, status: str) -> None:
        if status == "RUNNING":
            self._call("update_run", run_id, status=status)
        else:
            self._call("set_terminated", run_id, status=status)

    # --- values ---------------------------------------------------------------------------
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._call("log_batch", run_id, params=items[start:start + MAX_PARAMS_PER_BATCH])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, value) for key, value in tags.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._call("log_batch", run_id, tags=items[start:start + MAX_PARAMS_PER_BATCH])

    def log_step(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """One step's metrics in one request (atomic on the server), so a step is logged whole or not at all."""
        from mlflow.entities import Metric

        if len(metrics) > MAX_METRICS_PER_BATCH:
            raise ValueError(f"{len(metrics)} metrics in one step; MLflow takes {MAX_METRICS_PER_BATCH} per request")
        stamp = int(time.time() * 1000)
        self._call("log_batch", run_id, metrics=[Metric(key, float(value), stamp, step) for key, value in metrics.items()])

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        return {metric.step for metric in self._call("get_metric_history", run_id, key)}

    # --- files ----------------------------------------------------------------------------
    def upload(self, run_id: str, path: Path, artifact_dir: Optional[str] = None) -> None:
        self._call("log_artifact", run_id, str(path), artifact_dir)

    def artifact_names(self, run_id: str, artifact_dir: Optional[str] = None) -> set[str]:
        return {Path(info.path).name for info in self._call("list_artifacts", run_id, artifact_dir)}

    def run_url(self, experiment_id: str, run_id: str) -> Optional[str]:
        """The run's page in MLflow's web UI, for a tracking server."""
        return f"{self.target.uri}/#/experiments/{experiment_id}/runs/{run_id}" if self.target.is_http else None



def first_line(error: BaseException) -> str:
    """An error as one short line (MLflow's messages can run to a page of HTML or a traceback)."""
    return _first_line(error, limit=240)
