"""MLflow tracking without a server: what a directory records (checked against MLflow's own name rules),
where it records (``--tracking-uri`` / ``--experiment``), the id file, and bad input as one line.

The tests against a real ``mlflow server`` are in test_tracking_server.py."""

from __future__ import annotations

import http.server
import importlib.util
import json
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins.config import resolve_config
from inas_plugins.records import CandidateRecord, RoundRecord
from inas_plugins.run_files import TRACKING_NAME
from inas_plugins.space import Arch
from inas_plugins.tracking import TrackingError, TrackingTarget, check_target, resolve_target
from inas_plugins.tracking.content import (arch_tag, label_round_metrics, metric_key, report_metrics, round_metrics,
                                           run_params, run_tags)
from inas_plugins.tracking.link import TrackingLink, read_link, write_link

TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "40", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--quiet"]
IDENTITY = {"kind": "folder", "path": "/data/pets", "train": 100, "test": 20, "image_size": [32, 32], "channels": 3,
            "classes": ["cat", "dog"], "files": "f" * 32, "fingerprint": "ab" * 16}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free again once closed: nobody listens there


# --------------------------------------------------------------------------- what a run records


def test_params_are_the_configuration_and_the_data_identity_without_what_resume_may_change() -> None:
    config = resolve_config({"dataset": "folder", "data_dir": "/data/pets", "arch": "2x4", "epochs": 7,
                             "heuristic": "coreset", "device": "cpu"}).to_dict()
    config["data_identity"] = IDENTITY
    params = run_params(config)
    assert params["train.epochs"] == "7" and params["query.heuristic"] == "coreset" and params["arch"] == "2x4"
    assert params["query_schedule"] == json.dumps(config["query_schedule"])
    assert params["data.fingerprint"] == IDENTITY["fingerprint"] and params["data.classes"] == '["cat", "dog"]'
    # --data-dir, --device and the data's path may change on --resume; MLflow cannot change a param.
    assert not {"data_dir", "device", "data.path"} & set(params)
    # Every setting is there: the nested configuration, flattened, one param per leaf.
    leaves = sum(len(value) if isinstance(value, dict) else 1 for key, value in config.items() if key != "data_identity")
    assert len(params) == leaves - 2 + len(IDENTITY) - 1
    tags = run_tags(config)
    assert tags["inas.arch"] == "A(2,4)" and tags["inas.heuristic"] == "coreset" and tags["inas.seed"] == "0"
    assert tags["inas.dataset"] == "folder" and tags["inas.data_fingerprint"] == IDENTITY["fingerprint"]
    assert tags["inas.data_dir"] == "/data/pets" and tags["inas.device"] == "cpu" and tags["inas.data_path"] == "/data/pets"
    assert run_tags(resolve_config({}).to_dict())["inas.arch"] == "searched" and arch_tag("12x5") == "A(12,5)"


def test_a_round_is_one_step_at_its_labelled_count_with_every_candidates_score() -> None:
    record = RoundRecord(round=2, labelled=400, arch=Arch(2, 3), params=44_226, depth=20, test_accuracy=0.9125,
                         candidates=[CandidateRecord(Arch(2, 2), 30_000, 0.81, 1.5, 1),
                                     CandidateRecord(Arch(2, 3), 44_226, 0.875, 2.5, 1),
                                     CandidateRecord(Arch(3, 2), 50_000, 0.8, 3.0, 1)],
                         search_seconds=12.5, train_seconds=30.25, query_seconds=0.5, queried=200).to_dict()
    step, metrics = round_metrics(record)
    assert step == 400
    assert metrics == {"round": 2, "test_accuracy": 0.9125, "params": 44_226, "depth": 20, "search_seconds": 12.5,
                       "train_seconds": 30.25, "query_seconds": 0.5, "queried": 200, "arch_blocks": 2, "arch_stacks": 3,
                       "candidate_val_accuracy/2x2": 0.81, "candidate_val_accuracy/2x3": 0.875,
                       "candidate_val_accuracy/3x2": 0.8}


