"""One line of an error, as every one-line message of the library and the CLI quotes it."""

from __future__ import annotations

import pytest

from inas_plugins.error_text import first_line


def test_first_line_is_the_summary_not_the_details() -> None:
    assert first_line(ValueError("\n  bad value  \ndetails\nmore details")) == "bad value"
    assert first_line(RuntimeError("x" * 500), limit=300) == "x" * 300
    assert first_line(KeyError()) == "KeyError"  # no text: the type says what happened
    assert first_line("") == "" and first_line("a body\nwith lines") == "a body"


def test_a_sweep_reports_what_the_task_raised_not_rays_wrapper() -> None:
    """A Ray task's error text is Ray's header and the task's traceback; the old rule took its last line,
    which is only the message by chance. The cause is the exception the task raised."""
    exceptions = pytest.importorskip("ray.exceptions")
    from inas_plugins.sweep import RunInterrupted, _task_error

    cause = RunInterrupted("inas run was killed by signal 9 (SIGKILL)\nstderr: ...")
    error = exceptions.RayTaskError("execute_run", "Traceback (most recent call last):\n  File ...\n", cause)
    assert _task_error(error.as_instanceof_cause()) == "inas run was killed by signal 9 (SIGKILL)"
    assert _task_error(exceptions.WorkerCrashedError()).startswith("The worker died unexpectedly")
