"""Tests of paraling.ensemble's top-k/all selectors, make_selector and evaluate_selection (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from paraling.ensemble import (
    GreedyEnsemble,
    TopKEnsemble,
    check_aligned,
    evaluate_selection,
    make_selector,
    nested_cv_uar,
)
from paraling.errors import ConfigError, EnsembleError
from paraling.scoring.metrics import uar
from paraling.scoring.oof import OOFScores


def _stack(seed: int, n_models: int = 6, n_utts: int = 90, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_utts)
    S = rng.dirichlet(np.ones(n_classes), size=(n_models, n_utts))
    S[:, np.arange(n_utts), y] += rng.uniform(0.0, 1.5, size=n_models)[:, None]
    fold = np.arange(n_utts) % 3
    return S / S.sum(axis=2, keepdims=True), y, fold


def test_top_k_keeps_the_k_best_single_models() -> None:
    S, y, _ = _stack(0)
    single = [uar(y, S[m].argmax(1)) for m in range(len(S))]
    order = np.argsort(-np.array(single), kind="stable")
    est = TopKEnsemble(k=2, combiner="harmonic").fit(S, y)
    assert sorted(est.members_.tolist()) == sorted(order[:2].tolist())
    assert est.weights_.sum() == 2
    assert est.selection_ == order[:2].tolist()
    assert len(est.trajectory_) == 2 and est.trajectory_[0] == pytest.approx(max(single))
    assert est.predict_proba(S).shape == (S.shape[1], S.shape[2])
    every = TopKEnsemble(k=None).fit(S, y)
    assert every.weights_.tolist() == [1] * len(S)
    assert TopKEnsemble(k=99).fit(S, y).weights_.sum() == len(S)  # clipped to the library


def test_make_selector_methods_and_errors() -> None:
    assert isinstance(make_selector("greedy", "harmonic", top_k=2)(), GreedyEnsemble)
    assert make_selector("greedy", top_k=2)().n_init == 2
    assert make_selector("top-k")().k == 3
    assert make_selector("all")().k is None
    with pytest.raises(ConfigError, match="'best'.*greedy, top-k, all"):
        make_selector("best")
    with pytest.raises(ConfigError, match="'median'"):
        make_selector("greedy", "median")
    with pytest.raises(ConfigError, match="k=0"):
        TopKEnsemble(k=0).fit(*_stack(0)[:2])


@pytest.mark.parametrize("method", ["greedy", "top-k", "all"])
def test_evaluate_selection_reports_nested_next_to_best_single(method: str) -> None:
    S, y, fold = _stack(1)
    factory = make_selector(method, "mean", top_k=2 if method == "top-k" else None)
    rep = evaluate_selection(S, y, fold, None, factory)
    ref = nested_cv_uar(S, y, fold, factory)
    assert rep.nested == ref
    assert set(rep.fold_uar) == {0, 1, 2}
    assert rep.best_single_uar == pytest.approx(max(uar(y, S[m].argmax(1)) for m in range(len(S))))
    if method == "greedy":
        assert rep.selection_uar >= rep.best_single_uar
    assert rep.test_uar is None
    np.testing.assert_allclose(rep.proba.sum(1), 1.0)


def test_evaluate_selection_never_sees_the_test_split() -> None:
    S, y, fold = _stack(2, n_utts=120)
    split = np.where(np.arange(len(y)) >= 90, "test", "cv")
    rep = evaluate_selection(S, y, fold, split, make_selector("greedy"))
    S2 = S.copy()
    S2[:, split == "test"] = np.random.default_rng(9).dirichlet([1, 1, 1], size=(len(S), 30))  # test rows
    rep2 = evaluate_selection(S2, y, fold, split, make_selector("greedy"))
    assert rep.weights.tolist() == rep2.weights.tolist()
    assert rep.nested == rep2.nested and rep.selection_uar == rep2.selection_uar
    assert rep.test_mask.sum() == 30 and not (rep.selection_mask & rep.test_mask).any()
    test = split == "test"
    assert rep.test_uar == pytest.approx(uar(y[test], rep.proba[test].argmax(1)))
    assert rep.best_single_test_uar == pytest.approx(uar(y[test], S[rep.best_single, test].argmax(1)))


def test_evaluate_selection_edge_cases() -> None:
    S, y, _ = _stack(3, n_utts=30)
    with pytest.raises(EnsembleError, match="never see the test split"):
        evaluate_selection(S, y, np.zeros(30, int), np.array(["test"] * 30))
    with pytest.raises(EnsembleError, match="never see the test split"):
        evaluate_selection(S, y, np.full(30, -1), None)
    one_fold = evaluate_selection(S, y, np.zeros(30, int))
    assert one_fold.nested is None and list(one_fold.fold_uar) == [0]


def test_check_aligned_compares_split() -> None:
    def oof(split: list[str]) -> OOFScores:
        n = len(split)
        return OOFScores(
            np.array([f"u{i}" for i in range(n)]),
            np.array(["a", "b"]),
            np.zeros(n, int),
            np.zeros(n, int),
            np.array(split),
            np.array(["s"] * n),
            np.full((n, 2), 0.5),
        )

    check_aligned([oof(["cv", "test"]), oof(["cv", "test"])], ["a", "b"])
    with pytest.raises(EnsembleError, match=r"'b' \(split\)"):
        check_aligned([oof(["cv", "test"]), oof(["cv", "cv"])], ["a", "b"])
