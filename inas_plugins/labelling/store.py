"""``labels.csv``: every answer a person gave, as an append-only history replaced atomically.

One row per answer: ``path`` (the image, relative to the data directory, with ``/``), ``class``
(empty = skipped), ``source`` (``seed``, ``label-studio``, ``import``), ``ref`` (where the answer came
from: ``annotation:<id>`` for Label Studio, the file name for an import) and ``time`` (ISO 8601, UTC).

Why a history rather than one row per image: an image labelled twice with different classes is a
*conflict* that ``inas label status`` should count, and a re-labelled image should keep what it was
before (nothing a person did is ever dropped). The label an image has now is its latest answer
(by time; ties go to the later row).

Why ``ref``: syncing twice must add nothing twice. An answer is added only when the latest row of
the same ``(path, source, ref)`` says something else, so pulling the same annotation again is a
no-op, while an annotation edited in Label Studio adds one row with its new class.

Every write goes through :mod:`inas_plugins.atomic`: a reader (or a killed sync) sees the old file or
the new one, never half of one, so labels already stored are never lost.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_write_text

LABELS_NAME = "labels.csv"
COLUMNS = ("path", "class", "source", "ref", "time")
SOURCES = ("seed", "label-studio", "import")


def now() -> str:
    """The current time as the store writes it."""
    return datetime.now(timezone.utc).isoformat()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; a naive time is taken as UTC) as an aware datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Answer:
    """One row of ``labels.csv``. ``label`` is a class name, or ``""`` for a skipped image."""

    path: str
    label: str
    source: str
    ref: str = ""
    time: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown label source {self.source!r}; valid sources are {', '.join(SOURCES)}")
        if not self.path or self.path.startswith("/") or "\\" in self.path:
            raise ValueError(f"label path {self.path!r} must be relative to the data directory, with '/'")
        object.__setattr__(self, "time", parse_time(self.time or now()).isoformat())

    @property
    def stream(self) -> tuple[str, str, str]:
        return (self.path, self.source, self.ref)

    @property
    def skipped(self) -> bool:
        return self.label == ""


class LabelStore:
    """The answers of one run directory, loaded once, added to atomically."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LABELS_NAME
        self.answers: list[Answer] = read_answers(self.path) if self.path.exists() else []

    def add(self, answers: Iterable[Answer]) -> list[Answer]:
        """Store the answers that are new (see the module docstring) and return them."""
        latest = {answer.stream: answer.label for answer in self.answers}
        added = []
        for answer in answers:
            if latest.get(answer.stream) != answer.label:
                latest[answer.stream] = answer.label
                added.append(answer)
        if added:
            write_answers(self.path, self.answers + added)
            self.answers += added
        return added

    def current(self) -> dict[str, str]:
        """Each answered image's label now (``""`` = skipped): its latest answer."""
        order = sorted(range(len(self.answers)), key=lambda i: (parse_time(self.answers[i].time), i))
        return {self.answers[i].path: self.answers[i].label for i in order}

    def labelled(self) -> dict[str, str]:
        """Images with a class now (skipped ones left out)."""
        return {path: label for path, label in self.current().items() if label}

    def conflicts(self) -> list[str]:
        """Images that were given more than one class (the latest one counts)."""
        classes: dict[str, set[str]] = {}
        for answer in self.answers:
            if answer.label:
                classes.setdefault(answer.path, set()).add(answer.label)
        return sorted(path for path, names in classes.items() if len(names) > 1)


def read_answers(path: Path) -> list[Answer]:
    """All rows of a ``labels.csv``; a damaged file is a one-line ValueError (it is never rewritten)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} has columns {reader.fieldnames}, expected {list(COLUMNS)}")
        answers = []
        for line, row in enumerate(reader, start=2):
            try:
                answers.append(Answer(row["path"], row["class"], row["source"], row["ref"], row["time"]))
            except (ValueError, TypeError) as error:
                raise ValueError(f"{path} line {line}: {error}") from None
    return answers


def write_answers(path: Path, answers: list[Answer]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for answer in answers:
        writer.writerow([answer.path, answer.label, answer.source, answer.ref, answer.time])
    atomic_write_text(path, buffer.getvalue())