def test_a_labelling_round_names_its_accuracy_by_kind() -> None:
    base = {"round": 1, "labelled": 14, "arch": [1, 2], "params": 5000, "depth": 8, "candidates": [],
            "search_seconds": 1.0, "train_seconds": 2.0, "eval_seconds": 0.5, "query_seconds": 0.1, "queried": 6,
            "left_out": 0, "skipped": 2, "conflicts": 1}
    step, metrics = label_round_metrics({**base, "accuracy": 0.75, "accuracy_kind": "test"})
    assert step == 1 and metrics["test_accuracy"] == 0.75 and "cv_accuracy" not in metrics
    assert metrics["labelled"] == 14 and metrics["skipped"] == 2 and metrics["conflicts"] == 1
    _, metrics = label_round_metrics({**base, "accuracy": 0.5, "accuracy_kind": "cross-validated"})
    assert metrics["cv_accuracy"] == 0.5 and "test_accuracy" not in metrics
    _, metrics = label_round_metrics({**base, "accuracy": None, "accuracy_kind": "none"})
    assert not {"cv_accuracy", "test_accuracy"} & set(metrics)


def test_the_sweep_report_table_becomes_metrics_per_group() -> None:
    report = {"groups": [
        {"label": "synthetic random iNAS limit_train=512", "runs": [{"status": "complete"}, {"status": "complete"}],
         "final_accuracy": {"mean": 0.5, "std": 0.1}, "auc": {"mean": 0.4, "std": 0.05}, "auc_gain": None},
        {"label": "synthetic softmax_response fixed 1x2", "runs": [{"status": "running"}],
         "final_accuracy": {"mean": 0.6, "std": 0.0}, "auc": {"mean": 0.45, "std": 0.0}, "auc_gain": 0.02}]}
    step, metrics = report_metrics(report)
    assert step == 2 and metrics["runs_reported"] == 2
    assert metrics["auc/synthetic random iNAS limit_train:512"] == 0.4
    assert metrics["auc_gain/synthetic softmax_response fixed 1x2"] == 0.02
    assert "auc_gain/synthetic random iNAS limit_train:512" not in metrics
    assert metrics["runs/synthetic random iNAS limit_train:512"] == 2


@pytest.mark.parametrize("name", ["synthetic random iNAS limit_train=512", "a/b\\c (x) [y] {z} 'q' \"w\" é?*",
                                  "..", " . ", "x" * 400, ""])
def test_metric_names_are_ones_mlflow_accepts(name) -> None:
    """MLflow's own validator is the reference (the client refuses the whole batch otherwise)."""
    pytest.importorskip("mlflow")
    from mlflow.utils.validation import _validate_metric_name

    _validate_metric_name(metric_key("auc", name))
    assert metric_key("auc", name).startswith("auc/")


# --------------------------------------------------------------------------- where a run records


def test_the_target_is_the_flag_else_the_directorys_own_else_the_environment() -> None:
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    stored = TrackingTarget("http://stored:5000", "mine")
    assert resolve_target(None, None, environ={}) is None
    assert resolve_target(None, None, environ=env) == TrackingTarget("http://env:5000", "inas")
    assert resolve_target(None, None, stored, environ=env) == stored
    assert resolve_target("http://flag:1/", None, stored, environ=env) == TrackingTarget("http://flag:1", "mine")
    assert resolve_target(None, "other", stored, environ=env) == TrackingTarget("http://stored:5000", "other")
    with pytest.raises(TrackingError, match="tracking is off: give --tracking-uri"):
        resolve_target(None, "x", environ={})


@pytest.mark.parametrize("uri, message", [
    ("localhost:5000", "did you mean http://localhost:5000?"),
    ("http://", "names no host"),
    ("http://host:port", "port that is not a number"),
    ("   ", "is empty"),
    ("mlruns", "is not a URI"),
])
def test_a_malformed_uri_is_one_line(uri, message) -> None:
    with pytest.raises(TrackingError, match=message):
        resolve_target(uri, None, environ={})


