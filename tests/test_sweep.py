"""``inas sweep`` and parallel candidates on a real Ray: grids, bad input, a local sweep, a killed
worker, a separate ``ray start --head`` cluster.

The slow tests share one local Ray instance (start-up costs seconds); the cluster test starts its
own head process and talks to it only from subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins.checkpoint import load_checkpoint
from inas_plugins.sweep import (MANIFEST, SweepError, SweepRun, error_line, execute, expand, flags_from_overrides,
                                prepare, read_manifest)

ray = pytest.importorskip("ray")

TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "40", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["sweep", *args])


# --------------------------------------------------------------------------- the grid (no Ray)


def test_grid_expands_to_the_product_named_by_what_varies() -> None:
    runs = expand({"dataset": "synthetic", "heuristic": ["softmax_response", "random"], "--seed": [0, 1],
                   "inherit_weights": False, "augment": [True, False]})
    assert len(runs) == 8
    assert runs[0] == SweepRun("heuristic=softmax_response,seed=0,augment=true",
                               ("--dataset", "synthetic", "--heuristic", "softmax_response", "--seed", "0",
                                "--no-inherit-weights", "--augment"))
    assert runs[-1].name == "heuristic=random,seed=1,augment=false" and runs[-1].args[-1] == "--no-augment"
    assert len({run.name for run in runs}) == 8
    assert expand({"seed": 3}) == [SweepRun("run", ("--seed", "3"))]
    # "inas" as an --arch value is the search: the run gets no --arch.
    assert expand({"arch": ["inas", "1x2"]}) == [SweepRun("arch=inas", ()), SweepRun("arch=1x2", ("--arch", "1x2"))]
    # Values that sanitise to the same name still get distinct directories.
    names = [run.name for run in expand({"data-dir": ["/a/b", "a_b"]})]
    assert names == ["data-dir=a_b", "data-dir=a_b-2"]


def test_study_overrides_map_onto_run_options() -> None:
    assert flags_from_overrides({"query": {"heuristic": "random"}, "search": {"premature_fraction": 0.25},
                                 "arch": "1x2", "seed": 3}) == {
        "heuristic": "random", "premature-fraction": 0.25, "arch": "1x2", "seed": 3}
    with pytest.raises(SweepError, match="train.momentum has no `inas run` option"):
        flags_from_overrides({"train": {"momentum": 0.5}})


def test_flags_and_a_toml_file_make_one_grid(tmp_path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('dataset = "synthetic"\nheuristic = ["softmax_response", "random"]\naugment = false\n')
    result = invoke("--grid-file", str(grid), "--seed", "0", "1", "--epochs=2", "--dry-run", "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"4 runs in {tmp_path / 's'}"
    assert lines[0] == (f"{tmp_path / 's' / 'heuristic=softmax_response,seed=0'}: inas run --dataset synthetic "
                        "--heuristic softmax_response --no-augment --seed 0 --epochs 2")
    assert not (tmp_path / "s").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "the grid is empty"),
        (["--seed", "0", "--fancy", "1"], "unknown option --fancy in the grid; `inas run` options are --arch,"),
        (["--seed"], "--seed has no values"),
        (["--seed", "1", "1"], "--seed lists the same value twice"),
        (["--seed", "0", "--seed", "1"], "--seed is given twice"),
        (["--epochs", "1", "0"], "run epochs=0: --epochs must be a positive integer, got 0"),
        (["--epochs", "x"], "the run: Invalid value for '--epochs'"),
        (["--heuristic", "softmax_response", "oracle"], "run heuristic=oracle: unknown heuristic 'oracle'"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of"),
        (["--seed", "0", "--out", "x", "--resume", "y"], "--resume continues the stored grid"),
        (["--threads", "2"], "--threads cannot be part of the grid"),
        (["--augment", "maybe"], "--augment: 'maybe' is not true or false"),
        (["0", "1"], "unexpected value '0'"),
    ],
)
def test_bad_grids_are_one_line_and_write_nothing(tmp_path, args, message) -> None:
    result = invoke(*args, "--out", str(tmp_path / "s"))
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "text,message",
    [
        ("seed = []\n", "--seed has an empty list of values"),
        ("seed = [0,\n", "is not valid TOML"),
        ("[grid]\nseed = [0]\n", "[grid] is a table"),
        ("seed = [[0, 1]]\n", "is not a single value"),
        ("epochs = 1\nfancy = 2\n", "unknown option --fancy"),
        ("seed = [0, 1]\n", "--seed is given both in the grid file and as a flag"),
    ],
)
def test_bad_grid_files_are_one_line(tmp_path, text, message) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    result = invoke("--grid-file", str(grid), "--seed", "3", "--out", str(tmp_path / "s"))
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "s").exists()


def test_another_grid_in_a_sweep_directory_is_refused_naming_resume(tmp_path) -> None:
    sweep_dir = tmp_path / "s"
    prepare(sweep_dir, expand({"seed": [0, 1]}), {"seed": [0, 1]})
    before = (sweep_dir / MANIFEST).read_text()
    result = invoke("--seed", "0", "2", "--out", str(sweep_dir))
    assert result.exit_code != 0
    assert f"holds a sweep of another grid" in result.output and f"inas sweep --resume {sweep_dir}" in result.output
    assert (sweep_dir / MANIFEST).read_text() == before
    # The same grid continues it; extending adds new runs but never changes a known one.
    assert [run.name for run in prepare(sweep_dir, expand({"seed": [0, 1]}), {"seed": [0, 1]})["runs"]] == ["seed=0", "seed=1"]
    grown = prepare(sweep_dir, [SweepRun("extra", ("--seed", "5"))], None, extend=True)
    assert [run.name for run in grown["runs"]] == ["seed=0", "seed=1", "extra"]
    with pytest.raises(SweepError, match="another grid"):
        prepare(sweep_dir, [SweepRun("seed=0", ("--seed", "9"))], None, extend=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(SweepError, match="holds no sweep"):
        prepare(tmp_path / "other", expand({"seed": [0]}), {"seed": [0]})


def test_resume_of_a_directory_without_a_sweep_fails_cleanly(tmp_path) -> None:
    result = invoke("--resume", str(tmp_path))
    assert result.exit_code != 0 and "holds no sweep to resume" in result.output
    assert list(tmp_path.iterdir()) == []


def test_unreachable_address_is_one_line_within_seconds(tmp_path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    result = invoke(*TINY, "--seed", "0", "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "s"))
    assert result.exit_code != 0
    assert f"cannot reach the Ray cluster at --address 127.0.0.1:{port}" in result.output, result.output
    assert time.monotonic() - began < 10
    assert not (tmp_path / "s").exists()
    bad = invoke(*TINY, "--seed", "0", "--address", "ray://nohost:x", "--out", str(tmp_path / "s"))
    assert bad.exit_code != 0 and "is not auto, HOST:PORT or ray://HOST:PORT" in bad.output


def test_error_line_is_the_last_error_line() -> None:
    assert error_line("warning: x\nerror: first\nmore\nerror: --initial 20 is too large\n") == "--initial 20 is too large"
    assert error_line("Traceback\n  ...\nValueError: boom\n") == "ValueError: boom"
    assert error_line("") == "no error message"


# --------------------------------------------------------------------------- a real local Ray


@pytest.fixture(scope="module")
def ray_head():
    """A separate cluster, `ray start --head --block` in its own session (so one killpg ends it all),
    without token authentication. (Started while the local one starts, it times out on 2 loaded cores.)"""
    port = _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    ray_cli = Path(sys.executable).with_name("ray")
    log = open(temp_dir / "head.log", "w")
    head = subprocess.Popen([str(ray_cli) if ray_cli.exists() else "ray", "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=1", f"--temp-dir={temp_dir}",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
    try:
        yield head, port, env, temp_dir / "head.log"
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and every process it started
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module's sweeps (what `inas sweep` starts when none runs)."""
    from inas_plugins.ray_cluster import connect

    owned = connect(None, num_cpus=2)
    yield
    if owned:
        ray.shutdown()


