"""The files of a run directory: results.json (the record), results.csv and two plots, all written atomically.

A run can be interrupted at any moment (Ctrl-C, a killed job), and ``inas run --resume`` and
``inas report`` read what is left. So every file is written through :mod:`inas_plugins.atomic`
(a temporary file in the same directory, flushed to disk and then renamed over the old one): a
reader sees either the old complete file or the new complete file, never half of one.

results.json::

    {"config": {...}, "status": "running" | "complete",
     "rounds": [{"round": r, "labelled": n, "arch": [i, j], "params": p, "depth": d,
                 "test_accuracy": a, "candidates": [{"arch": [i, j], "params": p,
                 "val_accuracy": v, "seconds": s, "iteration": t, "epochs": e, "inherited": b}, ...],
                 "search_seconds": s, "train_seconds": s, "query_seconds": s, "queried": q, ...}, ...]}

One round is :class:`inas_plugins.records.RoundRecord` (its ``to_dict``/``from_dict`` define and
validate the keys); this module reads and writes the plain dicts, so keys a newer version adds
pass through untouched.

Matplotlib is imported only when a plot is drawn, so importing this module stays cheap.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

# atomic_write_* are re-exported: callers (the loop, tests, benchmarks) import them from here.
from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401
from .plots import plot_architecture_trajectory, plot_learning_curve
from .records import RoundRecord, arch_text
from .run_files import ARCHITECTURE_PNG, LEARNING_CURVE_PNG, RESULTS_CSV, RESULTS_JSON

STATUSES = ("running", "complete")

# Columns of results.csv that come first, in this order; other scalar round keys follow them.
CSV_LEADING_COLUMNS = (
    "round", "labelled", "arch", "params", "depth", "test_accuracy",
    "search_seconds", "train_seconds", "query_seconds",
)


# --------------------------------------------------------------------------- writing a run


def write_results(run_dir: str | os.PathLike, config: dict, rounds: list[dict], status: str) -> None:
    """Write results.json, results.csv, learning_curve.png and architecture.png into ``run_dir``.

    results.json goes first: it is the record that resume and ``inas report`` read; the CSV and the
    plots are views of it. Each file is replaced atomically.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; choose one of {', '.join(STATUSES)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    atomic_write_json(run_dir / RESULTS_JSON, {"config": config, "rounds": rounds, "status": status})
    atomic_write_text(run_dir / RESULTS_CSV, rounds_to_csv(rounds))

    title = _run_title(config)
    plot_learning_curve(rounds, run_dir / LEARNING_CURVE_PNG, title=f"Test accuracy - {title}" if title else None)
    plot_architecture_trajectory(rounds, run_dir / ARCHITECTURE_PNG, title=f"Architecture - {title}" if title else None)


def _run_title(config: dict) -> str:
    """``digits, softmax_response, seed 3`` from a configuration's nested layout (what is present of it)."""
    query = config.get("query")
    heuristic = query.get("heuristic") if isinstance(query, dict) else None
    parts = [str(value) for value in (config.get("dataset"), heuristic) if value]
    if "seed" in config:
        parts.append(f"seed {config['seed']}")
    return ", ".join(parts)


def candidates_text(candidates: Iterable[dict]) -> str:
    """Compact ``"1x2=0.5120;2x2=0.5310"`` (architecture = validation accuracy) for one CSV cell."""
    cells = []
    for candidate in candidates:
        accuracy = candidate.get("val_accuracy")
        value = f"{accuracy:.4f}" if isinstance(accuracy, (int, float)) else str(accuracy)
        cells.append(f"{arch_text(candidate.get('arch'))}={value}")
    return ";".join(cells)


def rounds_to_csv(rounds: list[dict]) -> str:
    """One row per round: the flat fields, ``arch`` as ``"2x4"``, candidates as :func:`candidates_text`.

    Keys beyond the documented ones become extra columns (lists and dicts as compact JSON), so
    whatever the loop records shows up in a spreadsheet too.
    """
    extra: list[str] = []
    for row in rounds:
        for key in row:
            if key not in CSV_LEADING_COLUMNS and key != "candidates" and key not in extra:
                extra.append(key)
    columns = [*CSV_LEADING_COLUMNS, *extra, "candidates"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rounds:
        cells = {key: _csv_cell(value) for key, value in row.items() if key not in ("arch", "candidates")}
        cells["arch"] = arch_text(row.get("arch"))
        cells["candidates"] = candidates_text(row.get("candidates") or [])
        writer.writerow(cells)
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


# --------------------------------------------------------------------------- reading a run


def load_results(run_dir: str | os.PathLike) -> dict:
    """Read and check ``run_dir/results.json``; return ``{"config", "rounds", "status"}``.

    Raises a one-line ValueError naming the directory and what is wrong when it holds no run or
    the file is malformed. A file without ``status`` (older runs) counts as ``"complete"``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory (expected a run directory written by `inas run`)")
    path = run_dir / RESULTS_JSON
    if not path.is_file():
        raise ValueError(f"{run_dir} holds no run: {RESULTS_JSON} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is malformed: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is malformed: {error.msg} at line {error.lineno}, column {error.colno}") from None
    _check_results(data, path)
    data.setdefault("status", "complete")
    return data


def _check_results(data: Any, path: Path) -> None:
    def malformed(problem: str) -> ValueError:
        return ValueError(f"{path} is malformed: {problem}")

    if not isinstance(data, dict):
        raise malformed(f"expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("config"), dict):
        raise malformed("'config' must be an object")
    if not isinstance(data.get("rounds"), list):
        raise malformed("'rounds' must be a list")
    status = data.get("status", "complete")
    if status not in STATUSES:
        raise malformed(f"'status' is {status!r}, expected one of {', '.join(STATUSES)}")
    for index, row in enumerate(data["rounds"]):
        if not isinstance(row, dict):
            raise malformed(f"round {index} is not an object")
        try:
            RoundRecord.from_dict(row)  # validation only: the plain dicts are what callers get
        except ValueError as error:
            raise malformed(f"round {index} {error}") from None
