"""Fetching a model to predict with: a local folder, a run's ``model/`` folder, or a registered model version."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from paraling.errors import ModelError
from paraling.tracking.runs import RUN_ID, artifact_files, make_client

__all__ = ["fetch_model"]


def _run_model_dir(client: Any, run_id: str, dst: Path) -> Path:
    files = artifact_files(client, run_id, "model")
    if not files:
        raise ModelError(f"run {run_id} has no model/ artifacts (tracking.log_model was off, or not a CNN run)")
    return Path(client.download_artifacts(run_id, "model", str(dst)))


def _inside_run(model: str, sub: str) -> str:
    """``sub`` as a relative artifact path that stays inside the run (no ``..``, no absolute path)."""
    parts = PurePosixPath(sub).parts
    if sub.startswith("/") or "\\" in sub or any(p in ("..", "") for p in parts) or not parts:
        raise ModelError(
            f"{model!r}: the artifact path {sub!r} leaves the run's artifacts; use runs:/<id> or runs:/<id>/model"
        )
    return PurePosixPath(*parts).as_posix()


def fetch_model(model: str, dst: str | Path, uri: str | None = None) -> Path:
    """Make a model available locally; return the folder :meth:`paraling.serving.predict.Predictor.load` reads.

    Args:
        model: A local folder (bundle, pyfunc model or a run's ``model/``), a run id,
            ``runs:/<id>[/path]``, or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``.
        dst: Empty folder for downloads.
        uri: Tracking (and registry) URI.

    Raises:
        ModelError: Nothing usable found at ``model``.
    """
    local = Path(model)
    if local.exists():
        return local
    if not (model.startswith(("models:/", "runs:/")) or RUN_ID.match(model)):
        raise ModelError(f"{model!r} is neither an existing path, a run id, runs:/<id> nor models:/<name>@<alias>")
    if model.startswith("runs:/") and "/" in model[len("runs:/") :]:
        _inside_run(model, model[len("runs:/") :].partition("/")[2])
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    client = make_client(uri)
    try:
        if model.startswith("models:/"):
            ref = model[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = client.get_model_version_by_alias(name, alias)
            else:
                name, _, ver = ref.partition("/")
                version = client.get_model_version(name, ver)
            from mlflow.artifacts import download_artifacts

            return Path(
                download_artifacts(artifact_uri=version.source, dst_path=str(dst), tracking_uri=client.tracking_uri)
            )
        rest = model[len("runs:/") :] if model.startswith("runs:/") else model  # runs:/<id>[/path] or a run id
        run_id, _, sub = rest.partition("/")
        if sub:
            return Path(client.download_artifacts(run_id, _inside_run(model, sub), str(dst)))
        return _run_model_dir(client, run_id, dst)
    except ModelError:
        raise
    except Exception as exc:  # MlflowException (unknown run/model/alias), store errors
        raise ModelError(f"cannot load model {model!r}: {exc}") from exc
