"""The first conv block on one input channel, fused natively: conv → max-pool → bias → ReLU → dropout.

With one input channel the first convolution does 9 multiply-adds per output value, and torch runs the block as
memory-bound passes over the 40x11x32 feature maps (the convolution's output, max-pool with int64 indices, the
gradient's zero-filled scatter, the masks): about a third of a CPU training step for 4% of its FLOPs. The C kernel
(``csrc/first_block.c``, loaded by ``models/native.py``) keeps the candidates of each pooled value in registers and
writes only the pooled output plus one byte per value saying which candidate won; the backward pass rebuilds the
weight and bias gradients from that byte, the input windows and the output gradient. The bias is added after
pooling, which gives the same value (``max(a + b) = max(a) + b``).
"""

from __future__ import annotations

from typing import Any

import torch

from paraling.models.fused import dropout_threshold
from paraling.models.native import MAX_KERNEL, MAX_POOL, load_library, padded_channels, ptr, random_bytes

__all__ = ["first_block"]


class _FirstBlock(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        geometry: tuple[int, ...],
        threshold: int,
        scale: float,
        save: bool,
    ) -> torch.Tensor:
        lib = load_library()
        assert lib is not None  # checked by first_block()
        n, _, h, w = x.shape
        c, _, kh, kw = weight.shape
        _, _, pad_top, pad_left, ph, pw, pt, pb, pl, pr = geometry
        ho, wo = h // ph, w // pw
        cp = padded_channels(c)
        xs = x.detach().reshape(n, h, w).contiguous()
        wt = torch.zeros(kh * kw, cp)
        wt[:, :c] = weight.detach().reshape(c, kh * kw).t()
        b = torch.zeros(cp)
        b[:c] = bias.detach()
        # under bf16 autocast the next convolution reads bfloat16: written so here, rounded once
        dtype = (
            torch.bfloat16
            if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            else torch.float32
        )
        out = torch.empty((n, c, pt + ho + pb, pl + wo + pr), dtype=dtype, memory_format=torch.channels_last)
        bytes_like = torch.empty((n, c, ho, wo), dtype=torch.uint8, memory_format=torch.channels_last)
        arg = bytes_like if save else None  # one byte per output: the winning candidate, 255 when zeroed
        rnd = random_bytes(bytes_like) if threshold else None
        rc = lib.pl_first_block_forward(
            n, h, w, c, kh, kw, pad_top, pad_left, ph, pw, pt, pb, pl, pr, int(dtype == torch.bfloat16),
            ptr(xs), ptr(wt), ptr(b), ptr(rnd), threshold, scale, ptr(out), ptr(arg), torch.get_num_threads(),
        )  # fmt: skip
        if rc:
            raise RuntimeError(f"native first-block forward failed (code {rc}) for shape {tuple(x.shape)}")
        ctx.save_for_backward(xs, arg)
        ctx.geometry, ctx.scale, ctx.shape, ctx.dtype = geometry, scale, (n, h, w, c, kh, kw), dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lib = load_library()
        xs, arg = ctx.saved_tensors
        n, h, w, c, kh, kw = ctx.shape
        _, _, pad_top, pad_left, ph, pw, pt, pb, pl, pr = ctx.geometry
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return None, None, None, None, None, None, None
        g = grad.to(ctx.dtype).contiguous(memory_format=torch.channels_last)
        cp = padded_channels(c)
        gw = torch.empty(kh * kw, cp)
        gb = torch.empty(cp)
        rc = lib.pl_first_block_backward(  # type: ignore[union-attr]
            n, h, w, c, kh, kw, pad_top, pad_left, ph, pw, pt, pb, pl, pr, int(ctx.dtype == torch.bfloat16),
            ptr(xs), ptr(g), ptr(arg), ctx.scale, ptr(gw), ptr(gb), torch.get_num_threads(),
        )  # fmt: skip
        if rc:
            raise RuntimeError(f"native first-block backward failed (code {rc})")
        grad_w = gw[:, :c].t().reshape(c, 1, kh, kw) if ctx.needs_input_grad[1] else None
        grad_b = gb[:c] if ctx.needs_input_grad[2] else None
        return None, grad_w, grad_b, None, None, None, None


def first_block(
    x: torch.Tensor,
    conv: torch.nn.Conv2d,
    pads: tuple[int, int],
    pool: tuple[int, int],
    p: float,
    training: bool,
    out_pad: tuple[int, int, int, int] | None = None,
) -> torch.Tensor | None:
    """``dropout(relu(max_pool2d(conv(x), pool)), p)`` by the native kernel, or ``None`` where it does not apply.

    Args:
        x: ``(batch, 1, height, width)`` float32 windows on the CPU (not requiring grad).
        conv: The block's convolution: one input channel, stride 1, "same" output size, float32 on the CPU.
        pads: ``(top, left)`` zero padding of the "same" convolution (bottom/right make up the rest).
        pool: Max-pooling size and stride ``(ph, pw)``.
        p: Dropout probability (used in training mode only).
        training: Whether dropout is active.
        out_pad: Zero border ``(left, right, top, bottom)`` around the output (the next convolution's padding,
            as for ``torch.nn.functional.pad``), or ``None``.

    Returns:
        ``(batch, out_channels, height // ph, width // pw)`` channels-last, or ``None`` when the kernel is
        disabled or unavailable or the inputs are outside what it handles (the caller then uses torch ops).
    """
    if not (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.shape[1] == 1
        and not x.requires_grad
        and conv.weight.device.type == "cpu"
        and conv.weight.dtype == torch.float32
        and conv.in_channels == 1
        and conv.groups == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.kernel_size[0] * conv.kernel_size[1] <= MAX_KERNEL
        and pool[0] * pool[1] <= MAX_POOL
        and x.shape[2] >= pool[0]
        and x.shape[3] >= pool[1]
    ):
        return None
    if load_library() is None:
        return None
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    save = torch.is_grad_enabled() and (conv.weight.requires_grad or bias.requires_grad)
    left, right, top, bottom = out_pad or (0, 0, 0, 0)
    geometry = (*conv.kernel_size, *pads, *pool, top, bottom, left, right)
    return _FirstBlock.apply(x, conv.weight, bias, geometry, threshold, scale, save)
