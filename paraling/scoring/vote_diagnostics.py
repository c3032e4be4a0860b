"""Why a vote wins or loses: per-fold diagnostics of the Ridge-weighted vote against soft voting.

The weighted vote of Milde & Biemann (:class:`~paraling.scoring.aggregation.WeightedVote`) is fitted on the
windows of the held-out speakers of a training fold (the same speakers that chose the epoch) and adds each window's
predicted reliability to a *hard* vote. :func:`vote_diagnostics` separates the ways this can lose to the posterior
mean on a fold's test windows:

- ``vote_window_acc_val`` vs ``vote_window_acc_test``: window accuracy where the Ridge models were fitted and where
  they are used (a gap: the fit sees optimistic, epoch-selected windows);
- ``vote_weight_auc``: how well the weights rank the test windows' correctness (ROC AUC; 0.5 = no better than
  equal weights), and ``vote_weight_zero``: the share of test windows whose weight is clipped to 0;
- ``vote_uar_weighted_oracle``: the hard weighted vote with Ridge models fitted on the test windows themselves
  (an optimistic reference, not a bound on UAR: if even it loses to the mean, the hard vote is the problem rather
  than where the Ridge models were fitted);
- ``vote_uar_weighted_noenergy`` and ``vote_uar_weighted_soft_noenergy``: the same votes without the energy feature;
- ``vote_energy_coef``: the mean Ridge coefficient of the standardised energy over classes.

All are plain floats; :class:`~paraling.pipeline.cnn.CNNRunner` logs them per fold (``vote_weight_auc/fold3``).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from paraling.scoring.aggregation import WeightedVote, make_aggregator
from paraling.scoring.metrics import uar

__all__ = ["vote_diagnostics"]


def _utt_uar(agg: WeightedVote, X: np.ndarray, utt: np.ndarray, e: np.ndarray, y_utt: np.ndarray, n: int) -> float:
    """UAR over the utterances with windows (``y_utt >= 0``)."""
    pred = agg.predict(X, utt, e, n_groups=len(y_utt))
    seen = y_utt >= 0
    return float(uar(y_utt[seen], pred[seen], n))


def vote_diagnostics(
    *,
    p_val: np.ndarray,
    y_val: np.ndarray,
    e_val: np.ndarray,
    p_test: np.ndarray,
    y_test: np.ndarray,
    utt_test: np.ndarray,
    e_test: np.ndarray,
    n_utts: int | None = None,
    alpha: float = 1.0,
    use_energy: bool = True,
) -> dict[str, float]:
    """Diagnostics of the weighted vote on one fold (see the module docstring for each key).

    Args:
        p_val: Posteriors of the validation windows (where the Ridge models are fitted), ``(n_val, n_classes)``.
        y_val: True class of each validation window.
        e_val: Log energy of each validation window.
        p_test: Posteriors of the test windows, ``(n_test, n_classes)``.
        y_test: True class of each test window.
        utt_test: Test utterance (position in the fold's test rows) of each test window.
        e_test: Log energy of each test window.
        n_utts: Number of test utterances (default ``utt_test.max() + 1``); utterances without windows are left
            out of the UARs here.
        alpha: ``aggregation.ridge_alpha``.
        use_energy: ``aggregation.use_energy`` (the configured vote; the ``noenergy`` keys drop it regardless).

    Returns:
        Key -> value; keys that cannot be computed on this fold (e.g. an AUC where every window is right) are left
        out.
    """
    n = p_test.shape[1]
    if n_utts is None:
        n_utts = int(utt_test.max()) + 1 if len(utt_test) else 0
    y_utt = np.full(n_utts, -1, dtype=np.int64)
    y_utt[utt_test] = y_test
    out: dict[str, float] = {}
    if len(y_val):
        out["vote_window_acc_val"] = float(np.mean(p_val.argmax(1) == y_val))
    if not len(y_test) or not len(y_val):
        return out
    correct = p_test.argmax(1) == y_test
    out["vote_window_acc_test"] = float(correct.mean())
    fitted = make_aggregator("weighted", alpha=alpha, use_energy=use_energy).fit(p_val, y_val, energy=e_val)
    w = fitted.weights_for(p_test, e_test if use_energy else None)
    out["vote_weight_zero"] = float(np.mean(w == 0))
    if 0 < correct.sum() < len(correct):
        out["vote_weight_auc"] = float(roc_auc_score(correct, w))
    if use_energy and fitted.class_seen_.any():
        out["vote_energy_coef"] = float(np.mean(fitted.coef_[fitted.class_seen_, -1]))
    oracle = make_aggregator("weighted", alpha=alpha, use_energy=use_energy).fit(p_test, y_test, energy=e_test)
    out["vote_uar_weighted_oracle"] = _utt_uar(oracle, p_test, utt_test, e_test, y_utt, n)
    for name, soft in (("weighted", False), ("weighted_soft", True)):
        agg = make_aggregator("weighted" if not soft else "weighted_soft", alpha=alpha, use_energy=False)
        agg.fit(p_val, y_val)
        out[f"vote_uar_{name}_noenergy"] = _utt_uar(agg, p_test, utt_test, e_test, y_utt, n)
    return out
