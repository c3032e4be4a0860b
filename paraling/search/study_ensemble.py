"""The study file's ``ensemble:`` block: the sweep ends with its best combination of trials.

.. code-block:: yaml

    ensemble:
      method: greedy        # greedy | top-k | all (paraling ensemble --method)
      combiner: mean        # mean | harmonic | geometric | weighted
      top_k: 1              # greedy: sorted initialisation; top-k: members (default: the selector's)
      bagging: 0            # greedy: bags of the library
      register: eating      # optional: register the ensemble (CNN members only) as this MLflow model ...
      alias: champion       # ... with this alias

Without the block nothing is assembled. With it, the worker that finishes the study (every trial done, its
reason ``complete``) assembles the ensemble from the study's trials exactly as ``paraling ensemble --study NAME``
would, logs it as a child run of the sweep's parent run, and tags the parent with the ensemble's run id
(``paraling.sweep.ensemble_run_id``) and its nested-CV UAR (``paraling.sweep.ensemble_uar``; also the parent's
metric ``ensemble_uar``). A parent that already has an ensemble keeps it (resumed or repeated finishes assemble
once); ``paraling ensemble --study`` re-runs it by hand. A failing assembly is logged and leaves the study as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paraling.errors import ConfigError, ParalingError

__all__ = ["ENSEMBLE_RUN_TAG", "ENSEMBLE_UAR_TAG", "StudyEnsemble", "assemble_for_study", "parse_ensemble"]

log = logging.getLogger(__name__)

ENSEMBLE_RUN_TAG = "paraling.sweep.ensemble_run_id"
ENSEMBLE_UAR_TAG = "paraling.sweep.ensemble_uar"
_KEYS = ("method", "combiner", "top_k", "bagging", "register", "alias")


@dataclass(frozen=True)
class StudyEnsemble:
    """A validated ``ensemble:`` block (see the module docstring)."""

    method: str = "greedy"
    combiner: str = "mean"
    top_k: int | None = None
    bagging: int = 0
    register: str | None = None
    alias: str | None = "champion"


def parse_ensemble(raw: Any) -> StudyEnsemble | None:
    """The block as a :class:`StudyEnsemble` (``None`` when absent or null).

    Raises:
        ConfigError: Naming the key of the block that is wrong and what it accepts.
    """
    from paraling.ensemble import COMBINERS, METHODS

    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"ensemble must be a mapping with keys {list(_KEYS)}, but got {raw!r}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"ensemble.{unknown[0]} is not an ensemble setting; allowed: {list(_KEYS)}")
    spec = StudyEnsemble(**{k: raw[k] for k in _KEYS if k in raw})
    if spec.method not in METHODS:
        raise ConfigError(f"ensemble.method must be one of {list(METHODS)}, but got {spec.method!r}")
    if spec.combiner not in COMBINERS:
        raise ConfigError(f"ensemble.combiner must be one of {list(COMBINERS)}, but got {spec.combiner!r}")
    for key in ("top_k", "bagging"):
        v = getattr(spec, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "top_k" else 0)):
            raise ConfigError(f"ensemble.{key} must be a whole number >= {1 if key == 'top_k' else 0}, not {v!r}")
    for key in ("register", "alias"):
        v = getattr(spec, key)
        if v is not None and (not isinstance(v, str) or not v.strip()):
            raise ConfigError(f"ensemble.{key} must be a name (text), not {v!r}")
    return spec


def assemble_for_study(
    block: StudyEnsemble, study_name: str, experiment: str, uri: str, parent_run_id: str, client: Any
) -> str | None:
    """Assemble the study's ensemble once, as a child of ``parent_run_id``; returns its run id (``None``: failed).

    Args:
        block: The study file's ``ensemble:`` block.
        study_name: The study (its trials are the library).
        experiment: The MLflow experiment of the trials.
        uri: Tracking (and registry) URI.
        parent_run_id: The sweep's parent run.
        client: An MLflow client on ``uri``.
    """
    from paraling.ensemble.assembly import assemble_ensemble

    existing = client.get_run(parent_run_id).data.tags.get(ENSEMBLE_RUN_TAG)
    if existing:
        log.info("study %s already has its ensemble (run %s)", study_name, existing)
        return str(existing)
    try:
        result = assemble_ensemble(
            experiment,
            study=study_name,
            method=block.method,
            combiner=block.combiner,
            top_k=block.top_k,
            bagging=block.bagging,
            uri=uri,
            register=block.register,
            alias=block.alias,
            run_name=f"{study_name}-ensemble",
            parent_run_id=parent_run_id,
        )
    except ParalingError as exc:
        log.error(
            "study %s: the ensemble was not assembled: %s (re-run: paraling ensemble --study %s)",
            study_name,
            exc,
            study_name,
        )
        return None
    rep = result.report
    value = float(rep.nested["ensemble_uar"]) if rep.nested else float(rep.selection_uar)
    client.set_tag(parent_run_id, ENSEMBLE_RUN_TAG, str(result.run_id))
    client.set_tag(parent_run_id, ENSEMBLE_UAR_TAG, f"{value:.4f}")
    client.log_metric(parent_run_id, "ensemble_uar", value)
    if result.model_uri:
        client.set_tag(parent_run_id, "paraling.sweep.ensemble_model", result.model_uri)
    log.info("study %s: ensemble run %s, nested-CV UAR %.4f", study_name, result.run_id, value)
    return str(result.run_id)
