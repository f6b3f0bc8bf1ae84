"""The start-up check of a tracking target: the client is installed and the server answers as MLflow.

Nothing here imports MLflow for an ``http(s)://`` server: ``inas --help`` and every untracked run
stay as fast as before, and a tracked run imports the client only on the tracker's own thread
(:mod:`.tracker`). The check is one REST call made with the standard library, so a server that is
down or a URI that is no MLflow server is one line before anything else happens; other URIs
(``databricks``, or ``sqlite:``/``file:`` stores with the full ``mlflow`` package) are checked with
MLflow's own client.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import urllib.parse
from typing import Optional

from .target import SERVER_HINT, TrackingError, TrackingTarget

INSTALL_HINT = "pip install 'inas-plugins[track]'"
CHECK_TIMEOUT_S = 5.0


def require_client() -> None:
    """A one-line :class:`TrackingError` naming the pip command when the MLflow client is missing."""
    if any(importlib.util.find_spec(name) is None for name in ("mlflow", "tenacity")):
        raise TrackingError(f"tracking in MLflow needs its client: {INSTALL_HINT}")


def check_target(target: TrackingTarget) -> None:
    """Raise a one-line :class:`TrackingError` unless ``target`` answers as an MLflow tracking server."""
    require_client()
    if target.is_http:
        _check_http(target)
    else:
        _check_with_client(target)


def _check_http(target: TrackingTarget) -> None:
    import urllib.error
    import urllib.request

    query = urllib.parse.urlencode({"experiment_name": target.experiment})
    request = urllib.request.Request(f"{target.uri}/api/2.0/mlflow/experiments/get-by-name?{query}",
                                     headers=_auth_headers())
    where = f"the MLflow tracking server at {target.uri}"
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_S) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise TrackingError(f"{where} refused the request (HTTP {error.code}): set MLFLOW_TRACKING_USERNAME and "
                                "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN") from None
        body = error.read()
        if error.code == 404 and _mlflow_error(body) == "RESOURCE_DOES_NOT_EXIST":
            return  # a server without the experiment yet: it is created with the first run
        raise TrackingError(f"{target.uri} answered HTTP {error.code} and is no MLflow tracking server; {SERVER_HINT}") from None
    except OSError as error:  # URLError included: refused, unknown host, timeout
        reason = getattr(error, "reason", error)
        raise TrackingError(f"cannot reach {where} ({reason}); {SERVER_HINT}") from None
    if _mlflow_error(body) is None and b"experiment" not in body:
        raise TrackingError(f"{target.uri} answered, but not as an MLflow tracking server; {SERVER_HINT}")


def _mlflow_error(body: bytes) -> Optional[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("error_code") if isinstance(data, dict) else None


def _auth_headers() -> dict[str, str]:
    """The credentials MLflow's client sends, from the same environment variables."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check_with_client(target: TrackingTarget) -> None:
    from .client import TrackingClient

    try:
        TrackingClient(target).ping()
    except Exception as error:  # MLflow's errors for unsupported stores vary by scheme and version
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].strip()
        raise TrackingError(f"cannot track in {target.uri}: {first[:300]}; the [track] extra talks to an MLflow "
                            f"tracking server: {SERVER_HINT}") from None
