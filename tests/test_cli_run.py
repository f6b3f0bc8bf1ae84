"""``inas run`` end to end on tiny data, and its answers to bad input."""

from __future__ import annotations

import json
import os
import stat
import sys
import types

import pytest
from typer.testing import CliRunner

from inas_cli.main import app

TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "40", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--quiet"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_run_end_to_end_writes_a_loadable_run(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("run", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "device: cpu" in result.output and "round  1" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "synthetic" and config["budget"] == 40 and config["preset"] == "quick"
    assert config["train"]["epochs"] == 1 and config["query"]["heuristic"] == "softmax_response"
    results = json.loads((out / "results.json").read_text())
    assert [r["labelled"] for r in results["rounds"]] == [20, 40]

    again = invoke("run", "--resume", str(out))
    assert again.exit_code == 0 and "already complete" in again.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of"),
        (["--heuristic", "oracle"], "oracle"),
        (["--budget", "10"], "--budget (10) is below --initial (20)"),
        (["--arch", "9x9"], "outside the search space"),
        (["--arch", "big"], "not of the form"),
        (["--query-size", "5", "--schedule", "0:5"], "either --query-size or --schedule"),
        (["--preset", "huge"], "'huge' is not one of 'paper', 'cpu', 'quick'"),
        (["--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["--premature-schedule", "late"], "'late' is not one of 'compressed', 'early_stop'"),
        (["--epochs", "0"], "--epochs"),
        (["--premature-fraction", "1.5"], "--premature-fraction must be in (0, 1]"),
        (["--mc-samples", "0"], "--mc-samples must be a positive integer"),
        (["--start-arch", "0x1"], "--start-arch 0x1: an architecture needs at least 1 block"),
        (["--image-size", "4"], "--image-size must be in [8, 1024] pixels"),
        (["--data-dir", "/tmp"], "synthetic is built in and takes no --data-dir; for images on disk use --dataset "
                                 "'folder' with --data-dir DIR"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path, args, message) -> None:
    out = tmp_path / "run"
    base = [a for a in TINY]
    result = invoke("run", *base, *args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_every_option_reaches_its_setting_and_the_configuration_line_is_nested(tmp_path, monkeypatch) -> None:
    """The flag table's wiring, with the active loop replaced so only the command line is exercised."""
    started = []

    class FakeRun:
        def __init__(self, config, data, run_dir, progress, log) -> None:
            started.append(config)

        def start_state(self, resume: bool = False) -> None:
            return None

        def run(self, resume: bool = False, state=None) -> list:
            return [{"labelled": 40, "arch": [1, 1], "test_accuracy": 0.5}]

    fake_loop = types.ModuleType("inas_plugins.loop")
    fake_loop.ActiveRun = FakeRun
    monkeypatch.setitem(sys.modules, "inas_plugins.loop", fake_loop)
    result = invoke("run", "--dataset", "synthetic", "--initial", "20", "--schedule", "0:10,30:5", "--budget", "40",
                    "--epochs", "3", "--epoch-size", "64", "--batch-size", "16", "--lr", "0.05", "--base-width", "4",
                    "--max-blocks", "2", "--max-stacks", "3", "--start-arch", "1x2", "--search-iterations", "2",
                    "--premature-fraction", "0.5", "--inherit-weights", "--successive-halving", "--no-augment",
                    "--heuristic", "random", "--mc-samples", "7", "--pool-subset", "30", "--limit-test", "50",
                    "--seed", "5", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    config, = started
    assert (config.train.epochs, config.train.epoch_size, config.train.batch_size, config.train.lr) == (3, 64, 16, 0.05)
    assert (config.search.iterations, config.search.premature_fraction) == (2, 0.5)
    assert config.search.inherit_weights and config.search.successive_halving
    assert (config.query.heuristic, config.query.mc_samples, config.query.pool_subset) == ("random", 7, 30)
    assert (config.base_width, config.max_blocks, config.max_stacks, config.start_arch) == (4, 2, 3, "1x2")
    assert (config.augment, config.limit_test, config.seed, config.device) == (False, 50, 5, "cpu")
    assert config.query_schedule == [[0, 10], [30, 5]] and config.uses_search
    line, = [line for line in result.output.splitlines() if line.startswith("configuration: ")]
    printed = json.loads(line[len("configuration: "):])
    assert printed == config.to_dict() and printed["train"]["epochs"] == 3 and "epochs" not in printed


def test_folder_dataset_without_data_dir_names_the_flag(tmp_path) -> None:
    result = invoke("run", "--dataset", "folder", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert str(tmp_path / "missing") in result.output
    assert not (tmp_path / "r").exists()


def test_resume_of_a_directory_without_a_run_fails_cleanly(tmp_path) -> None:
    result = invoke("run", "--resume", str(tmp_path))
    assert result.exit_code != 0
    assert "holds no run" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_existing_run_is_not_overwritten(tmp_path) -> None:
    out = tmp_path / "run"
    assert invoke("run", *TINY, "--budget", "20", "--out", str(out)).exit_code == 0
    before = (out / "results.json").read_text()
    result = invoke("run", *TINY, "--out", str(out))
    assert result.exit_code != 0 and "--resume" in result.output
    assert (out / "results.json").read_text() == before


def test_unwritable_output_directory_is_refused(tmp_path) -> None:
    """A read-only directory refuses ordinary users; /proc refuses root too (CI runs as root), so
    the test checks a refusal whoever runs it."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    target = locked / "run" if os.geteuid() != 0 else "/proc/inas-run"
    result = invoke("run", *TINY, "--out", str(target))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert ("not writable" in result.output or "cannot create the run directory" in result.output), result.output
    assert not os.path.exists(target)


def test_output_path_that_is_a_file_is_refused(tmp_path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = invoke("run", *TINY, "--out", str(target))
    assert result.exit_code != 0 and "not a directory" in result.output
    assert target.read_text() == "x"


def test_output_below_a_file_is_refused(tmp_path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = invoke("run", *TINY, "--out", str(target / "run"))
    assert result.exit_code != 0 and "not writable" in result.output
