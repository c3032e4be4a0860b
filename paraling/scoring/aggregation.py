"""Window posteriors to utterance scores: voting estimators with a scikit-learn interface.

A model scores fixed-width windows; an utterance is a group of windows. Every aggregator here takes

- ``X`` window class posteriors, shape ``(n_windows, n_classes)`` (finite, non-negative);
- ``groups`` the utterance of each window, shape ``(n_windows,)``, integer in ``[0, n_utts)``;
- optionally ``energy`` the frame log energy at each window's centre, shape ``(n_windows,)``;

and returns utterance class probabilities of shape ``(n_utts, n_classes)`` whose rows sum to 1. ``n_utts``
is ``groups.max() + 1`` unless ``n_groups`` is passed; an utterance without windows gets the uniform
distribution.
Everything is vectorised with ``np.bincount`` (no Python loop over windows) and imports no torch.

Estimators:

- :class:`MajorityVote`: each window votes for its argmax class; proba = vote fractions.
- :class:`MeanVote`: mean of the posteriors, or (``log=True``) mean of the log-posteriors, softmax-normalised
  (a normalised geometric mean).
- :class:`WeightedVote`: the weighted majority vote of Milde & Biemann (2015): one Ridge regression per class
  predicts from a window's posterior vector (and energy) whether the window's argmax is correct; at prediction
  each window votes for its argmax with that predicted correctness, clipped at 0. With ``soft=True``
  (``weighted_soft``) each window adds its whole posterior vector times that weight instead of a hard vote.

Example:
    >>> import numpy as np
    >>> X = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    >>> groups = np.array([0, 0, 1])
    >>> make_aggregator("majority").fit(X).predict_proba(X, groups)
    array([[0.5, 0.5],
           [0. , 1. ]])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from numbers import Real
from typing import Any, TypeVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from paraling.config_groups import AggregationConfig
from paraling.errors import ConfigError
from paraling.plugins import Entry, Registry
from paraling.scoring.vote_arrays import (
    check_bool,
    check_groups,
    check_posteriors,
    check_vector,
    group_sum,
    normalise_rows,
    vote,
)

__all__ = [
    "METHODS",
    "VOTES",
    "Aggregator",
    "MajorityVote",
    "MeanVote",
    "WeightedVote",
    "make_aggregator",
    "register_vote",
]

_A = TypeVar("_A", bound="Aggregator")

#: Names accepted by :func:`make_aggregator`.
METHODS: tuple[str, ...] = ("majority", "mean", "logmean", "weighted", "weighted_soft")


# --- estimators ------------------------------------------------------------------------------------------


class Aggregator(BaseEstimator, ABC):
    """Base class: validation, ``fit``/``predict_proba``/``predict`` plumbing; subclasses score utterances.

    Subclasses implement :meth:`_check_params`, optionally :meth:`_fit`, and :meth:`_proba`.
    """

    def _check_params(self) -> None:
        """Raise :class:`ConfigError` for an invalid constructor parameter."""

    def _fit(self, X: np.ndarray, y: np.ndarray | None, energy: np.ndarray | None) -> None:
        """Learn state from validated training windows (default: nothing to learn)."""

    def check_fitted(self, n_classes: int) -> None:
        """Check a fitted state read from a file against ``n_classes`` classes (shapes, finite values).

        Raises:
            ValueError: Naming the attribute that does not fit.
        """
        n = getattr(self, "n_classes_", None)
        if n != n_classes:
            raise ValueError(f"n_classes_ is {n!r}, but the model has {n_classes} classes")

    @abstractmethod
    def _proba(self, X: np.ndarray, groups: np.ndarray, n_groups: int, energy: np.ndarray | None) -> np.ndarray:
        """Utterance probabilities ``(n_groups, n_classes)`` from validated windows (each subclass's rule)."""

    def fit(
        self: _A,
        X: np.ndarray,
        y: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        energy: np.ndarray | None = None,
    ) -> _A:
        """Validate parameters and training windows, learn what the method needs.

        Args:
            X: Window posteriors, shape ``(n_windows, n_classes)``.
            y: True class of each window (its utterance's label repeated), shape ``(n_windows,)``; required by
                :class:`WeightedVote` only.
            groups: Utterance of each window, shape ``(n_windows,)``; accepted for interface symmetry, unused.
            energy: Log energy at each window's centre, shape ``(n_windows,)``; used by :class:`WeightedVote`.

        Returns:
            ``self``.
        """
        self._check_params()
        X = check_posteriors(X)
        n = len(X)
        y = check_vector(y, n, "y", integer=True)
        if y is not None and y.size and (y.min() < 0 or y.max() >= X.shape[1]):
            raise ValueError(f"y must hold class ids in [0, {X.shape[1]}), but got range [{y.min()}, {y.max()}]")
        if groups is not None:
            check_groups(groups, n, None)
        energy = check_vector(energy, n, "energy", integer=False)
        self.n_classes_ = X.shape[1]
        self._fit(X, y, energy)
        return self

    def predict_proba(
        self,
        X: np.ndarray,
        groups: np.ndarray,
        energy: np.ndarray | None = None,
        n_groups: int | None = None,
    ) -> np.ndarray:
        """Utterance class probabilities.

        Args:
            X: Window posteriors, shape ``(n_windows, n_classes)``.
            groups: Utterance of each window, shape ``(n_windows,)``, in ``[0, n_utts)``.
            energy: Log energy at each window's centre, shape ``(n_windows,)`` (:class:`WeightedVote` only).
            n_groups: Number of utterances; default ``groups.max() + 1``.

        Returns:
            Shape ``(n_utts, n_classes)``, rows summing to 1 (uniform for an utterance without windows).
        """
        check_is_fitted(self)
        X = check_posteriors(X)
        if X.shape[1] != self.n_classes_:
            raise ValueError(f"X has {X.shape[1]} classes, but {type(self).__name__} was fitted with {self.n_classes_}")
        g, n_utts = check_groups(groups, len(X), n_groups)
        energy = check_vector(energy, len(X), "energy", integer=False)
        return self._proba(X, g, n_utts, energy)

    def predict(
        self,
        X: np.ndarray,
        groups: np.ndarray,
        energy: np.ndarray | None = None,
        n_groups: int | None = None,
    ) -> np.ndarray:
        """Utterance class ids, shape ``(n_utts,)``: the argmax of :meth:`predict_proba` (ties → lower id)."""
        return np.argmax(self.predict_proba(X, groups, energy, n_groups), axis=1)


class MajorityVote(Aggregator):
    """Each window votes for its argmax class; utterance proba = the fraction of votes per class.

    ``fit`` only records ``n_classes_``.
    """

    def _proba(self, X: np.ndarray, groups: np.ndarray, n_groups: int, energy: np.ndarray | None) -> np.ndarray:
        votes = vote(X.argmax(axis=1), np.ones(len(X)), groups, n_groups, X.shape[1])
        return normalise_rows(votes)


class MeanVote(Aggregator):
    """Mean of the window posteriors, or of their logarithms.

    Args:
        log: If ``True``, average ``log(max(p, eps))`` and softmax-normalise (a normalised geometric mean,
            which lets a confident "no" from a few windows veto a class); else average ``p`` and renormalise.
        eps: Floor applied to posteriors before the logarithm, in ``(0, 1)``.
    """

    def __init__(self, log: bool = False, eps: float = 1e-12) -> None:
        self.log = log
        self.eps = eps

    def _check_params(self) -> None:
        check_bool(self.log, "log")
        if not isinstance(self.eps, Real) or isinstance(self.eps, bool) or not 0.0 < self.eps < 1.0:
            raise ConfigError(f"eps must be a float in (0, 1), but got eps={self.eps!r}")

    def _proba(self, X: np.ndarray, groups: np.ndarray, n_groups: int, energy: np.ndarray | None) -> np.ndarray:
        values = np.log(np.maximum(X, self.eps)) if self.log else X
        counts = np.bincount(groups, minlength=n_groups)[:, None]
        has = counts > 0
        mean = np.divide(group_sum(values, groups, n_groups), counts, out=np.zeros((n_groups, X.shape[1])), where=has)
        if self.log:
            mean = np.exp(mean - mean.max(axis=1, keepdims=True))
        return normalise_rows(np.where(has, mean, 0.0))


class WeightedVote(Aggregator):
    """Weighted majority vote with per-class Ridge regressions (Milde & Biemann, 2015).

    ``fit``: for each class ``c``, a :class:`sklearn.linear_model.Ridge` is fitted on the training windows
    whose argmax is ``c``, regressing "the window's argmax equals its true class" (1/0) on the window's
    posterior vector (plus its standardised energy if ``use_energy``). At prediction each window votes for its
    argmax class ``c`` with weight ``max(ridge_c(x), 0)``; a class never predicted in training votes with
    weight 1. Utterance proba = weighted votes normalised to sum 1 (uniform if all of an utterance's weights
    are 0). With ``soft``, a window adds ``weight * posterior`` to every class instead of ``weight`` to its argmax:
    the posterior mean, weighted by how reliable each window's decision is predicted to be.

    Args:
        alpha: Ridge regularisation strength, ``>= 0``.
        use_energy: Add the window's log energy (standardised with the training mean and std) as a feature;
            then ``energy`` is required by ``fit``, ``predict_proba`` and :meth:`weights_for`.
        soft: Weight the windows' posterior vectors instead of their hard votes.

    Attributes:
        n_classes_: Number of classes.
        coef_: Ridge coefficients, shape ``(n_classes, n_features)``, where ``n_features`` is ``n_classes``
            (plus 1 with energy).
        intercept_: Ridge intercepts, shape ``(n_classes,)``.
        class_seen_: Whether class ``c`` was the argmax of any training window, shape ``(n_classes,)``; unseen
            classes have ``coef_ = 0`` and ``intercept_ = 1`` (weight 1).
        energy_mean_: Training mean of the energy (0.0 without energy).
        energy_scale_: Training std of the energy (1.0 without energy or when constant).
    """

    def __init__(self, alpha: float = 1.0, use_energy: bool = True, soft: bool = False) -> None:
        self.alpha = alpha
        self.use_energy = use_energy
        self.soft = soft

    def _check_params(self) -> None:
        if not isinstance(self.alpha, Real) or isinstance(self.alpha, bool) or not 0.0 <= self.alpha < np.inf:
            raise ConfigError(f"alpha must be a finite float >= 0, but got alpha={self.alpha!r}")
        check_bool(self.use_energy, "use_energy")
        check_bool(self.soft, "soft")

    def _features(self, X: np.ndarray, energy: np.ndarray | None) -> np.ndarray:
        if not self.use_energy:
            return X
        if energy is None:
            raise ConfigError("use_energy=True but energy=None: pass the window energies or set use_energy=False")
        return np.hstack([X, ((energy - self.energy_mean_) / self.energy_scale_)[:, None]])

    def _fit(self, X: np.ndarray, y: np.ndarray | None, energy: np.ndarray | None) -> None:
        if y is None:
            raise ValueError("WeightedVote.fit needs y, the true class of each window, shape (n_windows,)")
        self.energy_mean_, self.energy_scale_ = 0.0, 1.0
        if self.use_energy and energy is not None and len(energy):
            std = float(energy.std())
            self.energy_mean_, self.energy_scale_ = float(energy.mean()), (std if std > 0 else 1.0)
        F = self._features(X, energy)
        pred = X.argmax(axis=1)
        correct = (pred == y).astype(np.float64)
        n_classes = X.shape[1]
        coef = np.zeros((n_classes, F.shape[1]))
        intercept = np.ones(n_classes)
        seen = np.zeros(n_classes, dtype=bool)
        for c in range(n_classes):  # one regression per class
            mask = pred == c
            if not mask.any():
                continue
            ridge = Ridge(alpha=float(self.alpha)).fit(F[mask], correct[mask])
            coef[c], intercept[c], seen[c] = ridge.coef_, ridge.intercept_, True
        self.coef_, self.intercept_, self.class_seen_ = coef, intercept, seen

    def check_fitted(self, n_classes: int) -> None:
        """See :meth:`Aggregator.check_fitted`; also ``coef_``, ``intercept_``, ``class_seen_`` and the energy
        scaling."""
        super().check_fitted(n_classes)
        n_features = n_classes + (1 if self.use_energy else 0)
        shapes = {"coef_": (n_classes, n_features), "intercept_": (n_classes,), "class_seen_": (n_classes,)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name, None))
            if value.shape != shape or value.dtype == object or not np.isfinite(value.astype(np.float64)).all():
                raise ValueError(f"{name} must be {shape} finite numbers, got shape {value.shape}")
        self.class_seen_ = np.asarray(self.class_seen_, dtype=bool)
        for name in ("energy_mean_", "energy_scale_"):
            v = getattr(self, name, None)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.energy_scale_ <= 0:
            raise ValueError(f"energy_scale_ must be > 0, got {self.energy_scale_!r}")

    def weights_for(self, X: np.ndarray, energy: np.ndarray | None = None) -> np.ndarray:
        """Vote weight of each window: its argmax class's Ridge prediction, clipped at 0.

        Args:
            X: Window posteriors, shape ``(n_windows, n_classes)``.
            energy: Log energy at each window's centre, shape ``(n_windows,)`` (required with ``use_energy``).

        Returns:
            Shape ``(n_windows,)``, non-negative.
        """
        check_is_fitted(self)
        X = check_posteriors(X)
        if X.shape[1] != self.n_classes_:
            raise ValueError(f"X has {X.shape[1]} classes, but WeightedVote was fitted with {self.n_classes_}")
        energy = check_vector(energy, len(X), "energy", integer=False)
        return self._weights(X, energy)

    def _weights(self, X: np.ndarray, energy: np.ndarray | None) -> np.ndarray:
        F = self._features(X, energy)
        pred = X.argmax(axis=1)
        raw = np.einsum("ij,ij->i", F, self.coef_[pred]) + self.intercept_[pred]
        return np.clip(raw, 0.0, None)

    def _proba(self, X: np.ndarray, groups: np.ndarray, n_groups: int, energy: np.ndarray | None) -> np.ndarray:
        w = self._weights(X, energy)
        if self.soft:
            return normalise_rows(group_sum(X * w[:, None], groups, n_groups))
        return normalise_rows(vote(X.argmax(axis=1), w, groups, n_groups, X.shape[1]))


