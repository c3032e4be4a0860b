"""Learning curves of tracked runs, read back from MLflow: has a row converged at its epoch budget?

Every CNN run logs, per fold and epoch, the validation UAR on the fold's held-out training speakers (the metric
:func:`~paraling.pipeline.cv.fold_metric` names ``val_uar/fold<k>``; runs of earlier releases, ``fold<k>_val_uar``,
are read too). :func:`read_curves` reads those histories for every run of a row (one run per seed) and gives per
row:

- ``val_uar``: the mean over seeds and folds of the validation UAR at each epoch (folds that stopped early drop out);
- ``trained`` and ``best``: per (seed, fold), the epochs trained and the epoch the model was selected at (the first
  maximum of its validation UAR, the rule of ``trainer.select=best``);
- ``stopped_early``: how many (seed, fold) units early stopping ended before the budget: their validation UAR had
  not improved for ``trainer.patience`` epochs, so they converged by the stopping rule;
- ``late_gain``: over the units that trained the whole budget, how much the best of their mean validation UAR in
  the last quarter of the epochs exceeds its best before it. A row whose ``late_gain`` is at least
  :data:`CONVERGED_GAIN` was still improving when its budget ended. It is taken over those units only: the mean
  over every unit would end on the units that trained longest, and its last quarter would compare other folds
  (a higher or lower level, not a later gain).

Rows without such metrics (the utterance-level baselines) have no curve.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from paraling.pipeline.cv import fold_metric_keys

if TYPE_CHECKING:
    from paraling.tracking.runs import TrackedRun

__all__ = ["CONVERGED_GAIN", "Curve", "read_curves", "run_curves"]

log = logging.getLogger(__name__)

CONVERGED_GAIN = 0.01
"""A row gaining this much validation UAR (or more) in its last quarter of epochs has not converged."""

_MAX_FOLDS = 100


@dataclass
class Curve:
    """The learning curve of one row (UAR as fractions).

    Attributes:
        name: Row name.
        val_uar: ``(epochs,)`` mean validation UAR per epoch over the row's seeds and folds.
        budget: The ``trainer.epochs`` the runs were given (0 when unknown).
        trained: Epochs trained per (seed, fold).
        best: Selected (best) epoch per (seed, fold), 0-based.
        full: ``(budget,)`` mean validation UAR per epoch over the units that trained the whole budget (empty when
            early stopping ended every unit).
        peak: Best validation UAR per (seed, fold).
    """

    name: str
    val_uar: np.ndarray
    budget: int = 0
    trained: list[int] = field(default_factory=list)
    best: list[int] = field(default_factory=list)
    full: np.ndarray = field(default_factory=lambda: np.zeros(0))
    peak: list[float] = field(default_factory=list)

    @property
    def stopped_early(self) -> int:
        """Units (seed, fold) that early stopping ended before the budget."""
        budget = self.budget or max(self.trained, default=0)
        return sum(t < budget for t in self.trained)

    @property
    def late_gain(self) -> float:
        """Over the units that trained the whole budget: best mean val UAR of the last quarter minus the best before.

        NaN when no unit trained the whole budget, or the budget is under 4 epochs.
        """
        n = len(self.full)
        if n < 4:
            return float("nan")
        cut = n - max(1, n // 4)
        return float(self.full[cut:].max() - self.full[:cut].max())

    @property
    def converged(self) -> bool:
        """Whether every unit converged: stopped early, or gained less than :data:`CONVERGED_GAIN` at the end."""
        return not len(self.full) or bool(self.late_gain < CONVERGED_GAIN)


def _history(client: Any, run_id: str, key: str) -> np.ndarray:
    """One metric's values by step (a step logged twice, after a resume, keeps its last value)."""
    by_step: dict[int, float] = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        by_step[int(m.step)] = float(m.value)
    return np.array([by_step[s] for s in sorted(by_step)], dtype=np.float64)


def run_curves(client: Any, run: TrackedRun) -> list[np.ndarray]:
    """The per-fold validation-UAR histories of one run (empty when it logged none)."""
    out = []
    for k in range(_MAX_FOLDS):
        key = next((key for key in fold_metric_keys(k, "val_uar") if key in run.metrics), None)
        if key is None:
            break
        h = _history(client, run.run_id, key)
        if len(h):
            out.append(h)
    return out


def read_curves(client: Any, rows: Mapping[str, Mapping[int, TrackedRun]]) -> list[Curve]:
    """The learning curve of each row that has one (``rows``: name -> seed -> run), in the order given."""
    curves = []
    for name, runs in rows.items():
        folds: list[np.ndarray] = []
        budget = 0
        for run in runs.values():
            hist = run_curves(client, run)
            if hist and not budget:
                budget = _budget(client, run.run_id)
            folds.extend(hist)
        if not folds:
            continue
        n = max(len(h) for h in folds)
        mean = np.array([np.mean([h[e] for h in folds if len(h) > e]) for e in range(n)])
        whole = [h for h in folds if len(h) >= (budget or n)]
        full = np.mean([h[: budget or n] for h in whole], axis=0) if whole else np.zeros(0)
        trained, best = [len(h) for h in folds], [int(np.argmax(h)) for h in folds]
        curves.append(Curve(name, mean, budget, trained, best, full, [float(h.max()) for h in folds]))
    return curves


def _budget(client: Any, run_id: str) -> int:
    try:
        return int(client.get_run(run_id).data.params.get("trainer.epochs", 0))
    except (ValueError, TypeError):
        return 0
