"""Tests of paraling.scoring.aggregation: shapes, known values, invariances, the weighted vote, validation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from paraling.errors import ConfigError
from paraling.scoring.aggregation import METHODS, MajorityVote, MeanVote, WeightedVote, make_aggregator


def _random_windows(seed: int, n_windows: int = 200, n_classes: int = 4, n_utts: int = 20):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(n_classes), size=n_windows)
    groups = np.concatenate([np.arange(n_utts), rng.integers(0, n_utts, size=n_windows - n_utts)])
    y_utt = rng.integers(0, n_classes, size=n_utts)
    energy = rng.normal(size=n_windows)
    return X, groups, y_utt[groups], energy


def _fitted(method: str, X, y, energy):
    params = {"use_energy": True} if method.startswith("weighted") else {}
    return make_aggregator(method, **params).fit(X, y, energy=energy)


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_rows_sum_to_one(method: str) -> None:
    X, groups, y, energy = _random_windows(0)
    agg = _fitted(method, X, y, energy)
    proba = agg.predict_proba(X, groups, energy)
    assert proba.shape == (20, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba >= 0).all()
    pred = agg.predict(X, groups, energy)
    assert pred.shape == (20,)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    # n_groups adds empty utterances, which get the uniform distribution
    padded = agg.predict_proba(X, groups, energy, n_groups=23)
    assert padded.shape == (23, 4)
    np.testing.assert_allclose(padded[:20], proba)
    np.testing.assert_allclose(padded[20:], 0.25)


@pytest.mark.parametrize("method", METHODS)
def test_invariant_to_window_order(method: str) -> None:
    X, groups, y, energy = _random_windows(1)
    agg = _fitted(method, X, y, energy)
    perm = np.random.default_rng(5).permutation(len(X))
    np.testing.assert_allclose(
        agg.predict_proba(X[perm], groups[perm], energy[perm]), agg.predict_proba(X, groups, energy)
    )


@pytest.mark.parametrize("method", ["majority", "mean", "logmean"])
def test_unsupervised_methods_equivariant_to_class_permutation(method: str) -> None:
    X, groups, _, _ = _random_windows(2)
    perm = np.array([2, 0, 3, 1])
    a = make_aggregator(method).fit(X).predict_proba(X, groups)
    b = make_aggregator(method).fit(X[:, perm]).predict_proba(X[:, perm], groups)
    np.testing.assert_allclose(b, a[:, perm])
    # duplicating every window changes nothing
    c = make_aggregator(method).fit(X).predict_proba(np.vstack([X, X]), np.concatenate([groups, groups]))
    np.testing.assert_allclose(c, a)


def test_known_values() -> None:
    X = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    groups = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(MajorityVote().fit(X).predict_proba(X, groups), [[1 / 3, 2 / 3], [0, 1]])
    np.testing.assert_allclose(MeanVote().fit(X).predict_proba(X, groups), [[1.6 / 3, 1.4 / 3], [0.2, 0.8]])
    geo = np.array([(0.9 * 0.4 * 0.3) ** (1 / 3), (0.1 * 0.6 * 0.7) ** (1 / 3)])
    np.testing.assert_allclose(MeanVote(log=True).fit(X).predict_proba(X, groups)[0], geo / geo.sum())
    # majority and mean disagree here: one confident window outweighs two weak ones
    assert MajorityVote().fit(X).predict(X, groups)[0] == 1
    assert MeanVote().fit(X).predict(X, groups)[0] == 0


def _confidence_world(rng: np.random.Generator, n: int, n_classes: int = 3):
    """Windows whose argmax is right when confident (max ~0.9) and wrong when unsure (max ~0.4)."""
    pred = rng.integers(0, n_classes, size=n)
    confident = rng.random(n) < 0.5
    X = np.full((n, n_classes), 0.0)
    top = np.where(confident, rng.uniform(0.8, 0.95, n), rng.uniform(0.36, 0.45, n))
    X[np.arange(n), pred] = top
    rest = (1 - top) / (n_classes - 1)
    X += np.where(X == 0, rest[:, None], 0.0)
    wrong = (pred + rng.integers(1, n_classes, size=n)) % n_classes
    y = np.where(confident, pred, wrong)
    return X, y


def test_weighted_vote_beats_majority_when_unsure_windows_are_wrong() -> None:
    rng = np.random.default_rng(0)
    X_train, y_train = _confidence_world(rng, 600)
    wv = WeightedVote(alpha=1.0, use_energy=False).fit(X_train, y_train)
    assert wv.class_seen_.all()
    # test utterance, true class 0: two confident windows for 0, three unsure windows for 1
    X = np.array([[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.3, 0.4, 0.3], [0.3, 0.42, 0.28], [0.29, 0.41, 0.3]])
    groups = np.zeros(5, dtype=int)
    assert MajorityVote().fit(X_train).predict(X, groups)[0] == 1
    assert wv.predict(X, groups)[0] == 0
    w = wv.weights_for(X)
    assert w.shape == (5,)
    assert w[:2].min() > 3 * w[2:].max()
    # on many utterances whose unsure windows agree on one wrong class, the weighted vote is more accurate
    n_utts, n_classes = 300, 3
    y_utt = rng.integers(0, n_classes, size=n_utts)
    wrong_utt = (y_utt + rng.integers(1, n_classes, size=n_utts)) % n_classes
    utt = np.repeat(np.arange(n_utts), 5)
    confident = rng.random(len(utt)) < 0.5
    pred = np.where(confident, y_utt[utt], wrong_utt[utt])
    top = np.where(confident, rng.uniform(0.8, 0.95, len(utt)), rng.uniform(0.36, 0.45, len(utt)))
    X_test = np.repeat(((1 - top) / (n_classes - 1))[:, None], n_classes, axis=1)
    X_test[np.arange(len(utt)), pred] = top
    maj_acc = np.mean(MajorityVote().fit(X_train).predict(X_test, utt) == y_utt)
    wtd_acc = np.mean(wv.predict(X_test, utt) == y_utt)
    assert wtd_acc > maj_acc + 0.2
    assert wtd_acc > 0.95


def test_soft_weighted_vote_weights_whole_posteriors() -> None:
    rng = np.random.default_rng(0)
    X_train, y_train = _confidence_world(rng, 600)
    hard = WeightedVote(alpha=1.0, use_energy=False).fit(X_train, y_train)
    soft = make_aggregator("weighted_soft", alpha=1.0, use_energy=False).fit(X_train, y_train)
    assert soft.soft and np.allclose(soft.coef_, hard.coef_)  # the same Ridge models; only the vote differs
    # one utterance: a confident window for 0, two less sure windows whose second choice is 0
    X = np.array([[0.8, 0.1, 0.1], [0.3, 0.45, 0.25], [0.4, 0.45, 0.15]])
    groups = np.zeros(3, dtype=int)
    w = soft.weights_for(X)
    want = (X * w[:, None]).sum(0) / (X * w[:, None]).sum()
    np.testing.assert_allclose(soft.predict_proba(X, groups)[0], want)
    hard_votes = np.bincount(X.argmax(1), weights=w, minlength=3)
    np.testing.assert_allclose(hard.predict_proba(X, groups)[0], hard_votes / hard_votes.sum())
    # equal weights make the soft vote the posterior mean, the hard one the majority vote
    flat = WeightedVote(use_energy=False, soft=True).fit(X_train, y_train)
    flat.coef_[:] = 0.0
    flat.intercept_[:] = 0.5
    Xr, gr, _, _ = _random_windows(3, n_classes=3)
    np.testing.assert_allclose(flat.predict_proba(Xr, gr), MeanVote().fit(Xr).predict_proba(Xr, gr))
    flat_hard = clone(flat).set_params(soft=False).fit(X_train, y_train)
    flat_hard.coef_[:] = 0.0
    flat_hard.intercept_[:] = 0.5
    np.testing.assert_allclose(flat_hard.predict_proba(Xr, gr), MajorityVote().fit(Xr).predict_proba(Xr, gr))
    assert flat.predict(X, groups)[0] == 0 and flat_hard.predict(X, groups)[0] == 1  # 2 of 3 windows say 1


def test_weighted_vote_uses_energy() -> None:
    # same posteriors everywhere; windows with low energy (silence) are wrong, loud ones right
    rng = np.random.default_rng(1)
    n = 800
    pred = rng.integers(0, 2, size=n)
    X = np.where(pred[:, None] == np.arange(2), 0.7, 0.3)
    loud = rng.random(n) < 0.5
    energy = np.where(loud, rng.normal(5.0, 0.5, n), rng.normal(-5.0, 0.5, n))
    y = np.where(loud, pred, 1 - pred)
    wv = WeightedVote(use_energy=True).fit(X, y, energy=energy)
    assert wv.energy_scale_ > 1.0
    X_u = np.array([[0.7, 0.3], [0.3, 0.7], [0.3, 0.7], [0.3, 0.7]])
    e_u = np.array([5.0, -5.0, -5.0, -5.0])
    groups = np.zeros(4, dtype=int)
    assert wv.predict(X_u, groups, e_u)[0] == 0
    assert MajorityVote().fit(X).predict(X_u, groups)[0] == 1
    no_energy = WeightedVote(use_energy=False).fit(X, y)
    np.testing.assert_allclose(no_energy.predict_proba(X_u, groups), [[0.25, 0.75]], atol=0.05)


def test_weighted_vote_unseen_class_weight_one_and_all_zero_uniform() -> None:
    X_train = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0]])
    y_train = np.array([0, 0, 1, 0])  # class 1 windows are right half the time
    wv = WeightedVote(use_energy=False).fit(X_train, y_train)
    np.testing.assert_array_equal(wv.class_seen_, [True, True, False])
    assert wv.weights_for(np.array([[0.1, 0.1, 0.8]]))[0] == pytest.approx(1.0)
    # an utterance whose windows all weigh 0 gets the uniform distribution
    wv.coef_[:] = 0.0
    wv.intercept_[:] = -1.0
    np.testing.assert_allclose(wv.predict_proba(X_train, np.zeros(4, dtype=int)), [[1 / 3] * 3])


def test_weighted_vote_needs_y_and_energy() -> None:
    X, groups, y, energy = _random_windows(3)
    with pytest.raises(ValueError, match="needs y"):
        WeightedVote(use_energy=False).fit(X)
    with pytest.raises(ConfigError, match="use_energy=True"):
        WeightedVote(use_energy=True).fit(X, y)
    wv = WeightedVote(use_energy=True).fit(X, y, energy=energy)
    with pytest.raises(ConfigError, match="use_energy=True"):
        wv.predict_proba(X, groups)


@pytest.mark.parametrize("method", METHODS)
def test_unfitted_raises(method: str) -> None:
    X, groups, _, energy = _random_windows(4)
    with pytest.raises(NotFittedError):
        make_aggregator(method).predict_proba(X, groups, energy)
    if method == "weighted":
        with pytest.raises(NotFittedError):
            WeightedVote().weights_for(X, energy)


def test_bad_params_and_inputs() -> None:
    with pytest.raises(ConfigError, match=r"'median'.*majority, mean, logmean, weighted"):
        make_aggregator("median")
    with pytest.raises(ConfigError, match=r"alpha=-1\.0"):
        make_aggregator("weighted", alpha=-1.0)
    with pytest.raises(ConfigError, match="alpha=-1"):
        WeightedVote(alpha=-1).fit(np.eye(2), [0, 1])
    with pytest.raises(ConfigError, match="use_energy='yes'"):
        make_aggregator("weighted", use_energy="yes")
    with pytest.raises(ConfigError, match="eps=0"):
        MeanVote(eps=0).fit(np.eye(2))
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_aggregator("majority", alpha=1.0)
    with pytest.raises(ConfigError, match="unknown parameter"):
        make_aggregator("logmean", log=False)
    agg = MajorityVote().fit(np.eye(3))
    with pytest.raises(ValueError, match="fitted with 3"):
        agg.predict_proba(np.eye(2), [0, 1])
    with pytest.raises(ValueError, match="groups must have shape"):
        agg.predict_proba(np.eye(3), [0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        agg.predict_proba(np.eye(3), [0, -1, 1])
    with pytest.raises(ValueError, match="integers"):
        agg.predict_proba(np.eye(3), [0.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="n_groups=1"):
        agg.predict_proba(np.eye(3), [0, 1, 1], n_groups=1)
    with pytest.raises(ValueError, match="non-finite"):
        agg.predict_proba(np.array([[np.nan, 1.0, 0.0]]), [0])
    with pytest.raises(ValueError, match="class ids"):
        WeightedVote(use_energy=False).fit(np.eye(3), [0, 1, 3])


def test_sklearn_clone_and_params() -> None:
    wv = make_aggregator("weighted", alpha=0.3, use_energy=False)
    assert wv.get_params() == {"alpha": 0.3, "use_energy": False, "soft": False}
    c = clone(wv)
    assert c.get_params() == wv.get_params() and c is not wv
    assert make_aggregator("logmean").log is True
    assert make_aggregator("mean").log is False


def test_aggregation_does_not_import_torch() -> None:
    code = "import sys, paraling.scoring.aggregation; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
