"""paraling models in the MLflow model registry.

A registered model is defined by code (MLflow "models from code", nothing is pickled); its only artifact is a
paraling bundle (:func:`paraling.tracking.bundle.save_bundle`): the members' CNN weights (safetensors), ``spec.json``
(feature, window, model config), fitted votes (JSON) and the combiner. Input: a DataFrame with a ``path`` column of
audio files; output: ``path``, ``label``, ``error`` and ``proba_<class>`` columns. Ensembles are assembled, logged
and registered by :func:`paraling.ensemble.assembly.assemble_ensemble`.

Example:
    >>> import mlflow
    >>> mlflow.pyfunc.load_model("models:/eating@champion").predict(df)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from paraling.errors import TrackingError
from paraling.tracking.tracker import RunTracker

__all__ = ["log_pyfunc", "register_model"]

log = logging.getLogger(__name__)

#: The entry script of a registered model: it names the class by module path (nothing is imported here, so this
#: layer does not depend on serving, which runs the model).
_ENTRY = '''"""MLflow models-from-code entry point of a paraling model (see paraling.serving.pyfunc)."""
from mlflow.models import set_model

from paraling.serving.pyfunc import ParalingModel

set_model(ParalingModel())
'''


def __getattr__(name: str) -> Any:
    """``ParalingModel`` for the entry scripts of models registered by earlier releases, which import it from here.

    Resolved when asked for (``importlib``), not imported: tracking sits below serving in the layer order.
    """
    if name == "ParalingModel":
        import importlib

        return importlib.import_module("paraling.serving.pyfunc").ParalingModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in (
        "mlflow",
        "torch",
        "torchaudio",
        "numpy",
        "scipy",
        "scikit-learn",
        "soundfile",
        "safetensors",
        "pandas",
        "omegaconf",
    ):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            out.append(pkg)
    return out


def log_pyfunc(tracker: RunTracker, bundle: Path, tmp: Path, artifact_path: str = "model") -> None:
    """Save ``bundle`` as a models-from-code pyfunc; upload it into the tracker's run at ``artifact_path``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    entry = tmp / "paraling_model.py"
    entry.write_text(_ENTRY)
    out = tmp / "pyfunc"
    # one row per recording: its bytes as base64 (`audio`, what a served model is sent) or a local `path`
    columns: list[ColSpec | TensorSpec] = [
        ColSpec("string", "audio", required=False),
        ColSpec("string", "path", required=False),
    ]
    signature = ModelSignature(inputs=Schema(columns))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example.*")
        mlflow.pyfunc.save_model(
            str(out),
            python_model=str(entry),
            artifacts={"bundle": str(bundle)},
            signature=signature,
            pip_requirements=_requirements(),
        )
    tracker.log_artifact(out, artifact_path)


def register_model(
    client: Any,
    run_id: str,
    name: str,
    alias: str | None = "champion",
    artifact_path: str = "model",
    description: str = "",
    tags: dict[str, str] | None = None,
) -> str:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``name``; point ``alias`` at it.

    Returns:
        The new version number.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise TrackingError(f"cannot create registered model {name!r}: {exc}") from exc
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    mv = client.create_model_version(name, source, run_id=run_id, description=description, tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)
