"""The Ray instance that sweeps and parallel candidates run on: an embedded local one, or a cluster.

Local by default: ``ray.init(address="local")`` -- always a new instance sized to this machine, never
a cluster some other process started (a plain ``ray.init()`` joins the latest ``ray start``
cluster on the machine if there is one). With an address (``auto``, ``HOST:PORT`` or
``ray://HOST:PORT``) the cluster is joined instead; its GCS (or Ray Client) port is tried first
with a short TCP connect, because ``ray.init`` waits about a minute on an address nobody answers,
and the caller gets one line naming the address within seconds.

Ray's own logs stay quiet (errors only, no worker output forwarded, no dashboard): the sweep
prints its own progress and each run writes its own log file.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Optional
from .error_text import first_line

CONNECT_TIMEOUT_S = 3.0
RAY_CLIENT_PORT = 10001


class ClusterError(RuntimeError):
    """One line for the user: an address nobody answers, resources the cluster does not have."""


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def connect(address: Optional[str] = None, *, num_cpus: Optional[int] = None,
            num_gpus: Optional[int] = None) -> bool:
    """Start a local Ray instance (``address`` None) or join the cluster at ``address``.

    A Ray already initialised in this process is used as it is (after checking that ``address``
    answers, if one is given). Returns True when this call
    started or joined one (the caller then owns it and shuts it down), False otherwise.
    Raises :class:`ClusterError` (one line) when ``address`` cannot be reached.
    """
    import ray

    if address is not None:
        check_reachable(address)
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address is None:
        ray.init(address="local", num_cpus=num_cpus or local_cpus(), num_gpus=num_gpus,
                 include_dashboard=False, **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        hint = "" if address == "auto" else (" (a cluster with token authentication needs RAY_AUTH_MODE=token and its "
                                             "token here, see `ray get-auth-token`)")
        raise ClusterError(f"cannot join the Ray cluster at --address {address}: {first_line(error)}{hint}") from None
    return True


def check_reachable(address: str) -> None:
    """One-line :class:`ClusterError` unless something listens where ``address`` points, in seconds."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = "no answer" if isinstance(error, socket.timeout) else (error.strerror or str(error))
        raise ClusterError(f"cannot reach the Ray cluster at --address {address} ({host}:{port}: {reason}); "
                           "check the address, start a cluster with `ray start --head`, "
                           "or leave --address out to run on this machine") from None


def _host_port(address: str) -> tuple[str, int]:
    if address == "auto":  # what ray.init(address="auto") would join: $RAY_ADDRESS or the latest `ray start`
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            resolved = None
        if not resolved:
            raise ClusterError("--address auto found no running Ray cluster on this machine; start one with "
                               "`ray start --head`, give HOST:PORT, or leave --address out to run locally")
        return _host_port(resolved)
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, str(RAY_CLIENT_PORT if client else 6379)
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def largest_node() -> dict[str, float]:
    """CPU and GPU of the cluster's largest alive node: one task must fit on one node."""
    import ray

    best = {"CPU": 0.0, "GPU": 0.0}
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            for key in best:
                best[key] = max(best[key], float(resources.get(key, 0.0)))
    return best


def check_fits(cpus: float, gpus: float, what: str = "run") -> None:
    """One-line :class:`ClusterError` when a task asking for ``cpus``/``gpus`` fits on no node."""
    node = largest_node()
    if gpus > node["GPU"]:
        raise ClusterError(f"--gpus-per-{what} {gpus:g} is more than any node of the cluster has "
                           f"({node['GPU']:g} GPUs); lower it" + ("" if node["GPU"] else " to 0"))
    if cpus > node["CPU"]:
        raise ClusterError(f"--cpus-per-{what} {cpus:g} is more than any node of the cluster has "
                           f"({node['CPU']:g} CPUs); lower it")
