"""The files of a run directory: results.json (the record), results.csv and two plots, all written atomically.

A run can be interrupted at any moment (Ctrl-C, a killed job), and ``inas run --resume`` and
``inas report`` read what is left. So every file is written to a temporary file in the same
directory, flushed to disk and then renamed over the old one: a reader sees either the old
complete file or the new complete file, never half of one.

results.json::

    {"config": {...}, "status": "running" | "complete",
     "rounds": [{"round": r, "labelled": n, "arch": [i, j], "params": p, "depth": d,
                 "test_accuracy": a, "candidates": [{"arch": [i, j], "params": p,
                 "val_accuracy": v, "seconds": s}, ...],
                 "search_seconds": s, "train_seconds": s, "query_seconds": s, ...}, ...]}

Matplotlib is imported only when a plot is drawn, so importing this module stays cheap.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CONFIG_JSON = "config.json"
LEARNING_CURVE_PNG = "learning_curve.png"
ARCHITECTURE_PNG = "architecture.png"
STATUSES = ("running", "complete")

# Columns of results.csv that come first, in this order; other scalar round keys follow them.
CSV_LEADING_COLUMNS = (
    "round", "labelled", "arch", "params", "depth", "test_accuracy",
    "search_seconds", "train_seconds", "query_seconds",
)


# --------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file.

    The temporary file lives in the target's directory (``os.replace`` is atomic only within one
    file system) and is removed again if anything fails before the rename.
    """
    path = Path(path)
    handle, temp_name = _create_temp_file(path)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _create_temp_file(path: Path) -> tuple[int, str]:
    """A new hidden file next to ``path``; unlike ``tempfile.mkstemp`` (mode 0600) it gets the
    usual permissions (0666 minus the umask), so the finished file is as readable as any other."""
    for _ in range(100):
        temp_name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp_name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Serialise ``obj`` first (a TypeError leaves the old file untouched), then write it atomically.

    NaN and infinities are refused: they are not JSON and other tools would choke on them. numpy and
    torch scalars/arrays (anything with ``tolist``) are converted to plain numbers and lists.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not possible on every platform, so best effort."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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

    from .plots import plot_architecture_trajectory, plot_learning_curve

    title = _run_title(config)
    plot_learning_curve(rounds, run_dir / LEARNING_CURVE_PNG, title=f"Test accuracy - {title}" if title else None)
    plot_architecture_trajectory(rounds, run_dir / ARCHITECTURE_PNG, title=f"Architecture - {title}" if title else None)


def _run_title(config: dict) -> str:
    parts = [str(config[key]) for key in ("dataset", "heuristic") if config.get(key)]
    if "seed" in config:
        parts.append(f"seed {config['seed']}")
    return ", ".join(parts)


def arch_text(arch: Any) -> str:
    """``[2, 4]`` -> ``"2x4"`` (strings pass through), the way architectures appear in CSV and plots."""
    if isinstance(arch, (list, tuple)) and len(arch) == 2:
        return f"{arch[0]}x{arch[1]}"
    return "" if arch is None else str(arch)


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
        for key in ("labelled", "test_accuracy"):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise malformed(f"round {index} needs a number '{key}', got {value!r}")
