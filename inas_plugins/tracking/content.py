"""What a directory records in MLflow, as pure functions of its files (no MLflow, no torch).

``inas run``: parameters are the resolved configuration and the data's identity, flattened to
dotted keys (``train.epochs``, ``data.fingerprint``), except what may change on ``--resume``
(``data_dir``, ``device``, the data's path), which MLflow could not change on an existing run, so
it goes into tags. Each round is one step, ``step`` = the labelled count, with the metrics of
:func:`round_metrics`. Labelling sessions (``inas label``) step per round, and sweeps log their
report's table.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..config import DATA_IDENTITY_MAY_CHANGE, RESUME_MAY_CHANGE, RUN_FLAGS
from ..records import arch_text

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter's value (the full value is in the artifacts)
MAX_KEY_LENGTH = 250
KIND_TAG = "inas.kind"
# The run's own fields that may change on --resume (the flags of RESUME_MAY_CHANGE that set one).
MAY_CHANGE_FIELDS = frozenset(entry.field for entry in RUN_FLAGS
                              if entry.flag in RESUME_MAY_CHANGE and entry.section is None)


def param_value(value: Any) -> str:
    """A parameter as MLflow stores it: strings as they are, anything else as JSON, cut to MLflow's limit."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_PARAM_LENGTH else text[:MAX_PARAM_LENGTH - 3] + "..."


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"epochs": 20}}`` -> ``{"train.epochs": "20"}``; lists stay one JSON value."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = param_value(value)
    return flat


def metric_key(section: str, name: str) -> str:
    """``section/name``, with ``name`` (a group label, an architecture) cut down to what MLflow accepts
    in a metric name: letters, digits, ``_ - . :`` and spaces (``=`` becomes ``:``)."""
    clean = re.sub(r"[^\w.\- :]", "_", name.replace("=", ":")).strip(" .") or "_"
    return f"{section}/{clean}"[:MAX_KEY_LENGTH]


def arch_tag(arch: Optional[str]) -> str:
    """``searched`` for the iNAS search, else the fixed network as ``A(i,j)``."""
    if not arch:
        return "searched"
    blocks, _, stacks = str(arch).partition("x")
    return f"A({blocks},{stacks})"


# --------------------------------------------------------------------------- inas run


def run_params(config: dict[str, Any]) -> dict[str, str]:
    own = {key: value for key, value in config.items() if key not in MAY_CHANGE_FIELDS and key != "data_identity"}
    identity = {key: value for key, value in (config.get("data_identity") or {}).items()
                if key not in DATA_IDENTITY_MAY_CHANGE}
    return {**flatten(own), **flatten(identity, "data.")}


def common_tags(config: dict[str, Any]) -> dict[str, str]:
    """What runs are filtered and grouped by in MLflow's UI, from a saved (nested) configuration."""
    return {"inas.heuristic": str((config.get("query") or {}).get("heuristic")), "inas.arch": arch_tag(config.get("arch")),
            "inas.seed": str(config.get("seed"))}


def run_tags(config: dict[str, Any]) -> dict[str, str]:
    identity = config.get("data_identity") or {}
    tags = {KIND_TAG: "run", **common_tags(config), "inas.dataset": str(config.get("dataset")),
            "inas.data_fingerprint": str(identity.get("fingerprint", "unknown"))}
    tags.update({f"inas.{key}": str(config[key]) for key in sorted(MAY_CHANGE_FIELDS) if config.get(key) is not None})
    if identity.get("path"):
        tags["inas.data_path"] = str(identity["path"])
    return tags


