"""The library surface's functions that are not one call into a module: a validated ``compose``, a corpus from a
configuration, a study by name, a model by URI. :mod:`paraling` (its ``__init__``) re-exports them lazily."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["compose", "load_corpus", "load_model", "sweep"]


def compose(overrides: Sequence[str] = ()) -> Any:
    """The configuration ``paraling train OVERRIDES`` runs: composed from ``conf/`` and validated (each plug-in group
    typed by its kind, every range and cross-field rule checked).

    Raises:
        ConfigError: Naming the key, the value and what is allowed.
    """
    from paraling.config import compose as compose_raw
    from paraling.config_checks import validate

    return validate(compose_raw(list(overrides)))


def load_corpus(cfg: Any) -> Any:
    """The :class:`~paraling.data.manifest.Manifest` of a configuration (or of its ``corpus`` node) as its recipe
    builds it (the demo and speech corpora are generated when missing)."""
    from paraling.data.recipes import load_corpus as load

    node = cfg.corpus if "corpus" in cfg else cfg
    return load(node)


def load_model(model: str | Path, tracking_uri: str | None = None, device: str = "cpu") -> Any:
    """A :class:`~paraling.serving.predict.Predictor` for ``model``: a run id, ``runs:/<id>``,
    ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a local model or bundle folder (as ``paraling
    predict --model``). Everything is read into memory (JSON and safetensors; nothing is unpickled)."""
    from paraling.serving.predict import Predictor
    from paraling.tracking.model_fetch import fetch_model

    with tempfile.TemporaryDirectory(prefix="paraling-model-") as tmp:
        name = str(model).removeprefix("runs:/").split("/")[0]
        return Predictor.load(fetch_model(str(model), tmp, tracking_uri), device, name)


def sweep(study: str | Path, overrides: Sequence[str] = (), **options: Any) -> Any:
    """Run (or resume) a study, as ``paraling sweep STUDY OVERRIDES``; returns its
    :class:`~paraling.search.summary.SweepSummary`.

    Args:
        study: A study file or the name of a shipped one (``demo``, ``paper``).
        overrides: Hydra overrides applied to every trial.
        **options: :class:`~paraling.search.runner.SweepOptions` fields (``n_trials``, ``workers``, ``storage``,
            ``gpus``, ``trials_per_gpu``, ``timeout``, ...).
    """
    from paraling.search.runner import SweepOptions, run_sweep
    from paraling.search.spec import load_study_spec

    return run_sweep(load_study_spec(study), SweepOptions(overrides=list(overrides), **options))
