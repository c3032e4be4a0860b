"""Study files (``sweeps/NAME.yaml``): parsing and validation (the samplers and pruners: :mod:`.samplers`).

Everything in a study file is checked before any trial runs; a bad file raises :class:`~paraling.errors.ConfigError`
naming the field (``sampler.n_startup_trials``, ``space.model.n_blocks.low``...) and the value. The keys:

===================  ===================================================================================
``study_name``       Optuna study name (default: the file's stem).
``overrides``        Hydra overrides applied to every trial (``experiment=paper``, ``trainer.epochs=2``).
``space``            The search space (see :mod:`paraling.search.space`).
``sampler``          ``{name: tpe|random|cmaes|gp|grid|qmc, seed: 0, ...}``; extra keys go to the Optuna class.
``pruner``           ``{name: median|percentile|successive_halving|hyperband|threshold|none, ...}``.
``direction``        ``maximize`` (default) or ``minimize``.
``metric``           Key of ``RunResult.metrics`` to optimise (default ``uar``: mean speaker-CV UAR).
``prune_on``         Per-epoch metric reported to the pruner (default ``val_uar``).
``n_trials``         Trials the study should hold (COMPLETE + PRUNED + FAIL, running/queued included).
``timeout``          Seconds after which this command starts no new trial.
``failure_budget``   Stop once this many trials have failed (default ``max(3, n_trials // 4)``).
``storage``          ``{url: null, heartbeat_interval: 30, grace_period: 120, outage_timeout: 120}``.
===================  ===================================================================================
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from paraling.config_compat import rewrite_overrides
from paraling.errors import ConfigError
from paraling.search.samplers import (
    PRUNERS,
    SAMPLERS,
    PrunerSpec,
    SamplerSpec,
    check_kwargs,
    make_pruner,
    make_sampler,
    pruner_class,
    sampler_class,
)
from paraling.search.space import SearchSpace
from paraling.search.study_ensemble import StudyEnsemble, parse_ensemble

__all__ = [
    "KNOWN_METRICS",
    "StorageSpec",
    "StudySpec",
    "find_study_file",
    "load_study_spec",
    "parse_study_spec",
]

_TOP = (
    "ensemble",
    "study_name",
    "description",
    "overrides",
    "space",
    "sampler",
    "pruner",
    "direction",
    "metric",
    "prune_on",
    "n_trials",
    "timeout",
    "failure_budget",
    "storage",
)
KNOWN_METRICS = (
    *("uar", "accuracy", "wa", "macro_f1", "uar_ci_low", "uar_ci_high", "uar_fold_mean", "uar_fold_std"),
    *("uar_speaker_mean", "uar_speaker_std", "uar_binary", "uar_majority", "uar_mean", "uar_logmean"),
    *("uar_weighted", "seconds"),
)
_PER_EPOCH = ("val_uar", "val_loss", "train_loss")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


@dataclass(frozen=True)
class StorageSpec:
    """Storage URL (``None`` = journal file next to the study file) and heartbeat settings in seconds."""

    url: str | None = None
    heartbeat_interval: int = 30
    grace_period: int = 120
    outage_timeout: int = 120  # seconds a database storage may stop answering mid-sweep (paraling.search.outage)


@dataclass(frozen=True)
class StudySpec:
    """A validated study file."""

    study_name: str
    space: SearchSpace
    overrides: tuple[str, ...] = ()
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    direction: str = "maximize"
    metric: str = "uar"
    prune_on: str = "val_uar"
    n_trials: int | None = None
    timeout: float | None = None
    failure_budget: int | None = None
    storage: StorageSpec = field(default_factory=StorageSpec)
    description: str = ""
    path: Path | None = None
    ensemble: StudyEnsemble | None = None

    def with_options(
        self,
        n_trials: int | None = None,
        study_name: str | None = None,
        storage: str | None = None,
        timeout: float | None = None,
    ) -> StudySpec:
        """Apply command-line options (``--n-trials``, ``--study-name``, ``--storage``), re-validating them."""
        spec = self
        if study_name is not None:
            spec = replace(spec, study_name=_study_name(study_name, "--study-name"))
        if storage is not None:
            spec = replace(spec, storage=replace(spec.storage, url=storage))
        if timeout is not None:
            spec = replace(spec, timeout=_positive(timeout, "--timeout", integer=False))
        if n_trials is not None:
            n = int(_positive(n_trials, "--n-trials", integer=True))
            _check_grid_size(spec.space, spec.sampler, n, "--n-trials")
            spec = replace(spec, n_trials=n)
        return spec

    @property
    def max_failures(self) -> int:
        """The failure budget: ``failure_budget``, else ``max(3, n_trials // 4)`` (10 for timeout-only studies)."""
        if self.failure_budget is not None:
            return self.failure_budget
        return max(3, self.n_trials // 4) if self.n_trials else 10

    def sampler_description(self) -> str:
        """``tpe(seed=0, n_startup_trials=5)``."""
        args = {"seed": self.sampler.seed, **self.sampler.kwargs}
        return f"{self.sampler.name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"

    def pruner_description(self) -> str:
        """``median(n_startup_trials=2)``."""
        return f"{self.pruner.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.pruner.kwargs.items()) + ")"


def _positive(v: Any, where: str, integer: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not float(v).is_integer()):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind} > 0, but got {v!r}")
    if not v > 0 or not math.isfinite(float(v)):
        raise ConfigError(f"{where} must be > 0, but got {v!r}")
    return float(v)


