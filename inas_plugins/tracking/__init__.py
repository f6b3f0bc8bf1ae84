"""Tracked runs: ``inas run``, ``inas sweep`` and ``inas label`` recorded in an MLflow tracking server.

The run directory stays the record; MLflow gets a copy that is brought up to date after every
round, so a server that is down costs the run nothing and is caught up later (``--resume`` or
``inas track sync DIR``), with nothing lost or logged twice.

* :mod:`.target`: ``--tracking-uri`` / ``--experiment``, resolved and validated;
* :mod:`.check`: the start-up check that the client is installed and the server answers (no MLflow import);
* :mod:`.link`: the id file ``mlflow.json`` in the directory (which MLflow run it is);
* :mod:`.content`: what each kind of directory records (parameters, tags, metrics per step);
* :mod:`.client`: the MLflow client with retries (the one module that imports MLflow);
* :mod:`.mirror`: one sync of a directory into its MLflow run: whatever is missing is uploaded;
* :mod:`.tracker`: the object a run calls (``update()`` after each round, ``finish()`` at the end),
  which syncs on a thread of its own.

Importing this package imports neither MLflow nor torch.
"""

from .check import check_target, require_client
from .target import DEFAULT_EXPERIMENT, TrackingError, TrackingTarget, resolve_target

__all__ = ["DEFAULT_EXPERIMENT", "TrackingError", "TrackingTarget", "check_target", "require_client", "resolve_target"]
