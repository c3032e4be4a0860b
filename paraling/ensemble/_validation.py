"""Argument checks shared by the ensemble modules (stacks, labels, integer parameters)."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

import numpy as np

from paraling.errors import ConfigError, EnsembleError

#: ``metric(y_true, y_pred) -> float``, higher is better (default everywhere: UAR).
Metric = Callable[[np.ndarray, np.ndarray], float]


def check_stack(S: np.ndarray) -> np.ndarray:
    """``S`` as float64 after checking it is a non-empty ``(n_models, n_utts, n_classes)`` probability stack."""
    arr = np.asarray(S, dtype=np.float64)
    if arr.ndim != 3 or 0 in arr.shape:
        raise EnsembleError(f"S must be a non-empty stack (n_models, n_utts, n_classes), but got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise EnsembleError("S must hold finite, non-negative class probabilities")
    return arr


def check_labels(y: np.ndarray, n_utts: int) -> np.ndarray:
    """``y`` as int64 after checking it holds ``n_utts`` class ids ``>= 0``."""
    arr = np.asarray(y)
    if arr.shape != (n_utts,):
        raise EnsembleError(f"y must have shape ({n_utts},) to match S, but got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
        raise EnsembleError(f"y must hold class ids >= 0, but got dtype {arr.dtype}")
    return arr.astype(np.int64)


def check_int(value: object, name: str, low: int) -> None:
    """Raise :class:`~paraling.errors.ConfigError` unless ``value`` is an integer (not a bool) ``>= low``."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, but got {name}={value!r}")
