"""Utterance-level classifiers for the baselines, as scikit-learn estimators.

Every estimator takes ``fit(X, y, groups=None)`` with ``groups`` = the speaker of each training row, so that
model selection inside a training fold stays speaker-independent, and returns class probabilities from
``predict_proba`` (columns in ``classes_`` order) for ensembles.

- :class:`GroupedGridClassifier` (``kind="svm"`` / ``"lr"``): standardised features, a linear SVM or logistic
  regression whose ``C`` is picked from a grid by speaker-grouped inner cross-validation (UAR), refit on the whole
  training fold. The SVM's probabilities are a softmax of its one-vs-rest decision values (their argmax is the
  SVM's decision; Platt scaling, ``SVC(probability=True)``, is unreliable on small folds and can even invert it).
- :class:`RandomForestClassifier` from scikit-learn (balanced class weights).
- :class:`DropoutDNN`: a small torch MLP (three hidden ReLU layers with dropout), Adam, class-balanced
  cross-entropy, epoch selected on held-out speakers of the training fold.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 5)), np.repeat([0, 1], 20)
    >>> X[y == 1] += 2.0
    >>> groups = np.tile(np.arange(8), 5)
    >>> clf = GroupedGridClassifier("svm", Cs=(0.001, 0.1)).fit(X, y, groups)
    >>> clf.predict_proba(X).shape
    (40, 2)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted
from torch import nn

from paraling.data.splits import split_validation_speakers
from paraling.device import to_numpy
from paraling.errors import ConfigError
from paraling.scoring.metrics import uar

__all__ = ["DropoutDNN", "GroupedGridClassifier", "estimator_for", "make_estimator"]


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X must be (n_samples, n_features) with one label per row, but got {X.shape=}, {y.shape=}")
    if len(np.unique(y)) < 2:
        raise ValueError("a training fold holds a single class; use more speakers per fold or fewer folds")
    return X, y


class GroupedGridClassifier(ClassifierMixin, BaseEstimator):
    """Standardise, pick ``C`` by speaker-grouped inner CV (maximising UAR), refit with probabilities.

    Args:
        kind: ``svm`` (linear-kernel SVC) or ``lr`` (multinomial logistic regression).
        Cs: Grid of regularisation constants (the SVM grid includes 0.001, the ComParE baseline's best).
        inner_folds: Inner folds over the training speakers (fewer if there are fewer speakers).
        seed: Seed of the inner split.

    Attributes:
        C_: The chosen ``C``.
        cv_scores_: ``{C: mean inner-fold UAR}`` (empty when no selection was possible).
        classes_: Class labels seen in ``fit``.
    """

    def __init__(
        self,
        kind: str = "svm",
        Cs: Sequence[float] = (0.0001, 0.001, 0.01, 0.1, 1.0),
        inner_folds: int = 3,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.Cs = Cs
        self.inner_folds = inner_folds
        self.seed = seed

    def _make(self, C: float) -> Pipeline:
        if self.kind == "svm":
            clf: Any = SVC(kernel="linear", C=C, class_weight="balanced", decision_function_shape="ovr")
        else:
            clf = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
        return make_pipeline(StandardScaler(), clf)

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> GroupedGridClassifier:
        """Select ``C`` on the training rows (grouped by ``groups``), then refit on all of them."""
        if self.kind not in ("svm", "lr"):
            raise ConfigError(f"kind must be 'svm' or 'lr', but got kind={self.kind!r}")
        Cs = [float(c) for c in self.Cs]
        if not Cs or min(Cs) <= 0:
            raise ConfigError(f"Cs must be a non-empty list of positive numbers, but got Cs={list(self.Cs)!r}")
        X, y = _check_xy(X, y)
        self.cv_scores_: dict[float, float] = {}
        n_groups = len(np.unique(groups)) if groups is not None else 0
        k = min(int(self.inner_folds), n_groups)
        if len(Cs) > 1 and k >= 2:
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tiny inner folds: missing classes, convergence
                splits = list(splitter.split(X, y, groups))
                for C in Cs:
                    scores = []
                    for tr, te in splits:
                        if len(np.unique(y[tr])) < 2:
                            continue
                        pred = self._make(C).fit(X[tr], y[tr]).predict(X[te])
                        scores.append(balanced_accuracy_score(y[te], pred))
                    self.cv_scores_[C] = float(np.mean(scores)) if scores else float("nan")
        valid = {c: s for c, s in self.cv_scores_.items() if s == s}
        self.C_ = max(valid, key=lambda c: (valid[c], -c)) if valid else Cs[len(Cs) // 2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = self._make(self.C_).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, n_classes)``."""
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=np.float64)
        if self.kind == "lr":
            return self.model_.predict_proba(X)
        d = self.model_.decision_function(X)
        if d.ndim == 1:  # two classes: one signed margin for classes_[1]
            d = np.stack([-d, d], axis=1) / 2
        return softmax(d, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[self.predict_proba(X).argmax(1)]


class DropoutDNN(ClassifierMixin, BaseEstimator):
    """A 3-hidden-layer dropout MLP on standardised utterance features (torch, CPU-sized).

    Args:
        hidden: Hidden layer sizes.
        dropout: Dropout after each hidden layer.
        epochs: Training epochs.
        lr: Adam learning rate.
        batch_size: Minibatch size.
        val_fraction: Share of the training speakers held out to select the epoch (needs ``groups`` with >= 2
            speakers; otherwise the last epoch is kept).
        seed: Seed of initialisation, shuffling and the validation split.

    Attributes:
        classes_: Class labels seen in ``fit``.
        best_epoch_: Selected epoch.
        history_: Per epoch ``{"train_loss", "val_uar"}``.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (256, 256, 256),
        dropout: float = 0.5,
        epochs: int = 60,
        lr: float = 0.001,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed

    def _check_params(self) -> None:
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), but got dropout={self.dropout!r}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or float(self.lr) <= 0:
            raise ConfigError(
                f"epochs, batch_size and lr must be positive, but got epochs={self.epochs}, "
                f"batch_size={self.batch_size}, lr={self.lr}"
            )
        if not list(self.hidden) or min(int(h) for h in self.hidden) < 1:
            raise ConfigError(f"hidden must list positive layer sizes, but got hidden={list(self.hidden)!r}")

    def _net(self, d_in: int, n_out: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for h in self.hidden:
            layers += [nn.Linear(d_in, int(h)), nn.ReLU(), nn.Dropout(float(self.dropout))]
            d_in = int(h)
        layers.append(nn.Linear(d_in, n_out))
        net = nn.Sequential(*layers)
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return net

    def _scale(self, X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> DropoutDNN:
        """Train; with ``groups``, select the epoch by UAR on held-out speakers."""
        self._check_params()
        X, y = _check_xy(X, y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        n_cls = len(self.classes_)
        val = np.zeros(len(y), dtype=bool)
        if groups is not None and len(np.unique(groups)) >= 3:
            val = split_validation_speakers(np.asarray(groups), yi, float(self.val_fraction), int(self.seed))
        fit_rows = ~val if len(np.unique(yi[~val])) == n_cls else np.ones(len(y), dtype=bool)
        val = val & ~fit_rows
        self.mean_ = X[fit_rows].mean(axis=0)
        self.scale_ = np.maximum(X[fit_rows].std(axis=0), 1e-8)
        gen = torch.Generator().manual_seed(int(self.seed))
        torch.manual_seed(int(self.seed))
        net = self._net(X.shape[1], n_cls)
        xt, yt = self._scale(X[fit_rows]), torch.from_numpy(yi[fit_rows].astype(np.int64))
        xv, yv = self._scale(X[val]), yi[val]
        counts = np.bincount(yi[fit_rows], minlength=n_cls).astype(np.float32)
        weight = torch.from_numpy(counts.sum() / (n_cls * np.maximum(counts, 1)))
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        self.history_: list[dict[str, float]] = []
        best, best_state = -1.0, copy.deepcopy(net.state_dict())
        self.best_epoch_ = int(self.epochs) - 1
        bs = int(self.batch_size)
        for epoch in range(int(self.epochs)):
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for s in range(0, len(perm), bs):
                b = perm[s : s + bs]
                loss = loss_fn(net(xt[b]), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            rec = {"train_loss": total / max(len(xt), 1)}
            if val.any():
                net.eval()
                with torch.no_grad():
                    rec["val_uar"] = uar(yv, to_numpy(net(xv).argmax(1)), n_cls)
                if rec["val_uar"] >= best:  # ties: the later, better-trained epoch
                    best, best_state, self.best_epoch_ = rec["val_uar"], copy.deepcopy(net.state_dict()), epoch
            self.history_.append(rec)
        if val.any():
            net.load_state_dict(best_state)
        self.model_ = net.eval()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, n_classes)``."""
        check_is_fitted(self, "model_")
        with torch.no_grad():
            return to_numpy(torch.softmax(self.model_(self._scale(X)), dim=1)).astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable class per row."""
        return self.classes_[self.predict_proba(X).argmax(1)]


def estimator_for(model_cfg: Any, seed: int = 0) -> BaseEstimator:
    """The built-in utterance-level models' builder (registered for ``svm``, ``lr``, ``rf`` and ``dnn``)."""
    return make_estimator(str(model_cfg.kind), model_cfg.baseline, seed)


def make_estimator(name: str, baseline_cfg: Any, seed: int = 0) -> BaseEstimator:
    """The estimator for ``model.kind`` (``svm``, ``rf``, ``dnn``, ``lr``) from a ``model.baseline`` node."""
    b = baseline_cfg
    if name == "svm":
        return GroupedGridClassifier("svm", tuple(b.svm_c), int(b.inner_folds), seed)
    if name == "lr":
        return GroupedGridClassifier("lr", tuple(b.lr_c), int(b.inner_folds), seed)
    if name == "rf":
        return RandomForestClassifier(
            n_estimators=int(b.rf_trees), class_weight="balanced_subsample", random_state=seed
        )
    if name == "dnn":
        return DropoutDNN(
            tuple(b.dnn_hidden),
            float(b.dnn_dropout),
            int(b.dnn_epochs),
            float(b.dnn_lr),
            int(b.dnn_batch_size),
            seed=seed,
        )
    raise ConfigError(f"model.kind must be one of ['svm', 'rf', 'dnn', 'lr'] for a baseline, but got kind={name!r}")
