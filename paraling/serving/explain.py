"""Why a file got its label: the paper's Figure-3 view and the most indicative segments.

For one file and one CNN member (in an ensemble: the member with the largest weight) the figure stacks, on one
time axis in seconds: the log-mel spectrogram, the CNN's last hidden layer (embedding) per window, the
per-window class posteriors, and each window's vote weight (the Ridge-predicted correctness of the weighted
vote, coloured by the class the window votes for); a last panel shows the Ridge coefficients of the weighted
vote (one regression per class over the posterior vector and the energy).

The *indicative segments* for the predicted class ``c`` come from each window's contribution to ``c``'s vote
(its vote weight when it votes for ``c``; its posterior of ``c`` for mean votes): windows contributing at
least half of the strongest window are merged into time intervals, ranked by their summed contribution.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paraling.atomic import atomic_path
from paraling.serving.predict import CNNMember, FilePrediction, MemberDetail, Predictor

__all__ = ["explain_predictions", "indicative_segments", "plot_explanation"]


def indicative_segments(
    contribution: np.ndarray, begin: np.ndarray, end: np.ndarray, top: int = 3, rel_threshold: float = 0.5
) -> list[dict[str, float]]:
    """Time intervals whose windows contribute most to one class.

    Args:
        contribution: Contribution of each window to the class, shape ``(n_windows,)``.
        begin: Start second of each window, shape ``(n_windows,)``.
        end: End second of each window, shape ``(n_windows,)``.
        top: Number of segments to return.
        rel_threshold: Keep windows contributing at least this fraction of the maximum.

    Returns:
        Up to ``top`` dicts ``{"start": s, "end": s, "score": summed contribution}``, best first.

    Example:
        >>> indicative_segments(np.array([0.1, 1.0, 0.9, 0.0]), np.arange(4.0), np.arange(4.0) + 1.5)
        [{'start': 1.0, 'end': 3.5, 'score': 1.9}]
    """
    c = np.asarray(contribution, dtype=np.float64)
    if c.size == 0 or c.max() <= 0:
        return []
    keep = np.flatnonzero(c >= rel_threshold * c.max())
    keep = keep[np.argsort(begin[keep], kind="stable")]
    segs: list[list[float]] = []
    for i in keep:
        if segs and begin[i] <= segs[-1][1]:
            segs[-1][1] = max(segs[-1][1], float(end[i]))
            segs[-1][2] += float(c[i])
        else:
            segs.append([float(begin[i]), float(end[i]), float(c[i])])
    segs.sort(key=lambda s: -s[2])
    return [{"start": round(s, 3), "end": round(e, 3), "score": round(v, 4)} for s, e, v in segs[:top]]


def _explained_member(predictor: Predictor) -> CNNMember:
    """The member with the largest weight; among equals, one with a weighted (Ridge) vote, then the first."""
    order = sorted(
        range(len(predictor.members)),
        key=lambda i: (-predictor.weights[i], not predictor.members[i].method.startswith("weighted"), i),
    )
    return predictor.members[order[0]]


def plot_explanation(
    pred: FilePrediction,
    member: CNNMember,
    detail: MemberDetail,
    classes: Sequence[str],
    segments: Sequence[dict[str, float]],
    path: str | Path,
) -> Path:
    """Draw the Figure-3 view of one file to ``path`` (PNG, atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from paraling.tracking.plots import save_figure

    dur = max(pred.duration, 1e-3)
    begin, end = member.window_times(detail.starts, dur)
    centre = (begin + end) / 2
    fig = Figure(figsize=(9.0, 10.5))
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(5, 1, height_ratios=[2.2, 1.6, 1.4, 1.2, 1.2], hspace=0.8)
    ax = [fig.add_subplot(gs[i]) for i in range(4)]
    for a in ax[1:]:
        a.sharex(ax[0])
    feats = detail.feats
    ax[0].imshow(feats.T, origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, feats.shape[1]))
    p_max = float(np.max(pred.proba)) if pred.proba is not None else 0.0
    ax[0].set(
        ylabel="mel band", title=f"{Path(pred.path).name}: {pred.label} (p={p_max:.2f}); member {member.name[:8]}"
    )
    if detail.embedding.size:
        ax[1].imshow(
            detail.embedding.T,
            origin="lower",
            aspect="auto",
            cmap="viridis",
            extent=(float(begin[0]), float(end[-1]), 0, detail.embedding.shape[1]),
        )
    ax[1].set(ylabel="unit", title="CNN embedding (last hidden layer, first fold) per window")
    for k, cls in enumerate(classes):
        ax[2].plot(centre, detail.window_proba[:, k], lw=1.2, label=str(cls), color=f"C{k % 10}")
    ax[2].set(ylabel="p(class)", ylim=(0, 1), title="per-window class posteriors (mean over folds)")
    ax[2].legend(fontsize=7, ncol=min(len(classes), 7), loc="upper right")
    votes = detail.window_proba.argmax(1)
    step = float(np.median(np.diff(centre))) if len(centre) > 1 else float(end[0] - begin[0])
    ax[3].bar(centre, detail.vote_weight, width=max(0.9 * step, 1e-3), color=[f"C{int(v) % 10}" for v in votes])
    for s in segments:
        for a in (ax[0], ax[3]):
            a.axvspan(s["start"], s["end"], color="white" if a is ax[0] else "0.85", alpha=0.25, lw=0)
    ax[3].set(
        xlabel="time (s)",
        ylabel="vote weight",
        title=f"vote weight per window ({member.method} vote; colour = argmax class); "
        f"shaded: segments indicative of {pred.label}",
    )
    ax[0].set_xlim(0, dur)
    _plot_ridge(fig.add_subplot(gs[4]), member, classes)
    return save_figure(fig, path)


