"""Small matplotlib figures logged as run artifacts (Agg backend, atomic writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from paraling.atomic import atomic_path

__all__ = ["plot_confusion_matrix", "plot_curves", "save_figure"]


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically, cropped to its content, and close it; the one way paraling writes a figure.

    Works for pyplot figures and for bare Agg :class:`~matplotlib.figure.Figure` objects (closing those is a
    no-op). Parent folders are created; readers never see a half-written file (:func:`paraling.atomic.atomic_path`).

    Args:
        fig: The figure.
        path: Destination ``.png``.
        dpi: Resolution.

    Returns:
        ``path``.
    """
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def plot_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], path: str | Path) -> Path:
    """Per-fold training/validation loss and validation UAR over epochs, one line per fold."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for fold, hist in sorted(histories.items()):
        ep = range(len(hist))
        axes[0].plot(ep, [h["train_loss"] for h in hist], label=f"train f{fold}")
        if hist and "val_loss" in hist[0]:
            axes[0].plot(ep, [h["val_loss"] for h in hist], "--", label=f"val f{fold}")
            axes[1].plot(ep, [h["val_uar"] for h in hist], label=f"fold {fold}")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    axes[1].set(xlabel="epoch", ylabel="UAR", title="validation UAR (held-out speakers)")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].legend(fontsize=7)
    return save_figure(fig, path)


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix to a PNG file, atomically (:func:`save_figure`).

    Cells are coloured by row-normalised recall and annotated with the count and the row percentage. Uses the
    Agg canvas directly (no ``pyplot`` global state), so it is safe in worker processes and headless machines.

    Args:
        cm: Counts, shape ``(n_classes, n_classes)``, true classes in rows (as from :func:`confusion_matrix`).
        class_names: Name of each class, length ``n_classes``.
        path: Destination ``.png``; parent directories are created.
        title: Optional figure title.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be square (n_classes, n_classes), but got shape {cm.shape}")
    names = [str(c) for c in class_names]
    if len(names) != cm.shape[0]:
        raise ValueError(f"class_names has {len(names)} entries, expected {cm.shape[0]}")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    size = max(4.0, 0.6 * len(names) + 2.0)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="recall")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, labels=names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i, j in np.ndindex(cm.shape):
        color = "white" if frac[i, j] > 0.5 else "black"
        ax.text(j, i, f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
