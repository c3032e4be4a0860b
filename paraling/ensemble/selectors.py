"""Ensemble selectors: greedy forward selection (Caruana et al., 2004), top-k and all, and their factory.

Selectors follow scikit-learn's conventions: ``__init__`` stores parameters, ``fit(S, y)`` validates and selects
on a stack ``(n_models, n_utts, n_classes)``, learned state ends in ``_``, ``predict_proba`` checks it is fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from paraling.ensemble._validation import Metric, check_int, check_labels, check_stack
from paraling.ensemble.combiners import check_combiner, combine, decide, decision_terms
from paraling.errors import ConfigError, EnsembleError
from paraling.scoring.metrics import uar

__all__ = ["METHODS", "GreedyEnsemble", "TopKEnsemble", "make_selector"]

#: Selection methods accepted by :func:`make_selector`.
METHODS: tuple[str, ...] = ("greedy", "top-k", "all")

# Candidate ensembles are scored in chunks of at most this many (model, utterance, class) values.
_CHUNK = 4_000_000
# Candidate scores within this distance of the best count as tied.
_TIE_TOL = 1e-12


def _select(
    T: np.ndarray, sign: int, y: np.ndarray, n_init: int, max_iter: int, metric: Metric
) -> tuple[list[int], list[float], np.ndarray]:
    """Forward selection with replacement over transformed terms ``T`` (n_models, n_utts, n_classes).

    Returns the picks truncated at the best point of the trajectory, the full trajectory, and the single-model
    scores.
    """
    n_models = len(T)
    single = np.array([metric(y, decide(T[m], sign)) for m in range(n_models)])
    picks = [int(m) for m in np.argsort(-single, kind="stable")[:n_init]]  # best first, ties → lower index
    counts = np.bincount(picks, minlength=n_models)
    acc = T[picks].sum(axis=0)
    trajectory = [float(metric(y, decide(acc, sign)))]
    step = max(1, _CHUNK // max(1, T[0].size))
    for _ in range(max_iter):
        scores = np.empty(n_models)
        for lo in range(0, n_models, step):
            preds = decide(acc[None] + T[lo : lo + step], sign)
            scores[lo : lo + step] = [metric(y, p) for p in preds]
        tied = scores >= scores.max() - _TIE_TOL
        preferred = tied & (counts > 0)
        m = int(np.flatnonzero(preferred if preferred.any() else tied)[0])
        picks.append(m)
        counts[m] += 1
        acc += T[m]
        trajectory.append(float(scores[m]))
    best = int(np.argmax(trajectory))  # first best: the smallest ensemble reaching the best score
    return picks[: n_init + best], trajectory, single


class GreedyEnsemble(BaseEstimator):
    """Greedy forward ensemble selection with replacement (Caruana et al., 2004).

    Sorted initialisation puts the ``n_init`` best single models in the ensemble; then ``max_iter`` times the
    model whose addition (with replacement) maximises ``metric`` of the combined scores is added, ties going
    to models already chosen, then to the lower index. The trajectory is truncated at its (first) best point,
    so the selection score is never below that of the initial ensemble (with ``n_init=1``: the best single
    model). With ``bagging > 0`` the selection is repeated on ``bagging`` random subsets of
    ``bag_fraction * n_models`` models and the selection counts are summed.

    Args:
        n_init: Models in the sorted initialisation, ``>= 1`` and ``<= n_models``.
        max_iter: Additions after initialisation, ``>= 0``.
        combiner: One of :data:`COMBINERS`; selection and prediction both use it.
        bagging: Number of bags; 0 = select once on all models.
        bag_fraction: Fraction of models in each bag, in ``(0, 1]`` (at least one model).
        seed: Seed of the bag sampler.
        metric: ``metric(y_true, y_pred) -> float``, higher is better; default UAR.

    Attributes:
        n_models_: Models in the stack seen by ``fit``.
        weights_: Selection count per model, int64, shape ``(n_models,)``.
        members_: Indices of the models with a non-zero weight, ascending.
        selection_: Models in order of selection (with repeats; bags concatenated).
        trajectory_: Without bagging: ``metric`` of the ensemble after initialisation and after each addition
            (untruncated, ``max_iter + 1`` values). With bagging: ``metric`` of the summed ensemble after each
            bag.
        bag_trajectories_: The per-bag trajectories (empty without bagging).
        single_scores_: ``metric`` of each model alone, shape ``(n_models,)``.
        score_: ``metric`` of the final ensemble on the data it was selected on (optimistic).
    """

    def __init__(
        self,
        n_init: int = 1,
        max_iter: int = 50,
        combiner: str = "mean",
        bagging: int = 0,
        bag_fraction: float = 0.5,
        seed: int | None = 0,
        metric: Metric = uar,
    ) -> None:
        self.n_init = n_init
        self.max_iter = max_iter
        self.combiner = combiner
        self.bagging = bagging
        self.bag_fraction = bag_fraction
        self.seed = seed
        self.metric = metric

    def _check_params(self, n_models: int) -> None:
        check_int(self.n_init, "n_init", 1)
        if self.n_init > n_models:
            raise ConfigError(f"n_init must be <= the number of models ({n_models}), but got n_init={self.n_init}")
        check_int(self.max_iter, "max_iter", 0)
        check_combiner(self.combiner)
        check_int(self.bagging, "bagging", 0)
        frac = self.bag_fraction
        if not isinstance(frac, Real) or isinstance(frac, bool) or not 0.0 < frac <= 1.0:
            raise ConfigError(f"bag_fraction must be a float in (0, 1], but got bag_fraction={frac!r}")
        if self.seed is not None:
            check_int(self.seed, "seed", 0)
        if not callable(self.metric):
            raise ConfigError(f"metric must be callable(y_true, y_pred) -> float, but got metric={self.metric!r}")

    def fit(self, S: np.ndarray, y: np.ndarray) -> GreedyEnsemble:
        """Select an ensemble on the stack ``S`` against labels ``y``.

        Args:
            S: Stack, shape ``(n_models, n_utts, n_classes)``; cross-validated utterances only, never a
                fixed test split.
            y: True class ids, shape ``(n_utts,)``.

        Returns:
            ``self``.
        """
        S = check_stack(S)
        y = check_labels(y, S.shape[1])
        n_models = len(S)
        self._check_params(n_models)
        T, sign = decision_terms(S, self.combiner, 1e-12)
        weights = np.zeros(n_models, dtype=np.int64)
        if self.bagging == 0:
            picks, trajectory, single = _select(T, sign, y, self.n_init, self.max_iter, self.metric)
            np.add.at(weights, picks, 1)
            selection, bag_trajectories = picks, list[list[float]]()
        else:
            rng = np.random.default_rng(self.seed)
            size = max(1, round(self.bag_fraction * n_models))
            single = np.array([self.metric(y, decide(T[m], sign)) for m in range(n_models)])
            selection, trajectory, bag_trajectories = [], [], []
            for _ in range(self.bagging):
                bag = np.sort(rng.choice(n_models, size=size, replace=False))
                picks, traj, _ = _select(T[bag], sign, y, min(self.n_init, size), self.max_iter, self.metric)
                chosen = bag[picks]
                np.add.at(weights, chosen, 1)
                selection.extend(int(m) for m in chosen)
                bag_trajectories.append(traj)
                trajectory.append(float(self.metric(y, decide(np.tensordot(weights, T, axes=1), sign))))
        self.n_models_ = n_models
        self.weights_ = weights
        self.members_ = np.flatnonzero(weights)
        self.selection_ = [int(m) for m in selection]
        self.trajectory_ = [float(v) for v in trajectory]
        self.bag_trajectories_ = bag_trajectories
        self.single_scores_ = np.asarray(single, dtype=np.float64)
        self.score_ = float(self.metric(y, decide(np.tensordot(weights, T, axes=1), sign)))
        return self

    def predict_proba(self, S: np.ndarray) -> np.ndarray:
        """Combined probabilities, shape ``(n_utts, n_classes)``, from a stack of the same models."""
        check_is_fitted(self)
        S = check_stack(S)
        if len(S) != self.n_models_:
            raise EnsembleError(f"S holds {len(S)} models, but the ensemble was fitted on {self.n_models_}")
        return combine(S, self.weights_, self.combiner)

    def predict(self, S: np.ndarray) -> np.ndarray:
        """Utterance class ids, shape ``(n_utts,)``."""
        return self.predict_proba(S).argmax(axis=1)


class TopKEnsemble(BaseEstimator):
    """The ``k`` best single models (by ``metric`` on the fitting data, ties → lower index), weight 1 each.

    ``k=None`` keeps every model (a fixed ensemble of all of them; nothing is selected).

    Args:
        k: Number of members, ``>= 1`` (clipped to the number of models), or ``None`` for all.
        combiner: One of :data:`COMBINERS`.
        metric: ``metric(y_true, y_pred) -> float``, higher is better; default UAR.

    Attributes:
        Same as :class:`GreedyEnsemble`; ``trajectory_`` holds the score of the top-1, top-2, ... ensembles.
    """

    def __init__(self, k: int | None = None, combiner: str = "mean", metric: Metric = uar) -> None:
        self.k = k
        self.combiner = combiner
        self.metric = metric

    def fit(self, S: np.ndarray, y: np.ndarray) -> TopKEnsemble:
        """Rank the models of ``S`` ``(n_models, n_utts, n_classes)`` against ``y``; keep the best ``k``."""
        S = check_stack(S)
        y = check_labels(y, S.shape[1])
        if self.k is not None:
            check_int(self.k, "k", 1)
        check_combiner(self.combiner)
        n_models = len(S)
        T, sign = decision_terms(S, self.combiner, 1e-12)
        single = np.array([self.metric(y, decide(T[m], sign)) for m in range(n_models)])
        order = [int(m) for m in np.argsort(-single, kind="stable")[: self.k or n_models]]
        acc = np.cumsum(T[order], axis=0)
        weights = np.zeros(n_models, dtype=np.int64)
        weights[order] = 1
        self.n_models_, self.weights_, self.members_ = n_models, weights, np.flatnonzero(weights)
        self.selection_ = order
        self.trajectory_ = [float(self.metric(y, decide(a, sign))) for a in acc]
        self.bag_trajectories_: list[list[float]] = []
        self.single_scores_ = single
        self.score_ = self.trajectory_[-1]
        return self

    predict_proba = GreedyEnsemble.predict_proba
    predict = GreedyEnsemble.predict


def make_selector(
    method: str = "greedy",
    combiner: str = "mean",
    *,
    top_k: int | None = None,
    max_iter: int = 50,
    bagging: int = 0,
    bag_fraction: float = 0.5,
    seed: int | None = 0,
) -> Callable[[], GreedyEnsemble | TopKEnsemble]:
    """A zero-argument factory of unfitted selectors, for fitting and for :func:`nested_cv_uar`.

    Args:
        method: ``greedy`` (Caruana; ``top_k`` = size of the sorted initialisation, default 1), ``top-k`` (the
            ``top_k`` best single runs, default 3) or ``all``.
        combiner: One of :data:`COMBINERS`.
        top_k: See ``method``.
        max_iter: Greedy additions.
        bagging: Greedy bags (0 = none).
        bag_fraction: Fraction of the models in each bag.
        seed: Seed of the bag sampler.

    Raises:
        ConfigError: Unknown method or combiner.
    """
    check_combiner(combiner)
    if method == "greedy":
        return lambda: GreedyEnsemble(
            n_init=top_k or 1,
            max_iter=max_iter,
            combiner=combiner,
            bagging=bagging,
            bag_fraction=bag_fraction,
            seed=seed,
        )
    if method == "top-k":
        return lambda: TopKEnsemble(k=top_k or 3, combiner=combiner)
    if method == "all":
        return lambda: TopKEnsemble(k=None, combiner=combiner)
    raise ConfigError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")
