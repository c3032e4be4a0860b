"""Combination rules: merge a stack of utterance probabilities with integer model weights.

A *stack* ``S`` of shape ``(n_models, n_utts, n_classes)`` holds each model's utterance class probabilities for
the same utterances in the same order (see :func:`paraling.ensemble.stack_oof`).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np

from paraling.ensemble._validation import check_stack
from paraling.errors import ConfigError, EnsembleError

__all__ = ["COMBINERS", "combine"]

#: Names accepted by :func:`combine` and ``GreedyEnsemble(combiner=...)``.
COMBINERS: tuple[str, ...] = ("mean", "harmonic", "geometric", "weighted")


def check_combiner(method: str) -> None:
    """Raise :class:`~paraling.errors.ConfigError` unless ``method`` is one of :data:`COMBINERS`."""
    if method not in COMBINERS:
        raise ConfigError(f"unknown combiner {method!r}; choose one of {', '.join(COMBINERS)}")


def decision_terms(S: np.ndarray, method: str, eps: float) -> tuple[np.ndarray, int]:
    """Per-model terms whose weighted sum orders classes like the combination; +1 = argmax, -1 = argmin."""
    if method in ("mean", "weighted"):
        return S, 1
    if method == "geometric":
        return np.log(np.maximum(S, eps)), 1
    return 1.0 / np.maximum(S, eps), -1  # harmonic: W / sum(w / p) is largest where sum(w / p) is smallest


def decide(acc: np.ndarray, sign: int) -> np.ndarray:
    """Class ids from summed :func:`decision_terms` ``(..., n_classes)``: argmax for ``sign > 0``, else argmin."""
    return acc.argmax(axis=-1) if sign > 0 else acc.argmin(axis=-1)


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
    check_combiner(method)
    if not isinstance(eps, Real) or not 0.0 < eps < 1.0:
        raise ConfigError(f"eps must be a float in (0, 1), but got {eps=!r}")
    S = check_stack(S)
    w = np.ones(len(S)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(S),):
        raise EnsembleError(f"weights must have shape ({len(S)},) to match S, but got shape {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise EnsembleError(f"weights must be finite, non-negative and not all 0, but got {w.tolist()}")
    used = w > 0
    w, S = w[used], S[used]
    total = w.sum()
    terms, _ = decision_terms(S, method, eps)
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
