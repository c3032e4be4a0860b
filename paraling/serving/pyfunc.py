"""The MLflow pyfunc of a registered paraling model: audio in, labels and class probabilities out.

Registered models are code (MLflow "models from code", :mod:`paraling.tracking.registry` writes their entry script),
so nothing is unpickled: the class below loads the model's bundle (JSON + safetensors) with
:class:`~paraling.serving.predict.Predictor`.

Input, one row per recording, either column:

- ``audio``: the bytes of an audio file (WAV, FLAC, OGG; any rate and channel count), base64-encoded. This is what
  ``mlflow models serve`` is queried with (docs/deploy.md): a request whose audio is empty, not decodable, claims an
  impossible sample rate or is larger than ``PARALING_SERVE_MAX_MB`` (default 64 MB per recording) is refused as a
  whole with one line naming the row (the scoring server answers 400), and no file name from a request is read;
- ``path``: a local file (``mlflow.pyfunc.load_model(...).predict``): an unreadable file gets ``error`` in its row.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from paraling.serving.predict import Predictor, predictions_frame

__all__ = ["ParalingModel", "max_request_bytes"]


def max_request_bytes() -> int:
    """The largest recording a request row may carry (``PARALING_SERVE_MAX_MB``, default 64)."""
    return int(float(os.environ.get("PARALING_SERVE_MAX_MB", "64")) * (1 << 20))


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _decoded(i: int, value: Any, limit: int) -> bytes:
    """Row ``i``'s audio bytes from base64, refused when empty, not base64 or over ``limit``."""
    if not isinstance(value, str | bytes) or not value:
        raise _bad_request(f"row {i}: 'audio' is empty; send the base64 of an audio file's bytes")
    if len(value) * 3 // 4 > limit:
        raise _bad_request(
            f"row {i}: {len(value) * 3 / 4 / 2**20:.1f} MB of audio is over the {limit / 2**20:.0f} MB limit of a "
            "recording (PARALING_SERVE_MAX_MB); send shorter recordings"
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f"row {i}: 'audio' is not base64; send base64.b64encode(file bytes)") from None
    if not data:
        raise _bad_request(f"row {i}: 'audio' holds no bytes")
    return data


class ParalingModel(PythonModel):
    """MLflow pyfunc over a paraling bundle: audio (base64 bytes, or local paths) in, labels and probabilities out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle artifact (JSON + safetensors)."""
        self.predictor = Predictor.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Label every row's recording (see the module docstring for the two input columns).

        Args:
            context: MLflow context (unused after :meth:`load_context`).
            model_input: DataFrame with an ``audio`` (base64) or a ``path`` column.
            params: Unused.

        Returns:
            DataFrame with ``path``, ``label``, ``error`` and ``proba_<class>`` per class (``path`` is ``row<i>`` for
            ``audio`` rows).

        Raises:
            MlflowException: Neither column, or ``audio`` rows that are not a usable recording (the scoring
                server's 400).
        """
        if isinstance(model_input, pd.DataFrame) and "audio" in model_input.columns:
            return self._predict_audio(list(model_input["audio"]))
        if isinstance(model_input, pd.DataFrame):
            if "path" not in model_input.columns:
                raise _bad_request(
                    f"input needs an 'audio' (base64 file bytes) or a 'path' column, got columns "
                    f"{list(model_input.columns)}; see docs/deploy.md for the request format"
                )
            paths = [str(p) for p in model_input["path"]]
        else:
            paths = [str(p) for p in np.ravel(np.asarray(model_input, dtype=object))]
        return predictions_frame(self.predictor.predict(paths), self.predictor.classes)

    def _predict_audio(self, values: list[Any]) -> pd.DataFrame:
        if not values:
            raise _bad_request("the request holds no rows; send one 'audio' value per recording")
        limit = max_request_bytes()
        with tempfile.TemporaryDirectory(prefix="paraling-serve-") as tmp:
            paths = []
            for i, value in enumerate(values):
                path = Path(tmp) / f"row{i}"
                path.write_bytes(_decoded(i, value, limit))
                paths.append(str(path))
            preds = self.predictor.predict(paths)
        bad = [(i, p.error) for i, p in enumerate(preds) if p.error]
        if bad:
            i, why = bad[0]
            why = str(why).replace(paths[i], f"row {i}")
            raise _bad_request(
                f"row {i}: not a usable recording ({why})" + (f"; {len(bad) - 1} more" if len(bad) > 1 else "")
            )
        for i, p in enumerate(preds):
            p.path = f"row{i}"
        return predictions_frame(preds, self.predictor.classes)