def round_metrics(record: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """``(step, metrics)`` of one round of results.json: step = the labelled count."""
    metrics = _numbers(record, ("round", "test_accuracy", "params", "depth", "search_seconds", "train_seconds",
                                "query_seconds", "queried"))
    metrics.update(_arch_metrics(record.get("arch")))
    metrics.update(candidate_metrics(record.get("candidates") or []))
    return int(record["labelled"]), metrics


def candidate_metrics(candidates: list[dict[str, Any]]) -> dict[str, float]:
    """Each candidate's V' accuracy as ``candidate_val_accuracy/2x3`` (a candidate is trained once a round)."""
    return {metric_key("candidate_val_accuracy", arch_text(candidate.get("arch"))): float(candidate["val_accuracy"])
            for candidate in candidates if isinstance(candidate.get("val_accuracy"), (int, float))}


# --------------------------------------------------------------------------- inas label

ACCURACY_KEYS = {"test": "test_accuracy", "cross-validated": "cv_accuracy"}


def label_params(project: dict[str, Any]) -> dict[str, str]:
    """project.json without what may change (the Label Studio link) and with the run settings flattened."""
    config = project.get("config") or {}
    own = {key: value for key, value in config.items() if key not in MAY_CHANGE_FIELDS and key != "data_identity"}
    described = {key: project.get(key) for key in ("classes", "image_size", "color", "flips", "cv_folds")}
    return {**flatten(own), **flatten(described, "label.")}


def label_tags(project: dict[str, Any]) -> dict[str, str]:
    config = project.get("config") or {}
    studio = project.get("studio") or {}
    tags = {KIND_TAG: "label", **common_tags(config), "inas.dataset": "folder",
            "inas.data_dir": str(project.get("data_dir")), "inas.device": str(config.get("device"))}
    if studio:
        tags["inas.label_studio"] = f"{studio.get('url')}/projects/{studio.get('project_id')}"
    return tags


def label_round_metrics(record: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """``(step, metrics)`` of one labelling round (state.json): step = the round. The accuracy is
    ``test_accuracy`` on DIR/test/ or ``cv_accuracy`` (cross-validated on the labelled set), never mixed."""
    metrics = _numbers(record, ("labelled", "skipped", "conflicts", "params", "depth", "search_seconds",
                                "train_seconds", "eval_seconds", "query_seconds", "queried", "left_out"))
    key = ACCURACY_KEYS.get(record.get("accuracy_kind"))
    if key is not None and isinstance(record.get("accuracy"), (int, float)):
        metrics[key] = float(record["accuracy"])
    metrics.update(_arch_metrics(record.get("arch")))
    metrics.update(candidate_metrics(record.get("candidates") or []))
    return int(record["round"]), metrics


# --------------------------------------------------------------------------- inas sweep

REPORT_COLUMNS = (("final_accuracy", ("final_accuracy", "mean")), ("final_accuracy_std", ("final_accuracy", "std")),
                  ("auc", ("auc", "mean")), ("auc_std", ("auc", "std")), ("auc_gain", ("auc_gain",)))


def sweep_params(manifest: dict[str, Any]) -> dict[str, str]:
    grid = manifest.get("grid") or {}
    return {**flatten({f"grid.{key}": values for key, values in grid.items()}), "runs": str(len(manifest["runs"]))}


def report_metrics(report: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """The report's table, ``auc/<group>`` and so on, at step = the number of complete runs it covers."""
    metrics: dict[str, float] = {}
    complete = 0
    for group in report.get("groups", []):
        label = group.get("label") or "run"
        runs = group.get("runs") or []
        complete += sum(1 for run in runs if run.get("status") == "complete")
        metrics[metric_key("runs", label)] = float(len(runs))
        for name, path in REPORT_COLUMNS:
            value: Any = group
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                metrics[metric_key(name, label)] = float(value)
    metrics["runs_reported"] = float(complete)
    return complete, metrics


# --------------------------------------------------------------------------- shared


def _numbers(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: float(record[key]) for key in keys
            if isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool)}


def _arch_metrics(arch: Any) -> dict[str, float]:
    """The chosen network's blocks per stack and stacks, A(i, j), as two curves."""
    if isinstance(arch, (list, tuple)) and len(arch) == 2:
        return {"arch_blocks": float(arch[0]), "arch_stacks": float(arch[1])}
    return {}
