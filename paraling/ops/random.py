"""Dropout masks from random bytes: the byte threshold of a dropout rate, and the bytes themselves.

A unit is kept when its random byte is >= the threshold, so rates are quantised to multiples of 1/256 (0.1 → 26/256 =
0.1016) and kept units are scaled by the exact ``1 / (1 - p_quantised)``: expectations are preserved. One 64-bit draw
gives eight bytes; on the CPU with the native library the bytes come from SplitMix64 in parallel, seeded by one draw
of torch's generator (torch's ``random_`` draws from one Mersenne Twister serially, about 1 ms per 1.6 M bytes here,
which was 2-3% of a training step for the four masks of the default CNN).
"""

from __future__ import annotations

import torch

from paraling.ops.build import load_library

__all__ = ["dropout_threshold", "random_bytes"]


def dropout_threshold(p: float) -> tuple[int, float]:
    """Byte threshold and scale for dropout probability ``p``: keep a unit when its random byte is >= threshold."""
    t = min(255, round(p * 256))
    return t, (256.0 / (256 - t)) if t else 1.0


def random_bytes(like: torch.Tensor) -> torch.Tensor:
    """Uniform random bytes shaped and laid out like ``like``, seeded from torch's default generator.

    On the CPU with the native library: one 63-bit seed drawn from torch, then SplitMix64 in parallel. Otherwise
    one 64-bit draw of torch's generator per eight bytes.
    """
    n = like.numel()
    lib = load_library() if like.device.type == "cpu" else None
    if lib is not None:
        flat = torch.empty(n, dtype=torch.uint8)
        seed = int(torch.empty((), dtype=torch.int64).random_())
        lib.pl_random_bytes(flat.data_ptr(), n, seed, torch.get_num_threads())
    else:
        words = torch.empty((n + 7) // 8, dtype=torch.int64, device=like.device).random_(-(2**63), 2**63 - 1)
        flat = words.view(torch.uint8)[:n]
    return flat.as_strided(like.shape, like.stride())
