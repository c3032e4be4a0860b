"""Nested-CV ensemble selection never sees the held-out fold, and no selection ever sees the test split."""

from __future__ import annotations

import numpy as np

from paraling.ensemble import GreedyEnsemble
from paraling.ensemble.evaluation import evaluate_selection, nested_cv_uar


class SpySelector(GreedyEnsemble):
    """A greedy selector that records which utterances every fit saw (read back from a marker class column)."""

    seen: list[set[int]] = []

    def fit(self, S: np.ndarray, y: np.ndarray) -> SpySelector:
        SpySelector.seen.append({round(float(v) * 1e6) for v in S[0, :, -1]})
        return super().fit(S[..., :-1], y)

    def predict_proba(self, S: np.ndarray) -> np.ndarray:
        return super().predict_proba(S[..., :-1])

    def predict(self, S: np.ndarray) -> np.ndarray:
        return super().predict(S[..., :-1])


def _stack(n_models: int = 4, n: int = 90, n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    S = rng.dirichlet(np.ones(n_classes), size=(n_models, n))
    S[:, np.arange(n), y] += rng.uniform(0, 0.6, size=(n_models, n))
    S /= S.sum(2, keepdims=True)
    marker = np.broadcast_to(np.arange(n) * 1e-6, (n_models, n))[..., None]  # utterance index, tiny
    return np.concatenate([S, marker], axis=2), y


def test_each_nested_fit_sees_only_the_other_folds() -> None:
    S, y = _stack()
    fold = np.arange(len(y)) % 3
    fold[::10] = -1  # never scored
    SpySelector.seen = []
    nested_cv_uar(S, y, fold, SpySelector)
    assert len(SpySelector.seen) == 3
    for f, seen in zip(sorted(set(fold[fold >= 0])), SpySelector.seen, strict=True):
        assert seen == set(np.flatnonzero((fold >= 0) & (fold != f)).tolist())


def test_selection_never_sees_the_test_split() -> None:
    S, y = _stack()
    fold = np.arange(len(y)) % 3
    split = np.where(np.arange(len(y)) >= 70, "test", "cv")
    fold[split == "test"] = -1
    SpySelector.seen = []
    rep = evaluate_selection(S, y, fold, split, SpySelector)
    test = set(np.flatnonzero(split == "test").tolist())
    assert len(SpySelector.seen) == 1 + 3  # the final selection, then one per nested fold
    assert all(not (seen & test) for seen in SpySelector.seen)
    assert rep.test_uar is not None and rep.nested is not None
