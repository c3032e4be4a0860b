"""The weighted vote's diagnostics: what they measure on windows whose reliability is known."""

from __future__ import annotations

import numpy as np
import pytest

from paraling.scoring.vote_diagnostics import vote_diagnostics


def _windows(rng: np.random.Generator, n_utts: int, per_utt: int, n_classes: int = 3, p_right: float = 0.6):
    """Windows of utterances: a window is right with probability p_right, and right windows are more confident."""
    y_utt = rng.integers(0, n_classes, n_utts)
    utt = np.repeat(np.arange(n_utts), per_utt)
    y = y_utt[utt]
    right = rng.random(len(y)) < p_right
    pred = np.where(right, y, (y + rng.integers(1, n_classes, len(y))) % n_classes)
    conf = np.where(right, rng.uniform(0.6, 0.95, len(y)), rng.uniform(0.35, 0.5, len(y)))
    p = np.full((len(y), n_classes), 0.0)
    p[np.arange(len(y)), pred] = conf
    rest = (1 - conf) / (n_classes - 1)
    p += np.where(p == 0, rest[:, None], 0.0)
    energy = rng.normal(0, 1, len(y))
    return p, y, utt, energy


def test_diagnostics_measure_the_known_reliability() -> None:
    rng = np.random.default_rng(0)
    p_val, y_val, _, e_val = _windows(rng, 40, 20)
    p_test, y_test, utt, e_test = _windows(rng, 30, 20)
    d = vote_diagnostics(
        p_val=p_val, y_val=y_val, e_val=e_val, p_test=p_test, y_test=y_test, utt_test=utt, e_test=e_test
    )
    assert d["vote_window_acc_val"] == pytest.approx(0.6, abs=0.05)
    assert d["vote_window_acc_test"] == pytest.approx(float(np.mean(p_test.argmax(1) == y_test)))
    assert d["vote_weight_auc"] > 0.9  # confidence says which windows are right, and the Ridge models learn it
    assert d["vote_weight_zero"] < 0.2  # confident windows keep a positive weight
    assert abs(d["vote_energy_coef"]) < 0.05  # energy carries nothing here
    for k in ("vote_uar_weighted_oracle", "vote_uar_weighted_noenergy", "vote_uar_weighted_soft_noenergy"):
        assert 0.9 <= d[k] <= 1.0  # 20 windows at 60% right: every utterance is won
    extra = vote_diagnostics(
        p_val=p_val, y_val=y_val, e_val=e_val, p_test=p_test, y_test=y_test, utt_test=utt, e_test=e_test, n_utts=35
    )
    assert extra == pytest.approx(d)  # test utterances without windows are not scored (nor labelled class 0)


def test_uninformative_weights_score_chance_auc_and_a_shift_shows_in_the_gap() -> None:
    rng = np.random.default_rng(1)
    p_val, y_val, _, e_val = _windows(rng, 40, 20, p_right=0.9)  # epoch-selected, optimistic
    p_test, y_test, utt, e_test = _windows(rng, 30, 20, p_right=0.4)
    flat = np.full_like(p_test, 1 / 3)
    flat[np.arange(len(p_test)), p_test.argmax(1)] += 1e-3  # every window equally confident: no ranking signal
    flat /= flat.sum(1, keepdims=True)
    d = vote_diagnostics(p_val=p_val, y_val=y_val, e_val=e_val, p_test=flat, y_test=y_test, utt_test=utt, e_test=e_test)
    assert d["vote_window_acc_val"] - d["vote_window_acc_test"] > 0.4
    assert d["vote_weight_auc"] == pytest.approx(0.5, abs=0.06)


def test_no_validation_windows_gives_only_what_can_be_computed() -> None:
    rng = np.random.default_rng(2)
    p_test, y_test, utt, e_test = _windows(rng, 5, 4)
    empty = np.zeros((0, 3))
    z = np.zeros(0)
    d = vote_diagnostics(
        p_val=empty, y_val=z.astype(np.int64), e_val=z, p_test=p_test, y_test=y_test, utt_test=utt, e_test=e_test
    )
    assert d == {}
