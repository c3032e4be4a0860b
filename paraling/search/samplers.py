"""Samplers and pruners of a study: their specs (from the study file) and the Optuna objects built from them."""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paraling.errors import ConfigError
from paraling.search.space import SearchSpace

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "PrunerSpec",
    "SamplerSpec",
    "check_kwargs",
    "make_pruner",
    "make_sampler",
    "pruner_class",
    "sampler_class",
]

SAMPLERS: dict[str, str] = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
}
PRUNERS: dict[str, str] = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}


@dataclass(frozen=True)
class SamplerSpec:
    """Which Optuna sampler, its seed and extra constructor arguments."""

    name: str = "tpe"
    seed: int | None = 0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerSpec:
    """Which Optuna pruner and its constructor arguments."""

    name: str = "median"
    kwargs: dict[str, Any] = field(default_factory=dict)


def _closest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_kwargs(cls: type, kwargs: Mapping[str, Any], where: str, reserved: tuple[str, ...]) -> None:
    """Refuse study-file arguments the Optuna class does not take, or that are not plain values (ConfigError)."""
    params = inspect.signature(cls).parameters
    allowed = [p for p in params if p not in ("self", *reserved) and params[p].kind != inspect.Parameter.VAR_KEYWORD]
    for k, v in kwargs.items():
        if k not in allowed:
            raise ConfigError(
                f"{where}.{k} is not an argument of optuna's {cls.__name__}{_closest(k, allowed)}; allowed: {allowed}"
            )
        if not (v is None or isinstance(v, bool | int | float | str | list)):
            raise ConfigError(f"{where}.{k} must be a plain value (number, string, bool, list), but got {v!r}")


def sampler_class(name: str) -> type:
    """The Optuna sampler class of a study-file name (``tpe``, ``grid``, ...)."""
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name])


def pruner_class(name: str) -> type:
    """The Optuna pruner class of a study-file name (``median``, ``hyperband``, ...)."""
    import optuna

    return getattr(optuna.pruners, PRUNERS[name])


def make_sampler(spec: SamplerSpec, space: SearchSpace, seed: int | str | None = "spec") -> Any:
    """Build the Optuna sampler (``seed`` overrides ``spec.seed``, e.g. per parallel worker)."""
    import optuna

    s = spec.seed if seed == "spec" else seed
    cls = sampler_class(spec.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.name == "grid":
            # Optuna shuffles the grid with its seed and gives trial k the k-th point: every worker must shuffle
            # alike (the study's seed, never a per-worker one), or two workers run the same point
            return _ask_tell_grid()(space.grid(), seed=spec.seed if spec.seed is not None else 0, **spec.kwargs)
        return cls(seed=s, **spec.kwargs)


def _ask_tell_grid() -> type:
    """``GridSampler`` without its ``study.stop()`` after the last point (valid only inside ``study.optimize``).

    paraling's workers use ask/tell and stop on ``n_trials``, which never exceeds the grid size.
    """
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler


def make_pruner(spec: PrunerSpec) -> Any:
    """Build the Optuna pruner."""
    return pruner_class(spec.name)(**spec.kwargs)
