"""paraling: paralinguistic and general audio sequence classification with Hydra-composed experiments, Optuna
sweeps, MLflow tracking and ensembles.

Use from Python (each name is imported on first use, so ``import paraling`` stays fast)::

    import paraling

    cfg = paraling.compose(["corpus=csv", "corpus.path=data/my.csv", "trainer.epochs=20"])
    manifest = paraling.load_corpus(cfg)                      # utterances, labels, speakers
    result = paraling.run_experiment(cfg)                     # one cross-validated run, tracked in MLflow
    summary = paraling.sweep("demo", ["corpus=csv", "corpus.path=data/my.csv"], n_trials=20)
    ensemble = paraling.assemble_ensemble("paraling", method="greedy")
    model = paraling.load_model(f"runs:/{result.run_id}")     # or models:/name@alias, a folder
    for p in model.predict(["new.wav"]):
        print(p.path, p.label, p.proba)

Your own corpus recipes, feature extractors, models and votes: :func:`register_corpus`, :func:`register_features`,
:func:`register_model`, :func:`register_vote` (docs/extending.md). Everything else is reachable in the subpackages but
is not the API.
"""

from __future__ import annotations

import importlib
from typing import Any

from paraling.errors import ParalingError

__version__ = "0.1.0"

#: public name -> "module:attribute", imported on first use
_LAZY: dict[str, str] = {
    "compose": "paraling.api:compose",
    "load_corpus": "paraling.api:load_corpus",
    "load_model": "paraling.api:load_model",
    "sweep": "paraling.api:sweep",
    "Manifest": "paraling.data.manifest:Manifest",
    "run_experiment": "paraling.pipeline.experiment:run_experiment",
    "RunResult": "paraling.pipeline.results:RunResult",
    "load_study_spec": "paraling.search.spec:load_study_spec",
    "run_sweep": "paraling.search.runner:run_sweep",
    "SweepOptions": "paraling.search.runner:SweepOptions",
    "SweepSummary": "paraling.search.summary:SweepSummary",
    "assemble_ensemble": "paraling.ensemble.assembly:assemble_ensemble",
    "Predictor": "paraling.serving.predict:Predictor",
    "register_corpus": "paraling.data.recipes:register_corpus",
    "register_features": "paraling.features.registry:register_features",
    "register_model": "paraling.models.registry:register_model",
    "register_vote": "paraling.scoring.aggregation:register_vote",
}

__all__ = ["ParalingError", "__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'paraling' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
