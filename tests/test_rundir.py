"""One process per run directory: the OS lock, what "holds a run" means, stale temporary files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from inas_plugins.atomic import atomic_write_json
from inas_plugins.rundir import LOCK_NAME, RunDirBusy, RunDirError, RunDirLock, holds_run, remove_stale_temp_files

HOLDER = textwrap.dedent("""
    import sys
    from inas_plugins.rundir import RunDirLock
    lock = RunDirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
""")


@pytest.fixture
def held_elsewhere(tmp_path):
    """A second process holding the lock of ``tmp_path / "run"``; yields (directory, its PID)."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield run_dir, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_second_process_is_refused_with_the_owner_pid(held_elsewhere) -> None:
    run_dir, pid = held_elsewhere
    with pytest.raises(RunDirBusy) as error:
        RunDirLock(run_dir).acquire()
    assert error.value.pid == pid
    assert f"process {pid}" in str(error.value) and "\n" not in str(error.value)


def test_the_lock_is_free_again_after_release_and_after_the_holder_dies(tmp_path) -> None:
    run_dir = tmp_path / "run"
    lock = RunDirLock(run_dir).acquire()
    assert lock.created_dir and (run_dir / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(RunDirBusy):  # another open file description, even in this process
        RunDirLock(run_dir).acquire()
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()
    RunDirLock(run_dir).acquire().release()

    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "locked"
    killed.kill()  # kill -9: the kernel drops the lock; the file stays behind, harmless
    killed.wait(timeout=30)
    assert (run_dir / LOCK_NAME).exists()
    RunDirLock(run_dir).acquire().release()


def test_a_directory_it_created_is_removed_when_no_run_was_written(tmp_path) -> None:
    unused = RunDirLock(tmp_path / "unused").acquire()
    (tmp_path / "unused" / ".results.json.0123abcd.tmp").write_text("half")
    unused.release(remove_if_unused=True)
    assert not (tmp_path / "unused").exists()

    started = RunDirLock(tmp_path / "started").acquire()
    atomic_write_json(tmp_path / "started" / "config.json", {})
    started.release(remove_if_unused=True)
    assert holds_run(tmp_path / "started")

    (tmp_path / "existing").mkdir()
    RunDirLock(tmp_path / "existing").acquire().release(remove_if_unused=True)
    assert (tmp_path / "existing").is_dir()  # not created by the lock: left alone

    nested = RunDirLock(tmp_path / "runs" / "study" / "run0").acquire()
    (tmp_path / "runs" / "other").mkdir()  # another run's parent: keeps "runs" in place
    nested.release(remove_if_unused=True)
    assert not (tmp_path / "runs" / "study").exists() and (tmp_path / "runs" / "other").is_dir()

    lone = RunDirLock(tmp_path / "fresh" / "run0").acquire()
    lone.release(remove_if_unused=True)
    assert not (tmp_path / "fresh").exists()  # the parents it made for nothing are gone too


def test_unusable_paths_are_one_line_errors(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    for path, fragment in ((tmp_path / "file", "not a directory"), (tmp_path / "file" / "run", "cannot create"),
                           ("/proc/inas-test-run", "cannot create")):
        with pytest.raises(RunDirError) as error:
            RunDirLock(path).acquire()
        assert fragment in str(error.value) and "\n" not in str(error.value)


def test_only_the_atomic_writers_temporary_files_are_removed(tmp_path) -> None:
    names = [".results.json.0123abcd.tmp", ".checkpoint.pt.deadbeef.tmp", "results.json", ".keep.tmp",
             "notes.0123abcd.tmp", ".x.0123ABCD.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert remove_stale_temp_files(tmp_path) == [".checkpoint.pt.deadbeef.tmp", ".results.json.0123abcd.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
