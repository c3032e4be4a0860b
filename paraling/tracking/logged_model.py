"""A run's CNN as an MLflow 3 *logged model*: what fills the runs table's Models column.

The run's own ``model/`` artifacts stay what ``paraling predict``, the registry and transfer learning read
(:mod:`paraling.tracking.model_dir`). :func:`link_logged_model` additionally records the same folder as a logged model
of the run's experiment (``source_run_id`` = the run, model type ``paraling-cnn``, tagged with the run's name and
corpus), marks it READY and links it to the run as an output, so the UI shows it next to the run and on the
experiment's Models page. A run that already has a READY logged model (a resumed run) keeps it. Failures are
logged and never fail the run: the model artifacts are already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paraling.secrets import mask_secrets

__all__ = ["MODEL_TYPE", "link_logged_model"]

log = logging.getLogger(__name__)

MODEL_TYPE = "paraling-cnn"


def link_logged_model(
    client: Any, experiment_id: str, run_id: str, folder: Path, name: str, tags: Mapping[str, str] | None = None
) -> str | None:
    """Record ``folder`` (a saved model folder) as a logged model of run ``run_id``; returns its model id.

    Args:
        client: An :class:`mlflow.tracking.MlflowClient`.
        experiment_id: The run's experiment.
        run_id: The run.
        folder: The model folder just logged as the run's ``model/`` artifacts.
        name: The logged model's name (the config name: ``net3``).
        tags: Extra tags of the logged model.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    try:
        found = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'", max_results=10
        )
        for m in found:
            if m.status == LoggedModelStatus.READY:
                return str(m.model_id)
        model = client.create_logged_model(
            experiment_id, name=name, source_run_id=run_id, tags=dict(tags or {}), model_type=MODEL_TYPE
        )
        client.log_model_artifacts(model.model_id, str(folder))
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        return str(model.model_id)
    except Exception as exc:  # metadata only: the run's model/ artifacts are the model
        log.warning("run %s: could not record its logged model: %s", run_id, mask_secrets(str(exc))[:300])
        return None
