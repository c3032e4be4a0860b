"""Difficulty calibration of a corpus with an utterance-level linear baseline.

The baseline is deliberately simple: per-utterance mean and standard deviation of 40-dimensional Kaldi log-mel
filterbank features (80 numbers per utterance), standardised, into a multinomial logistic regression, scored by UAR
(macro-averaged recall) over speaker-grouped, class-stratified cross-validation folds. It measures how much of the
class information is a *global* spectral property; a model that looks at local time-frequency patterns should beat it.

Example:
    >>> from paraling.data.recipes.calibrate import linear_baseline_uar
    >>> uar = linear_baseline_uar("data/demo/demo.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from paraling.data.audio import load_audio
from paraling.device import to_numpy
from paraling.errors import CorpusError

__all__ = ["linear_baseline_uar", "utterance_stats"]


def utterance_stats(wave: np.ndarray, sample_rate: int = 16000, num_mel_bins: int = 40) -> np.ndarray:
    """Mean and standard deviation over time of Kaldi log-mel fbank features.

    Args:
        wave: Mono waveform in [-1, 1], shape ``(time,)``.
        sample_rate: Its sample rate in Hz.
        num_mel_bins: Number of mel bands.

    Returns:
        float32 array of shape ``(2 * num_mel_bins,)``: means, then standard deviations.
    """
    import torch
    from torchaudio.compliance.kaldi import fbank

    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32) * 32768.0).unsqueeze(0)
    feats = fbank(
        x,
        num_mel_bins=num_mel_bins,
        frame_length=25.0,
        frame_shift=10.0,
        sample_frequency=float(sample_rate),
        dither=0.0,
    )
    return to_numpy(torch.cat([feats.mean(0), feats.std(0)])).astype(np.float32)


def linear_baseline_uar(csv_path: str | Path, n_splits: int = 5, seed: int = 0, sample_rate: int = 16000) -> float:
    """UAR of mean/std-fbank + StandardScaler + LogisticRegression under speaker-grouped cross-validation.

    Args:
        csv_path: CSV with columns ``file`` (relative to the CSV), ``label`` and ``speaker``.
        n_splits: Number of folds of :class:`sklearn.model_selection.StratifiedGroupKFold` (groups = speakers).
        seed: Shuffling seed of the folds.
        sample_rate: Rate the audio is loaded at.

    Returns:
        Macro-averaged recall of the pooled out-of-fold predictions, in [0, 1].

    Raises:
        CorpusError: The CSV lacks columns or has fewer speakers than folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    csv_path = Path(csv_path)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"file", "label", "speaker"} <= rows[0].keys():
        raise CorpusError(f"{csv_path}: needs data rows with columns file,label,speaker")
    groups = np.array([r["speaker"] for r in rows])
    if len(set(groups)) < n_splits:
        raise CorpusError(f"{csv_path}: {len(set(groups))} speakers cannot fill {n_splits=} speaker-disjoint folds")
    X = np.stack([utterance_stats(load_audio(csv_path.parent / r["file"], sample_rate), sample_rate) for r in rows])
    y = np.array([r["label"] for r in rows])
    pred = np.empty_like(y)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(X, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        pred[test] = model.fit(X[train], y[train]).predict(X[test])
    return float(recall_score(y, pred, average="macro"))
