"""Shared pieces of the benchmarks: synthetic data, timing, the matmul peak and FLOP counting."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from paraling.data.windows import WindowBank
from paraling.models.cnn import WindowCNN

__all__ = [
    "Figure",
    "matmul_peak_gflops",
    "paper_cnn",
    "synthetic_bank",
    "timed",
    "train_flops_per_window",
    "train_flops_split",
]


@dataclass
class Figure:
    """One benchmark line: paraling's value, the reference measured in the same run, and the ratio."""

    name: str
    value: float
    reference: float
    unit: str
    ratio: float
    target: str = ""
    note: str = ""


def paper_cnn(n_mels: int = 40, width: int = 11, n_classes: int = 7) -> WindowCNN:
    """The default CNN: 32/64/128 channels, 3x3/2x2/2x2 kernels, 2 x 500 FC."""
    return WindowCNN(n_mels, width, n_classes, [32, 64, 128], [3, 2, 2], [0.1, 0.2, 0.3], [500, 500], 0.5)


def synthetic_bank(
    n_utts: int, frames: int, n_mels: int = 40, width: int = 11, shift: int = 2, seed: int = 0
) -> tuple[WindowBank, np.ndarray]:
    """A window bank of random log-mel-like features and random labels (7 classes)."""
    rng = np.random.default_rng(seed)
    feats = [rng.normal(size=(frames, n_mels)).astype(np.float32) for _ in range(n_utts)]
    bank = WindowBank(feats, [f.sum(1) for f in feats], width, shift, normalize="none")
    return bank, rng.integers(0, 7, n_utts)


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak_gflops(
    dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5, rounds: int = 3
) -> float:
    """Best median GFLOP/s of square matmuls (all threads, warm-up first).

    The warm-up runs for at least 0.2 s per size (and three products), and the median of ``repeats`` is taken
    ``rounds`` times, keeping the best: on a shared host a single median occasionally came out at 40-65% of the usual
    bf16 (AMX) value, which would flatter every ratio against it.
    """
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        t0, k = time.perf_counter(), 0
        while k < 3 or time.perf_counter() - t0 < 0.2:
            a @ b
            k += 1
        for _ in range(rounds):
            med = timed(functools.partial(torch.matmul, a, b), repeats)
            best = max(best, 2 * n**3 / med / 1e9)
    return best


def train_flops_split(model: torch.nn.Module, n_mels: int = 40, width: int = 11) -> dict[str, float]:
    """Forward + backward FLOPs of one window by kind: ``conv`` (convolutions) and ``matmul`` (the FC layers).

    Counted with ``torch.utils.flop_counter`` on a batch of 64 (divided by 64), on the model's torch ops: the counter
    cannot see inside the native kernels, which compute the same functions (the conv-block backward skips the
    multiplications by zero gradients, so it executes fewer; these are the model's dense FLOPs).
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(64, 1, n_mels, width)
    kernels = getattr(model, "kernels", None)
    if kernels is not None:
        model.kernels = "reference"  # type: ignore[assignment]
    try:
        with FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
    finally:
        if kernels is not None:
            model.kernels = kernels
    model.zero_grad(set_to_none=True)
    split = {"conv": 0.0, "matmul": 0.0}
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        split["conv" if "convolution" in str(op) else "matmul"] += n / 64
    return split


def train_flops_per_window(model: torch.nn.Module, n_mels: int = 40, width: int = 11) -> float:
    """Forward + backward FLOPs of one window (the sum of :func:`train_flops_split`)."""
    return sum(train_flops_split(model, n_mels, width).values())
