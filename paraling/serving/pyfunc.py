"""The MLflow pyfunc of a registered paraling model: audio file paths in, labels and class probabilities out.

Registered models are code (MLflow "models from code", :mod:`paraling.tracking.registry` writes their entry script),
so nothing is unpickled: the class below loads the model's bundle (JSON + safetensors) with
:class:`~paraling.serving.predict.Predictor`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from paraling.errors import ModelError
from paraling.serving.predict import Predictor, predictions_frame

__all__ = ["ParalingModel"]


class ParalingModel(PythonModel):
    """MLflow pyfunc over a paraling bundle: audio file paths in, labels and class probabilities out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle artifact (JSON + safetensors)."""
        self.predictor = Predictor.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Label the files in ``model_input["path"]``; unreadable files get an ``error``, NaN probabilities.

        Args:
            context: MLflow context (unused after :meth:`load_context`).
            model_input: DataFrame with a ``path`` column (strings).
            params: Unused.

        Returns:
            DataFrame with ``path``, ``label``, ``error`` and ``proba_<class>`` per class.
        """
        if isinstance(model_input, pd.DataFrame):
            if "path" not in model_input.columns:
                raise ModelError(f"input needs a 'path' column, got columns {list(model_input.columns)}")
            paths = [str(p) for p in model_input["path"]]
        else:
            paths = [str(p) for p in np.ravel(np.asarray(model_input, dtype=object))]
        return predictions_frame(self.predictor.predict(paths), self.predictor.classes)
