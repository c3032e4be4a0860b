"""Small matplotlib figures logged as run artifacts (Agg backend, atomic writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from paraling.atomic import atomic_path

__all__ = ["plot_curves", "save_figure"]


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
