"""The files of an ``inas run`` directory, named once.

The loop writes them (:mod:`inas_plugins.loop`, :mod:`.results`, :mod:`.checkpoint`), ``--resume``,
sweeps and reports read them, and the lock guards them (:mod:`.rundir`). Standard library only: the
CLI looks at a run directory before it imports torch.
"""

from __future__ import annotations

CONFIG_NAME = "config.json"  # written first: from then on the directory holds a run
CHECKPOINT_NAME = "checkpoint.pt"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
LEARNING_CURVE_PNG = "learning_curve.png"
ARCHITECTURE_PNG = "architecture.png"
LOCK_NAME = ".inas.lock"  # present only while a process holds the directory
TRACKING_NAME = "mlflow.json"  # only in a tracked directory: its MLflow server, experiment and run (inas_plugins.tracking)

#: What a run directory holds once its run has finished (and released the lock).
RUN_FILES = frozenset({CONFIG_NAME, CHECKPOINT_NAME, RESULTS_JSON, RESULTS_CSV, LEARNING_CURVE_PNG, ARCHITECTURE_PNG})
