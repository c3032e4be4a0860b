"""Paired tests: the p-values and intervals of known cases, symmetry, and refused input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from paraling.errors import ConfigError
from paraling.scoring.paired import paired_test

A = [0.61, 0.64, 0.58, 0.66, 0.60]
B = [0.55, 0.60, 0.57, 0.59, 0.58]


@pytest.mark.parametrize("test", ["wilcoxon", "permutation"])
def test_five_wins_give_the_smallest_five_unit_p(test: str) -> None:
    r = paired_test(A, B, test)
    # every difference positive: 2 of the 2**5 sign patterns are as extreme (two-sided), for both tests
    assert r.n == 5 and r.wins == 5 and r.losses == 0 and r.p_value == pytest.approx(2 / 32)
    d = np.subtract(A, B)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert r.mean_diff == pytest.approx(d.mean()) and r.ci_low == pytest.approx(d.mean() - half)
    assert r.ci_high == pytest.approx(d.mean() + half) and r.verdict == "no difference shown"


def test_swapping_the_sides_flips_the_sign_only() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(15)
    b = a - 0.05 + rng.normal(0, 0.02, 15)
    ab, ba = paired_test(a, b), paired_test(b, a)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff) and ab.p_value == pytest.approx(ba.p_value)
    assert ab.p_value < 0.001 and ab.verdict == "a better" and ba.verdict == "b better"
    assert paired_test(a, b, "permutation").p_value < 0.001


def test_equal_systems_and_noise_show_no_difference() -> None:
    same = paired_test(A, A)
    assert same.p_value == 1.0 and same.mean_diff == 0.0 and same.wins == same.losses == 0
    rng = np.random.default_rng(1)
    a, b = rng.random(12), rng.random(12)
    r = paired_test(a, b, "permutation")
    assert r.ci_low < r.mean_diff < r.ci_high and 0 < r.p_value <= 1


@pytest.mark.parametrize(
    ("a", "b", "test", "needle"),
    [
        (A, B[:4], "wilcoxon", "equally long"),
        ([], [], "wilcoxon", "non-empty"),
        (A, [float("nan")] * 5, "wilcoxon", "finite"),
        (A, B, "ttest", "unknown paired test"),
    ],
)
def test_bad_input_is_refused(a: list[float], b: list[float], test: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        paired_test(a, b, test)
