"""Tracking into a real ``mlflow server`` (SQLite backend, a temporary artifact root), read back through
MLflow's own client: a short run, a run killed with SIGKILL and resumed, a server killed in the middle of
a run, a two-run sweep on a local Ray, a labelling round, and two runs' curves in MLflow's web UI.

The server lives in a cached virtual environment of its own (tests/mlflow_server.py). These tests
skip, saying why, only where it cannot be installed or started; CI (``.ci/run`` sets
INAS_MLFLOW_SERVER_REQUIRED=1) fails instead. ``INAS_MLFLOW_SCREENSHOT=docs/mlflow-compare.png`` makes
the screenshot test also write the picture the README shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins import Arch, build_inas_resnet
from inas_plugins.checkpoint import load_checkpoint
from chromium import capture, find_chromium
from mlflow_server import MlflowServer, ServerUnavailable, ensure_server_venv

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

# One torch thread per run: two multi-threaded torch processes on a shared 2-core machine slow each other 5-30x.
TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "60", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--threads", "1", "--quiet"]
# Long enough (5 rounds of a few seconds each) to be interrupted in the middle.
LONGER = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "100", "--epochs", "2",
          "--epoch-size", "1024", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--threads", "1",
          "--quiet"]


def unavailable(reason: str) -> None:
    if os.environ.get("INAS_MLFLOW_SERVER_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mlflow_executable() -> Path:
    try:
        return ensure_server_venv()
    except ServerUnavailable as error:
        unavailable(str(error))


def start_server(executable: Path, root: Path) -> MlflowServer:
    try:
        return MlflowServer(executable, root).start()
    except ServerUnavailable as error:
        unavailable(str(error))


@pytest.fixture(scope="module")
def server(mlflow_executable, tmp_path_factory):
    running = start_server(mlflow_executable, tmp_path_factory.mktemp("mlflow"))
    yield running
    running.stop()


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def inas(*args) -> list[str]:
    return [sys.executable, "-m", "inas_cli.main", *[str(a) for a in args]]


def link_of(directory: Path) -> dict:
    return json.loads((directory / "mlflow.json").read_text())


def steps_in_mlflow(client: MlflowClient, directory: Path) -> int:
    """How many rounds of ``directory``'s run MLflow has (0 before the run or its id file exists)."""
    run_id = link_of(directory).get("run_id") if (directory / "mlflow.json").exists() else None
    return len(client.get_metric_history(run_id, "test_accuracy")) if run_id else 0


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def assert_mirrors_the_directory(client: MlflowClient, run_dir: Path) -> str:
    """Every round once, at its labelled count, with the values of results.json; the run FINISHED."""
    run_id = link_of(run_dir)["run_id"]
    rounds = json.loads((run_dir / "results.json").read_text())["rounds"]
    for key in ("test_accuracy", "params", "depth", "search_seconds", "train_seconds", "query_seconds"):
        assert history(client, run_id, key) == [(r["labelled"], pytest.approx(float(r[key]))) for r in rounds], key
    for record in rounds:
        for candidate in record["candidates"]:
            name = f"candidate_val_accuracy/{candidate['arch'][0]}x{candidate['arch'][1]}"
            assert (record["labelled"], pytest.approx(candidate["val_accuracy"])) in history(client, run_id, name)
    assert client.get_run(run_id).info.status == "FINISHED"
    return run_id


# --------------------------------------------------------------------------- one run


