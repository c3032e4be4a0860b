"""Ensembles over stored out-of-fold utterance scores: combiners and greedy forward selection.

Everything works on plain arrays (no torch, no MLflow): a *stack* ``S`` of shape ``(n_models, n_utts,
n_classes)`` holds each model's utterance class probabilities for the same utterances in the same order (see
:func:`check_aligned` / :func:`stack_oof`), ``y`` of shape ``(n_utts,)`` the true class ids.

- :func:`combine` merges a stack with integer (multiset) weights by the weighted arithmetic, geometric or
  harmonic mean of the class probabilities.
- :class:`GreedyEnsemble` is Caruana et al.'s (2004) forward selection with replacement, sorted initialisation
  and optional bagging, maximising UAR.
- :class:`TopKEnsemble` takes the ``k`` best single models with weight 1 (``k = n_models``: all of them).
- :func:`nested_cv_uar` measures the selection honestly: select on all folds but one, score on the held-out
  fold, and compare with the best single model chosen the same way.
- :func:`evaluate_selection` does all of it for stored runs: select on the cross-validated utterances, nested
  evaluation, per-fold UAR, and a fixed test split scored only once at the end.

Selection overfits the data it selects on, so its own ``score_`` is optimistic; report :func:`nested_cv_uar`.
A fixed test split must never be passed to selection: keep it out of ``S``/``y`` (or give it ``fold = -1`` in
:func:`nested_cv_uar`) and score it only once with the finished ensemble.

Modules: :mod:`~paraling.ensemble.combiners` (combination rules), :mod:`~paraling.ensemble.selectors` (greedy,
top-k, all), :mod:`~paraling.ensemble.evaluation` (nested CV, evaluation of a selection on stored runs) and
:mod:`~paraling.ensemble.alignment` (checking and stacking stored runs); import the names from here.

Example:
    >>> import numpy as np
    >>> S = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.4, 0.6], [0.1, 0.9]]])  # each model always says one class
    >>> y = np.array([0, 1])
    >>> ens = GreedyEnsemble(max_iter=5).fit(S, y)
    >>> ens.weights_.tolist(), ens.score_
    ([1, 1], 1.0)
"""

from paraling.ensemble.alignment import check_aligned, stack_oof
from paraling.ensemble.combiners import COMBINERS, combine
from paraling.ensemble.evaluation import EnsembleReport, evaluate_selection, nested_cv_uar
from paraling.ensemble.selectors import METHODS, GreedyEnsemble, TopKEnsemble, make_selector

__all__ = [
    "COMBINERS",
    "METHODS",
    "EnsembleReport",
    "GreedyEnsemble",
    "TopKEnsemble",
    "check_aligned",
    "combine",
    "evaluate_selection",
    "make_selector",
    "nested_cv_uar",
    "stack_oof",
]
