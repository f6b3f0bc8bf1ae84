"""Run-directory files: atomic writes, results.json/results.csv agreement, real PNGs, clear load errors."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest

from inas_plugins import results
from inas_plugins.results import (atomic_write_json, atomic_write_text, load_results, rounds_to_csv,
                                  write_results)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fabricated_rounds() -> list[dict]:
    return [
        {"round": 0, "labelled": 100, "arch": [1, 1], "params": 12_000, "depth": 4, "test_accuracy": 0.41,
         "candidates": [{"arch": [1, 1], "params": 12_000, "val_accuracy": 0.40, "seconds": 1.5},
                        {"arch": [1, 2], "params": 30_000, "val_accuracy": 0.38, "seconds": 2.0},
                        {"arch": [2, 1], "params": 20_000, "val_accuracy": 0.39, "seconds": 1.9}],
         "search_seconds": 5.4, "train_seconds": 3.0, "query_seconds": 0.2},
        {"round": 1, "labelled": 200, "arch": [1, 2], "params": 30_000, "depth": 6, "test_accuracy": 0.55,
         "candidates": [{"arch": [1, 2], "params": 30_000, "val_accuracy": 0.52, "seconds": 2.1}],
         "search_seconds": 2.1, "train_seconds": 3.5, "query_seconds": 0.3, "pool_size": 900},
        {"round": 2, "labelled": 400, "arch": [2, 2], "params": 58_000, "depth": 10, "test_accuracy": 0.63,
         "candidates": [], "search_seconds": 0.0, "train_seconds": 4.0, "query_seconds": 0.3},
    ]


def leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failure_mid_write_keeps_the_old_file_intact(tmp_path, monkeypatch, failing):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"rounds": [1, 2, 3]})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    # The new bytes are already in the temporary file when fsync or the rename fails.
    monkeypatch.setattr(results.os, failing, crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"rounds": [4, 5, 6, 7, 8, 9]})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"rounds": [1, 2, 3]}
    assert leftovers(tmp_path) == []


def test_atomic_write_json_refuses_unserialisable_data_before_touching_the_file(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
    assert leftovers(tmp_path) == []


def test_atomic_write_json_turns_numpy_values_into_plain_numbers(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"accuracy": np.float32(0.5), "arch": np.array([2, 4])})
    assert json.loads(target.read_text()) == {"accuracy": 0.5, "arch": [2, 4]}


# --------------------------------------------------------------------------- write_results


def test_write_results_writes_json_csv_and_two_real_pngs(tmp_path):
    config = {"dataset": "digits", "query": {"heuristic": "softmax_response"}, "seed": 3}
    rounds = fabricated_rounds()
    write_results(tmp_path, config, rounds, status="complete")

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == {"config": config, "rounds": rounds, "status": "complete"}
    for name in ("learning_curve.png", "architecture.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 10_000, f"{name} is suspiciously small ({len(data)} bytes)"
    assert leftovers(tmp_path) == []


def test_results_csv_matches_the_rounds_of_results_json(tmp_path):
    rounds = fabricated_rounds()
    write_results(tmp_path, {"dataset": "digits"}, rounds, status="running")
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(table) == len(rounds)
    for row, expected in zip(table, rounds):
        assert int(row["round"]) == expected["round"]
        assert int(row["labelled"]) == expected["labelled"]
        assert row["arch"] == f"{expected['arch'][0]}x{expected['arch'][1]}"
        assert int(row["params"]) == expected["params"]
        assert int(row["depth"]) == expected["depth"]
        assert float(row["test_accuracy"]) == expected["test_accuracy"]
        for key in ("search_seconds", "train_seconds", "query_seconds"):
            assert float(row[key]) == expected[key]
        assert row["candidates"].count("=") == len(expected["candidates"])
    assert table[0]["candidates"] == "1x1=0.4000;1x2=0.3800;2x1=0.3900"
    assert table[1]["pool_size"] == "900" and table[0]["pool_size"] == ""


def test_rounds_to_csv_of_no_rounds_is_just_the_header():
    assert rounds_to_csv([]).strip().split(",")[:3] == ["round", "labelled", "arch"]


def test_write_results_with_no_rounds_yet_still_draws_the_plots(tmp_path):
    write_results(tmp_path, {"dataset": "digits"}, [], status="running")
    assert load_results(tmp_path)["status"] == "running"
    assert (tmp_path / "learning_curve.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "architecture.png").read_bytes().startswith(PNG_MAGIC)


def test_write_results_rejects_an_unknown_status(tmp_path):
    with pytest.raises(ValueError, match="running, complete"):
        write_results(tmp_path, {}, [], status="done")
    assert not (tmp_path / "results.json").exists()


# --------------------------------------------------------------------------- load_results


def test_load_results_round_trips(tmp_path):
    write_results(tmp_path, {"dataset": "digits"}, fabricated_rounds(), status="complete")
    loaded = load_results(tmp_path)
    assert loaded["rounds"] == fabricated_rounds() and loaded["status"] == "complete"


def test_load_results_of_a_file_without_status_counts_as_complete(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": {}, "rounds": []}))
    assert load_results(tmp_path)["status"] == "complete"


@pytest.mark.parametrize("content, message", [
    (None, "holds no run"),
    ("{not json", "is malformed: Expecting property name"),
    ("[1, 2]", "expected a JSON object"),
    ('{"config": {}}', "'rounds' must be a list"),
    ('{"config": [], "rounds": []}', "'config' must be an object"),
    ('{"config": {}, "rounds": [{"labelled": 10}]}', "round 0 needs a number 'test_accuracy'"),
    ('{"config": {}, "rounds": [], "status": "paused"}', "'status' is 'paused'"),
])
def test_load_results_names_the_problem_in_one_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(ValueError) as error:
        load_results(tmp_path)
    assert message in str(error.value)
    assert str(tmp_path) in str(error.value)
    assert "\n" not in str(error.value)


def test_load_results_of_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        load_results(tmp_path / "nowhere")