def _study_name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _STUDY_NAME.match(v):
        raise ConfigError(f"{where} must be a name of letters, digits, '_', '-', '.', but got {v!r}")
    return v


def _suggest(key: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_grid_size(space: SearchSpace, sampler: SamplerSpec, n_trials: int | None, where: str) -> int | None:
    if sampler.name != "grid":
        return n_trials
    size = math.prod(len(v) for v in space.grid().values())
    if n_trials is not None and n_trials > size:
        why = "each grid point runs once (two workers never run the same point): set n_trials <= it or leave it out"
        raise ConfigError(f"{where}: n_trials={n_trials} exceeds the {size} points of the grid; {why}")
    return size if n_trials is None else n_trials


def _parse_sampler(raw: Any, space: SearchSpace) -> SamplerSpec:
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"sampler must be a mapping such as {{name: tpe, seed: 0}}, but got {raw!r}")
    raw = dict(raw)
    name = raw.pop("name", "tpe")
    if name not in SAMPLERS:
        hint = _suggest(str(name), list(SAMPLERS))
        raise ConfigError(f"sampler.name must be one of {list(SAMPLERS)}, but got name={name!r}{hint}")
    seed = raw.pop("seed", 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"sampler.seed must be an integer or null, but got seed={seed!r}")
    cls = sampler_class(name)
    check_kwargs(cls, raw, "sampler", ("seed", "search_space"))
    if name == "grid" and space.conditional:
        bad = next(p.name for p in space.params if p.conditions)
        raise ConfigError(
            f"sampler.name=grid does not support conditional parameters (space.{bad} has a condition): grid points "
            "differing only in inactive parameters would run the same configuration; use tpe/random or drop it"
        )
    spec = SamplerSpec(name, seed, raw)
    try:
        make_sampler(spec, space)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sampler: optuna's {cls.__name__} rejects {raw}: {exc}") from exc
    return spec


def _parse_pruner(raw: Any) -> PrunerSpec:
    if raw is None:
        raw = {"name": "median"}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"pruner must be a mapping such as {{name: median, n_startup_trials: 5}}, but got {raw!r}")
    raw = dict(raw)
    name = raw.pop("name", "median")
    if name in ("nop", None):
        name = "none"
    if name not in PRUNERS:
        raise ConfigError(
            f"pruner.name must be one of {list(PRUNERS)}, but got name={name!r}{_suggest(str(name), list(PRUNERS))}"
        )
    cls = pruner_class(name)
    check_kwargs(cls, raw, "pruner", ())
    spec = PrunerSpec(name, raw)
    try:
        make_pruner(spec)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pruner: optuna's {cls.__name__} rejects {raw}: {exc}") from exc
    return spec


def _parse_storage(raw: Any) -> StorageSpec:
    if raw is None:
        return StorageSpec()
    if isinstance(raw, str):
        return StorageSpec(url=raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"storage must be a URL or {{url: ..., heartbeat_interval: 30, grace_period: 120}}, got {raw!r}"
        )
    allowed = ("url", "heartbeat_interval", "grace_period", "outage_timeout")
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"storage.{k} is not a storage setting{_suggest(k, allowed)}; allowed: {list(allowed)}")
    url = raw.get("url")
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"storage.url must be a string, but got url={url!r}")
    hb = int(_positive(raw.get("heartbeat_interval", 30), "storage.heartbeat_interval", integer=True))
    gp = int(_positive(raw.get("grace_period", max(120, 4 * hb)), "storage.grace_period", integer=True))
    if gp <= hb:
        raise ConfigError(f"storage.grace_period must exceed storage.heartbeat_interval, but got {gp} <= {hb}")
    outage = int(_positive(raw.get("outage_timeout", 120), "storage.outage_timeout", integer=True))
    return StorageSpec(url, hb, gp, outage)


