"""The torch reference of every op: any device, the same results as the native kernels up to float rounding.

Fused max-pool → ReLU → dropout (and ReLU → dropout) with cheap dropout masks: the plain sequence costs five memory
passes forward and four backward, and ``bernoulli_`` alone was 15-23% of a CPU training step. Here the mask is random
*bytes* compared with a threshold (:mod:`paraling.ops.random`), merged with the ReLU mask into one boolean tensor and
applied once forward and once backward. Given the same random bytes, the reference and the native kernels drop the
same units.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from paraling.ops.border import NO_BORDER, Border
from paraling.ops.random import dropout_threshold, random_bytes

__all__ = ["conv_block", "plain_conv_block", "pool_relu_dropout"]


class _PoolReluDrop(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, kh: int, kw: int, keep_bytes: Tensor | None, threshold: int, scale: float
    ) -> Tensor:
        if kh > 1 or kw > 1:
            y, idx = torch.ops.aten.max_pool2d_with_indices(x, [kh, kw], [kh, kw])
        else:
            y, idx = x, None
        keep = ~(y <= 0)  # like ReLU, NaN passes through (so a diverged run still shows a NaN loss)
        if threshold:
            keep &= _bytes(y, keep_bytes) >= threshold
        out = torch.where(keep, y, 0)
        if scale != 1.0:
            out.mul_(scale)
        ctx.save_for_backward(x if idx is not None else None, idx, keep)
        ctx.kernel, ctx.scale = [kh, kw], scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, idx, keep = ctx.saved_tensors
        g = torch.where(keep, grad, 0)
        if ctx.scale != 1.0:
            g.mul_(ctx.scale)
        if idx is not None:
            g = torch.ops.aten.max_pool2d_with_indices_backward(
                g, x, ctx.kernel, ctx.kernel, [0, 0], [1, 1], False, idx
            )
        return g, None, None, None, None, None


def _bytes(like: Tensor, given: Tensor | None) -> Tensor:
    return random_bytes(like) if given is None else given


def pool_relu_dropout(
    x: Tensor,
    pool: tuple[int, int],
    p: float,
    training: bool,
    bias: Tensor | None = None,
    border: Border = NO_BORDER,
    rnd: Tensor | None = None,
) -> Tensor:
    """``dropout(relu(max_pool2d(x + bias, pool)))`` in one autograd node; plain ops without autograd.

    Args:
        x: ``(batch, channels, height, width)`` maps, or ``(batch, features)`` with ``pool=(1, 1)``.
        pool: Max-pooling size and stride (``(1, 1)``: none).
        p: Dropout probability (training mode only; quantised, :func:`paraling.ops.random.dropout_threshold`).
        training: Whether dropout is active.
        bias: ``(channels,)`` bias of the convolution that produced ``x`` without it, or ``None``.
        border: Zero border added around the output.
        rnd: The random bytes of the mask, shaped like the pooled map (``None``: drawn here).
    """
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    kh, kw = pool
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    if not torch.is_grad_enabled() or not x.requires_grad:
        y = torch.nn.functional.max_pool2d(x, (kh, kw)) if kh > 1 or kw > 1 else x.clone()
        y = torch.where((_bytes(y, rnd) >= threshold) & ~(y <= 0), y * scale, 0) if threshold else y.clamp_min_(0)
    else:
        y = _PoolReluDrop.apply(x, kh, kw, rnd, threshold, scale)
    return torch.nn.functional.pad(y, border.pad_args()) if border else y


def conv_block(
    x: Tensor,
    conv: torch.nn.Conv2d,
    pad: Border,
    pool: tuple[int, int],
    p: float,
    training: bool,
    rnd: Tensor | None = None,
) -> Tensor:
    """One conv block on torch ops: "same" convolution → fused pool/ReLU/dropout."""
    if pad and all(p == pad.top for p in pad):  # odd kernel: the convolution pads itself
        y = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=pad.top)
    else:
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pad.pad_args()), conv.weight, conv.bias)
    return pool_relu_dropout(y, pool, p, training, rnd=rnd)


def plain_conv_block(
    x: Tensor, conv: torch.nn.Conv2d, pad: Border, pool: tuple[int, int], drop: torch.nn.Module
) -> Tensor:
    """The textbook sequence (pad, convolution, max-pool, ReLU, ``nn.Dropout``): the benchmarks' naive baseline."""
    if pad:
        x = torch.nn.functional.pad(x, pad.pad_args())
    x = torch.nn.functional.conv2d(x, conv.weight, conv.bias)
    if pool != (1, 1):
        x = torch.nn.functional.max_pool2d(x, pool)
    return drop(torch.relu(x))
