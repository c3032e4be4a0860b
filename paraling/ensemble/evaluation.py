"""Honest evaluation of ensemble selection: nested cross-validation and selection on stored runs.

Selection overfits the data it selects on, so a selector's own ``score_`` is optimistic; :func:`nested_cv_uar`
selects on all folds but one and scores the held-out fold. A fixed test split never reaches selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paraling.ensemble._validation import Metric, check_labels, check_stack
from paraling.ensemble.selectors import GreedyEnsemble
from paraling.errors import EnsembleError
from paraling.scoring.metrics import uar

__all__ = ["EnsembleReport", "evaluate_selection", "nested_cv_uar"]


def nested_cv_uar(
    S: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    estimator_factory: Callable[[], Any] = GreedyEnsemble,
    metric: Metric = uar,
) -> dict[str, Any]:
    """Nested cross-validation of ensemble selection against the best single model.

    For each fold ``f``: a fresh estimator from ``estimator_factory()`` is fitted on the utterances with
    ``fold != f`` and predicts those with ``fold == f``; the single model with the best ``metric`` on the same
    selection utterances (ties → lower index) predicts them too. Utterances with ``fold == -1`` (never scored)
    are excluded everywhere. A fixed test split must never be passed here (nor to any selection): give it
    ``fold = -1`` or leave it out of ``S``.

    Args:
        S: Out-of-fold stack, shape ``(n_models, n_utts, n_classes)``.
        y: True class ids, shape ``(n_utts,)``.
        fold: Fold in which each utterance was held out, shape ``(n_utts,)``; at least two folds ``>= 0``.
        estimator_factory: Zero-argument callable returning an unfitted estimator with ``fit(S, y)`` and
            ``predict(S)``, e.g. ``lambda: GreedyEnsemble(combiner="harmonic")``.
        metric: ``metric(y_true, y_pred) -> float``; default UAR.

    Returns:
        ``{"folds": [f, ...], "ensemble_fold_uar": [...], "ensemble_uar": pooled, "single_fold_uar": [...],
        "single_uar": pooled, "single_model": [model index chosen per fold], "ensemble_weights": [weights_ per
        fold as lists, when the estimator has ``weights_``]}``. Pooled values score the concatenation of all
        held-out predictions.
    """
    S = check_stack(S)
    y = check_labels(y, S.shape[1])
    fd = np.asarray(fold)
    if fd.shape != y.shape or not np.issubdtype(fd.dtype, np.integer):
        raise EnsembleError(f"fold must be integer fold ids of shape {y.shape}, but got {fd.dtype} {fd.shape}")
    folds = [int(f) for f in np.unique(fd[fd >= 0])]
    if len(folds) < 2:
        raise EnsembleError(f"nested evaluation needs at least two folds >= 0, but got folds {folds}")
    ens_pred = np.empty(len(y), dtype=np.int64)
    single_pred = np.empty(len(y), dtype=np.int64)
    out: dict[str, Any] = {
        "folds": folds,
        "ensemble_fold_uar": [],
        "single_fold_uar": [],
        "single_model": [],
        "ensemble_weights": [],
    }
    for f in folds:
        train, test = (fd >= 0) & (fd != f), fd == f
        est = estimator_factory().fit(S[:, train], y[train])
        ens_pred[test] = est.predict(S[:, test])
        if hasattr(est, "weights_"):
            out["ensemble_weights"].append(np.asarray(est.weights_).tolist())
        train_preds = S[:, train].argmax(axis=2)
        best = int(np.argmax([metric(y[train], p) for p in train_preds]))
        single_pred[test] = S[best, test].argmax(axis=1)
        out["single_model"].append(best)
        out["ensemble_fold_uar"].append(float(metric(y[test], ens_pred[test])))
        out["single_fold_uar"].append(float(metric(y[test], single_pred[test])))
    scored = fd >= 0
    out["ensemble_uar"] = float(metric(y[scored], ens_pred[scored]))
    out["single_uar"] = float(metric(y[scored], single_pred[scored]))
    return out


@dataclass
class EnsembleReport:
    """What :func:`evaluate_selection` found (UARs; ``None`` where not computable).

    Attributes:
        selector: The selector fitted on all cross-validated utterances.
        weights: Integer weight per model, shape ``(n_models,)``.
        proba: The final ensemble's probabilities for every utterance, shape ``(n_utts, n_classes)``.
        selection_uar: The ensemble's UAR on the utterances it was selected on (optimistic).
        best_single: Index of the best single model on those utterances.
        best_single_uar: Its UAR there.
        fold_uar: The final ensemble's UAR per fold (selection set).
        nested: :func:`nested_cv_uar`'s result (ensemble vs best single model, honest), or ``None`` with < 2
            folds.
        test_uar: The final ensemble's UAR on the fixed test split, if any.
        best_single_test_uar: The best single model's (chosen on the selection set) UAR on the test split.
        selection_mask: Utterances used for selection, shape ``(n_utts,)``.
        test_mask: Utterances of the fixed test split, shape ``(n_utts,)``.
    """

    selector: Any
    weights: np.ndarray
    proba: np.ndarray
    selection_uar: float
    best_single: int
    best_single_uar: float
    fold_uar: dict[int, float] = field(default_factory=dict)
    nested: dict[str, Any] | None = None
    test_uar: float | None = None
    best_single_test_uar: float | None = None
    selection_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    test_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def evaluate_selection(
    S: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    split: np.ndarray | None = None,
    factory: Callable[[], Any] | None = None,
    metric: Metric = uar,
) -> EnsembleReport:
    """Select an ensemble on the cross-validated utterances and evaluate it honestly.

    Selection and nested evaluation see only utterances with ``fold >= 0`` whose ``split`` is not ``"test"``;
    test-split utterances are scored once by the final ensemble and by the best single model.

    Args:
        S: Stack ``(n_models, n_utts, n_classes)`` (:func:`stack_oof`).
        y: True class ids ``(n_utts,)``.
        fold: Held-out fold per utterance ``(n_utts,)`` (-1 = never scored).
        split: ``"cv"`` / ``"test"`` per utterance; ``None`` = all ``"cv"``.
        factory: Zero-argument selector factory (:func:`make_selector`); default greedy with the mean.
        metric: Default UAR.

    Raises:
        EnsembleError: No cross-validated utterances to select on.
    """
    S = check_stack(S)
    y = check_labels(y, S.shape[1])
    fold = np.asarray(fold, dtype=np.int64)
    is_test = np.zeros(len(y), bool) if split is None else np.asarray(split).astype(str) == "test"
    sel = (fold >= 0) & ~is_test
    if not sel.any():
        raise EnsembleError(
            "no cross-validated utterances to select on (all are in the test split or "
            "unscored, e.g. cv.scheme=split); selection must never see the test split"
        )
    factory = factory or GreedyEnsemble
    est = factory().fit(S[:, sel], y[sel])
    proba = est.predict_proba(S)
    pred = proba.argmax(1)
    single = np.array([metric(y[sel], S[m, sel].argmax(1)) for m in range(len(S))])
    best = int(np.argmax(single))
    folds = sorted({int(f) for f in fold[sel]})
    rep = EnsembleReport(
        est,
        np.asarray(est.weights_),
        proba,
        float(metric(y[sel], pred[sel])),
        best,
        float(single[best]),
        {f: float(metric(y[sel & (fold == f)], pred[sel & (fold == f)])) for f in folds},
        selection_mask=sel,
        test_mask=is_test,
    )
    if len(folds) >= 2:
        rep.nested = nested_cv_uar(S[:, sel], y[sel], fold[sel], factory, metric)
    if is_test.any():
        rep.test_uar = float(metric(y[is_test], pred[is_test]))
        rep.best_single_test_uar = float(metric(y[is_test], S[best, is_test].argmax(1)))
    return rep
