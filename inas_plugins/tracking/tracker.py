"""The tracker a run talks to: ``update()`` after its files change, ``finish(outcome)`` at the end.

It keeps one directory's MLflow run up to date (:class:`~.mirror.Mirror`) on a thread of its own, so
a round never waits on the server and the MLflow client's imports (about 1.7 s) overlap the run's
own start-up. Each round's metrics go up after the round; the files (results, plots) at most every
five minutes and at the end, with the final network. Updates are coalesced: while one sync waits to start, another request adds nothing
(every sync uploads everything missing). Faults never cost the run: the first failure prints one
warning line, the run goes on, and every later update tries again (each with one attempt instead of
three, so a server that is down costs nothing); a server that comes back is caught up on its own.
Whatever is still missing at the end is named with the command that uploads it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional

from .client import TrackingClient, first_line
from .mirror import FAILED, KILLED, RUNNING, Mirror, SyncResult

OUTCOMES = {"done": None, "failed": FAILED, "interrupted": KILLED}
# The files (results, plots) change every round; during a run they go up at most this often, and at
# the end. The metrics go up every round.
FILES_INTERVAL_S = 300.0
Log = Callable[[str], None]


class Tracker:
    """Mirrors ``mirror``'s directory into MLflow in the background; see the module docstring.

    The directory belongs to a process at work (a run, a sweep, a labelling command), so its MLflow
    run is marked RUNNING (again, after an interruption) until :meth:`finish` says how it ended.
    """

    def __init__(self, mirror: Mirror, log: Log = print) -> None:
        self.mirror = mirror
        self.log = log
        self.sync_hint = f"inas track sync {mirror.directory}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inas-tracking")
        self._lock = threading.Lock()
        self._queued: Optional[Future] = None
        self._client: Optional[TrackingClient] = None
        self._offline = False
        self._announced = False
        self._files_at = time.monotonic()
        self.in_sync = False
        self.cpu_seconds = 0.0  # CPU time of the tracker's thread: what tracking costs the run's machine

    @property
    def run_id(self) -> Optional[str]:
        return self.mirror.run_id

    def update(self) -> None:
        """The directory changed: sync it soon (returns at once)."""
        with self._lock:
            if self._queued is not None and not self._queued.running() and not self._queued.done():
                return
            self._queued = self._executor.submit(self._sync, None, False)

    def open(self) -> bool:
        """Sync now and wait for it: True when the MLflow run exists (a sweep's runs nest under it)."""
        self.update()
        return self.wait()

    def wait(self) -> bool:
        """Wait for the syncs asked for so far; True when the last one succeeded."""
        with self._lock:
            queued = self._queued
        return queued.result() if queued is not None else self.in_sync

    def finish(self, outcome: str = "done") -> bool:
        """Sync a last time and end the MLflow run as ``outcome`` says (``done``: finished when the
        directory says the run is complete, else left running; ``failed``; ``interrupted``). Says
        what is still missing, with the command that uploads it. True when MLflow has everything."""
        status = OUTCOMES[outcome]
        with self._lock:
            final = self._queued = self._executor.submit(self._sync, status, True)
        try:
            ok = final.result()
        finally:
            self._executor.shutdown(wait=False)
        if not ok:
            self.log(f"tracking: {self.mirror.directory} is not all in MLflow yet; upload the rest with  "
                     f"{self.sync_hint}")
        else:
            self.log(f"tracking: all in MLflow ({self.cpu_seconds:.1f} s of CPU in the background, the MLflow "
                     "client's import included)")
        return ok

    def _sync(self, status: Optional[str], final: bool) -> bool:
        began = time.thread_time()
        try:
            return self._sync_once(status, final)
        finally:
            self.cpu_seconds += time.thread_time() - began

    def _sync_once(self, status: Optional[str], final: bool) -> bool:
        status = status or RUNNING
        files = final or time.monotonic() - self._files_at >= FILES_INTERVAL_S
        try:
            if self._client is None:
                self._client = TrackingClient(self.mirror.target)
            result = self.mirror.sync(self._client, status, files=files)
            if files:
                self._files_at = time.monotonic()
        except Exception as error:  # whatever the server or the network did, the run goes on
            if not self._offline:
                self.log(f"warning: tracking: {first_line(error)} ({self.mirror.target}); the run goes on and "
                         f"{self.mirror.directory} keeps everything: upload it later with  {self.sync_hint}")
                self._offline = True
                if self._client is not None:
                    self._client.set_patience(attempts=1, patience_s=15.0)
            self.in_sync = False
            return False
        if self._offline:
            self.log(f"tracking: {self.mirror.target.uri} answers again; uploaded what was missing")
            self._offline = False
            self._client.set_patience(attempts=3, patience_s=15.0)
        if not self._announced:
            self._announce(result)
        self.in_sync = True
        return True

    def _announce(self, result: SyncResult) -> None:
        """Name the MLflow run once, with its page in the web UI."""
        self._announced = True
        url = self._client.run_url(result.experiment_id, result.run_id)
        self.log(f"tracking: {'new' if result.created else 'continuing'} MLflow run {result.run_id} in "
                 f"{self.mirror.target}" + (f": {url}" if url else ""))