@pytest.mark.slow
def test_local_sweep_runs_records_failures_reports_and_skips_complete_runs(tmp_path, local_ray) -> None:
    sweep_dir = tmp_path / "s"
    # limit-train 10 < initial 20: the run itself fails (its data is too small), the sweep goes on.
    result = invoke(*TINY, "--limit-train", "512", "10", "--out", str(sweep_dir), "--cpus-per-run", "1")
    assert result.exit_code == 1, result.output
    assert "1 of 2 runs failed" in result.output.splitlines()[-1]
    assert "sweep: 1/2 done, 0 running, 1 failed, 0 queued; ETA 0:00" in result.output
    manifest = read_manifest(sweep_dir)
    ok, bad = "limit-train=512", "limit-train=10"
    assert manifest["status"][ok]["status"] == "complete"
    assert manifest["status"][bad] == {**manifest["status"][bad], "status": "failed", "exit_code": 2,
                                       "error": "--initial 20 is larger than the training pool (10 images); lower --initial"}
    results = json.loads((sweep_dir / ok / "results.json").read_text())
    assert results["status"] == "complete" and [r["labelled"] for r in results["rounds"]] == [20, 40]
    assert results["config"]["limit_train"] == 512 and results["config"]["dataset"] == "synthetic"
    log = (sweep_dir / "logs" / f"{ok}.log").read_text()
    assert "--threads 1 --quiet" in log and "exit code 0" in log
    # The sweep's report: the complete run's table and plot.
    report = json.loads((sweep_dir / "report.json").read_text())
    group, = report["groups"]  # the failed run left no results, so only the complete one is reported
    assert [Path(run["run_dir"]).name for run in group["runs"]] == [ok] and group["labelled"] == [20, 40]
    assert group["mean_accuracy"] == [r["test_accuracy"] for r in results["rounds"]]
    assert (sweep_dir / "report.png").stat().st_size > 0 and "| group |" in (sweep_dir / "report.md").read_text()
    # Again: the complete run is skipped without starting anything.
    summary = execute(sweep_dir, [run for run in manifest["runs"] if run.name == ok])
    assert summary.skipped == [ok] and summary.complete == [] and summary.failed == {}
    # More GPUs per run than the cluster has: one line, nothing touched.
    before = (sweep_dir / MANIFEST).read_text()
    gpus = invoke("--resume", str(sweep_dir), "--gpus-per-run", "1")
    assert gpus.exit_code != 0 and "--gpus-per-run 1 is more than any node of the cluster has (0 GPUs)" in gpus.output
    assert (sweep_dir / MANIFEST).read_text() == before


