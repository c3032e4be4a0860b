"""Figure (h): what pruning saves. The demo study twice in this process, same sampler seed, pruner on and off."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["sweep_pruning"]


def _run(spec: Any, overrides: list[str], folder: Path, uri: str) -> dict[str, float]:
    """Run ``spec`` to completion in this process; epochs trained, best value, its fold std, wall time."""
    import optuna
    from mlflow.tracking import MlflowClient

    from paraling.search import SweepOptions, run_sweep
    from paraling.search.storage import make_storage

    journal = folder / f"{spec.study_name}.journal"
    spec = dataclasses.replace(spec, storage=dataclasses.replace(spec.storage, url=str(journal)))
    t0 = time.perf_counter()
    run_sweep(spec, SweepOptions(overrides=overrides, gpus=[]))
    seconds = time.perf_counter() - t0
    study = optuna.load_study(study_name=spec.study_name, storage=make_storage(str(journal)))
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = study.best_trial
    run = MlflowClient(tracking_uri=uri).get_run(best.user_attrs["mlflow_run_id"])
    return {
        "epochs": float(sum(len(t.intermediate_values) for t in done)),
        "best": float(study.best_value),
        "fold_std": float(run.data.metrics.get("uar_fold_std", 0.0)),
        "seconds": seconds,
        "pruned": float(sum(t.state.name == "PRUNED" for t in done)),
        "trials": float(len(done)),
    }


def _warm_features(overrides: list[str]) -> None:
    """Generate the corpus and fill the feature cache and pack (what every trial then reuses)."""
    from paraling.config import compose
    from paraling.pipeline.dataset import prepare_data

    prepare_data(compose(overrides))


def sweep_pruning(n_trials: int | None, n_speakers: int, windows_per_epoch: int | None) -> dict[str, float]:
    """The packaged demo study with its own pruner and with ``pruner: none``, on the demo corpus.

    Args:
        n_trials: Trials per study (``None``: the study file's 12).
        n_speakers: Speakers of the generated demo corpus (30 is the default corpus).
        windows_per_epoch: Cap on training windows per epoch (``None``: all).

    Returns:
        Per variant (``pruned_`` / ``unpruned_``): ``epochs``, ``best``, ``fold_std``, ``seconds``; and
        ``epoch_fraction`` (pruned / unpruned epochs) and ``best_delta`` (pruned best - unpruned best).
    """
    import optuna

    from paraling.search import load_study_spec
    from paraling.search.samplers import PrunerSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study_spec("demo")
    if n_trials is not None:
        spec = dataclasses.replace(spec, n_trials=n_trials)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        overrides = [
            f"corpus.path=data/bench-demo-{n_speakers}",
            f"corpus.demo_speakers={n_speakers}",
            f"tracking.uri={uri}",
            "progress=never",
            *([f"trainer.max_windows_per_epoch={windows_per_epoch}"] if windows_per_epoch else []),
        ]
        _warm_features(list(spec.overrides) + overrides)  # neither study's time includes the one-off extraction
        variants = (("pruned", spec.pruner), ("unpruned", PrunerSpec("none", {})))
        for name, pruner in variants:
            one = dataclasses.replace(spec, study_name=f"bench-{name}", pruner=pruner)
            for k, v in _run(one, overrides, Path(tmp), uri).items():
                out[f"{name}_{k}"] = v
    out["epoch_fraction"] = out["pruned_epochs"] / max(out["unpruned_epochs"], 1.0)
    out["best_delta"] = out["pruned_best"] - out["unpruned_best"]
    return out
