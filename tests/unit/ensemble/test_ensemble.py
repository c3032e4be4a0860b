"""Tests of paraling.ensemble: combiners, greedy selection, nested evaluation, run alignment."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from paraling.ensemble import COMBINERS, GreedyEnsemble, check_aligned, combine, nested_cv_uar, stack_oof
from paraling.errors import ConfigError, EnsembleError
from paraling.scoring.metrics import uar
from paraling.scoring.oof import OOFScores


def _random_stack(seed: int, n_models: int = 6, n_utts: int = 80, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_utts)
    S = rng.dirichlet(np.ones(n_classes), size=(n_models, n_utts))
    skill = rng.uniform(0.0, 1.5, size=n_models)[:, None]
    S[:, np.arange(n_utts), y] += skill  # models of varying quality
    return S / S.sum(axis=2, keepdims=True), y


def _complementary(n_per_class: int = 5, wrong: float = 0.6):
    """Model A is sure and right on classes 0-1 and sure of a wrong class on 2-3; model B the reverse.

    Alone each has UAR 0.5; their mean is perfect; adding either once more breaks the other's classes.
    """
    y = np.repeat(np.arange(4), n_per_class)
    n = len(y)
    rest = (1 - wrong) / 3

    def model(strong: tuple[int, int]) -> np.ndarray:
        P = np.empty((n, 4))
        for i, c in enumerate(y):
            if c in strong:
                P[i] = 0.05
                P[i, c] = 0.85
            else:
                P[i] = rest
                P[i, (c + 2) % 4] = wrong  # a confident wrong answer from the other pair of classes
        return P

    return np.stack([model((0, 1)), model((2, 3))]), y


# --- combiners -------------------------------------------------------------------------------------------


def test_combine_known_values() -> None:
    S = np.array([[[0.5, 0.5]], [[0.9, 0.1]]])
    np.testing.assert_allclose(combine(S, [1, 1], "mean", normalize=False), [[0.7, 0.3]])
    np.testing.assert_allclose(combine(S, [1, 3], "mean", normalize=False), [[0.8, 0.2]])
    np.testing.assert_allclose(combine(S, [1, 1], "geometric", normalize=False), [[0.45**0.5, 0.05**0.5]])
    np.testing.assert_allclose(
        combine(S, [1, 1], "harmonic", normalize=False), [[2 / (1 / 0.5 + 1 / 0.9), 2 / (1 / 0.5 + 1 / 0.1)]]
    )
    np.testing.assert_allclose(
        combine(S, [1, 3], "harmonic", normalize=False), [[4 / (1 / 0.5 + 3 / 0.9), 4 / (1 / 0.5 + 3 / 0.1)]]
    )
    h = combine(S, [1, 1], "harmonic")
    np.testing.assert_allclose(h.sum(axis=1), 1.0)
    np.testing.assert_allclose(h, combine(S, [1, 1], "harmonic", normalize=False) / 0.80952380952, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harmonic_le_geometric_le_arithmetic(seed: int) -> None:
    S, _ = _random_stack(seed)
    w = np.random.default_rng(seed).integers(0, 4, size=len(S))
    w[0] = 1
    h = combine(S, w, "harmonic", normalize=False)
    g = combine(S, w, "geometric", normalize=False)
    a = combine(S, w, "mean", normalize=False)
    assert (h <= g + 1e-12).all() and (g <= a + 1e-12).all()
    np.testing.assert_allclose(combine(S, w, "weighted"), combine(S, w, "mean"))
    for method in COMBINERS:
        np.testing.assert_allclose(combine(S, w, method).sum(axis=1), 1.0)


def test_combine_weights_are_multiset_counts() -> None:
    S, _ = _random_stack(4, n_models=3)
    for method in COMBINERS:
        np.testing.assert_allclose(combine(S, [2, 0, 1], method), combine(S[[0, 0, 2]], None, method))
        np.testing.assert_allclose(combine(S[:1], None, method), S[0])  # one model: itself (rows sum to 1)


def test_harmonic_zero_probability_is_clipped() -> None:
    S = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    out = combine(S, None, "harmonic")
    assert np.isfinite(out).all()
    assert out[0, 1] < 1e-9  # one member's zero vetoes the class


def test_combine_rejects_bad_input() -> None:
    S, _ = _random_stack(0, n_models=2)
    with pytest.raises(ConfigError, match=r"'median'.*mean, harmonic, geometric, weighted"):
        combine(S, None, "median")
    with pytest.raises(EnsembleError, match="shape"):
        combine(S, [1, 1, 1])
    with pytest.raises(EnsembleError, match="not all 0"):
        combine(S, [0, 0])
    with pytest.raises(EnsembleError, match="non-empty stack"):
        combine(S[0])
    with pytest.raises(ConfigError, match="eps=0"):
        combine(S, eps=0)


# --- greedy selection ------------------------------------------------------------------------------------


def test_greedy_picks_complementary_models_and_truncates_at_best() -> None:
    S, y = _complementary()
    assert uar(y, S[0].argmax(1)) == uar(y, S[1].argmax(1)) == 0.5
    # after A+B, adding either model again (2A+B or A+2B) breaks half the classes: the trajectory drops
    assert GreedyEnsemble(max_iter=2).fit(S, y).trajectory_ == [0.5, 1.0, 0.5]
    ens = GreedyEnsemble(max_iter=6).fit(S, y)
    assert ens.trajectory_[:4] == [0.5, 1.0, 0.5, 1.0]
    assert ens.weights_.tolist() == [1, 1]
    assert ens.members_.tolist() == [0, 1]
    assert ens.selection_ == [0, 1]
    assert ens.score_ == 1.0
    assert uar(y, ens.predict(S)) == 1.0
    np.testing.assert_allclose(ens.single_scores_, [0.5, 0.5])


def test_greedy_complementary_with_distractors() -> None:
    S2, y = _complementary()
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(4), size=(3, len(y)))
    S = np.concatenate([noise[:1], S2[:1], noise[1:], S2[1:]])  # A at 1, B at 4
    ens = GreedyEnsemble(max_iter=10).fit(S, y)
    assert ens.weights_[1] > 0 and ens.weights_[4] > 0
    assert ens.score_ == 1.0
    assert ens.score_ > ens.single_scores_.max()


def test_greedy_duplicate_model_tie_break() -> None:
    S, y = _random_stack(1, n_models=3)
    best = int(np.argmax([uar(y, s.argmax(1)) for s in S]))
    dup = np.concatenate([S, S[best : best + 1]])  # index 3 = copy of the best model
    ens = GreedyEnsemble(max_iter=20).fit(dup, y)
    assert ens.weights_[3] == 0  # ties go to the member already chosen / the lower index
    assert ens.weights_[best] >= 1
    # a stack of identical models: only the first is ever chosen, the trajectory is flat, truncated at step 0
    same = np.repeat(S[:1], 3, axis=0)
    ens = GreedyEnsemble(max_iter=5).fit(same, y)
    assert ens.weights_.tolist() == [1, 0, 0]
    assert len(set(ens.trajectory_)) == 1


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_score_at_least_best_single(combiner: str, seed: int) -> None:
    S, y = _random_stack(seed)
    ens = GreedyEnsemble(max_iter=15, combiner=combiner).fit(S, y)
    singles = [uar(y, s.argmax(1)) for s in S]
    np.testing.assert_allclose(ens.single_scores_, singles)
    assert ens.score_ >= max(singles)
    assert ens.score_ == max(ens.trajectory_)
    assert len(ens.trajectory_) == 16
    first_best = int(np.argmax(ens.trajectory_))
    assert ens.weights_.sum() == 1 + first_best == len(ens.selection_)
    assert uar(y, ens.predict(S)) == pytest.approx(ens.score_)
    proba = ens.predict_proba(S)
    assert proba.shape == (80, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_sorted_initialisation() -> None:
    S, y = _random_stack(3, n_models=5)
    order = np.argsort([-uar(y, s.argmax(1)) for s in S], kind="stable")
    ens = GreedyEnsemble(n_init=3, max_iter=0).fit(S, y)
    assert sorted(ens.selection_) == sorted(order[:3].tolist())
    assert ens.weights_.sum() == 3
    assert ens.trajectory_ == [pytest.approx(uar(y, combine(S, ens.weights_).argmax(1)))]


def test_bagging() -> None:
    S, y = _random_stack(5, n_models=8)
    ens = GreedyEnsemble(max_iter=5, bagging=4, bag_fraction=0.5, seed=3).fit(S, y)
    assert len(ens.trajectory_) == 4
    assert len(ens.bag_trajectories_) == 4
    assert ens.weights_.sum() == len(ens.selection_)
    assert ens.score_ == ens.trajectory_[-1]
    again = GreedyEnsemble(max_iter=5, bagging=4, bag_fraction=0.5, seed=3).fit(S, y)
    np.testing.assert_array_equal(again.weights_, ens.weights_)
    one = GreedyEnsemble(max_iter=5, bagging=1, bag_fraction=1.0).fit(S, y)
    np.testing.assert_array_equal(one.weights_, GreedyEnsemble(max_iter=5).fit(S, y).weights_)


def test_greedy_validation_and_unfitted() -> None:
    S, y = _random_stack(0, n_models=3)
    with pytest.raises(NotFittedError):
        GreedyEnsemble().predict(S)
    bad = [
        ({"n_init": 0}, "n_init=0"),
        ({"n_init": 4}, "n_init=4"),
        ({"max_iter": -1}, "max_iter=-1"),
        ({"combiner": "median"}, "'median'"),
        ({"bagging": -2}, "bagging=-2"),
        ({"bag_fraction": 0.0}, r"bag_fraction=0\.0"),
        ({"metric": "uar"}, "metric='uar'"),
    ]
    for params, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            GreedyEnsemble(**params).fit(S, y)
    with pytest.raises(EnsembleError, match="shape"):
        GreedyEnsemble().fit(S, y[:-1])
    ens = GreedyEnsemble(max_iter=2).fit(S, y)
    with pytest.raises(EnsembleError, match="fitted on 3"):
        ens.predict_proba(S[:2])
    assert clone(ens).get_params()["max_iter"] == 2


# --- nested evaluation -----------------------------------------------------------------------------------


def test_nested_cv_uar_complementary() -> None:
    S, y = _complementary(n_per_class=6)
    fold = np.tile(np.arange(3), len(y) // 3)
    out = nested_cv_uar(S, y, fold, lambda: GreedyEnsemble(max_iter=4))
    assert out["folds"] == [0, 1, 2]
    assert out["ensemble_fold_uar"] == [1.0, 1.0, 1.0]
    assert out["ensemble_uar"] == 1.0
    assert out["single_fold_uar"] == [0.5, 0.5, 0.5]
    assert out["single_uar"] == 0.5
    assert out["single_model"] == [0, 0, 0]
    assert out["ensemble_weights"] == [[1, 1]] * 3


def test_nested_cv_uar_excludes_unscored_and_pools() -> None:
    S, y = _random_stack(2, n_models=5, n_utts=90)
    fold = np.repeat([0, 1, 2], 30)
    base = nested_cv_uar(S, y, fold, lambda: GreedyEnsemble(max_iter=5))
    # append utterances with fold -1 whose labels contradict everything: nothing may change
    S_extra = np.concatenate([S, S[:, :20]], axis=1)
    y_extra = np.concatenate([y, (y[:20] + 1) % 3])
    fold_extra = np.concatenate([fold, np.full(20, -1)])
    assert nested_cv_uar(S_extra, y_extra, fold_extra, lambda: GreedyEnsemble(max_iter=5)) == base
    # pooled single-model UAR = UAR over the concatenated held-out predictions
    pred = np.concatenate([S[m, fold == f].argmax(1) for f, m in zip(base["folds"], base["single_model"], strict=True)])
    assert base["single_uar"] == pytest.approx(uar(np.concatenate([y[fold == f] for f in range(3)]), pred))
    for f, m in zip(base["folds"], base["single_model"], strict=True):
        train = fold != f
        assert m == int(np.argmax([uar(y[train], s[train].argmax(1)) for s in S]))


def test_nested_cv_uar_needs_two_folds() -> None:
    S, y = _random_stack(0, n_models=2, n_utts=10)
    with pytest.raises(EnsembleError, match="two folds"):
        nested_cv_uar(S, y, np.r_[np.zeros(8, int), -np.ones(2, int)])


# --- alignment -------------------------------------------------------------------------------------------


def _oof(seed: int, n: int = 6) -> OOFScores:
    rng = np.random.default_rng(seed)
    return OOFScores(
        utt_ids=np.array([f"u{i}" for i in range(n)]),
        classes=np.array(["a", "b"]),
        y=np.array([0, 1] * (n // 2)),
        fold=np.arange(n) % 3,
        split=np.array(["cv"] * n),
        speaker=np.array(["s"] * n),
        proba=rng.dirichlet([1, 1], size=n).astype(np.float32),
    )


def test_check_aligned_names_misaligned_runs() -> None:
    a, b, c, d = _oof(0), _oof(1), _oof(2), _oof(3)
    check_aligned([a, b], ["a", "b"])
    c.y = c.y[::-1].copy()
    d.utt_ids = np.array([f"v{i}" for i in range(6)])
    d.fold = np.zeros(6, dtype=int)
    with pytest.raises(EnsembleError) as err:
        check_aligned([a, b, c, d], ["run-a", "run-b", "run-c", "run-d"])
    msg = str(err.value)
    assert "'run-c' (y)" in msg and "'run-d' (utt_ids, fold)" in msg and "run-b'" not in msg
    e = _oof(4)
    e.classes = np.array(["b", "a"])
    with pytest.raises(EnsembleError, match="classes"):
        check_aligned([a, e], ["a", "e"])
    with pytest.raises(EnsembleError, match="no runs"):
        check_aligned([], [])
    with pytest.raises(EnsembleError, match="names"):
        check_aligned([a, b], ["a"])


def test_stack_oof_sorts_then_stacks() -> None:
    a, b = _oof(0), _oof(1)
    perm = np.array([3, 1, 5, 0, 2, 4])
    shuffled = OOFScores(
        b.utt_ids[perm], b.classes, b.y[perm], b.fold[perm], b.split[perm], b.speaker[perm], b.proba[perm]
    )
    S, y, fold = stack_oof([a, shuffled], ["a", "b"])
    assert S.shape == (2, 6, 2)
    np.testing.assert_allclose(S[1], b.proba)
    np.testing.assert_array_equal(y, a.y)
    np.testing.assert_array_equal(fold, a.fold)


def test_ensemble_does_not_import_torch() -> None:
    code = "import sys, paraling.ensemble; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
