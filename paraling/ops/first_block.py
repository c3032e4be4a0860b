"""``paraling::first_block``: the first conv block on one input channel, fused natively.

conv → max-pool → bias → ReLU → dropout. With one input channel the first convolution does 9 multiply-adds per
output value, and torch runs the block as memory-bound passes over the 40x11x32 feature maps (the convolution's
output, max-pool with int64 indices, the gradient's zero-filled scatter, the masks): about a third of a CPU training
step for 4% of its FLOPs. The kernel (``csrc/first_block.c``) keeps the candidates of each pooled value in registers
and writes only the pooled output plus one byte per value saying which candidate won; the backward pass rebuilds the
weight and bias gradients from that byte, the input windows and the output gradient. The bias is added after pooling,
which gives the same value (``max(a + b) = max(a) + b``). Under bf16 autocast the output is written in bfloat16
(rounded once), as the next convolution reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from paraling.ops.border import NO_BORDER, Border
from paraling.ops.build import MAX_KERNEL, MAX_POOL, load_library, padded_channels, ptr
from paraling.ops.pool import dropout_bytes, kernel_outputs
from paraling.ops.random import dropout_threshold

__all__ = ["first_block_applies", "native_first_block"]


def first_block_applies(x: Tensor, conv: torch.nn.Conv2d, pool: tuple[int, int]) -> bool:
    """Whether the kernel takes ``x`` and ``conv``: CPU float32, one input channel, stride 1, sizes it handles."""
    return (
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
    )


def _outputs(
    x: Tensor, weight: Tensor, pool: Sequence[int], border: Sequence[int], bf16: bool, save: bool
) -> tuple[Tensor, Tensor]:
    """What the kernel fills: the "same" convolution's ``(n, c_out, h, w)`` map, pooled and framed."""
    shape = (x.shape[0], weight.shape[0], x.shape[2], x.shape[3])
    return kernel_outputs(shape, pool, border, torch.bfloat16 if bf16 else torch.float32, x.device, save)


@torch.library.custom_op("paraling::first_block", mutates_args=(), device_types="cpu")
def _first_block(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    rnd: Tensor | None,
    pad: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    bf16: bool,
    save: bool,
) -> tuple[Tensor, Tensor]:
    lib = load_library()
    assert lib is not None, "first_block_applies() and load_library() first"
    n, _, h, w = x.shape
    c, _, kh, kw = weight.shape
    top, bottom, left, right = border
    cp = padded_channels(c)
    xs = x.reshape(n, h, w).contiguous()
    wt = torch.zeros(kh * kw, cp)
    wt[:, :c] = weight.reshape(c, kh * kw).t()
    b = torch.zeros(cp)
    b[:c] = bias
    out, arg = _outputs(x, weight, pool, border, bf16, save)
    rc = lib.pl_first_block_forward(
        n, h, w, c, kh, kw, pad[0], pad[1], pool[0], pool[1], top, bottom, left, right, int(bf16),
        ptr(xs), ptr(wt), ptr(b), ptr(rnd), threshold, scale, ptr(out), ptr(arg) if save else None,
        torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native first-block forward failed (code {rc}) for shape {tuple(x.shape)}")
    return out, arg


@_first_block.register_fake
def _(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    rnd: Tensor | None,
    pad: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    bf16: bool,
    save: bool,
) -> tuple[Tensor, Tensor]:
    return _outputs(x, weight, pool, border, bf16, save)


@torch.library.custom_op("paraling::first_block_backward", mutates_args=(), device_types="cpu")
def _first_block_backward(
    x: Tensor,
    grad: Tensor,
    arg: Tensor,
    kernel: Sequence[int],
    pad: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bf16: bool,
) -> tuple[Tensor, Tensor]:
    lib = load_library()
    assert lib is not None
    n, _, h, w = x.shape
    c = grad.shape[1]
    kh, kw = kernel
    top, bottom, left, right = border
    xs = x.reshape(n, h, w).contiguous()
    g = grad.to(torch.bfloat16 if bf16 else torch.float32).contiguous(memory_format=torch.channels_last)
    cp = padded_channels(c)
    gw = torch.empty(kh * kw, cp)
    gb = torch.empty(cp)
    rc = lib.pl_first_block_backward(
        n, h, w, c, kh, kw, pad[0], pad[1], pool[0], pool[1], top, bottom, left, right, int(bf16),
        ptr(xs), ptr(g), ptr(arg), scale, ptr(gw), ptr(gb), torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native first-block backward failed (code {rc})")
    return gw[:, :c].t().reshape(c, 1, kh, kw).contiguous(), gb[:c].clone()


@_first_block_backward.register_fake
def _(
    x: Tensor,
    grad: Tensor,
    arg: Tensor,
    kernel: Sequence[int],
    pad: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bf16: bool,
) -> tuple[Tensor, Tensor]:
    c = grad.shape[1]
    return x.new_empty((c, 1, kernel[0], kernel[1])), x.new_empty((c,))


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, weight, _, _, pad, pool, border, _, scale, bf16, save = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(x, output[1])
    ctx.kernel, ctx.pad, ctx.pool, ctx.border = list(weight.shape[2:]), list(pad), list(pool), list(border)
    ctx.scale, ctx.bf16, ctx.saved = scale, bf16, save


def _backward(ctx: Any, grad: Tensor, _grad_arg: Tensor | None) -> tuple[Tensor | None, ...]:
    x, arg = ctx.saved_tensors
    none = (None,) * 8
    if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
        return None, None, None, *none
    if not ctx.saved:
        raise RuntimeError("paraling::first_block was called with save=False; no backward pass")
    gw, gb = _first_block_backward(x, grad, arg, ctx.kernel, ctx.pad, ctx.pool, ctx.border, ctx.scale, ctx.bf16)
    return None, gw if ctx.needs_input_grad[1] else None, gb if ctx.needs_input_grad[2] else None, *none


torch.library.register_autograd("paraling::first_block", _backward, setup_context=_setup)


def native_first_block(
    x: Tensor,
    conv: torch.nn.Conv2d,
    pad: Border,
    pool: tuple[int, int],
    p: float,
    training: bool,
    border: Border = NO_BORDER,
    rnd: Tensor | None = None,
) -> Tensor:
    """``dropout(relu(max_pool2d(conv(x), pool)), p)`` by the kernel (check :func:`first_block_applies` first).

    Args:
        x: ``(batch, 1, height, width)`` float32 windows on the CPU (not requiring grad).
        conv: The block's convolution, run with "same" output size.
        pad: Its "same" padding (the kernel reads ``top`` and ``left``; bottom/right make up the rest).
        pool: Max-pooling size and stride ``(ph, pw)``.
        p: Dropout probability (training mode only).
        training: Whether dropout is active.
        border: Zero border written around the output (the next convolution's padding).
        rnd: The mask's random bytes (``None``: drawn here, :func:`~paraling.ops.pool.dropout_bytes`).

    Returns:
        ``(batch, out_channels, height // ph + border, width // pw + border)``, channels-last; bfloat16 under
        bf16 autocast, else float32.
    """
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    if rnd is None:
        rnd = dropout_bytes((x.shape[0], conv.out_channels, *x.shape[2:]), pool, threshold, x.device)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    save = torch.is_grad_enabled() and (conv.weight.requires_grad or bias.requires_grad)
    args = ([pad.top, pad.left], list(pool), list(border), threshold, scale, bool(bf16), save)
    out, _ = _first_block(x, conv.weight, bias, rnd, *args)
    return out
