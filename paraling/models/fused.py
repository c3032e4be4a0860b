"""Fused max-pool → ReLU → dropout (and ReLU → dropout) with cheap dropout masks.

The plain sequence costs five memory passes forward and four backward, and ``bernoulli_`` alone was 15-23% of a CPU
training step. Here the mask is drawn as random *bytes* (one 64-bit draw gives eight of them) compared with a
threshold, merged with the ReLU mask into one boolean tensor, and applied once forward and once backward.

Dropout probabilities are quantised to multiples of 1/256 (e.g. 0.1 → 26/256 = 0.1016) and the kept activations are
scaled by the exact ``1 / (1 - p_quantised)``, so expectations are preserved.
"""

from __future__ import annotations

from typing import Any

import torch

from paraling.models.native import random_bytes
from paraling.models.native_pool import native_pool_applies, pool_bias_relu_dropout

__all__ = ["dropout_threshold", "pool_relu_dropout", "relu_dropout"]


def dropout_threshold(p: float) -> tuple[int, float]:
    """Byte threshold and scale for dropout probability ``p``: keep a unit when its random byte is >= threshold."""
    t = min(255, round(p * 256))
    return t, (256.0 / (256 - t)) if t else 1.0


def _keep_mask(like: torch.Tensor, threshold: int) -> torch.Tensor:
    """Boolean mask shaped and laid out like ``like`` with P(keep) = 1 - threshold / 256."""
    return random_bytes(like) >= threshold


class _PoolReluDrop(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kh: int, kw: int, threshold: int, scale: float) -> torch.Tensor:
        if kh > 1 or kw > 1:
            y, idx = torch.ops.aten.max_pool2d_with_indices(x, [kh, kw], [kh, kw])
        else:
            y, idx = x, None
        keep = ~(y <= 0)  # like ReLU, NaN passes through (so a diverged run still shows a NaN loss)
        if threshold:
            keep &= _keep_mask(y, threshold)
        out = torch.where(keep, y, 0)
        if scale != 1.0:
            out.mul_(scale)
        ctx.save_for_backward(x if idx is not None else None, idx, keep)
        ctx.kernel, ctx.scale = [kh, kw], scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, idx, keep = ctx.saved_tensors
        g = torch.where(keep, grad, 0)
        if ctx.scale != 1.0:
            g.mul_(ctx.scale)
        if idx is not None:
            g = torch.ops.aten.max_pool2d_with_indices_backward(
                g, x, ctx.kernel, ctx.kernel, [0, 0], [1, 1], False, idx
            )
        return g, None, None, None, None


def pool_relu_dropout(
    x: torch.Tensor,
    pool: tuple[int, int],
    p: float,
    training: bool,
    bias: torch.Tensor | None = None,
    native: bool = True,
    out_pad: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """``dropout(relu(max_pool2d(x + bias, pool)), p)`` in one autograd node; plain ops without autograd or in eval.

    Args:
        x: ``(batch, channels, height, width)`` maps, or ``(batch, features)`` with ``pool=(1, 1)``.
        pool: Max-pooling size and stride (``(1, 1)``: none).
        p: Dropout probability (training mode only).
        training: Whether dropout is active.
        bias: ``(channels,)`` bias of the convolution that produced ``x`` without it, or ``None``.
        native: Use the native CPU kernel (``models/native_pool.py``) where it applies.
        out_pad: Zero border ``(left, right, top, bottom)`` around the output, as ``torch.nn.functional.pad``
            would add it (the native kernel writes it in the same pass), or ``None``.
    """
    kh, kw = pool
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    if native and native_pool_applies(x, pool):
        return pool_bias_relu_dropout(x, pool, threshold, scale, bias, out_pad)
    if out_pad is not None:
        return torch.nn.functional.pad(pool_relu_dropout(x, pool, p, training, bias, native=False), out_pad)
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    if not torch.is_grad_enabled() or not x.requires_grad:
        y = torch.nn.functional.max_pool2d(x, (kh, kw)) if kh > 1 or kw > 1 else x.clone()
        if threshold:
            return torch.where(_keep_mask(y, threshold) & ~(y <= 0), y * scale, 0)
        return y.clamp_min_(0)
    return _PoolReluDrop.apply(x, kh, kw, threshold, scale)


def relu_dropout(x: torch.Tensor, p: float, training: bool, native: bool = True) -> torch.Tensor:
    """``dropout(relu(x), p)`` in one autograd node."""
    return pool_relu_dropout(x, (1, 1), p, training, native=native)
