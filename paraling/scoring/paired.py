"""Paired comparison of two systems scored on the same folds (and seeds).

Two rows of a table are compared on the *same* units: each unit is one (seed, fold) pair, and its value is the
fold's UAR. The differences ``a - b`` are paired, so the fold-to-fold difficulty (which speakers a fold holds)
cancels out. :func:`paired_test` reports their mean with a 95% confidence interval (Student's t over the paired
differences) and a p-value:

- ``wilcoxon`` (default): the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`, two-sided; exact for small
  samples). Zero differences are dropped (Wilcoxon's rule); when all differences are zero, p = 1.
- ``permutation``: a paired permutation (sign-flip) test of the mean difference (:func:`scipy.stats.permutation_test`
  with ``permutation_type="samples"``; every one of the ``2**n`` sign patterns for ``n <= 16``, else 20,000 random
  ones).

Power is limited by the number of units: with 5 folds and one seed, the smallest two-sided Wilcoxon p-value is
0.0625, so no single-seed 5-fold comparison can reach p < 0.05; three seeds give 15 units (smallest p 6e-5).

Example:
    >>> r = paired_test([0.61, 0.64, 0.58, 0.66, 0.60], [0.55, 0.60, 0.57, 0.59, 0.58])
    >>> round(r.mean_diff, 3), r.n
    (0.04, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from paraling.errors import ConfigError

__all__ = ["TESTS", "PairedResult", "paired_test"]

TESTS: tuple[str, ...] = ("wilcoxon", "permutation")
"""The paired tests :func:`paired_test` knows."""

_EXACT_MAX = 16  # sign patterns enumerated exactly up to this many units


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison (differences are ``a - b``, UAR as fractions).

    Attributes:
        n: Number of paired units.
        mean_diff: Mean paired difference.
        ci_low: Lower end of its 95% confidence interval (t interval; ``nan`` for ``n < 2``).
        ci_high: Upper end.
        p_value: Two-sided p-value of the test.
        test: ``wilcoxon`` or ``permutation``.
        wins: Units where ``a > b``.
        losses: Units where ``a < b``.
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    wins: int
    losses: int

    @property
    def verdict(self) -> str:
        """``a better`` / ``b better`` when p < 0.05 (in the direction of the mean), else ``no difference shown``."""
        if not self.p_value < 0.05:
            return "no difference shown"
        return "a better" if self.mean_diff > 0 else "b better"


def _t_interval(d: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    if len(d) < 2:
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    m = float(d.mean())
    return m - half, m + half


def _p_value(d: np.ndarray, test: str) -> float:
    from scipy import stats

    if not np.any(d != 0):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    res = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=np.inf if len(d) <= _EXACT_MAX else 20_000,
        random_state=0,
    )
    return float(res.pvalue)


def paired_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, test: str = "wilcoxon"
) -> PairedResult:
    """Compare ``a`` and ``b``, aligned unit by unit (same seeds, same folds, same order).

    Args:
        a: Per-unit scores of the first system.
        b: Per-unit scores of the second system.
        test: One of :data:`TESTS`.

    Raises:
        ConfigError: Unknown ``test``, different lengths, no units, or non-finite scores.
    """
    if test not in TESTS:
        raise ConfigError(f"unknown paired test {test!r}; use one of {', '.join(TESTS)}")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or not len(x):
        raise ConfigError(f"a paired test needs two equally long, non-empty score lists (got {x.shape} and {y.shape})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("a paired test needs finite scores; a fold without a UAR cannot be paired")
    d = x - y
    low, high = _t_interval(d)
    return PairedResult(
        n=len(d),
        mean_diff=float(d.mean()),
        ci_low=low,
        ci_high=high,
        p_value=_p_value(d, test),
        test=test,
        wins=int((d > 0).sum()),
        losses=int((d < 0).sum()),
    )
