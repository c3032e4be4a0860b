"""Classification metrics over integer class ids ``0..n_classes-1``.

The headline metric is the unweighted average recall (UAR): the mean over classes of the per-class recall,
taken over the classes *present in* ``y_true`` (a class never seen in the truth has no recall). It equals
scikit-learn's ``recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro")``.

Everything here is plain numpy (no torch), vectorised with ``np.bincount``.

Example:
    >>> import numpy as np
    >>> y_true = np.array([0, 0, 1, 1, 2])
    >>> y_pred = np.array([0, 1, 1, 1, 2])
    >>> round(uar(y_true, y_pred), 4)
    0.8333
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paraling.errors import ConfigError

__all__ = [
    "accuracy",
    "binary_uar",
    "bootstrap_ci",
    "confusion_matrix",
    "fold_summary",
    "macro_f1",
    "per_speaker_uar",
    "summarize",
    "uar",
]

# Bootstrap resamples are drawn in chunks of at most this many (resample, utterance) index pairs.
_BOOT_CHUNK = 2_000_000


def _as_labels(a: np.ndarray | Sequence[int], name: str) -> np.ndarray:
    """Return ``a`` as a 1-D int64 array of non-negative class ids, or raise ValueError."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), but got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.mod(arr, 1) == 0))
    )
    if not integral:
        raise ValueError(f"{name} must hold integer class ids, but got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} must hold class ids >= 0, but got {arr.min()}")
    return arr


def _check_pair(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a (truth, prediction) pair; return both as int64 and the number of classes to count."""
    yt = _as_labels(y_true, "y_true")
    yp = _as_labels(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(yt)} != {len(yp)}")
    if yt.size == 0:
        raise ValueError("y_true is empty: a metric needs at least one sample")
    seen = int(max(yt.max(), yp.max())) + 1
    if n_classes is None:
        return yt, yp, seen
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 1:
        raise ConfigError(f"n_classes must be a positive integer, but got {n_classes=!r}")
    if seen > n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), but got class id {seen - 1} ({n_classes=})")
    return yt, yp, int(n_classes)


def _recalls(yt: np.ndarray, yp: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (recall, support); recall is NaN where the class is absent from ``yt``."""
    support = np.bincount(yt, minlength=n_classes)
    correct = np.bincount(yt[yt == yp], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = correct / support
    return recall, support


def uar(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int | None = None) -> float:
    """Unweighted average recall: macro-averaged recall over the classes present in ``y_true``.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        n_classes: If given, every label must lie in ``[0, n_classes)``; it does not change the value (classes
            absent from ``y_true`` never enter the average).

    Returns:
        The UAR in ``[0, 1]``.
    """
    yt, yp, n = _check_pair(y_true, y_pred, n_classes)
    recall, support = _recalls(yt, yp, n)
    return float(recall[support > 0].mean())


def accuracy(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int | None = None
) -> float:
    """Fraction of samples whose prediction equals the truth.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        n_classes: Optional range check, as in :func:`uar`.
    """
    yt, yp, _ = _check_pair(y_true, y_pred, n_classes)
    return float(np.mean(yt == yp))


def macro_f1(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int | None = None
) -> float:
    """F1 averaged over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's ``average="macro"``);
    a class never predicted and never true does not count, one predicted but never true scores 0.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        n_classes: Optional range check, as in :func:`uar`.
    """
    yt, yp, n = _check_pair(y_true, y_pred, n_classes)
    tp = np.bincount(yt[yt == yp], minlength=n).astype(np.float64)
    true, pred = np.bincount(yt, minlength=n), np.bincount(yp, minlength=n)
    present = (true + pred) > 0
    return float(np.mean(2 * tp[present] / (true + pred)[present]))


def confusion_matrix(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int
) -> np.ndarray:
    """Count matrix with true classes in rows and predicted classes in columns.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        n_classes: Number of classes ``C``; labels must lie in ``[0, C)``.

    Returns:
        ``cm`` of shape ``(n_classes, n_classes)``, int64; ``cm[i, j]`` counts samples of class ``i``
        predicted as ``j``.
    """
    yt, yp, n = _check_pair(y_true, y_pred, n_classes)
    return np.bincount(yt * n + yp, minlength=n * n).reshape(n, n).astype(np.int64)


def per_speaker_uar(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], speakers: np.ndarray | Sequence
) -> dict[str, float]:
    """UAR computed separately on each speaker's samples (over the classes that speaker produced).

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        speakers: Speaker of each sample, shape ``(n_samples,)``; any hashable values, keys become ``str``.

    Returns:
        ``{speaker: uar}`` in sorted speaker order.
    """
    yt, yp, n = _check_pair(y_true, y_pred)
    spk = np.asarray(speakers)
    if spk.shape != yt.shape:
        raise ValueError(f"speakers has shape {spk.shape}, expected {yt.shape}")
    names, inverse = np.unique(spk.astype(str), return_inverse=True)
    out: dict[str, float] = {}
    for i, name in enumerate(names):  # one iteration per speaker, not per sample
        mask = inverse == i
        recall, support = _recalls(yt[mask], yp[mask], n)
        out[str(name)] = float(recall[support > 0].mean())
    return out


def fold_summary(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of per-fold values.

    The standard deviation is the population one (``ddof=0``, numpy's and scikit-learn's ``cross_val_score``
    convention), so it is defined (0.0) for a single fold.

    Args:
        values: One value per fold, shape ``(n_folds,)``.

    Returns:
        ``{"mean": ..., "std": ...}``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, but got shape {arr.shape}")
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=0))}


