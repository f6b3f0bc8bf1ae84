"""The labelling loop through plain files, for CVAT, a spreadsheet or any other tool.

``export`` writes the current batch (what to label next, with the model's guess and the query
score) or the labels so far, as CSV or JSON. ``import`` reads a file of ``path,class`` rows back:
the CSV or JSON written by ``export`` with its ``class`` column filled in works as it is, and so
does any file with those two columns. Paths are relative to the data directory (as exported) or
absolute paths inside it. A row with an empty class is "not answered yet" and is ignored.

An import is all or nothing: an unknown column, a path that is not an image of the project or a
class that is not in the list makes it fail with one line (naming the first offenders and what is
valid) before anything is stored. Answers are stored with ``source`` "import" and ``ref`` the
file's name, so importing the same file twice adds nothing twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..choices import LABEL_EXPORT_FORMATS, LABEL_EXPORTS
from .images import relative, scan_pool, scan_seeds
from .project import ProjectError, load_project, locked
from .store import Answer, LabelStore

BATCH_COLUMNS = ("path", "class", "predicted", "confidence", "query_score", "round", "file")
LABEL_COLUMNS = ("path", "class", "source", "time")
IMPORT_COLUMNS = tuple(dict.fromkeys(BATCH_COLUMNS + LABEL_COLUMNS + ("ref",)))


def export_rows(run_dir: Path, what: str = "batch") -> list[dict]:
    """The rows ``inas label export`` writes: the open batch's images to label, or the labels so far."""
    if what not in LABEL_EXPORTS:
        raise ProjectError(f"unknown export {what!r}; choose one of {', '.join(LABEL_EXPORTS)}")
    project, state = load_project(run_dir)
    store = LabelStore(run_dir)
    if what == "labels":
        latest: dict[str, Answer] = {}
        for answer in sorted(store.answers, key=lambda a: a.time):
            latest[answer.path] = answer
        return [{"path": a.path, "class": a.label, "source": a.source, "time": a.time}
                for a in sorted(latest.values(), key=lambda a: a.path)]
    if state.batch is None:
        return []
    current = store.current()
    return [{"path": item.path, "class": current.get(item.path, ""), "predicted": item.predicted or "",
             "confidence": item.confidence, "query_score": item.query_score, "round": state.batch.round,
             "file": str(project.root / item.path)} for item in state.batch.items]


def export_text(run_dir: Path, fmt: str = "csv", what: str = "batch") -> str:
    if fmt not in LABEL_EXPORT_FORMATS:
        raise ProjectError(f"unknown export format {fmt!r}; choose one of {', '.join(LABEL_EXPORT_FORMATS)}")
    rows = export_rows(run_dir, what)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=BATCH_COLUMNS if what == "batch" else LABEL_COLUMNS,
                            lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def read_rows(file: Path) -> list[dict]:
    """Rows of a CSV (by header) or JSON (a list of objects) file; ProjectError for anything else."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ProjectError(f"cannot read {file}: {error.strerror or error}") from None
    if file.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise ProjectError(f"{file} is not valid JSON: {error}") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ProjectError(f"{file} must hold a JSON list of objects with 'path' and 'class'")
        return [{str(k): "" if v is None else str(v) for k, v in row.items()} for row in rows]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ProjectError(f"{file} is empty; expected a CSV header with path,class")
    rows = list(reader)
    if any(None in row for row in rows):
        raise ProjectError(f"{file} has rows with more fields than its header")
    _check_columns(reader.fieldnames, file)
    return [{k: (v or "").strip() for k, v in row.items()} for row in rows]


def _check_columns(columns, file: Path) -> None:
    unknown = sorted(set(columns) - set(IMPORT_COLUMNS))
    if unknown:
        raise ProjectError(f"{file} has unknown column(s) {', '.join(unknown)}; valid columns are "
                           f"{', '.join(IMPORT_COLUMNS)} (path and class are required)")
    missing = [name for name in ("path", "class") if name not in columns]
    if missing:
        raise ProjectError(f"{file} lacks the column(s) {', '.join(missing)}; expected at least path,class")


def import_file(run_dir: Path, file: Path) -> int:
    """Check every row of ``file``, then store its answers; return how many were new."""
    file = Path(file)
    project, _ = load_project(run_dir)
    rows = read_rows(file)
    for row in rows:
        _check_columns(list(row), file)
    known = set(scan_pool(project.root)) | {path for path, _ in scan_seeds(project.root, project.classes)}
    unknown_paths, unknown_classes, answers = [], [], []
    for line, row in enumerate(rows, start=2 if file.suffix.lower() != ".json" else 1):
        name = row["class"].strip()
        if not name:
            continue
        path = _normalise(project.root, row["path"].strip())
        if path not in known:
            unknown_paths.append(f"{row['path']!r} (row {line})")
        elif name not in project.classes:
            unknown_classes.append(f"{name!r} (row {line})")
        else:
            answers.append(Answer(path, name, "import", file.name))
    if unknown_paths:
        raise ProjectError(f"{file}: {len(unknown_paths)} path(s) are not images of the project, e.g. "
                           f"{', '.join(unknown_paths[:3])}; give paths relative to {project.root} as "
                           "`inas label export` writes them; nothing was imported")
    if unknown_classes:
        raise ProjectError(f"{file}: {len(unknown_classes)} class(es) are not in the list, e.g. "
                           f"{', '.join(unknown_classes[:3])}; valid classes are {', '.join(project.classes)}; "
                           "nothing was imported")
    with locked(run_dir):
        return len(LabelStore(run_dir).add(answers))


def _normalise(root: Path, path: str) -> str:
    if os.path.isabs(path):
        return relative(root, path)
    return Path(path).as_posix().removeprefix("./")