def _plot_ridge(ax: Any, member: CNNMember, classes: Sequence[str]) -> None:
    agg = member.folds[0].aggregator
    coef = getattr(agg, "coef_", None)
    if coef is None:
        ax.text(0.5, 0.5, f"{member.method} vote: no Ridge weights", ha="center", va="center")
        ax.set_axis_off()
        return
    feats = [f"p({c})" for c in classes] + (["energy"] if coef.shape[1] > len(classes) else [])
    table = np.hstack([coef, np.asarray(agg.intercept_)[:, None]])
    lim = float(np.abs(table).max()) or 1.0
    ax.imshow(table, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(feats) + 1), labels=[*feats, "intercept"], fontsize=7)
    ax.set_yticks(range(len(classes)), labels=[f"votes {c}" for c in classes], fontsize=7)
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title("Ridge vote weights (fold 0): predicted correctness of a window voting for each class")


def explain_predictions(
    predictor: Predictor, preds: Sequence[FilePrediction], out_dir: str | Path, top: int = 3
) -> list[dict[str, Any]]:
    """Write one PNG per predicted file and ``segments.json``; return the per-file segment listings.

    ``preds`` must come from ``predictor.predict(..., details=True)``. Files with an error are listed with it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    member = _explained_member(predictor)
    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    for p in preds:
        detail = p.details.get(member.name)
        if p.error or detail is None or p.label is None:
            rows.append({"path": p.path, "error": p.error or "no per-window details"})
            continue
        c = predictor.classes.index(p.label)
        begin, end = member.window_times(detail.starts, p.duration)
        segs = indicative_segments(detail.contribution[:, c], begin, end, top)
        stem = Path(p.path).stem or "file"
        name, n = f"{stem}.png", 1
        while name in used:
            n += 1
            name = f"{stem}_{n}.png"
        used.add(name)
        plot_explanation(p, member, detail, predictor.classes, segs, out_dir / name)
        rows.append({"path": p.path, "label": p.label, "member": member.name, "png": name, "segments": segs})
    with atomic_path(out_dir / "segments.json") as tmp:  # a planted link is replaced, never written through
        tmp.write_text(json.dumps(rows, indent=2))
    return rows
