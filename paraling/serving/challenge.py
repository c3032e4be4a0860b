"""A challenge's withheld test set (``corpus=compare``): after ``paraling train``, the run's model labels the test
files that have no labels, and the table goes into the run as the artifact ``predictions/test.csv`` (what a
challenge submission is made from)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from paraling.serving.predict import Predictor, predictions_frame, write_predictions

__all__ = ["write_challenge_predictions"]

log = logging.getLogger(__name__)


def write_challenge_predictions(cfg: Any, run_id: str | None) -> Path | None:
    """Predict a ComParE task's unlabelled test files with run ``run_id``'s model; log and return the table's path
    in the run (``None`` when there is nothing to predict, or no logged model to predict with: then one line says
    why)."""
    if str(cfg.corpus.kind) != "compare" or not cfg.corpus.path:
        return None
    from paraling.data.recipes.compare import unlabelled_test

    files = unlabelled_test(cfg.corpus.path, cfg.corpus.get("label_column"))
    if not files:
        return None
    if not run_id or not cfg.tracking.enabled or not cfg.tracking.log_model:
        log.warning(
            "%d unlabelled test file(s) not predicted: the run logged no model (tracking.log_model)", len(files)
        )
        return None
    from paraling.tracking.model_fetch import fetch_model
    from paraling.tracking.runs import make_client

    client = make_client(cfg.tracking.uri)
    with tempfile.TemporaryDirectory(prefix="paraling-challenge-") as tmp:
        predictor = Predictor.load(fetch_model(f"runs:/{run_id}", tmp, cfg.tracking.uri), "cpu", run_id)
        table = Path(tmp) / "test.csv"
        write_predictions(predictions_frame(predictor.predict([str(f) for f in files]), predictor.classes), table)
        client.log_artifact(run_id, str(table), "predictions")
    log.info("%d unlabelled test file(s) predicted: artifact predictions/test.csv of run %s", len(files), run_id)
    return Path("predictions") / "test.csv"
