"""Fused max-pool → bias → ReLU → dropout by the native CPU kernel (``csrc/pool.c``), for conv blocks and FC layers.

Compared with the torch version (``models/fused.py``) the forward pass writes one byte per output instead of int64
pooling indices and a separate mask, and the backward pass writes each input-gradient value once instead of
zero-filling the gradient and scattering into it. The preceding convolution's bias can be passed in and is then
added after pooling (``max(a + b) = max(a) + b``), so its gradient is summed over the pooled map, not the full one.
float32 and bfloat16 (autocast) maps are supported; values are computed in float32 and rounded once.
"""

from __future__ import annotations

from typing import Any

import torch

from paraling.models.native import MAX_POOL, load_library, padded_channels, ptr, random_bytes

__all__ = ["native_pool_applies", "pool_bias_relu_dropout", "pool_forward"]

_DTYPES = (torch.float32, torch.bfloat16)


def native_pool_applies(x: torch.Tensor, pool: tuple[int, int] = (1, 1)) -> bool:
    """Whether :func:`pool_bias_relu_dropout` can take ``x``: CPU float32/bfloat16, 2-d or 4-d, library built."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.dim() not in (2, 4) or x.numel() == 0:
        return False
    if x.dim() == 2 and pool != (1, 1):
        return False
    if x.dim() == 4 and (pool[0] * pool[1] > MAX_POOL or x.shape[2] < pool[0] or x.shape[3] < pool[1]):
        return False
    return load_library() is not None


def pool_forward(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    pool: tuple[int, int],
    border: tuple[int, int, int, int],
    threshold: int,
    scale: float,
    save: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The forward kernel: ``(out, arg)``, ``arg`` the winner bytes (``None`` unless ``save``).

    ``border`` is ``(top, bottom, left, right)``; the other arguments are as for :func:`pool_bias_relu_dropout`.
    """
    lib = load_library()
    assert lib is not None  # checked by native_pool_applies()
    ph, pw = pool
    pt, pb, pl, pr = border
    if x.dim() == 2:
        xc = x.contiguous()
        (n, c), h, w = xc.shape, 1, 1
        out = torch.empty_like(xc)
        bytes_like = torch.empty((n, c), dtype=torch.uint8)
    else:
        xc = x.contiguous(memory_format=torch.channels_last)
        n, c, h, w = xc.shape
        ho, wo = h // ph, w // pw
        out = torch.empty((n, c, pt + ho + pb, pl + wo + pr), dtype=x.dtype, memory_format=torch.channels_last)
        bytes_like = torch.empty((n, c, ho, wo), dtype=torch.uint8, memory_format=torch.channels_last)
    arg = bytes_like if save else None  # one byte per output: the winning candidate, 255 when zeroed
    rnd = random_bytes(bytes_like) if threshold else None
    b = bias.detach().float().contiguous() if bias is not None else None
    rc = lib.pl_pool_forward(
        n, h, w, c, ph, pw, pt, pb, pl, pr, int(x.dtype == torch.bfloat16),
        ptr(xc), ptr(b), ptr(rnd), threshold, scale, ptr(out), ptr(arg), torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native pool forward failed (code {rc}) for shape {tuple(x.shape)}, pool {pool}")
    return out, arg


class _PoolBiasReluDrop(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        pool: tuple[int, int],
        border: tuple[int, int, int, int],
        threshold: int,
        scale: float,
        save: bool,
    ) -> torch.Tensor:
        out, arg = pool_forward(x, bias, pool, border, threshold, scale, save)
        ctx.save_for_backward(arg)
        ctx.geometry, ctx.scale, ctx.dtype = (tuple(x.shape), pool, border), scale, x.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lib = load_library()
        (arg,) = ctx.saved_tensors
        shape, (ph, pw), (pt, pb, pl, pr) = ctx.geometry
        if len(shape) == 2:
            (n, c), h, w = shape, 1, 1
            g = grad.to(ctx.dtype).contiguous()
            gx = torch.empty_like(g)
        else:
            n, c, h, w = shape
            g = grad.to(ctx.dtype).contiguous(memory_format=torch.channels_last)
            gx = torch.empty((n, c, h, w), dtype=ctx.dtype, memory_format=torch.channels_last)
        gb = torch.empty(padded_channels(c)) if ctx.needs_input_grad[1] else None
        rc = lib.pl_pool_backward(  # type: ignore[union-attr]
            n, h, w, c, ph, pw, pt, pb, pl, pr, int(ctx.dtype == torch.bfloat16),
            ptr(g), ptr(arg), ctx.scale, ptr(gx), ptr(gb), torch.get_num_threads(),
        )  # fmt: skip
        if rc:
            raise RuntimeError(f"native pool backward failed (code {rc})")
        return gx, gb[:c] if gb is not None else None, None, None, None, None, None


def pool_bias_relu_dropout(
    x: torch.Tensor,
    pool: tuple[int, int],
    threshold: int,
    scale: float,
    bias: torch.Tensor | None = None,
    out_pad: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """``dropout(relu(max_pool2d(x, pool) + bias))`` on the CPU (check :func:`native_pool_applies` first).

    Args:
        x: ``(batch, channels, height, width)`` maps (any memory format; the output is channels-last), or
            ``(batch, features)`` with ``pool=(1, 1)``.
        pool: Max-pooling size and stride.
        threshold: Dropout byte threshold (0 = no dropout), see :func:`paraling.models.fused.dropout_threshold`.
        scale: Scale of kept units.
        bias: ``(channels,)`` added after pooling, or ``None``.
        out_pad: Zero border ``(left, right, top, bottom)`` around a 4-d output (the next convolution's padding,
            as for ``torch.nn.functional.pad``), or ``None``.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad))
    left, right, top, bottom = out_pad or (0, 0, 0, 0)
    return _PoolBiasReluDrop.apply(x, bias, pool, (top, bottom, left, right), threshold, scale, needs_grad)