def test_a_tracked_run_records_its_configuration_rounds_files_and_network(server, tmp_path) -> None:
    out = tmp_path / "tiny-run"
    result = invoke("run", *TINY, "--out", out, "--tracking-uri", server.uri, "--experiment", "one run")
    assert result.exit_code == 0, result.output
    client = MlflowClient(server.uri)
    run_id = assert_mirrors_the_directory(client, out)
    assert f"tracking: new MLflow run {run_id} in experiment 'one run' at {server.uri}" in result.output
    run = client.get_run(run_id)
    assert run.info.run_name == "tiny-run"
    assert client.get_experiment(run.info.experiment_id).name == "one run"
    config = json.loads((out / "config.json").read_text())
    # Every setting of config.json, flattened here independently of the tracker's code.
    for section in ("train", "search", "query"):
        for key, value in config[section].items():
            assert run.data.params[f"{section}.{key}"] == (value if isinstance(value, str) else json.dumps(value))
    assert run.data.params["budget"] == "60" and run.data.params["data.fingerprint"] == config["data_identity"]["fingerprint"]
    assert {key: run.data.tags[key] for key in ("inas.heuristic", "inas.arch", "inas.seed", "inas.dataset")} == {
        "inas.heuristic": "softmax_response", "inas.arch": "searched", "inas.seed": "0", "inas.dataset": "synthetic"}
    assert run.data.tags["inas.data_fingerprint"] == config["data_identity"]["fingerprint"]
    # The files, the same bytes as in the directory, and the final network.
    names = {info.path for info in client.list_artifacts(run_id)}
    assert {"config.json", "results.json", "results.csv", "learning_curve.png", "architecture.png", "model"} <= names
    downloaded = Path(client.download_artifacts(run_id, "", str(tmp_path / "artifacts")))
    for name in ("results.json", "results.csv", "learning_curve.png"):
        assert (downloaded / name).read_bytes() == (out / name).read_bytes(), name
    weights = torch.load(downloaded / "model" / "model.pt", weights_only=True)
    model = build_inas_resnet(Arch(*weights["arch"]), num_classes=weights["num_classes"], in_chans=weights["in_chans"],
                              base_width=weights["base_width"], drop_rate=weights["drop_rate"], block=weights["block"])
    model.load_state_dict(weights["state_dict"])
    final = load_checkpoint(out)
    assert weights["arch"] == list(final.arch)
    assert all(torch.equal(weights["state_dict"][key], value) for key, value in final.model_state.items())
    # Resuming a complete run changes nothing in MLflow.
    again = invoke("run", "--resume", out, "--threads", "1")
    assert again.exit_code == 0, again.output
    assert f"continuing MLflow run {run_id}" in again.output
    assert_mirrors_the_directory(client, out)
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_run_killed_and_resumed_continues_its_mlflow_run_without_duplicate_steps(server, tmp_path) -> None:
    out = tmp_path / "killed"
    client = MlflowClient(server.uri)
    process = subprocess.Popen(inas("run", *LONGER, "--out", out, "--tracking-uri", server.uri, "--experiment", "kill"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: steps_in_mlflow(client, out) >= 2, 300, "two rounds in MLflow")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    run_id = link_of(out)["run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"
    done = len(json.loads((out / "results.json").read_text())["rounds"])
    assert done < 5, "the run ended before it was killed"
    # As if the kill had come between creating the MLflow run and writing its id: found by its uid tag.
    link = link_of(out)
    del link["run_id"]
    (out / "mlflow.json").write_text(json.dumps(link))
    resumed = invoke("run", "--resume", out, "--threads", "1")
    assert resumed.exit_code == 0, resumed.output
    assert f"continuing MLflow run {run_id}" in resumed.output
    assert link_of(out)["run_id"] == run_id
    assert_mirrors_the_directory(client, out)
    assert [step for step, _ in history(client, run_id, "test_accuracy")] == [20, 40, 60, 80, 100]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1


def test_a_server_killed_mid_run_costs_the_run_nothing_and_track_sync_catches_up(mlflow_executable, tmp_path) -> None:
    down = start_server(mlflow_executable, tmp_path / "server")
    out = tmp_path / "run"
    client = MlflowClient(down.uri)
    try:
        process = subprocess.Popen(inas("run", *LONGER, "--out", out, "--tracking-uri", down.uri),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: steps_in_mlflow(client, out) >= 1, 300, "round 0 in MLflow")
        down.kill()
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
        assert "Traceback" not in output
        warnings = [line for line in output.splitlines() if line.startswith("warning: tracking:")]
        assert len(warnings) == 1 and f"upload it later with  inas track sync {out}" in warnings[0], output
        assert json.loads((out / "results.json").read_text())["status"] == "complete"
        # The server comes back (same store, same port): one command uploads what it missed, once.
        down.start()
        synced = invoke("track", "sync", out)
        assert synced.exit_code == 0, synced.output
        run_id = assert_mirrors_the_directory(client, out)
        assert [step for step, _ in history(client, run_id, "test_accuracy")] == [20, 40, 60, 80, 100]
        assert "model" in {info.path for info in client.list_artifacts(run_id)}
        twice = invoke("track", "sync", out)
        assert twice.exit_code == 0 and "0 step(s) and 0 file(s) uploaded" in twice.output, twice.output
    finally:
        down.stop()


# --------------------------------------------------------------------------- a sweep


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the sweep, as tests/test_sweep.py starts it (the sweep joins it)."""
    ray = pytest.importorskip("ray")
    from inas_plugins.ray_cluster import connect

    owned = connect(None, num_cpus=2)
    yield
    if owned:
        ray.shutdown()


def test_a_two_run_sweep_is_a_parent_run_with_its_runs_nested(server, local_ray, tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = invoke("sweep", *TINY[:-3], "--seed", "0", "1", "--out", sweep_dir, "--tracking-uri", server.uri,
                    "--experiment", "sweep")
    assert result.exit_code == 0, (result.output, result.exception)
    client = MlflowClient(server.uri)
    parent_id = link_of(sweep_dir)["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["inas.kind"] == "sweep"
    assert parent.data.params["grid.seed"] == '["0", "1"]' and parent.data.params["runs"] == "2"
    report = json.loads((sweep_dir / "report.json").read_text())
    group, = report["groups"]
    assert parent.data.metrics[f"auc/{group['label']}"] == pytest.approx(group["auc"]["mean"])
    assert parent.data.metrics[f"final_accuracy/{group['label']}"] == pytest.approx(group["final_accuracy"]["mean"])
    assert parent.data.metrics["runs_reported"] == 2
    assert {"report.png", "report.md", "report.json", "sweep.json"} <= {i.path for i in client.list_artifacts(parent_id)}
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(run.info.run_name for run in children) == ["seed=0", "seed=1"]
    for name in ("seed=0", "seed=1"):
        assert link_of(sweep_dir / name)["parent_run_id"] == parent_id
        assert_mirrors_the_directory(client, sweep_dir / name)
    assert {run.data.tags["inas.seed"] for run in children} == {"0", "1"}


# --------------------------------------------------------------------------- a labelling session


def test_a_labelling_round_is_a_step_of_the_projects_mlflow_run(server, tmp_path) -> None:
    from test_label_files import TINY as LABEL_TINY, label_batch, make_pool

    pool = make_pool(tmp_path / "pool")
    run_dir = tmp_path / "labelling"
    made = invoke("label", "init", run_dir, "--data-dir", pool, "--classes", "top,left", *LABEL_TINY,
                  "--tracking-uri", server.uri, "--experiment", "labelling")
    assert made.exit_code == 0, made.output
    client = MlflowClient(server.uri)
    run_id = link_of(run_dir)["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["inas.kind"] == "label"
    assert run.data.params["label.classes"] == '["top", "left"]' and run.data.params["initial"] == "8"
    assert invoke("label", "import", run_dir, label_batch(run_dir, tmp_path)).exit_code == 0
    synced = invoke("label", "sync", run_dir)
    assert synced.exit_code == 0, synced.output
    record, = json.loads((run_dir / "state.json").read_text())["rounds"]
    assert record["accuracy_kind"] == "test"
    assert history(client, run_id, "test_accuracy") == [(0, pytest.approx(record["accuracy"]))]
    assert history(client, run_id, "labelled") == [(0, 8.0)]
    assert history(client, run_id, "skipped") == [(0, 0.0)] and history(client, run_id, "conflicts") == [(0, 0.0)]
    names = {info.path for info in client.list_artifacts(run_id)}
    assert {"project.json", "state.json", "labels.csv", "model"} <= names
    assert client.get_run(run_id).info.status == "RUNNING"  # the session goes on


# --------------------------------------------------------------------------- the web UI


def test_mlflow_ui_compares_two_runs_accuracy_curves(server, tmp_path) -> None:
    """The README's picture: MLflow's comparison of two runs' test accuracy, step = labelled images."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("no headless browser installed (apt-get install -y chromium)")
    digits = ["--dataset", "digits", "--initial", "40", "--query-size", "40", "--budget", "200", "--epochs", "6",
              "--epoch-size", "1024", "--base-width", "8", "--max-blocks", "3", "--max-stacks", "2", "--threads", "1",
              "--quiet"]
    runs = []
    for heuristic in ("softmax_response", "random"):
        out = tmp_path / f"digits-{heuristic}"
        result = invoke("run", *digits, "--heuristic", heuristic, "--out", out, "--tracking-uri", server.uri,
                        "--experiment", "digits: softmax response or random")
        assert result.exit_code == 0, result.output
        runs.append(link_of(out)["run_id"])
    experiment = MlflowClient(server.uri).get_run(runs[0]).info.experiment_id
    url = (f"{server.uri}/#/metric?runs={json.dumps(runs)}&metric=%22test_accuracy%22&experiments=%5B%22{experiment}"
           "%22%5D&plot_metric_keys=%5B%22test_accuracy%22%5D&x_axis=step&show_point=true").replace(" ", "")
    # Ready: both runs' curves are drawn and named in the chart's legend.
    ready = ("document.querySelectorAll('.js-plotly-plot .trace.scatter').length >= 2 && "
             "['digits-softmax_response', 'digits-random'].every(name => "
             "document.body.innerText.includes(name + ' (test_accuracy)'))")
    close_assistant = "document.querySelector('button[aria-label=\"Close\"]')?.click()"
    out = tmp_path / "mlflow-compare.png"
    where, _ = capture(executable, tmp_path / "chromium-profile", url, out, ready, width=1400, height=760,
                       prepare=close_assistant)
    assert "#/metric" in where and runs[0] in where
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1400
    target = os.environ.get("INAS_MLFLOW_SCREENSHOT")
    if target:
        shutil.copyfile(out, target)
