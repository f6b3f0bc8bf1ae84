"""Where runs are tracked: the ``--tracking-uri`` / ``--experiment`` pair, resolved and validated.

Only the standard library: nothing here imports MLflow (:mod:`.check` checks the server at start).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Mapping, Optional

URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "inas"
SERVER_HINT = ("start one with  mlflow server --host 127.0.0.1 --port 5000  (the `mlflow` package, best in its own "
               "virtual environment) and pass --tracking-uri http://127.0.0.1:5000")


class TrackingError(ValueError):
    """Tracking cannot start as asked; the message is one line that says what to do."""


@dataclass(frozen=True)
class TrackingTarget:
    """An MLflow tracking server (or store) and the experiment runs are recorded in."""

    uri: str
    experiment: str = DEFAULT_EXPERIMENT

    @property
    def is_http(self) -> bool:
        return urllib.parse.urlsplit(self.uri).scheme in ("http", "https")

    def __str__(self) -> str:
        return f"experiment {self.experiment!r} at {self.uri}"


def resolve_target(uri: Optional[str], experiment: Optional[str], stored: Optional[TrackingTarget] = None,
                   environ: Mapping[str, str] = os.environ) -> Optional[TrackingTarget]:
    """The target of a command: ``--tracking-uri``, else the directory's own (``stored``, a resumed
    run), else ``$MLFLOW_TRACKING_URI``; None when none is set (no tracking). The experiment:
    ``--experiment``, else the stored one, else ``inas``. A malformed URI or experiment name, or
    ``--experiment`` while tracking is off, is a :class:`TrackingError`."""
    if uri is not None:
        chosen = uri
    elif stored is not None:
        chosen = stored.uri
    else:
        chosen = environ.get(URI_ENV) or None
    if chosen is None:
        if experiment is not None:
            raise TrackingError(f"--experiment {experiment!r} names an MLflow experiment, but tracking is off: "
                                f"give --tracking-uri URI too (or set {URI_ENV})")
        return None
    name = experiment if experiment is not None else (stored.experiment if stored is not None else DEFAULT_EXPERIMENT)
    if not name.strip():
        raise TrackingError("--experiment must name an experiment, got an empty name")
    return TrackingTarget(check_uri(chosen), name.strip())


_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d+(/.*)?$")


def check_uri(uri: str) -> str:
    """The URI without a trailing slash, or a one-line :class:`TrackingError` for a malformed one."""
    text = uri.strip()
    where = f"--tracking-uri {uri!r}"
    if not text:
        raise TrackingError(f"{where} is empty; give the MLflow server's address, e.g. http://127.0.0.1:5000")
    if _HOST_PORT.match(text):
        raise TrackingError(f"{where} has no scheme: did you mean http://{text}?")
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme:
        raise TrackingError(f"{where} is not a URI: give the MLflow server's address, e.g. http://127.0.0.1:5000 "
                            f"({SERVER_HINT})")
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise TrackingError(f"{where} names no host, e.g. http://127.0.0.1:5000")
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise TrackingError(f"{where} has a port that is not a number") from None
        return text.rstrip("/")
    return text
