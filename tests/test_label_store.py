"""labels.csv (the answer history) and the pieces of the Label Studio client that need no server."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from urllib.parse import parse_qs, urlparse

import pytest

from inas_plugins.labelling.store import Answer, LabelStore
from inas_plugins.labelling.studio import StudioError, _answer, check_document_root, labelling_config, local_file_url


def test_the_latest_answer_wins_by_time_not_by_row_order(tmp_path) -> None:
    store = LabelStore(tmp_path)
    store.add([Answer("unlabelled/a.png", "dog", "label-studio", "annotation:2", "2026-01-02T00:00:00Z"),
               Answer("unlabelled/a.png", "cat", "import", "fix.csv", "2026-01-01T00:00:00+00:00"),
               Answer("unlabelled/b.png", "", "label-studio", "annotation:3", "2026-01-01T00:00:00Z")])
    again = LabelStore(tmp_path)  # read back from disk
    assert again.current() == {"unlabelled/a.png": "dog", "unlabelled/b.png": ""}
    assert again.labelled() == {"unlabelled/a.png": "dog"}
    assert again.conflicts() == ["unlabelled/a.png"]


def test_the_same_answer_twice_is_stored_once_and_an_edit_adds_a_row(tmp_path) -> None:
    store = LabelStore(tmp_path)
    answer = Answer("unlabelled/a.png", "cat", "label-studio", "annotation:7", "2026-01-01T00:00:00Z")
    assert store.add([answer]) == [answer]
    assert store.add([answer]) == []
    edited = Answer("unlabelled/a.png", "dog", "label-studio", "annotation:7", "2026-01-01T00:05:00Z")
    assert store.add([edited, edited]) == [edited]
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert [row["class"] for row in rows] == ["cat", "dog"]
    assert list(rows[0]) == ["path", "class", "source", "ref", "time"]
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # no temporary files left behind


def test_a_damaged_labels_file_is_reported_and_left_alone(tmp_path) -> None:
    damaged = "path,label\nunlabelled/a.png,cat\n"
    (tmp_path / "labels.csv").write_text(damaged)
    with pytest.raises(ValueError, match="has columns \\['path', 'label'\\], expected"):
        LabelStore(tmp_path)
    assert (tmp_path / "labels.csv").read_text() == damaged
    with pytest.raises(ValueError, match="unknown label source 'robot'"):
        Answer("unlabelled/a.png", "cat", "robot")
    with pytest.raises(ValueError, match="relative to the data directory"):
        Answer("/abs/a.png", "cat", "import")


def test_the_labelling_config_is_valid_xml_with_one_choice_per_class() -> None:
    classes = ["cat", 'say "hi"', "a & b", "<tag>"]
    view = ElementTree.fromstring(labelling_config(classes))
    image, = view.iter("Image")
    choices, = view.iter("Choices")
    assert image.get("value") == "$image" and choices.get("toName") == image.get("name")
    assert choices.get("choice") == "single" and choices.get("required") == "true"
    assert [choice.get("value") for choice in choices.iter("Choice")] == classes


def test_local_file_urls_are_below_the_document_root(tmp_path) -> None:
    url = local_file_url(str(tmp_path), str(tmp_path / "pets"), "unlabelled/a cat&dog.png")
    assert urlparse(url).path == "/data/local-files/"
    assert parse_qs(urlparse(url).query)["d"] == ["pets/unlabelled/a cat&dog.png"]
    check_document_root(str(tmp_path), str(tmp_path / "pets"))
    for root in (tmp_path / "pets", tmp_path / "elsewhere"):
        with pytest.raises(StudioError, match="must lie strictly below the Label Studio document root"):
            check_document_root(str(root), str(tmp_path / "pets"))


def test_annotations_become_answers_or_one_line_problems() -> None:
    def annotation(choices, cancelled=False):
        return {"id": 5, "updated_at": "2026-01-01T10:00:00.5Z", "was_cancelled": cancelled,
                "result": [{"type": "choices", "value": {"choices": choices}}]}

    answer, problem = _answer(9, "unlabelled/a.png", annotation(["dog"]), ["cat", "dog"])
    assert (answer.label, answer.ref, answer.source, problem) == ("dog", "annotation:5", "label-studio", "")
    skipped, _ = _answer(9, "unlabelled/a.png", annotation([], cancelled=True), ["cat", "dog"])
    assert skipped.skipped
    none, problem = _answer(9, "unlabelled/a.png", annotation(["bird"]), ["cat", "dog"])
    assert none is None and problem.startswith("task 9 (unlabelled/a.png): class 'bird' is not one of cat, dog")
    none, problem = _answer(9, "unlabelled/a.png", annotation(["cat", "dog"]), ["cat", "dog"])
    assert none is None and "has 2 classes" in problem
