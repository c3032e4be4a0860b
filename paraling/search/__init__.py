"""Optuna studies driven from Hydra-composed configurations: pruning, parallel workers, resume, MLflow parent runs.

The public surface::

    from paraling.search import load_study_spec, run_sweep, SweepOptions

    spec = load_study_spec("sweeps/demo.yaml")          # validated; ConfigError names a bad field
    summary = run_sweep(spec, SweepOptions(workers=2, overrides=["corpus=csv", "corpus.path=data/x.csv"]))
    print(summary.format())

Modules: :mod:`~paraling.search.space` (parameters, conditions), :mod:`~paraling.search.spec` (study files,
samplers, pruners), :mod:`~paraling.search.probe` (study vs. config schema), :mod:`~paraling.search.storage`
(storages, locks, heartbeats, stale trials), :mod:`~paraling.search.trial` (one trial),
:mod:`~paraling.search.mlflow_parent` (parent/child runs), :mod:`~paraling.search.worker` (trial loop, worker
processes) and :mod:`~paraling.search.runner` (``paraling sweep``, summary). The Hydra sweeper
``hydra/sweeper=paraling_optuna`` (:mod:`~paraling.search.hydra_sweeper`) reuses them.
"""

from paraling.search.runner import SweepOptions, SweepSummary, run_sweep
from paraling.search.space import ParamSpec, SearchSpace
from paraling.search.spec import StudySpec, load_study_spec, parse_study_spec
from paraling.search.trial import TrialReporter

__all__ = [
    "ParamSpec",
    "SearchSpace",
    "StudySpec",
    "SweepOptions",
    "SweepSummary",
    "TrialReporter",
    "load_study_spec",
    "parse_study_spec",
    "run_sweep",
]
