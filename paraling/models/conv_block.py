"""A conv block after the first, fused natively: conv → max-pool → bias → ReLU → dropout, with a sparse backward.

The forward pass is torch's convolution (oneDNN) without bias, then the native pool kernel
(``csrc/pool.c``), which adds the bias after pooling and records one byte per pooled value: which candidate won,
or 255 where the ReLU or dropout zeroed it. Those bytes say which conv outputs get any gradient at all: at most one
per pooled value, so at most one in four with 2x2 pooling, fewer after the ReLU and dropout (about one in five in the
default second block). The
backward pass (``csrc/conv_pool.c``) only visits those: each adds its gradient times its input patch to the weight
gradient and its gradient times the weights to the input gradient. torch's route (a pool backward writing the
mostly-zero gradient map, then oneDNN's dense convolution backward over it) was about 40% of a CPU training step.
Under bf16 autocast the convolution runs in bfloat16 and the backward pass reads the bfloat16 input and output
gradient, sums in float32 and rounds the input gradient once.

The convolution is "valid" over an input that already carries its zero padding (the previous native kernel writes
it), so the input gradient includes the border, which that kernel's backward pass ignores.
"""

from __future__ import annotations

from typing import Any

import torch

from paraling.models.fused import dropout_threshold
from paraling.models.native import MAX_POOL, load_library, ptr
from paraling.models.native_pool import pool_forward

__all__ = ["conv_block_applies", "conv_pool_block"]

_CHUNK = 8  # windows per work item of the backward kernel (CHUNK in csrc/conv_pool.c)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The convolution's dtype: autocast's where it is on (bfloat16 on the CPU), else the input's."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def conv_block_applies(x: torch.Tensor, conv: torch.nn.Conv2d, pool: tuple[int, int]) -> bool:
    """Whether :func:`conv_pool_block` takes ``x`` (already padded) and ``conv``: CPU, float32/bfloat16, stride 1."""
    h, w = x.shape[2] - conv.kernel_size[0] + 1, x.shape[3] - conv.kernel_size[1] + 1
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.numel() > 0
        and _compute_dtype(x) in (torch.float32, torch.bfloat16)
        and conv.weight.device.type == "cpu"
        and conv.groups == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and pool[0] * pool[1] <= MAX_POOL
        and h >= pool[0]
        and w >= pool[1]
        and _CHUNK * x.shape[1] * x.shape[2] * x.shape[3] < 2**31  # the kernel's int32 offsets within a chunk
        and load_library() is not None
    )


class _ConvPoolBlock(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        pool: tuple[int, int],
        border: tuple[int, int, int, int],
        threshold: int,
        scale: float,
        save: bool,
    ) -> torch.Tensor:
        dtype = _compute_dtype(x)
        xc = x.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        wc = weight.detach().to(dtype)
        with torch.autocast("cpu", enabled=False):
            y = torch.nn.functional.conv2d(xc, wc)
        out, arg = pool_forward(y, bias, pool, border, threshold, scale, save)
        if save:
            ctx.save_for_backward(xc, wc, arg)
        ctx.geometry, ctx.scale, ctx.x_dtype = (pool, border), scale, x.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        none = (None,) * 5
        if not (need_x or need_w or need_b):
            return None, None, None, *none
        xc, wc, arg = ctx.saved_tensors
        (ph, pw), (pt, pb, pl, pr) = ctx.geometry
        lib = load_library()
        assert lib is not None
        n, cin, hx, wx = xc.shape
        cout, _, kh, kw = wc.shape
        g = grad.to(xc.dtype).contiguous(memory_format=torch.channels_last)
        wt = wc.float().permute(0, 2, 3, 1).contiguous()  # the values the forward pass used
        gx = torch.empty(xc.shape, dtype=xc.dtype, memory_format=torch.channels_last) if need_x else None
        gw = torch.empty(cout, kh, kw, cin) if need_w else None
        gb = torch.empty(cout) if need_b else None
        rc = lib.pl_conv_pool_backward(
            n, hx, wx, cin, cout, kh, kw, ph, pw, pt, pb, pl, pr, int(xc.dtype == torch.bfloat16),
            ptr(xc), ptr(wt), ptr(g), ptr(arg), ctx.scale, ptr(gx), ptr(gw), ptr(gb), torch.get_num_threads(),
        )  # fmt: skip
        if rc:
            raise RuntimeError(f"native conv-block backward failed (code {rc}) for input {tuple(xc.shape)}")
        grad_w = gw.permute(0, 3, 1, 2) if gw is not None else None  # (cout, cin, kh, kw), channels-last
        gx = gx.to(ctx.x_dtype) if gx is not None else None
        return gx, grad_w, gb, *none


def conv_pool_block(
    x: torch.Tensor,
    conv: torch.nn.Conv2d,
    pool: tuple[int, int],
    p: float,
    training: bool,
    out_pad: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """``dropout(relu(max_pool2d(conv(x), pool)), p)`` with ``conv`` run without padding (check
    :func:`conv_block_applies` first).

    Args:
        x: ``(batch, in_channels, height, width)`` input that already carries the convolution's zero padding.
        conv: The block's convolution (its ``padding`` is not applied; stride 1).
        pool: Max-pooling size and stride ``(ph, pw)``.
        p: Dropout probability (used in training mode only).
        training: Whether dropout is active.
        out_pad: Zero border ``(left, right, top, bottom)`` around the output (the next convolution's padding,
            as for ``torch.nn.functional.pad``), or ``None``.

    Returns:
        ``(batch, out_channels, pooled height + border, pooled width + border)``, channels-last.
    """
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    params = (conv.weight, conv.bias) if conv.bias is not None else (conv.weight,)
    save = torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in params))
    left, right, top, bottom = out_pad or (0, 0, 0, 0)
    return _ConvPoolBlock.apply(x, conv.weight, conv.bias, pool, (top, bottom, left, right), threshold, scale, save)
