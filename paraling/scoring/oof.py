"""Out-of-fold scores: the compact, documented format every run writes and later steps read back.

A run's artifact ``oof/scores.npz`` (numpy ``savez_compressed``) holds:

- ``utt_ids`` (n_utts,) str: utterance ids, sorted;
- ``classes`` (n_classes,) str: class names, index = class id;
- ``y`` (n_utts,) int64: true class id;
- ``fold`` (n_utts,) int64: the fold in which the utterance was *held out* (-1 = never scored);
- ``split`` (n_utts,) str: ``"cv"`` for cross-validated utterances, ``"test"`` for a fixed test split;
- ``speaker`` (n_utts,) str;
- ``proba`` (n_utts, n_classes) float32: utterance class probabilities from the run's aggregation;
- optional ``window_proba`` (n_windows, n_classes) float16, ``window_utt`` (n_windows,) int32 (row into
  ``utt_ids``), ``window_start`` (n_windows,) int32 (first frame) for per-window inspection.

Ensembles check that runs share ``utt_ids``, ``y`` and ``fold`` before combining them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paraling.atomic import atomic_path
from paraling.errors import EnsembleError

__all__ = ["OOFScores", "load_oof", "save_oof"]

_REQUIRED = ("utt_ids", "classes", "y", "fold", "split", "speaker", "proba")


@dataclass
class OOFScores:
    """Out-of-fold utterance scores of one run (see module docstring for shapes)."""

    utt_ids: np.ndarray
    classes: np.ndarray
    y: np.ndarray
    fold: np.ndarray
    split: np.ndarray
    speaker: np.ndarray
    proba: np.ndarray
    windows: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.utt_ids)
        for name in ("y", "fold", "split", "speaker"):
            if len(getattr(self, name)) != n:
                raise EnsembleError(f"OOFScores.{name} has {len(getattr(self, name))} rows, expected {n}")
        if self.proba.shape != (n, len(self.classes)):
            raise EnsembleError(f"OOFScores.proba has shape {self.proba.shape}, expected {(n, len(self.classes))}")

    def sorted(self) -> OOFScores:
        """Return a copy with utterances sorted by id (window rows re-indexed accordingly)."""
        order = np.argsort(self.utt_ids, kind="stable")
        windows = dict(self.windows)
        if "window_utt" in windows:
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            windows["window_utt"] = inverse[windows["window_utt"]].astype(np.int32)
        return OOFScores(
            self.utt_ids[order],
            self.classes,
            self.y[order],
            self.fold[order],
            self.split[order],
            self.speaker[order],
            self.proba[order],
            windows,
        )


def save_oof(scores: OOFScores, path: str | Path) -> Path:
    """Write ``scores`` atomically to ``path`` (``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = scores.sorted()
    arrays: dict[str, Any] = {
        "utt_ids": s.utt_ids.astype(str),
        "classes": s.classes.astype(str),
        "y": s.y.astype(np.int64),
        "fold": s.fold.astype(np.int64),
        "split": s.split.astype(str),
        "speaker": s.speaker.astype(str),
        "proba": s.proba.astype(np.float32),
    }
    arrays.update(s.windows)
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_oof(path: str | Path) -> OOFScores:
    """Read a ``scores.npz`` written by :func:`save_oof`."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _REQUIRED if k not in z.files]
        if missing:
            raise EnsembleError(f"{path}: not a paraling out-of-fold score file (missing {missing})")
        windows = {k: z[k] for k in z.files if k.startswith("window_")}
        return OOFScores(**{k: z[k] for k in _REQUIRED}, windows=windows)