def bootstrap_ci(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the UAR.

    Samples are resampled with replacement ``n_boot`` times; each resample's UAR is taken over the classes
    present in that resample; the interval is the ``(alpha/2, 1 - alpha/2)`` quantile pair of those UARs.
    Resamples are drawn in vectorised chunks, so memory stays bounded for large ``n_samples``.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        n_boot: Number of bootstrap resamples (>= 1).
        alpha: Two-sided level in ``(0, 1)``; 0.05 gives a 95% interval.
        seed: Seed of the ``numpy.random.default_rng`` generator (the result is deterministic given it).

    Returns:
        ``(low, high)``.
    """
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, but got {n_boot=!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1), but got {alpha=!r}")
    yt, yp, n_classes = _check_pair(y_true, y_pred)
    n = len(yt)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _BOOT_CHUNK // n)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        keys = (yt[idx] + np.arange(b)[:, None] * n_classes).ravel()
        hits = (yp[idx] == yt[idx]).ravel()
        support = np.bincount(keys, minlength=b * n_classes).reshape(b, n_classes)
        correct = np.bincount(keys, weights=hits, minlength=b * n_classes).reshape(b, n_classes)
        present = support > 0
        recall = np.divide(correct, support, out=np.zeros_like(correct), where=present)
        stats[start : start + b] = recall.sum(axis=1) / present.sum(axis=1)
    lo, hi = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def binary_uar(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], negative_class: int) -> float:
    """UAR after collapsing the classes to two: ``negative_class`` versus all others.

    For example with the food classes of iHEARu-EAT, ``negative_class`` = the id of ``No_Food`` gives the
    eating-versus-not-eating UAR.

    Args:
        y_true: True class ids, shape ``(n_samples,)``.
        y_pred: Predicted class ids, shape ``(n_samples,)``.
        negative_class: The class id that forms the negative class on its own.
    """
    if not isinstance(negative_class, (int, np.integer)) or isinstance(negative_class, bool) or negative_class < 0:
        raise ConfigError(f"negative_class must be a non-negative class id, but got {negative_class=!r}")
    yt, yp, _ = _check_pair(y_true, y_pred)
    return uar((yt != negative_class).astype(np.int64), (yp != negative_class).astype(np.int64))


def summarize(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    fold: np.ndarray | Sequence[int] | None = None,
    speakers: np.ndarray | Sequence | None = None,
    n_classes: int | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    negative_class: int | None = None,
) -> dict[str, float]:
    """All headline metrics of one set of utterance predictions, flat, ready for ``mlflow.log_metrics``.

    Keys: ``uar``, ``accuracy``, ``wa`` (weighted accuracy, the emotion literature's name for accuracy),
    ``macro_f1``, ``uar_ci_low``, ``uar_ci_high`` (pooled over all scored utterances);
    ``uar_fold<k>`` for each fold ``k`` and ``uar_fold_mean``, ``uar_fold_std`` (see :func:`fold_summary`);
    with ``speakers``: ``uar_speaker_mean``, ``uar_speaker_std`` (over per-speaker UARs); with
    ``negative_class``: ``uar_binary`` (see :func:`binary_uar`).

    Args:
        y_true: True class ids, shape ``(n_utts,)``.
        y_pred: Predicted class ids, shape ``(n_utts,)``.
        fold: Fold in which each utterance was held out, shape ``(n_utts,)``. Utterances with ``fold < 0``
            were never scored (see :mod:`paraling.scoring.oof`) and are dropped from *every* metric. ``None`` means a
            single fold 0.
        speakers: Speaker of each utterance, shape ``(n_utts,)``, or ``None``.
        n_classes: Optional range check for the labels.
        n_boot: Bootstrap resamples for the confidence interval.
        alpha: Level of the confidence interval.
        seed: Seed of the bootstrap.
        negative_class: If given, also report ``uar_binary``.

    Returns:
        ``{metric_name: value}``.
    """
    yt, yp, n = _check_pair(y_true, y_pred, n_classes)
    fd = np.zeros(len(yt), dtype=np.int64) if fold is None else _as_folds(fold, len(yt))
    keep = fd >= 0
    if not keep.any():
        raise ValueError("no utterance has fold >= 0: nothing was scored")
    yt, yp, fd = yt[keep], yp[keep], fd[keep]
    lo, hi = bootstrap_ci(yt, yp, n_boot=n_boot, alpha=alpha, seed=seed)
    out: dict[str, float] = {
        "uar": uar(yt, yp, n),
        "accuracy": accuracy(yt, yp),
        "wa": accuracy(yt, yp),
        "macro_f1": macro_f1(yt, yp, n),
        "uar_ci_low": lo,
        "uar_ci_high": hi,
    }
    per_fold = {int(k): uar(yt[fd == k], yp[fd == k], n) for k in np.unique(fd)}
    out.update({f"uar_fold{k}": v for k, v in per_fold.items()})
    summary = fold_summary(list(per_fold.values()))
    out["uar_fold_mean"], out["uar_fold_std"] = summary["mean"], summary["std"]
    if speakers is not None:
        spk = np.asarray(speakers)
        if spk.shape != keep.shape:
            raise ValueError(f"speakers has shape {spk.shape}, expected {keep.shape}")
        spk_summary = fold_summary(list(per_speaker_uar(yt, yp, spk[keep]).values()))
        out["uar_speaker_mean"], out["uar_speaker_std"] = spk_summary["mean"], spk_summary["std"]
    if negative_class is not None:
        out["uar_binary"] = binary_uar(yt, yp, negative_class)
    return out


def _as_folds(fold: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    arr = np.asarray(fold)
    if arr.shape != (n,):
        raise ValueError(f"fold has shape {arr.shape}, expected {(n,)}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"fold must hold integer fold ids, but got dtype {arr.dtype}")
    return arr.astype(np.int64)
