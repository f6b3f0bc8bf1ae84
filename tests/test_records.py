"""RoundRecord / CandidateRecord: exactly today's results.json dicts, migration of old records, one-line errors."""

from __future__ import annotations

import copy
import json

import pytest

from inas_plugins.records import CandidateRecord, RoundRecord, arch_text
from inas_plugins.space import Arch


def loop_round() -> dict:
    """A round as ``ActiveRun._run_round`` (plus the query) records it today, keys in the loop's order."""
    return {
        "round": 2,
        "labelled": 400,
        "arch": [2, 3],
        "params": 58_000,
        "depth": 14,
        "test_accuracy": 0.63125,
        "candidates": [
            {"arch": [2, 3], "params": 58_000, "val_accuracy": 0.6, "seconds": 1.25, "iteration": 1,
             "epochs": 4, "inherited": False},
            {"arch": [2, 4], "params": 90_000, "val_accuracy": 0.61, "seconds": 2.5, "iteration": 1,
             "epochs": 8, "inherited": True},
        ],
        "search_seconds": 3.75,
        "train_seconds": 4.125,
        "query_seconds": 0.312,
        "queried": 400,
    }


def test_a_loop_round_round_trips_exactly_with_its_key_order():
    data = loop_round()
    record = RoundRecord.from_dict(copy.deepcopy(data))
    assert record.arch == Arch(2, 3) and record.queried == 400 and record.extra == {}
    assert record.candidates[1] == CandidateRecord(Arch(2, 4), 90_000, 0.61, 2.5, iteration=1, epochs=8,
                                                   inherited=True)
    assert record.to_dict() == data
    assert list(record.to_dict()) == list(data)
    assert list(record.to_dict()["candidates"][0]) == list(data["candidates"][0])
    assert json.loads(json.dumps(record.to_dict())) == data  # plain JSON values only


def test_to_dict_rounds_like_the_loop():
    record = RoundRecord(round=0, labelled=100, arch=Arch(1, 1), params=10, depth=4,
                         test_accuracy=0.123456789, search_seconds=1.23456, train_seconds=2.0004,
                         query_seconds=0.0)
    row = record.to_dict()
    assert (row["test_accuracy"], row["search_seconds"], row["train_seconds"]) == (0.12346, 1.235, 2.0)
    assert (row["candidates"], row["queried"]) == ([], 0)


def test_unknown_keys_survive_a_round_trip_after_the_known_ones():
    data = {**loop_round(), "pool_size": 900, "notes": {"by": "hand"}}
    data["candidates"][0]["flops"] = 123
    record = RoundRecord.from_dict(copy.deepcopy(data))
    assert record.extra == {"pool_size": 900, "notes": {"by": "hand"}}
    assert record.candidates[0].extra == {"flops": 123}
    assert record.to_dict() == data
    assert list(record.to_dict())[-2:] == ["pool_size", "notes"]


def test_an_extra_entry_cannot_overwrite_a_typed_field():
    record = RoundRecord.from_dict(loop_round())
    record.extra["test_accuracy"] = 0.99
    assert record.to_dict()["test_accuracy"] == 0.63125


def test_an_old_record_without_queried_and_candidate_epochs_is_migrated():
    old = {"round": 0, "labelled": 100, "arch": [1, 1], "params": 12_000, "depth": 4, "test_accuracy": 0.41,
           "candidates": [{"arch": [1, 1], "params": 12_000, "val_accuracy": 0.40, "seconds": 1.5},
                          {"arch": [1, 2], "params": 30_000, "val_accuracy": 0.38, "seconds": 2.0}],
           "search_seconds": 5.4, "train_seconds": 3.0, "query_seconds": 0.2}
    record = RoundRecord.from_dict(old)
    assert record.queried == 0
    assert [(c.iteration, c.epochs, c.inherited) for c in record.candidates] == [(1, 0, False), (1, 0, False)]
    migrated = record.to_dict()
    assert migrated["queried"] == 0
    assert migrated["candidates"][1] == {"arch": [1, 2], "params": 30_000, "val_accuracy": 0.38, "seconds": 2.0,
                                         "iteration": 1, "epochs": 0, "inherited": False}
    assert {key: migrated[key] for key in old if key != "candidates"} == {k: v for k, v in old.items()
                                                                          if k != "candidates"}
    assert RoundRecord.from_dict(migrated).to_dict() == migrated  # stable once migrated


def test_a_minimal_record_gets_defaults_for_everything_optional():
    record = RoundRecord.from_dict({"round": 0, "labelled": 10, "arch": [1, 1], "params": 5, "test_accuracy": 0.5})
    assert (record.depth, record.candidates, record.search_seconds, record.train_seconds, record.query_seconds,
            record.queried) == (None, [], 0.0, 0.0, 0.0, 0)


@pytest.mark.parametrize("change, message", [
    ({"test_accuracy": None}, "needs a number 'test_accuracy'"),
    ({"test_accuracy": "0.5"}, "needs a number 'test_accuracy'"),
    ({"test_accuracy": float("nan")}, "needs a number 'test_accuracy'"),
    ({"test_accuracy": 63.1}, "'test_accuracy' must be in [0, 1]"),
    ({"labelled": -1}, "needs a non-negative integer 'labelled'"),
    ({"labelled": True}, "needs a non-negative integer 'labelled'"),
    ({"round": None}, "needs a non-negative integer 'round'"),
    ({"params": 1.5}, "needs a non-negative integer 'params'"),
    ({"arch": "2x3"}, "needs 'arch' as [blocks, stacks]"),
    ({"arch": [0, 3]}, "'arch' [0, 3] is not an architecture"),
    ({"queried": "all"}, "needs a non-negative integer 'queried'"),
    ({"candidates": {}}, "'candidates' must be a list"),
    ({"candidates": [3]}, "candidate 0: a candidate must be an object"),
    ({"candidates": [{"arch": [1, 1], "params": 1, "val_accuracy": 0.5, "inherited": "yes"}]},
     "candidate 0: 'inherited' must be true or false"),
    ({"candidates": [{"arch": [1, 1], "params": 1}]}, "candidate 0: needs a number 'val_accuracy'"),
])
def test_bad_input_is_a_one_line_value_error(change, message):
    data = {**loop_round(), **change}
    with pytest.raises(ValueError) as error:
        RoundRecord.from_dict(data)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_round_that_is_not_an_object_is_refused():
    with pytest.raises(ValueError, match="a round must be an object, got list"):
        RoundRecord.from_dict([1, 2])


def test_arch_text_formats_architectures_for_csv_and_plots():
    assert (arch_text([2, 4]), arch_text((1, 1)), arch_text("3x1"), arch_text(None)) == ("2x4", "1x1", "3x1", "")


def test_search_still_exports_the_candidate_record():
    from inas_plugins import search

    assert search.CandidateRecord is CandidateRecord