def test_a_port_nobody_answers_on_is_one_line_within_seconds() -> None:
    pytest.importorskip("mlflow")
    began = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server at .*mlflow server --host"):
        check_target(TrackingTarget(f"http://127.0.0.1:{closed_port()}"))
    assert time.monotonic() - began < 10


def test_a_web_server_that_is_no_mlflow_is_named_as_such(tmp_path) -> None:
    pytest.importorskip("mlflow")
    (tmp_path / "index.html").write_text("<html>hello</html>")
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TrackingError, match="answered HTTP 404 and is no MLflow tracking server"):
            check_target(TrackingTarget(f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()


def test_the_id_file_round_trips_and_a_damaged_one_is_one_line(tmp_path) -> None:
    assert read_link(tmp_path) is None
    link = TrackingLink("http://h:1", "inas", run_id="abc", parent_run_id="p")
    write_link(tmp_path, link)
    assert read_link(tmp_path) == link and len(link.uid) == 32
    (tmp_path / TRACKING_NAME).write_text("{not json")
    with pytest.raises(TrackingError, match="is damaged .* delete it"):
        read_link(tmp_path)
    (tmp_path / TRACKING_NAME).write_text(json.dumps({"uri": "", "experiment": "x", "uid": "u"}))
    with pytest.raises(TrackingError, match="must be non-empty strings"):
        read_link(tmp_path)


# --------------------------------------------------------------------------- bad input on the command line


def test_an_unreachable_server_stops_a_run_before_it_writes_anything(tmp_path) -> None:
    pytest.importorskip("mlflow")
    out = tmp_path / "run"
    error = one_error_line(invoke("run", *TINY, "--out", out, "--tracking-uri", f"http://127.0.0.1:{closed_port()}"))
    assert "cannot reach the MLflow tracking server" in error and "mlflow server" in error
    assert not out.exists()


@pytest.mark.parametrize("command", [["run", *TINY], ["sweep", "--dataset", "synthetic", "--seed", "0", "1"],
                                     ["label", "init", "RUN", "--data-dir", "DATA", "--classes", "a,b"]])
def test_every_tracked_command_refuses_a_malformed_uri_in_one_line(tmp_path, command) -> None:
    command = [str(tmp_path / part) if part in ("RUN", "DATA") else part for part in command]
    error = one_error_line(invoke(*command, "--tracking-uri", "localhost:5000"))
    assert "did you mean http://localhost:5000?" in error
    assert list(tmp_path.iterdir()) == []


def test_experiment_without_tracking_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    error = one_error_line(invoke("run", *TINY, "--out", tmp_path / "r", "--experiment", "study"))
    assert "--experiment 'study' names an MLflow experiment, but tracking is off" in error


def test_a_missing_track_extra_names_the_pip_command(tmp_path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "mlflow" else real(name, *rest))
    error = one_error_line(invoke("run", *TINY, "--out", tmp_path / "r", "--tracking-uri", "http://127.0.0.1:5000"))
    assert "pip install 'inas-plugins[track]'" in error


def test_track_sync_needs_a_directory_it_knows_and_a_target(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    error = one_error_line(invoke("track", "sync", tmp_path))
    assert "holds no run, sweep or labelling project" in error
    (tmp_path / "config.json").write_text("{}")
    error = one_error_line(invoke("track", "sync", tmp_path))
    assert "is not tracked yet: give --tracking-uri URI" in error


def test_a_sweep_grid_cannot_vary_the_tracking_options(tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('dataset = "synthetic"\nseed = [0, 1]\ntracking-uri = "http://127.0.0.1:5000"\n')
    error = one_error_line(invoke("sweep", "--grid-file", grid, "--dry-run"))
    assert "--tracking-uri cannot be part of the grid: give it to `inas sweep` itself" in error