def _worker_and_child(log: Path) -> tuple[int, list[int]]:
    header = next(line for line in log.read_text().splitlines() if line.startswith("=== ") and "worker pid" in line)
    worker = int(header.split("worker pid ")[1].split(")")[0])
    children = []
    for task in Path(f"/proc/{worker}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return worker, children


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_killed_worker_is_retried_and_resumes_to_the_uninterrupted_labelled_set(tmp_path, local_ray) -> None:
    args = [*TINY, "--budget", "120", "--epochs", "2", "--epoch-size", "256", "--seed", "4"]
    reference = tmp_path / "reference"
    done = CliRunner().invoke(app, ["run", *args, "--quiet", "--threads", "1", "--out", str(reference)])
    assert done.exit_code == 0, done.output

    sweep_dir = tmp_path / "s"
    runs = [SweepRun("killed", tuple(args))]
    prepare(sweep_dir, runs, None)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=execute(sweep_dir, runs, echo=lambda _: None)))
    thread.start()
    results, log = sweep_dir / "killed" / "results.json", sweep_dir / "logs" / "killed.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # kill once the first round is checkpointed
        try:
            if len(json.loads(results.read_text())["rounds"]) >= 1:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    worker, children = _worker_and_child(log)
    os.kill(worker, signal.SIGKILL)
    killed_at = len(json.loads(results.read_text())["rounds"])
    thread.join(timeout=120)
    assert not thread.is_alive()
    summary = outcome["summary"]
    assert summary.complete == ["killed"] and summary.failed == {}
    assert children and not any(_alive(pid) for pid in children)  # the run died with its worker
    attempts = [line for line in log.read_text().splitlines() if line.startswith("=== 20")]
    assert len(attempts) == 2 and "--out" in attempts[0] and f"--resume {sweep_dir / 'killed'}" in attempts[1]
    assert 1 <= killed_at < 5
    final = json.loads(results.read_text())
    assert final["status"] == "complete" and [r["labelled"] for r in final["rounds"]] == [20, 40, 60, 80, 100, 120]
    assert np.array_equal(load_checkpoint(sweep_dir / "killed").labelled_map, load_checkpoint(reference).labelled_map)


@pytest.mark.slow
def test_parallel_candidates_choose_as_the_sequential_search(tmp_path, local_ray) -> None:
    args = [*TINY, "--budget", "60", "--epochs", "2", "--seed", "1", "--quiet", "--threads", "1"]
    sequential, parallel = tmp_path / "sequential", tmp_path / "parallel"
    assert CliRunner().invoke(app, ["run", *args, "--out", str(sequential)]).exit_code == 0
    result = CliRunner().invoke(app, ["run", *args, "--parallel-candidates", "--out", str(parallel)])
    assert result.exit_code == 0, result.output
    assert "parallel candidates: Ray tasks with 1 thread(s) each" in result.output
    rounds = [json.loads((path / "results.json").read_text())["rounds"] for path in (sequential, parallel)]
    assert [r["arch"] for r in rounds[0]] == [r["arch"] for r in rounds[1]]
    assert [[(c["arch"], c["val_accuracy"]) for c in r["candidates"]] for r in rounds[0]] == \
        [[(c["arch"], c["val_accuracy"]) for c in r["candidates"]] for r in rounds[1]]
    # the search stops growing once it reaches --max-blocks/--max-stacks, so only some rounds compare several
    assert any(len(r["candidates"]) >= 2 for r in rounds[1])
    assert np.array_equal(load_checkpoint(sequential).labelled_map, load_checkpoint(parallel).labelled_map)
    halving = CliRunner().invoke(app, ["run", *args, "--parallel-candidates", "--successive-halving",
                                       "--out", str(tmp_path / "halving")])
    assert halving.exit_code != 0 and "--parallel-candidates trains the plain search only" in halving.output
    assert not (tmp_path / "halving").exists()


# --------------------------------------------------------------------------- a separate cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_sweep_joins_a_cluster_started_with_ray_start(tmp_path, ray_head) -> None:
    head, port, env, log = ray_head
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
    sweep_dir = tmp_path / "s"
    result = subprocess.run([sys.executable, "-m", "inas_cli.main", "sweep", *TINY, "--seed", "2",
                             "--address", f"127.0.0.1:{port}", "--out", str(sweep_dir)],
                            capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on the Ray cluster at 127.0.0.1:{port}" in result.stdout
    assert read_manifest(sweep_dir)["status"]["run"]["status"] == "complete"
    assert json.loads((sweep_dir / "run" / "results.json").read_text())["status"] == "complete"
