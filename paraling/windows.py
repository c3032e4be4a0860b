"""Windows cut on the fly from one contiguous feature tensor.

All utterances' log-mel frames are concatenated into one tensor ``data`` of shape ``(total_frames, n_mels)``.
A window is only its start row: the index holds ``starts`` ``(n_windows,)`` and ``utt`` ``(n_windows,)``, and a batch
is gathered from a strided ``unfold`` view of ``data`` (no per-window Python objects, no copy of all windows).

Short utterances (fewer frames than ``width``) follow ``short_policy``: ``pad`` repeats their edge frames up to
``width`` (they yield exactly one window), ``skip`` drops them with a logged count, ``error`` raises
:class:`~paraling.errors.WindowError` naming the utterance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from paraling.errors import WindowError

__all__ = ["WindowBank", "count_windows"]

log = logging.getLogger(__name__)


def count_windows(n_frames: int, width: int, shift: int) -> int:
    """Number of windows of ``width`` frames with hop ``shift`` in ``n_frames`` frames (0 when too short)."""
    if n_frames < width:
        return 0
    return (n_frames - width) // shift + 1


class WindowBank:
    """Features of a set of utterances plus the index of all their windows.

    Args:
        feats: Per utterance, a ``(frames, n_mels)`` array.
        energies: Per utterance, a ``(frames,)`` array of frame log energy.
        width: Window width in frames.
        shift: Hop between window starts in frames.
        short_policy: ``pad`` | ``skip`` | ``error`` for utterances shorter than ``width``.
        normalize: ``utterance`` subtracts each utterance's mean per band; ``global``/``none`` leave data as is
            (global statistics are applied at gather time via :meth:`set_global_norm`).
        names: Utterance ids, used in messages.

    Attributes:
        data: ``(total_frames, n_mels)`` float32 tensor.
        starts: ``(n_windows,)`` int64 first row of each window in ``data``.
        utt: ``(n_windows,)`` int64 utterance index of each window.
        kept: ``(n_utts,)`` bool, false for utterances skipped as too short.
    """

    def __init__(
        self,
        feats: Sequence[np.ndarray],
        energies: Sequence[np.ndarray],
        width: int,
        shift: int,
        short_policy: str = "pad",
        normalize: str = "utterance",
        names: Sequence[str] | None = None,
    ) -> None:
        if width < 1 or shift < 1:
            raise WindowError(f"windows.width and windows.shift must be >= 1, got width={width}, shift={shift}")
        self.width, self.shift = width, shift
        n_utts = len(feats)
        self.n_mels = int(feats[0].shape[1]) if n_utts else 0
        lengths = np.array([len(f) for f in feats], dtype=np.int64)
        short = lengths < width
        self.kept = np.ones(n_utts, dtype=bool)
        if short.any():
            bad = [names[i] if names else str(i) for i in np.flatnonzero(short)[:5]]
            if short_policy == "error":
                raise WindowError(
                    f"{int(short.sum())} utterance(s) shorter than windows.width={width} frames, e.g. {bad}; "
                    "set windows.short_policy=pad or skip, or lower windows.width"
                )
            if short_policy == "skip":
                self.kept = ~short
                log.warning("skipping %d utterance(s) shorter than %d frames, e.g. %s", int(short.sum()), width, bad)
        padded_len = np.where(short & (short_policy == "pad"), width, lengths)
        padded_len = np.where(self.kept, padded_len, 0)
        total = int(padded_len.sum())
        data = np.empty((max(total, width), self.n_mels), dtype=np.float32)
        energy = np.empty(max(total, width), dtype=np.float32)
        offsets = np.zeros(n_utts, dtype=np.int64)
        pos = 0
        for i, (f, e) in enumerate(zip(feats, energies, strict=True)):
            offsets[i] = pos
            n = int(padded_len[i])
            if n == 0:
                continue
            f = np.asarray(f, dtype=np.float32)
            e = np.asarray(e, dtype=np.float32)
            if len(f) < n:
                reps = np.minimum(np.arange(n) - (n - len(f)) // 2, len(f) - 1).clip(0)
                f, e = f[reps], e[reps]
            block = data[pos : pos + n]
            block[:] = f
            if normalize == "utterance":
                block -= block.mean(axis=0, keepdims=True)
            energy[pos : pos + n] = e
            pos += n
        self.data = torch.from_numpy(data)
        self.energy = torch.from_numpy(energy)
        self.offsets, self.lengths = offsets, padded_len
        counts = np.array([count_windows(int(n), width, shift) for n in padded_len], dtype=np.int64)
        self.n_windows_per_utt = counts
        self.utt = torch.from_numpy(np.repeat(np.arange(n_utts, dtype=np.int64), counts))
        first = np.repeat(offsets, counts)
        within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        self.starts = torch.from_numpy(first + within * shift)
        self._view = self.data.unfold(0, width, 1)  # (total_frames - width + 1, n_mels, width), a view
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @property
    def n_windows(self) -> int:
        """Total number of windows."""
        return int(self.starts.numel())

    @property
    def n_utts(self) -> int:
        """Number of utterances (including skipped ones, which have no windows)."""
        return len(self.lengths)

    def set_global_norm(self, utt_mask: np.ndarray | None = None) -> None:
        """Standardise with mean/std over the frames of the utterances in ``utt_mask`` (e.g. training fold)."""
        if utt_mask is None:
            utt_mask = np.ones(self.n_utts, dtype=bool)
        rows = np.concatenate(
            [np.arange(o, o + n) for o, n, m in zip(self.offsets, self.lengths, utt_mask, strict=True) if m and n]
        )
        sub = self.data[torch.from_numpy(rows)]
        self.mean = sub.mean(dim=0)
        self.std = sub.std(dim=0).clamp_min(1e-5)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Windows ``idx`` (into the window index) as a batch ``(B, 1, n_mels, width)`` float32."""
        x = self._view.index_select(0, self.starts.index_select(0, idx))
        if self.mean is not None and self.std is not None:
            x = (x - self.mean[:, None]) / self.std[:, None]
        return x.unsqueeze(1)

    def to(self, device: torch.device | str) -> WindowBank:
        """Move features and index to ``device`` (in place; returns self)."""
        self.data = self.data.to(device)
        self.energy = self.energy.to(device)
        self.starts = self.starts.to(device)
        self._view = self.data.unfold(0, self.width, 1)
        if self.mean is not None and self.std is not None:
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def window_energy(self) -> np.ndarray:
        """Log energy at the centre frame of every window, ``(n_windows,)``."""
        return self.energy[self.starts + self.width // 2].cpu().numpy()

    def windows_of(self, utt_mask: np.ndarray) -> torch.Tensor:
        """Indices of the windows that belong to utterances in ``utt_mask`` (``(n_utts,)`` bool)."""
        return torch.from_numpy(np.flatnonzero(utt_mask[self.utt.numpy()]))
