"""A real MLflow tracking server for the tests and ``benchmarks/tracking_overhead.py``: ``mlflow server``
with a SQLite backend and an artifact root in a temporary directory, on a free loopback port.

The server is the full ``mlflow`` package (its web app, SQLAlchemy, alembic, ...), never installed
beside the project, which needs only the light client (``mlflow-skinny``, the ``track`` extra): the
first use builds a virtual environment of its own in ``~/.cache/inas-plugins/mlflow-server-venv``
(``pip install mlflow==3.17.*``, a few minutes; ``.ci/run`` builds it while the project installs),
reused afterwards; each server then starts in a few seconds.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

SERVER_REQUIREMENT = "mlflow==3.17.*"  # the same in .ci/run
CACHE = Path(os.environ.get("INAS_MLFLOW_SERVER_CACHE", Path.home() / ".cache" / "inas-plugins"))
VENV = CACHE / "mlflow-server-venv"
MARKER = VENV / ".inas-complete"


class ServerUnavailable(RuntimeError):
    """The server cannot be installed or started here; the message says why."""


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


@contextmanager
def _locked():
    """Two test sessions on one machine build the venv once, one after the other."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".mlflow-server-venv.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_server_venv() -> Path:
    """The ``mlflow`` executable of the cached venv, installing the server on first use."""
    executable = VENV / "bin" / "mlflow"
    with _locked():
        if not MARKER.exists() or MARKER.read_text().strip() != SERVER_REQUIREMENT:
            if not (VENV / "bin" / "python").exists():
                made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
                if made.returncode != 0:
                    raise ServerUnavailable(f"cannot create a venv for the MLflow server in {VENV}: {_tail(made.stderr)}")
            done = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", SERVER_REQUIREMENT],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ServerUnavailable(f"the MLflow server cannot be installed into {VENV}: {_tail(done.stderr)}")
            MARKER.write_text(SERVER_REQUIREMENT + "\n")
    return executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MlflowServer:
    """``mlflow server`` over ``root/mlflow.db`` and ``root/artifacts``; stop it, kill it, start it again
    (same port, same store)."""

    def __init__(self, executable: Path, root: Path, port: Optional[int] = None) -> None:
        self.executable, self.root = executable, Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = self.root / "mlflow-server.log"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 180.0) -> "MlflowServer":
        # No job runner (GenAI evaluation jobs: four more processes of about 230 MB each, unused here).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [str(self.executable), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(f"mlflow server exited with code {self.process.returncode}: "
                                        f"{_tail(self.log.read_text())}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.kill()
        raise ServerUnavailable(f"mlflow server did not answer within {timeout:.0f} s: {_tail(self.log.read_text())}")

    def kill(self) -> None:
        """SIGKILL to the server and its workers (a crash, as far as its clients can tell)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
