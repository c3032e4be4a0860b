"""Validation of voting inputs and the vectorised per-utterance reductions the voting estimators share.

Every reduction is one ``np.bincount`` over ``groups`` (the utterance of each window): no Python loop over windows.
"""

from __future__ import annotations

import numpy as np

from paraling.errors import ConfigError

__all__ = ["check_bool", "check_groups", "check_posteriors", "check_vector", "group_sum", "normalise_rows", "vote"]


def check_posteriors(X: np.ndarray) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"X must be window posteriors of shape (n_windows, n_classes), but got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("X holds non-finite values (NaN or inf)")
    if arr.size and arr.min() < 0:
        raise ValueError(f"X must be non-negative class posteriors, but its minimum is {arr.min()}")
    return arr


def check_vector(a: np.ndarray | None, n: int, name: str, *, integer: bool) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match X, but got shape {arr.shape}")
    if integer:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integers, but got dtype {arr.dtype}")
        return arr.astype(np.int64)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return arr


def check_groups(groups: np.ndarray, n_windows: int, n_groups: int | None) -> tuple[np.ndarray, int]:
    g = check_vector(groups, n_windows, "groups", integer=True)
    if g is None:
        raise ValueError("groups is required: the utterance index of each window, shape (n_windows,)")
    if g.size and g.min() < 0:
        raise ValueError(f"groups must be utterance indices >= 0, but got {g.min()}")
    seen = int(g.max()) + 1 if g.size else 0
    if n_groups is None:
        return g, seen
    if not isinstance(n_groups, (int, np.integer)) or isinstance(n_groups, bool) or n_groups < seen:
        raise ConfigError(f"n_groups must be an integer >= groups.max() + 1 = {seen}, but got {n_groups=!r}")
    return g, int(n_groups)


def group_sum(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums of ``values`` (n_windows, k) per group → (n_groups, k), with one ``bincount``."""
    k = values.shape[1]
    keys = (groups[:, None] * k + np.arange(k)).ravel()
    return np.bincount(keys, weights=values.ravel(), minlength=n_groups * k).reshape(n_groups, k)


def vote(pred: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """Weighted votes of windows for their predicted class, per group → (n_groups, n_classes)."""
    keys = groups * n_classes + pred
    return np.bincount(keys, weights=weights, minlength=n_groups * n_classes).reshape(n_groups, n_classes)


def normalise_rows(S: np.ndarray) -> np.ndarray:
    """Rows divided by their sum; rows summing to 0 become uniform."""
    total = S.sum(axis=1, keepdims=True)
    uniform = np.full_like(S, 1.0 / S.shape[1])
    return np.divide(S, total, out=uniform, where=total > 0)


def check_bool(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be a bool, but got {name}={value!r}")