def parse_study_spec(
    data: Any, source: str = "<study>", default_name: str = "study", path: Path | None = None
) -> StudySpec:
    """Validate the parsed YAML of a study file.

    Args:
        data: The mapping loaded from YAML.
        source: Shown in error messages (the file path).
        default_name: Study name when the file has no ``study_name``.
        path: The file (default storage goes next to it).

    Raises:
        ConfigError: ``{source}: {field}: {problem}`` naming the offending field and value.
    """
    try:
        return _parse(data, default_name, path)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _parse(data: Any, default_name: str, path: Path | None) -> StudySpec:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a study file must be a YAML mapping with at least `space`, but got {type(data).__name__}")
    for k in data:
        if k not in _TOP:
            raise ConfigError(f"{k} is not a study setting{_suggest(str(k), _TOP)}; allowed: {list(_TOP)}")
    if "space" not in data:
        raise ConfigError("space is required: the parameters to search, e.g. space: {model.n_blocks: [2, 3]}")
    space = SearchSpace.from_mapping(data["space"])
    name = _study_name(data.get("study_name", default_name), "study_name")
    overrides = data.get("overrides", []) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"overrides must be a list of Hydra override strings, but got overrides={overrides!r}")
    for i, o in enumerate(overrides):
        if "=" not in o and not o.startswith("~"):
            raise ConfigError(f"overrides[{i}] must look like key=value, but got {o!r}")
    overrides = rewrite_overrides(overrides)  # old selector names (model.name=...) select the group's option
    direction = data.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be 'maximize' or 'minimize', but got direction={direction!r}")
    metric = data.get("metric", "uar")
    if not isinstance(metric, str) or not (metric in KNOWN_METRICS or re.match(r"^(uar_\w+|fold\d+_\w+)$", metric)):
        raise ConfigError(f"metric must name a result metric, one of {list(KNOWN_METRICS)}, but got metric={metric!r}")
    prune_on = data.get("prune_on", "val_uar")
    if prune_on not in _PER_EPOCH:
        raise ConfigError(f"prune_on must be one of {list(_PER_EPOCH)}, but got prune_on={prune_on!r}")
    pruner = _parse_pruner(data.get("pruner"))
    wants_max = prune_on == "val_uar"
    if pruner.name != "none" and wants_max != (direction == "maximize"):
        raise ConfigError(
            f"prune_on={prune_on} is {'maximised' if wants_max else 'minimised'} but direction={direction}; "
            "the pruner compares per-epoch values in the study's direction: change prune_on or use pruner: none"
        )
    sampler = _parse_sampler(data.get("sampler"), space)
    n_trials = data.get("n_trials")
    if n_trials is not None:
        n_trials = int(_positive(n_trials, "n_trials", integer=True))
    timeout = data.get("timeout")
    if timeout is not None:
        timeout = _positive(timeout, "timeout", integer=False)
    n_trials = _check_grid_size(space, sampler, n_trials, "n_trials")
    if n_trials is None and timeout is None:
        raise ConfigError("set n_trials and/or timeout (seconds), otherwise the study never ends")
    fb = data.get("failure_budget")
    budget = None if fb is None else int(_positive(fb, "failure_budget", integer=True))
    desc = data.get("description", "")
    return StudySpec(
        study_name=name,
        space=space,
        overrides=tuple(overrides),
        sampler=sampler,
        pruner=pruner,
        direction=direction,
        metric=metric,
        prune_on=prune_on,
        n_trials=n_trials,
        timeout=timeout,
        failure_budget=budget,
        storage=_parse_storage(data.get("storage")),
        description=str(desc or ""),
        path=path,
        ensemble=parse_ensemble(data.get("ensemble")),
    )


def find_study_file(name: str | Path, search: tuple[Path, ...] = ()) -> Path:
    """Resolve ``sweeps/demo.yaml``, ``demo.yaml`` or ``demo`` to a study file.

    Looks at the path itself, then ``<dir>/NAME(.yaml)`` for each ``dir`` in ``search`` (default: ``./sweeps`` and the
    package's ``sweeps/``).

    Raises:
        ConfigError: When no file matches (listing the studies that exist).
    """
    from paraling.config import SWEEPS_DIR

    p = Path(name)
    if p.is_file():
        return p
    dirs = search or (Path("sweeps"), SWEEPS_DIR)
    for d in dirs:
        for cand in (d / p, d / f"{p}.yaml", d / p.name, d / f"{p.name}.yaml"):
            if cand.is_file():
                return cand
    known = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.yaml")})
    raise ConfigError(
        f"study file {str(name)!r} not found; known studies: {known or 'none'} (in {list(map(str, dirs))})"
    )


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file (see the module docstring for its keys).

    Raises:
        ConfigError: Unreadable YAML or an invalid field (named in the message).
    """
    p = find_study_file(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        why = f"the study file is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        raise ConfigError(f"{p}: {why}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read the study file: {' '.join(str(exc).split())}") from None
    return parse_study_spec(data, str(p), p.stem, p.resolve())
