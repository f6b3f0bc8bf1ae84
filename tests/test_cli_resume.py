"""``inas run`` under a demanding user: two runs on one directory, kills at every file-write boundary,
resume of damaged files, conflicting flags, other data, and bad input that used to end in a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from inas_cli.main import app
from inas_plugins.checkpoint import load_checkpoint

TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "60", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--quiet"]
RUN_FILES = ("config.json", "checkpoint.pt", "results.json", "results.csv", "learning_curve.png", "architecture.png")


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def without_timings(results: dict) -> dict:
    """results.json minus the wall-clock fields, which differ between any two runs."""
    def clean(row: dict) -> dict:
        row = {k: v for k, v in row.items() if not k.endswith("seconds")}
        if "candidates" in row:
            row["candidates"] = [{k: v for k, v in c.items() if k != "seconds"} for c in row["candidates"]]
        return row
    return {**results, "rounds": [clean(row) for row in results["rounds"]]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A complete uninterrupted tiny run (3 rounds), the yardstick of every recovery below."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = invoke("run", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def copy_run(reference, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(reference, target)
    return target


def same_end(run_dir, reference) -> None:
    """The run ended as the uninterrupted one: same rounds, labelled set and weights, every file there."""
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    mine, theirs = (json.loads((d / "results.json").read_text()) for d in (run_dir, reference))
    assert mine["status"] == "complete"
    assert without_timings(mine)["rounds"] == without_timings(theirs)["rounds"]
    a, b = load_checkpoint(run_dir), load_checkpoint(reference)
    np.testing.assert_array_equal(a.labelled_map, b.labelled_map)
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert (run_dir / "results.csv").read_text().count("\n") == 1 + len(theirs["rounds"])


# --------------------------------------------------------------------------- one run per directory


def test_a_run_directory_in_use_is_refused_before_anything_is_written(tmp_path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from inas_plugins.rundir import RunDirLock; "
                               "RunDirLock(sys.argv[1]).acquire(); print('locked', flush=True); sys.stdin.readline()",
         str(tmp_path / "run")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke("run", *TINY, "--out", tmp_path / "run")
        assert_one_line_error(result, f"in use by process {holder.pid}")
        resumed = invoke("run", "--resume", tmp_path / "run")  # holds no run, and is in use: either is refused
        assert resumed.exit_code == 2
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".inas.lock"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.slow
def test_two_real_runs_on_one_directory_one_wins_the_other_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "inas_cli.main", "run", *TINY, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], outputs
    loser = outputs[[p.returncode for p in processes].index(2)]
    # "in use by process N", or "by another process" when it looked between the winner's lock and PID write
    assert "is in use by" in loser or "already holds a run" in loser, loser
    results = json.loads((out / "results.json").read_text())
    assert results["config"] == json.loads((out / "config.json").read_text()) and results["status"] == "complete"


# --------------------------------------------------------------------------- every state a kill can leave


@pytest.mark.slow
def test_a_kill_in_the_last_rounds_writes_is_repaired_by_resume(tmp_path, reference) -> None:
    """Killed after the final checkpoint: results.json one round short and "running", results.csv
    stale, a temporary file left over. --resume of the complete run rewrites them and trains nothing."""
    run_dir = copy_run(reference, tmp_path)
    stale = json.loads((run_dir / "results.json").read_text())
    stale["rounds"], stale["status"] = stale["rounds"][:-1], "running"
    (run_dir / "results.json").write_text(json.dumps(stale))
    (run_dir / "results.csv").write_text("round\n0\n")
    (run_dir / "learning_curve.png").unlink()
    (run_dir / ".results.json.0123abcd.tmp").write_text('{"half":')
    result = invoke("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output and "round  0" not in result.output
    assert json.loads((run_dir / "results.json").read_text()) == json.loads((reference / "results.json").read_text())
    assert (run_dir / "results.csv").read_text() == (reference / "results.csv").read_text()
    assert not (run_dir / ".results.json.0123abcd.tmp").exists() and (run_dir / "learning_curve.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("keep", [("config.json",), ("config.json", "checkpoint.pt")])
def test_a_kill_during_start_up_resumes_to_the_same_end(tmp_path, reference, keep) -> None:
    """Killed between config.json and the first checkpoint, or before the first results: resumable."""
    run_dir = copy_run(reference, tmp_path)
    if "checkpoint.pt" in keep:  # the round-0 checkpoint: rebuild it as the start-up writes it
        first = load_checkpoint(reference)
        from inas_plugins.checkpoint import Checkpoint, save_checkpoint
        config = json.loads((reference / "config.json").read_text())
        from inas_plugins.config import RunConfig
        from inas_plugins.data import load_dataset
        from inas_plugins.loop import ActiveRun
        run = RunConfig.from_dict(config)
        data = load_dataset(run.dataset, seed=run.data_seed, progress=False)
        state = ActiveRun(run, data, run_dir, progress=False).start_state(resume=False)
        assert isinstance(state, Checkpoint) and state.next_round == 0 and first.next_round == 3
    for path in run_dir.iterdir():
        if path.name not in keep:
            path.unlink()
    if "checkpoint.pt" in keep:
        save_checkpoint(run_dir, state)
    fresh = invoke("run", *TINY, "--out", run_dir)
    assert_one_line_error(fresh, "already holds a run", "--resume")
    result = invoke("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    same_end(run_dir, reference)


@pytest.mark.slow
def test_a_directory_with_only_a_lock_file_and_temporary_files_is_a_fresh_start(tmp_path, reference) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".inas.lock").write_text("12345\n")  # left by a process killed before config.json
    (run_dir / ".config.json.89abcdef.tmp").write_text("{")
    assert_one_line_error(invoke("run", "--resume", run_dir), "holds no run to resume")
    result = invoke("run", *TINY, "--out", run_dir)
    assert result.exit_code == 0, result.output
    same_end(run_dir, reference)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)


@pytest.mark.slow
def test_resuming_a_complete_run_is_a_clean_no_op(tmp_path, reference) -> None:
    run_dir = copy_run(reference, tmp_path)
    before = {name: (run_dir / name).read_bytes() for name in ("config.json", "results.json", "results.csv")}
    result = invoke("run", "--resume", run_dir)
    assert result.exit_code == 0 and "already complete" in result.output, result.output
    assert {name: (run_dir / name).read_bytes() for name in before} == before


# --------------------------------------------------------------------------- validated resume


@pytest.mark.slow
@pytest.mark.parametrize("content,fragment", [
    ("[]", "must be a mapping"),
    ("null", "must be a mapping"),
    ("0", "must be a mapping"),
    ('{"train": {"epochs": "abc"}}', "train.epochs must be an integer"),
    ('{"epochs": "abc"}', "unknown configuration keys ['epochs']"),  # the file names fields, as written there
    ('{"seed": -1}', "seed must be in [0, 4294967295]"),
    ('{"data_identity": {"kind": "x"}}', "data_identity must have the keys"),
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
])
def test_a_bad_config_json_is_one_line(tmp_path, reference, content, fragment) -> None:
    run_dir = copy_run(reference, tmp_path)
    (run_dir / "config.json").write_text(content)
    before = (run_dir / "results.json").read_bytes()
    assert_one_line_error(invoke("run", "--resume", run_dir), f"cannot resume {run_dir}", fragment)
    assert (run_dir / "results.json").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("damage,fragment", [
    (lambda path: path.write_bytes(b""), "is empty"),
    (lambda path: path.write_bytes(b"garbage, not a zip file at all"), "not readable as an `inas run` checkpoint"),
    (lambda path: torch.save({"format": 1, "next_round": 1}, path), "missing labelled_map, arch, rounds, model_state"),
    (lambda path: torch.save([1, 2], path), "expected a dict"),
    (lambda path: torch.save({**torch.load(path, weights_only=True), "arch": [9, 9]}, path), "outside the search space"),
    (lambda path: torch.save({**torch.load(path, weights_only=True), "labelled_map": torch.zeros(7, dtype=torch.int64)},
                             path), "labels a pool of 7 images, but the data has 512"),
])
def test_a_bad_checkpoint_is_one_line(tmp_path, reference, damage, fragment) -> None:
    run_dir = copy_run(reference, tmp_path)
    damage(run_dir / "checkpoint.pt")
    result = invoke("run", "--resume", run_dir)
    assert_one_line_error(result, "cannot resume", fragment)
    assert "weights_only" not in result.output


@pytest.mark.slow
def test_flags_that_would_change_a_resumed_run_are_refused_with_what_may_change(tmp_path, reference) -> None:
    run_dir = copy_run(reference, tmp_path)
    result = invoke("run", "--resume", run_dir, "--epochs", "5", "--heuristic", "bald")
    assert_one_line_error(result, "--epochs 5 (the run has 1)", "--heuristic bald (the run has softmax_response)",
                          "may change on resume: --data-dir, --device")
    assert_one_line_error(invoke("run", "--resume", run_dir, "--preset", "cpu"), "--preset cannot change")
    assert_one_line_error(invoke("run", "--resume", run_dir, "--recipe", "paper", "--label-smoothing", "0.3"),
                          "--recipe paper (the run has lowdata)", "--label-smoothing 0.3 (the run has 0.1)")
    assert_one_line_error(invoke("run", "--resume", run_dir, "--out", tmp_path / "x"), "--out and --resume")
    same = invoke("run", "--resume", run_dir, "--epochs", "1", "--dataset", "synthetic", "--device", "cpu")
    assert same.exit_code == 0 and "already complete" in same.output, same.output


def make_folder(root, classes, per_class, size=(10, 12), seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        for index in range(per_class):
            path = root / "train" / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return root


FOLDER_RUN = ["--dataset", "folder", "--initial", "4", "--query-size", "2", "--budget", "6", "--epochs", "1",
              "--epoch-size", "16", "--base-width", "4", "--arch", "1x1", "--quiet"]


@pytest.mark.slow
def test_resume_refuses_other_data_and_accepts_a_moved_copy(tmp_path) -> None:
    data = make_folder(tmp_path / "data", ["a", "b"], 6)
    out = tmp_path / "run"
    first = invoke("run", *FOLDER_RUN, "--budget", "4", "--data-dir", data, "--out", out)
    assert first.exit_code == 0, first.output
    identity = json.loads((out / "config.json").read_text())["data_identity"]
    assert identity["kind"] == "folder" and identity["path"] == str(data) and identity["classes"] == ["a", "b"]
    assert identity["train"] + identity["test"] == 12 and identity["files"] and identity["fingerprint"]

    other = make_folder(tmp_path / "other", ["a", "b", "c"], 16, seed=1)
    result = invoke("run", "--resume", out, "--data-dir", other)
    assert_one_line_error(result, "the data is not the run's", "classes ['a', 'b'] -> ['a', 'b', 'c']",
                          "--data-dir may only point to a copy of the same data")
    assert json.loads((out / "config.json").read_text())["data_dir"] == str(data)

    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    resumed = invoke("run", "--resume", out, "--data-dir", moved)
    assert resumed.exit_code == 0 and "already complete" in resumed.output, resumed.output
    config = json.loads((out / "config.json").read_text())
    assert config["data_dir"] == str(moved) and config["data_identity"] == {**identity, "path": str(moved)}
    assert json.loads((out / "results.json").read_text())["config"] == config


# --------------------------------------------------------------------------- bad input, one line each


@pytest.mark.parametrize("args,fragments", [
    (["--seed", "-1"], ["--seed must be in [0, 4294967295], got -1"]),
    (["--seed", "5000000000"], ["--seed must be in [0, 4294967295]"]),
    (["--initial", "1"], ["--initial must be at least 2 with the iNAS search", "--arch"]),
    (["--initial", "5000", "--budget", "6000"], ["--initial 5000 is larger than the training pool (512 images)"]),
    (["--initial", "5000"], ["--budget (60) is below --initial (5000)", "raise --budget or lower --initial"]),
    (["--image-size", "32"], ["--image-size applies to images read from disk"]),
    (["--image-size", "3"], ["--image-size must be in [8, 1024]"]),
])
def test_bad_values_are_one_line_and_leave_no_directory(tmp_path, args, fragments) -> None:
    out = tmp_path / "run"
    assert_one_line_error(invoke("run", *TINY, *args, "--out", out), *fragments)
    assert not out.exists()


@pytest.mark.slow
def test_initial_one_is_fine_with_a_fixed_architecture(tmp_path) -> None:
    result = invoke("run", *TINY, "--initial", "1", "--budget", "21", "--arch", "1x1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output


def test_an_output_directory_that_cannot_be_created_is_one_line(tmp_path) -> None:
    """Also as root (CI runs as root): /proc refuses everyone, a file cannot hold a directory."""
    assert_one_line_error(invoke("run", *TINY, "--out", "/proc/inas-run"), "/proc")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(invoke("run", *TINY, "--out", tmp_path / "file" / "run"), "not writable")


@pytest.mark.parametrize("classes,per_class,with_test,fragment", [
    (["only"], 5, False, "has one class (only)"),
    (["a", "b"], 1, False, "empty test set"),
])
def test_folders_a_run_cannot_use_are_refused(tmp_path, classes, per_class, with_test, fragment) -> None:
    data = make_folder(tmp_path / "data", classes, per_class)
    out = tmp_path / "run"
    assert_one_line_error(invoke("run", *FOLDER_RUN, "--data-dir", data, "--out", out), fragment)
    assert not out.exists()


@pytest.mark.slow
def test_photos_of_mixed_sizes_run_with_image_size(tmp_path) -> None:
    data = make_folder(tmp_path / "data", ["a", "b"], 4, size=(30, 40))
    make_folder(tmp_path / "data", ["a", "b"], 0)
    for index, size in enumerate([(50, 20), (16, 16)]):
        Image.fromarray(np.zeros((*size, 3), dtype=np.uint8)).save(data / "train" / "a" / f"odd{index}.png")
    out = tmp_path / "run"
    refused = invoke("run", *FOLDER_RUN, "--data-dir", data, "--out", out)
    assert_one_line_error(refused, "images differ in size", "--image-size S")
    result = invoke("run", *FOLDER_RUN, "--data-dir", data, "--image-size", "12", "--out", out)
    assert result.exit_code == 0, result.output
    assert "12x12" in result.output and json.loads((out / "config.json").read_text())["image_size"] == 12


INTERRUPT = textwrap.dedent("""
    import sys
    from inas_cli.main import app
    app(sys.argv[1:], prog_name="inas")
""")


def test_ctrl_c_during_start_up_is_one_line_and_leaves_nothing(tmp_path) -> None:
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", INTERRUPT, "run", *TINY, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               # a background job (CI, nohup) starts with SIGINT ignored: restore it, as a terminal has it
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)  # importing torch: well before the first round
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not out.exists() or not (out / "config.json").exists() or "--resume" in stderr
