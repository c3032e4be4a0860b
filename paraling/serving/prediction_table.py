"""Prediction tables: one row per file with its label, error and class probabilities, written as CSV or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paraling.atomic import atomic_path

__all__ = ["PROBA_PREFIX", "predictions_frame", "proba_column", "write_predictions"]

PROBA_PREFIX = "proba_"


def proba_column(cls: str) -> str:
    """Column name of a class probability in prediction tables."""
    return f"{PROBA_PREFIX}{cls}"


def predictions_frame(preds: Sequence[Any], classes: Sequence[str]) -> Any:
    """A pandas DataFrame: ``path``, ``label``, ``error``, ``proba_<class>`` per class (NaN on error rows).

    Args:
        preds: :class:`paraling.serving.predict.FilePrediction` objects (``path``, ``label``, ``error``, ``proba``).
        classes: Class names, in the order of ``proba``.
    """
    import pandas as pd

    rows = []
    for p in preds:
        row: dict[str, Any] = {"path": p.path, "label": p.label or "", "error": p.error or ""}
        for k, c in enumerate(classes):
            row[proba_column(c)] = float(p.proba[k]) if p.proba is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["path", "label", "error", *[proba_column(c) for c in classes]])


def write_predictions(frame: Any, out: str | Path | None) -> None:
    """Write predictions as CSV (``.csv`` or stdout when ``out`` is None) or JSON records (``.json``)."""
    import sys

    if out is None:
        frame.to_csv(sys.stdout, index=False)
        return
    out = Path(out)
    with atomic_path(out) as tmp:  # a reader never sees half a table; a link at ``out`` is replaced, not followed
        if out.suffix.lower() == ".json":
            records = json.loads(frame.to_json(orient="records"))
            tmp.write_text(json.dumps(records, indent=2))
        else:
            frame.to_csv(tmp, index=False)
