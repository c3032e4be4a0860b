"""Alignment of stored runs: check that out-of-fold scores describe the same utterances, then stack them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paraling.errors import EnsembleError
from paraling.scoring.oof import OOFScores

__all__ = ["check_aligned", "stack_oof"]

_ALIGNED = ("utt_ids", "classes", "y", "fold", "split")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def check_aligned(scores: Sequence[OOFScores], names: Sequence[str], audio: Sequence[str | None] | None = None) -> None:
    """Raise unless all runs share the first run's ``utt_ids``, ``classes``, ``y``, ``fold`` and ``split`` (and,
    where given, the digest of the audio they were trained on).

    Compare runs in the same utterance order (:meth:`OOFScores.sorted`; files written by
    :func:`paraling.scoring.oof.save_oof` already are).

    Args:
        scores: Out-of-fold scores of each run.
        names: A name per run (run id or name), used in the message.
        audio: Per run, the digest of its corpus's audio bytes (tag ``paraling.audio_digest``), or ``None`` for runs
            logged before it was recorded (not compared).

    Raises:
        EnsembleError: No runs, a names/scores length mismatch, or runs that differ from the first; the
            message names each offending run and the fields that differ.
    """
    if len(scores) == 0:
        raise EnsembleError("no runs to combine: pass at least one run's out-of-fold scores")
    if len(names) != len(scores):
        raise EnsembleError(f"got {len(scores)} runs but {len(names)} names")
    ref = scores[0]
    audio = list(audio) if audio is not None else [None] * len(scores)
    bad = []
    for name, s, a in zip(names[1:], scores[1:], audio[1:], strict=True):
        fields = [f for f in _ALIGNED if not _same(getattr(ref, f), getattr(s, f))]
        if a is not None and audio[0] is not None and a != audio[0]:
            fields.append("audio (same file names, other recordings)")
        if fields:
            bad.append(f"{name!r} ({', '.join(fields)})")
    if bad:
        raise EnsembleError(
            f"runs are not aligned with {names[0]!r}: {'; '.join(bad)} differ. Combine only runs of the same "
            "corpus, manifest and fold assignment (same cv config and seed)."
        )


def stack_oof(
    scores: Sequence[OOFScores], names: Sequence[str], audio: Sequence[str | None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort each run by utterance id, check alignment and stack the probabilities.

    Args:
        scores: Out-of-fold scores of each run.
        names: A name per run, for error messages.
        audio: Per run, its audio digest or ``None`` (see :func:`check_aligned`).

    Returns:
        ``(S, y, fold)``: stack ``(n_models, n_utts, n_classes)`` float64, labels and folds ``(n_utts,)``.
    """
    ordered = [s.sorted() for s in scores]
    check_aligned(ordered, names, audio)
    S = np.stack([s.proba.astype(np.float64) for s in ordered])
    return S, ordered[0].y.astype(np.int64), ordered[0].fold.astype(np.int64)
