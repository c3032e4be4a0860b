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

Example:
    >>> import numpy as np
    >>> S = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.4, 0.6], [0.1, 0.9]]])  # each model always says one class
    >>> y = np.array([0, 1])
    >>> ens = GreedyEnsemble(max_iter=5).fit(S, y)
    >>> ens.weights_.tolist(), ens.score_
    ([1, 1], 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from paraling.errors import ConfigError, EnsembleError
from paraling.metrics import uar
from paraling.oof import OOFScores

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

#: Names accepted by :func:`combine` and ``GreedyEnsemble(combiner=...)``.
COMBINERS: tuple[str, ...] = ("mean", "harmonic", "geometric", "weighted")
#: Selection methods accepted by :func:`make_selector`.
METHODS: tuple[str, ...] = ("greedy", "top-k", "all")

Metric = Callable[[np.ndarray, np.ndarray], float]

# Candidate ensembles are scored in chunks of at most this many (model, utterance, class) values.
_CHUNK = 4_000_000
# Candidate scores within this distance of the best count as tied.
_TIE_TOL = 1e-12


# --- combiners ----------------------------------------------------------------------------------------------


def _check_stack(S: np.ndarray) -> np.ndarray:
    arr = np.asarray(S, dtype=np.float64)
    if arr.ndim != 3 or 0 in arr.shape:
        raise EnsembleError(
            f"S must be a non-empty stack (n_models, n_utts, n_classes), but got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise EnsembleError("S must hold finite, non-negative class probabilities")
    return arr


def _check_method(method: str) -> None:
    if method not in COMBINERS:
        raise ConfigError(f"unknown combiner {method!r}; choose one of {', '.join(COMBINERS)}")


def _transform(S: np.ndarray, method: str, eps: float) -> tuple[np.ndarray, int]:
    """Per-model terms whose weighted sum orders classes like the combination; +1 = argmax, -1 = argmin."""
    if method in ("mean", "weighted"):
        return S, 1
    if method == "geometric":
        return np.log(np.maximum(S, eps)), 1
    return 1.0 / np.maximum(S, eps), -1  # harmonic: W / sum(w / p) is largest where sum(w / p) is smallest


def combine(
    S: np.ndarray,
    weights: np.ndarray | Sequence[float] | None = None,
    method: str = "mean",
    *,
    eps: float = 1e-12,
    normalize: bool = True,
) -> np.ndarray:
    """Combine a stack of utterance probabilities with non-negative (usually integer) model weights.

    With ``W = sum(w)`` and per-class probabilities ``p_m``:

    - ``mean`` / ``weighted``: ``sum(w_m p_m) / W``, the weighted arithmetic mean (``weighted`` is the same
      rule under the name used in configs that want to stress the weights; with integer selection counts both
      equal the plain mean over the multiset of selected models);
    - ``geometric``: ``exp(sum(w_m log p_m) / W)``;
    - ``harmonic``: ``W / sum(w_m / p_m)``, the weighted harmonic mean (a low probability from any member
      vetoes a class).

    Probabilities are clipped below at ``eps`` for the geometric and harmonic means. Before renormalisation,
    harmonic <= geometric <= arithmetic elementwise.

    Args:
        S: Stack, shape ``(n_models, n_utts, n_classes)``.
        weights: Weight per model, shape ``(n_models,)``, non-negative, not all 0; ``None`` = all 1. Models
            with weight 0 are ignored.
        method: One of :data:`COMBINERS`.
        eps: Lower clip of the probabilities, ``> 0``.
        normalize: Renormalise each row to sum 1 (rows summing to 0 become uniform).

    Returns:
        Shape ``(n_utts, n_classes)``.
    """
    _check_method(method)
    if not isinstance(eps, Real) or not 0.0 < eps < 1.0:
        raise ConfigError(f"eps must be a float in (0, 1), but got {eps=!r}")
    S = _check_stack(S)
    w = np.ones(len(S)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(S),):
        raise EnsembleError(f"weights must have shape ({len(S)},) to match S, but got shape {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise EnsembleError(f"weights must be finite, non-negative and not all 0, but got {w.tolist()}")
    used = w > 0
    w, S = w[used], S[used]
    total = w.sum()
    terms, _ = _transform(S, method, eps)
    acc = np.tensordot(w, terms, axes=1)
    if method in ("mean", "weighted"):
        out = acc / total
    elif method == "geometric":
        out = np.exp(acc / total)
    else:
        out = total / acc
    if not normalize:
        return out
    rows = out.sum(axis=1, keepdims=True)
    return np.divide(out, rows, out=np.full_like(out, 1.0 / out.shape[1]), where=rows > 0)


# --- greedy selection ---------------------------------------------------------------------------------------


def _decide(acc: np.ndarray, sign: int) -> np.ndarray:
    return acc.argmax(axis=-1) if sign > 0 else acc.argmin(axis=-1)


def _select(
    T: np.ndarray, sign: int, y: np.ndarray, n_init: int, max_iter: int, metric: Metric
) -> tuple[list[int], list[float], np.ndarray]:
    """Forward selection with replacement over transformed terms ``T`` (n_models, n_utts, n_classes).

    Returns the picks truncated at the best point of the trajectory, the full trajectory, and the single-model
    scores.
    """
    n_models = len(T)
    single = np.array([metric(y, _decide(T[m], sign)) for m in range(n_models)])
    picks = [int(m) for m in np.argsort(-single, kind="stable")[:n_init]]  # best first, ties → lower index
    counts = np.bincount(picks, minlength=n_models)
    acc = T[picks].sum(axis=0)
    trajectory = [float(metric(y, _decide(acc, sign)))]
    step = max(1, _CHUNK // max(1, T[0].size))
    for _ in range(max_iter):
        scores = np.empty(n_models)
        for lo in range(0, n_models, step):
            preds = _decide(acc[None] + T[lo : lo + step], sign)
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


def _check_int(value: object, name: str, low: int) -> None:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, but got {name}={value!r}")


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
        _check_int(self.n_init, "n_init", 1)
        if self.n_init > n_models:
            raise ConfigError(
                f"n_init must be <= the number of models ({n_models}), but got n_init={self.n_init}"
            )
        _check_int(self.max_iter, "max_iter", 0)
        _check_method(self.combiner)
        _check_int(self.bagging, "bagging", 0)
        frac = self.bag_fraction
        if not isinstance(frac, Real) or isinstance(frac, bool) or not 0.0 < frac <= 1.0:
            raise ConfigError(f"bag_fraction must be a float in (0, 1], but got bag_fraction={frac!r}")
        if self.seed is not None:
            _check_int(self.seed, "seed", 0)
        if not callable(self.metric):
            raise ConfigError(
                f"metric must be callable(y_true, y_pred) -> float, but got metric={self.metric!r}"
            )

    def fit(self, S: np.ndarray, y: np.ndarray) -> GreedyEnsemble:
        """Select an ensemble on the stack ``S`` against labels ``y``.

        Args:
            S: Stack, shape ``(n_models, n_utts, n_classes)``; cross-validated utterances only, never a
                fixed test split.
            y: True class ids, shape ``(n_utts,)``.

        Returns:
            ``self``.
        """
        S = _check_stack(S)
        y = _check_labels(y, S.shape[1])
        n_models = len(S)
        self._check_params(n_models)
        T, sign = _transform(S, self.combiner, 1e-12)
        weights = np.zeros(n_models, dtype=np.int64)
        if self.bagging == 0:
            picks, trajectory, single = _select(T, sign, y, self.n_init, self.max_iter, self.metric)
            np.add.at(weights, picks, 1)
            selection, bag_trajectories = picks, []
        else:
            rng = np.random.default_rng(self.seed)
            size = max(1, round(self.bag_fraction * n_models))
            single = np.array([self.metric(y, _decide(T[m], sign)) for m in range(n_models)])
            selection, trajectory, bag_trajectories = [], [], []
            for _ in range(self.bagging):
                bag = np.sort(rng.choice(n_models, size=size, replace=False))
                picks, traj, _ = _select(T[bag], sign, y, min(self.n_init, size), self.max_iter, self.metric)
                chosen = bag[picks]
                np.add.at(weights, chosen, 1)
                selection.extend(int(m) for m in chosen)
                bag_trajectories.append(traj)
                trajectory.append(float(self.metric(y, _decide(np.tensordot(weights, T, axes=1), sign))))
        self.n_models_ = n_models
        self.weights_ = weights
        self.members_ = np.flatnonzero(weights)
        self.selection_ = [int(m) for m in selection]
        self.trajectory_ = [float(v) for v in trajectory]
        self.bag_trajectories_ = bag_trajectories
        self.single_scores_ = np.asarray(single, dtype=np.float64)
        self.score_ = float(self.metric(y, _decide(np.tensordot(weights, T, axes=1), sign)))
        return self

    def predict_proba(self, S: np.ndarray) -> np.ndarray:
        """Combined probabilities, shape ``(n_utts, n_classes)``, from a stack of the same models."""
        check_is_fitted(self)
        S = _check_stack(S)
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
        S = _check_stack(S)
        y = _check_labels(y, S.shape[1])
        if self.k is not None:
            _check_int(self.k, "k", 1)
        _check_method(self.combiner)
        n_models = len(S)
        T, sign = _transform(S, self.combiner, 1e-12)
        single = np.array([self.metric(y, _decide(T[m], sign)) for m in range(n_models)])
        order = [int(m) for m in np.argsort(-single, kind="stable")[: self.k or n_models]]
        acc = np.cumsum(T[order], axis=0)
        weights = np.zeros(n_models, dtype=np.int64)
        weights[order] = 1
        self.n_models_, self.weights_, self.members_ = n_models, weights, np.flatnonzero(weights)
        self.selection_ = order
        self.trajectory_ = [float(self.metric(y, _decide(a, sign))) for a in acc]
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
    _check_method(combiner)
    if method == "greedy":
        return lambda: GreedyEnsemble(n_init=top_k or 1, max_iter=max_iter, combiner=combiner,
                                      bagging=bagging, bag_fraction=bag_fraction, seed=seed)
    if method == "top-k":
        return lambda: TopKEnsemble(k=top_k or 3, combiner=combiner)
    if method == "all":
        return lambda: TopKEnsemble(k=None, combiner=combiner)
    raise ConfigError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")


def _check_labels(y: np.ndarray, n_utts: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n_utts,):
        raise EnsembleError(f"y must have shape ({n_utts},) to match S, but got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise EnsembleError(f"y must hold class ids >= 0, but got dtype {arr.dtype}")
    return arr.astype(np.int64)


# --- honest evaluation --------------------------------------------------------------------------------------


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
    S = _check_stack(S)
    y = _check_labels(y, S.shape[1])
    fd = np.asarray(fold)
    if fd.shape != y.shape or not np.issubdtype(fd.dtype, np.integer):
        raise EnsembleError(
            f"fold must be integer fold ids of shape {y.shape}, but got {fd.dtype} {fd.shape}"
        )
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


# --- alignment of stored runs -------------------------------------------------------------------------------


_ALIGNED = ("utt_ids", "classes", "y", "fold", "split")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def check_aligned(scores: Sequence[OOFScores], names: Sequence[str]) -> None:
    """Raise unless all runs share the first run's ``utt_ids``, ``classes``, ``y``, ``fold`` and ``split``.

    Compare runs in the same utterance order (:meth:`OOFScores.sorted`; files written by
    :func:`paraling.oof.save_oof` already are).

    Args:
        scores: Out-of-fold scores of each run.
        names: A name per run (run id or name), used in the message.

    Raises:
        EnsembleError: No runs, a names/scores length mismatch, or runs that differ from the first; the
            message names each offending run and the fields that differ.
    """
    if len(scores) == 0:
        raise EnsembleError("no runs to combine: pass at least one run's out-of-fold scores")
    if len(names) != len(scores):
        raise EnsembleError(f"got {len(scores)} runs but {len(names)} names")
    ref = scores[0]
    bad = []
    for name, s in zip(names[1:], scores[1:], strict=True):
        fields = [f for f in _ALIGNED if not _same(getattr(ref, f), getattr(s, f))]
        if fields:
            bad.append(f"{name!r} ({', '.join(fields)})")
    if bad:
        raise EnsembleError(
            f"runs are not aligned with {names[0]!r}: {'; '.join(bad)} differ. Combine only runs of the same "
            "corpus, manifest and fold assignment (same cv config and seed)."
        )


def stack_oof(scores: Sequence[OOFScores], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each run by utterance id, check alignment and stack the probabilities.

    Args:
        scores: Out-of-fold scores of each run.
        names: A name per run, for error messages.

    Returns:
        ``(S, y, fold)``: stack ``(n_models, n_utts, n_classes)`` float64, labels and folds ``(n_utts,)``.
    """
    ordered = [s.sorted() for s in scores]
    check_aligned(ordered, names)
    S = np.stack([s.proba.astype(np.float64) for s in ordered])
    return S, ordered[0].y.astype(np.int64), ordered[0].fold.astype(np.int64)


# --- evaluation of a selection on stored runs ---------------------------------------------------------------


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
    S = _check_stack(S)
    y = _check_labels(y, S.shape[1])
    fold = np.asarray(fold, dtype=np.int64)
    is_test = np.zeros(len(y), bool) if split is None else np.asarray(split).astype(str) == "test"
    sel = (fold >= 0) & ~is_test
    if not sel.any():
        raise EnsembleError("no cross-validated utterances to select on (all are in the test split or "
                            "unscored, e.g. cv.scheme=split); selection must never see the test split")
    factory = factory or GreedyEnsemble
    est = factory().fit(S[:, sel], y[sel])
    proba = est.predict_proba(S)
    pred = proba.argmax(1)
    single = np.array([metric(y[sel], S[m, sel].argmax(1)) for m in range(len(S))])
    best = int(np.argmax(single))
    folds = sorted({int(f) for f in fold[sel]})
    rep = EnsembleReport(
        est, np.asarray(est.weights_), proba, float(metric(y[sel], pred[sel])), best, float(single[best]),
        {f: float(metric(y[sel & (fold == f)], pred[sel & (fold == f)])) for f in folds},
        selection_mask=sel, test_mask=is_test,
    )
    if len(folds) >= 2:
        rep.nested = nested_cv_uar(S[:, sel], y[sel], fold[sel], factory, metric)
    if is_test.any():
        rep.test_uar = float(metric(y[is_test], pred[is_test]))
        rep.best_single_test_uar = float(metric(y[is_test], S[best, is_test].argmax(1)))
    return rep