# --- factory ---------------------------------------------------------------------------------------------

#: The votes, by ``aggregation.kind``: an entry's target is an :class:`Aggregator` subclass, ``info["params"]`` the
#: constructor parameters that kind fixes. A vote of your own is registered with :func:`register_vote`.
VOTES: Registry[Any] = Registry("aggregation", "vote")
for _kind, _cls, _fixed in (
    ("majority", MajorityVote, {}),
    ("mean", MeanVote, {"log": False}),
    ("logmean", MeanVote, {"log": True}),
    ("weighted", WeightedVote, {"soft": False}),
    ("weighted_soft", WeightedVote, {"soft": True}),
):
    VOTES.add(Entry(_kind, _cls, AggregationConfig, {"params": _fixed}))


def register_vote(kind: str, *, config: type = AggregationConfig, **fixed: Any) -> Any:
    """Decorator registering an :class:`Aggregator` subclass as ``aggregation.kind=kind`` (``fixed``: constructor
    parameters that kind sets)."""
    return VOTES.register(kind, config=config, params=fixed)


def make_aggregator(method: str, **params: Any) -> Aggregator:
    """Build an aggregator by name and validate its parameters at once.

    Args:
        method: One of ``majority``, ``mean``, ``logmean``, ``weighted``, ``weighted_soft`` (see :data:`METHODS`).
        **params: Constructor parameters of that estimator (``eps`` for mean/logmean; ``alpha``,
            ``use_energy`` for weighted and weighted_soft).

    Returns:
        An unfitted estimator.

    Raises:
        ConfigError: Unknown method, unknown parameter, or invalid value.

    Example:
        >>> make_aggregator("weighted", alpha=0.5, use_energy=False)
        WeightedVote(alpha=0.5, use_energy=False)
    """
    if method not in VOTES:
        raise ConfigError(f"unknown aggregation method {method!r}; choose one of {', '.join(VOTES.kinds())}")
    entry = VOTES.entry(method)
    cls, fixed = entry.load(), dict(entry.info.get("params", {}))
    allowed = set(cls().get_params()) - set(fixed)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"aggregation {method!r} got unknown parameter(s) {unknown}; it accepts {sorted(allowed) or 'none'}"
        )
    estimator = cls(**fixed, **params)
    estimator._check_params()
    return estimator
