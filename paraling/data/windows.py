"""Windows cut on the fly from one contiguous feature tensor.

All utterances' log-mel frames are concatenated into one tensor ``data`` of shape ``(total_frames, n_mels)``.
A window is only its start row: the index holds ``starts`` ``(n_windows,)`` and ``utt`` ``(n_windows,)``, and a batch
is gathered from a strided ``unfold`` view of ``data`` (no per-window Python objects, no copy of all windows).
``data`` may be a read-only memory map of a packed file (:mod:`paraling.features.packed`), so corpora larger than RAM
work: pages are read on demand and the kernel may drop them again.

Short utterances (fewer frames than ``width``) follow ``short_policy``: ``pad`` repeats their edge frames up to
``width`` (they yield exactly one window), ``skip`` drops them with a logged count, ``error`` raises
:class:`~paraling.errors.WindowError` naming the utterance.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from paraling.device import available_memory, to_device, to_numpy
from paraling.errors import WindowError

__all__ = ["WindowBank", "count_windows", "fill_frames", "plan_layout"]

log = logging.getLogger(__name__)

_NORM_CHUNK_ROWS = 1 << 15  # rows per block when computing global statistics (10 MB of float64 at 40 bands)


def count_windows(n_frames: int, width: int, shift: int) -> int:
    """Number of windows of ``width`` frames with hop ``shift`` in ``n_frames`` frames (0 when too short)."""
    if n_frames < width:
        return 0
    return (n_frames - width) // shift + 1


def _check_geometry(width: int, shift: int) -> None:
    if width < 1 or shift < 1:
        raise WindowError(f"windows.width and windows.shift must be >= 1, got width={width}, shift={shift}")


def plan_layout(
    lengths: np.ndarray, width: int, short_policy: str = "pad", names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows each utterance takes in the packed data, after the short-utterance policy.

    Args:
        lengths: ``(n_utts,)`` frames per utterance.
        width: Window width in frames.
        short_policy: ``pad`` | ``skip`` | ``error`` for utterances shorter than ``width``.
        names: Utterance ids, used in messages.

    Returns:
        ``(rows, kept)``: ``(n_utts,)`` int64 rows per utterance (``width`` for padded ones, 0 for skipped ones) and
        ``(n_utts,)`` bool, false for skipped utterances.

    Raises:
        WindowError: ``short_policy`` is ``error`` and some utterance is shorter than ``width``.
    """
    if short_policy not in ("pad", "skip", "error"):
        raise WindowError(f"windows.short_policy must be pad, skip or error, but got {short_policy!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    short = lengths < width
    kept = np.ones(len(lengths), dtype=bool)
    if short.any():
        bad = [names[i] if names else str(i) for i in np.flatnonzero(short)[:5]]
        if short_policy == "error":
            raise WindowError(
                f"{int(short.sum())} utterance(s) shorter than windows.width={width} frames, e.g. {bad}; "
                "set windows.short_policy=pad or skip, or lower windows.width"
            )
        if short_policy == "skip":
            kept = ~short
            log.warning("skipping %d utterance(s) shorter than %d frames, e.g. %s", int(short.sum()), width, bad)
    rows = np.where(short & (short_policy == "pad"), width, lengths)
    return np.where(kept, rows, 0).astype(np.int64), kept


def fill_frames(
    data: np.ndarray,
    energy: np.ndarray,
    rows: np.ndarray,
    get: Callable[[int], tuple[np.ndarray, np.ndarray]],
    normalize: str = "utterance",
) -> None:
    """Copy every utterance into its block of ``data``/``energy`` (padding short ones, per-utterance normalisation).

    Args:
        data: ``(>= rows.sum(), n_mels)`` float32 output (an array or a writable memory map).
        energy: ``(>= rows.sum(),)`` float32 output.
        rows: ``(n_utts,)`` rows per utterance from :func:`plan_layout`.
        get: ``get(i)`` returns utterance ``i``'s ``(features (frames, n_mels), energy (frames,))``; it is not called
            for skipped utterances, so at most one utterance's features are held at a time.
        normalize: ``utterance`` subtracts each utterance's mean per band; anything else copies as is.
    """
    pos = 0
    for i, n in enumerate(rows.tolist()):
        if n == 0:
            continue
        f, e = get(i)
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
        data: ``(total_frames, n_mels)`` float32 tensor (possibly a read-only memory map: never write to it).
        starts: ``(n_windows,)`` int64 first row of each window in ``data``.
        utt: ``(n_windows,)`` int64 utterance index of each window.
        kept: ``(n_utts,)`` bool, false for utterances skipped as too short.
        device: Where :meth:`gather` delivers batches.

    Example:
        >>> import numpy as np, torch
        >>> f = [np.zeros((20, 40), np.float32)]
        >>> WindowBank(f, [np.zeros(20, np.float32)], width=11, shift=2).gather(torch.arange(2)).shape
        torch.Size([2, 1, 40, 11])
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
        _check_geometry(width, shift)
        n_mels = int(feats[0].shape[1]) if len(feats) else 0
        rows, kept = plan_layout(np.array([len(f) for f in feats], dtype=np.int64), width, short_policy, names)
        total = max(int(rows.sum()), width)
        data = np.empty((total, n_mels), dtype=np.float32)
        energy = np.empty(total, dtype=np.float32)
        fill_frames(data, energy, rows, lambda i: (feats[i], energies[i]), normalize)
        self._setup(torch.from_numpy(data), torch.from_numpy(energy), rows, kept, width, shift)

    @classmethod
    def from_frames(
        cls, data: np.ndarray, energy: np.ndarray, rows: np.ndarray, kept: np.ndarray, width: int, shift: int
    ) -> WindowBank:
        """A bank over already packed frames (e.g. a memory-mapped file), without copying them.

        Args:
            data: ``(total_frames, n_mels)`` float32, laid out by :func:`plan_layout` / :func:`fill_frames`.
            energy: ``(total_frames,)`` float32.
            rows: ``(n_utts,)`` rows per utterance.
            kept: ``(n_utts,)`` bool.
            width: Window width the layout was planned for.
            shift: Hop between window starts.
        """
        _check_geometry(width, shift)
        if len(data) < max(int(rows.sum()), width) or len(energy) != len(data):
            raise WindowError(f"packed frames hold {len(data)} rows but the layout needs {int(rows.sum())}")
        bank = cls.__new__(cls)
        with warnings.catch_warnings():  # read-only memory maps are fine: the bank never writes to its data
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            bank._setup(torch.from_numpy(data), torch.from_numpy(energy), rows, kept, width, shift)
        return bank

    def _setup(
        self, data: torch.Tensor, energy: torch.Tensor, rows: np.ndarray, kept: np.ndarray, width: int, shift: int
    ) -> None:
        self.width, self.shift = width, shift
        self.n_mels = int(data.shape[1])
        self.data, self.energy, self.kept = data, energy, np.asarray(kept, dtype=bool)
        self.lengths = np.asarray(rows, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        counts = np.array([count_windows(int(n), width, shift) for n in self.lengths], dtype=np.int64)
        self.n_windows_per_utt = counts
        self.utt = torch.from_numpy(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
        first = np.repeat(self.offsets, counts)
        within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        self.starts = torch.from_numpy(first + within * shift)
        self._view = self.data.unfold(0, width, 1)  # (total_frames - width + 1, n_mels, width), a view
        self.device = self.data.device
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
        """Standardise with mean/std over the frames of the utterances in ``utt_mask`` (e.g. training fold).

        Statistics are accumulated in float64 over blocks of contiguous rows, so no copy of the selected frames is
        made (the data may be a memory map larger than RAM).
        """
        if utt_mask is None:
            utt_mask = np.ones(self.n_utts, dtype=bool)
        sel = np.asarray(utt_mask, dtype=bool) & (self.lengths > 0)
        if not sel.any():
            raise WindowError("global normalisation needs at least one training utterance with frames")
        begin, end = self.offsets[sel], self.offsets[sel] + self.lengths[sel]
        breaks = np.flatnonzero(begin[1:] != end[:-1]) + 1  # merge neighbouring utterances into runs of rows
        run_begin, run_end = begin[np.r_[0, breaks]], end[np.r_[breaks - 1, len(end) - 1]]
        s1 = torch.zeros(self.n_mels, dtype=torch.float64, device=self.data.device)
        s2 = torch.zeros_like(s1)
        n = 0
        for a, b in zip(run_begin.tolist(), run_end.tolist(), strict=True):
            for c in range(a, b, _NORM_CHUNK_ROWS):
                blk = self.data[c : min(b, c + _NORM_CHUNK_ROWS)].double()
                s1 += blk.sum(0)
                s2 += (blk * blk).sum(0)
                n += len(blk)
        mean = s1 / n
        var = (s2 - n * mean * mean).clamp_min(0) / max(n - 1, 1)
        self.mean = mean.float().to(self.device)
        self.std = var.sqrt().float().clamp_min(1e-5).to(self.device)

    def gather_raw(self, idx: torch.Tensor) -> torch.Tensor:
        """Windows ``idx`` as ``(B, n_mels, width)`` float32 where the features live, not yet normalised."""
        if idx.device != self.starts.device:
            idx = idx.to(self.starts.device)
        return self._view.index_select(0, self.starts.index_select(0, idx))

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """A raw batch ``(B, n_mels, width)`` on :attr:`device` → the model's input ``(B, 1, n_mels, width)``
        (global normalisation applied when set)."""
        if self.mean is not None and self.std is not None:
            x = (x - self.mean[:, None]) / self.std[:, None]
        return x.unsqueeze(1)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Windows ``idx`` (into the window index) as a batch ``(B, 1, n_mels, width)`` float32 on :attr:`device`."""
        return self.finish(to_device(self.gather_raw(idx), self.device))

    def to(self, device: torch.device | str, max_fraction: float = 0.5) -> WindowBank:
        """Deliver batches on ``device`` (in place; returns self).

        Features and index move to ``device`` when they take less than ``max_fraction`` of the memory this process
        may still use there (:func:`~paraling.device.available_memory`: the GPU's free memory, capped by
        the process's share when several trials share one GPU); otherwise they stay in host memory (or the memory
        map) and each gathered batch is copied over.
        """
        device = torch.device(device)
        need = self.data.numel() * 4 + self.starts.numel() * 8
        fits = device.type != "cuda" or need < max_fraction * available_memory(device)
        if fits and self.data.device != device:
            self.data = self.data.to(device)
            self.energy = self.energy.to(device)
            self.starts = self.starts.to(device)
            self._view = self.data.unfold(0, self.width, 1)
        elif not fits:
            log.info("features (%.0f MB) stay in host memory; batches are copied to %s", need / 1e6, device)
        self.device = device
        if self.mean is not None and self.std is not None:
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def window_energy(self) -> np.ndarray:
        """Log energy at the centre frame of every window, ``(n_windows,)``."""
        return to_numpy(self.energy[self.starts + self.width // 2])

    def windows_of(self, utt_mask: np.ndarray) -> torch.Tensor:
        """Indices of the windows that belong to utterances in ``utt_mask`` (``(n_utts,)`` bool)."""
        return torch.from_numpy(np.flatnonzero(utt_mask[to_numpy(self.utt)]))
