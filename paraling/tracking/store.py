"""Opening MLflow: the tracking URI, and clients that may create a fresh SQLite store from several processes at once.

MLflow creates (and migrates) a SQLite store's tables on the first use of a new database file. Two processes doing
that at the same moment (two ``paraling train`` started together, or a sweep's workers) race, and one fails with
``duplicate column name``. :func:`mlflow_client` makes the first use of a SQLite store in each process happen under
an exclusive ``flock`` on ``<database>.paraling.lock``, so one process creates the tables and the others find them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from paraling.errors import TrackingError
from paraling.filelock import acquire
from paraling.secrets import mask_secrets

__all__ = ["DEFAULT_TRACKING_URI", "artifact_root", "mlflow_client", "resolve_tracking_uri"]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the default SQLite store (made absolute, folder created)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        db = Path(uri[len("sqlite:///") :]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    elif "://" not in uri and not uri.startswith("databricks"):
        raise TrackingError(
            f"tracking URI {mask_secrets(uri)!r} is a plain path; MLflow's file store is refused here. Use "
            f"{DEFAULT_TRACKING_URI!r} or an http(s):// server"
        )
    if mask_secrets(uri) != uri:  # MLflow prints run and model links with the URI's credentials in them
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        os.environ["MLFLOW_PRINT_MODEL_URLS_ON_CREATION"] = "false"
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifact location of new experiments: ``artifacts/`` beside a SQLite database (``None``: the server's)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "artifacts").resolve().as_uri()
    return None


_ready: set[str] = set()


def mlflow_client(uri: str | None = None, registry: bool = False) -> Any:
    """An ``MlflowClient`` on ``uri`` (resolved by :func:`resolve_tracking_uri`; ``registry``: also as registry URI).

    Raises:
        TrackingError: The store cannot be opened (message masked, with the fix).
    """
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    registry_uri = uri if registry else None
    if not uri.startswith("sqlite:///") or uri in _ready:
        return MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
    lock = Path(uri[len("sqlite:///") :] + ".paraling.lock")
    fd = acquire(lock)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
        client.search_experiments(max_results=1)  # creates or migrates the tables, under the lock
    except Exception as exc:  # sqlalchemy / MLflow errors: a corrupt or unwritable database
        raise TrackingError(
            f"cannot open the MLflow store {mask_secrets(uri)}: {' '.join(mask_secrets(str(exc)).split())[:300]}."
            " Fix: check that the folder is writable and the file is an MLflow database, or point tracking.uri "
            "(or MLFLOW_TRACKING_URI) elsewhere"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    _ready.add(uri)
    return client
