"""``inas run`` end to end on tiny data, and its answers to bad input."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from inas_cli.main import app

TINY = ["--dataset", "synthetic", "--initial", "20", "--query-size", "20", "--budget", "40", "--epochs", "1",
        "--epoch-size", "64", "--base-width", "4", "--max-blocks", "2", "--max-stacks", "2", "--quiet"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_run_end_to_end_writes_a_loadable_run(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("run", *TINY, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "device: cpu" in result.output and "round  1" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "synthetic" and config["budget"] == 40 and config["preset"] == "quick"
    results = json.loads((out / "results.json").read_text())
    assert [r["labelled"] for r in results["rounds"]] == [20, 40]

    again = invoke("run", "--resume", str(out))
    assert again.exit_code == 0 and "already complete" in again.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of"),
        (["--heuristic", "oracle"], "oracle"),
        (["--budget", "10"], "below the initial"),
        (["--arch", "9x9"], "outside the search space"),
        (["--arch", "big"], "not of the form"),
        (["--query-size", "5", "--schedule", "0:5"], "either --query-size or --schedule"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path, args, message) -> None:
    out = tmp_path / "run"
    base = [a for a in TINY]
    result = invoke("run", *base, *args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


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


def test_existing_run_is_not_overwritten(tmp_path) -> None:
    out = tmp_path / "run"
    assert invoke("run", *TINY, "--budget", "20", "--out", str(out)).exit_code == 0
    before = (out / "results.json").read_text()
    result = invoke("run", *TINY, "--out", str(out))
    assert result.exit_code != 0 and "--resume" in result.output
    assert (out / "results.json").read_text() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory_is_refused(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    result = invoke("run", *TINY, "--out", str(locked / "run"))
    assert result.exit_code != 0 and "not writable" in result.output


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
