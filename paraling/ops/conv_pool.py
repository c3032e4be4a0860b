"""``paraling::conv_pool_block``: a conv block after the first, with a sparse native backward pass.

conv → max-pool → bias → ReLU → dropout. The forward pass is torch's convolution (oneDNN) without bias, then the pool
kernel of :mod:`paraling.ops.pool`, which adds the bias after pooling and records one byte per pooled value: which
candidate won, or 255 where the ReLU or dropout zeroed it. Those bytes say which conv outputs get any gradient at
all: at most one per pooled value, so at most one in four with 2x2 pooling, fewer after the ReLU and dropout (about
one in five in the default second block). The backward pass (``csrc/conv_pool.c``) only visits those: each adds its
gradient times its input patch to the weight gradient and its gradient times the weights to the input gradient.
torch's route (a pool backward writing the mostly-zero gradient map, then oneDNN's dense convolution backward over it)
was about 40% of a CPU training step. Under bf16 autocast the convolution runs in bfloat16 and the backward pass reads
the bfloat16 input and output gradient, sums in float32 and rounds the input gradient once.

The convolution is "valid" over an input that already carries its zero padding (the previous native kernel writes
it), so the input gradient includes the border, which that kernel's backward pass ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from paraling.ops.border import NO_BORDER, Border
from paraling.ops.build import MAX_POOL, load_library, ptr
from paraling.ops.pool import dropout_bytes, kernel_outputs, pool_forward
from paraling.ops.random import dropout_threshold

__all__ = ["compute_dtype", "conv_pool_applies", "native_conv_pool"]

_CHUNK = 8  # windows per work item of the backward kernel (CHUNK in csrc/conv_pool.c)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The convolution's dtype: autocast's where it is on (bfloat16 on the CPU), else the input's."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype


def conv_pool_applies(x: Tensor, conv: torch.nn.Conv2d, pool: tuple[int, int]) -> bool:
    """Whether the kernel takes ``x`` (already padded) and ``conv``: CPU, float32/bfloat16, stride 1."""
    h, w = x.shape[2] - conv.kernel_size[0] + 1, x.shape[3] - conv.kernel_size[1] + 1
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.numel() > 0
        and compute_dtype(x) in (torch.float32, torch.bfloat16)
        and conv.weight.device.type == "cpu"
        and conv.groups == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and pool[0] * pool[1] <= MAX_POOL
        and h >= pool[0]
        and w >= pool[1]
        and _CHUNK * x.shape[1] * x.shape[2] * x.shape[3] < 2**31  # the kernel's int32 offsets within a chunk
    )


def _dtype(bf16: bool) -> torch.dtype:
    return torch.bfloat16 if bf16 else torch.float32


@torch.library.custom_op("paraling::conv_pool_block", mutates_args=(), device_types="cpu")
def _conv_pool(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    rnd: Tensor | None,
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    bf16: bool,
    save: bool,
) -> tuple[Tensor, Tensor]:
    dtype = _dtype(bf16)
    xc = x.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", enabled=False):
        y = torch.nn.functional.conv2d(xc, weight.to(dtype))
    return pool_forward(y, bias, rnd, pool, border, threshold, scale, save)


def _conv_shape(x: Tensor, weight: Tensor) -> tuple[int, int, int, int]:
    return x.shape[0], weight.shape[0], x.shape[2] - weight.shape[2] + 1, x.shape[3] - weight.shape[3] + 1


@_conv_pool.register_fake
def _(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    rnd: Tensor | None,
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    bf16: bool,
    save: bool,
) -> tuple[Tensor, Tensor]:
    return kernel_outputs(_conv_shape(x, weight), pool, border, _dtype(bf16), x.device, save)


@torch.library.custom_op("paraling::conv_pool_block_backward", mutates_args=(), device_types="cpu")
def _conv_pool_backward(
    x: Tensor,
    weight: Tensor,
    grad: Tensor,
    arg: Tensor,
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bf16: bool,
    need: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    lib = load_library()
    assert lib is not None
    dtype = _dtype(bf16)
    xc = x.to(dtype).contiguous(memory_format=torch.channels_last)
    wc = weight.to(dtype)
    n, cin, hx, wx = xc.shape
    cout, _, kh, kw = wc.shape
    top, bottom, left, right = border
    g = grad.to(dtype).contiguous(memory_format=torch.channels_last)
    wt = wc.float().permute(0, 2, 3, 1).contiguous()  # the values the forward pass used
    need_x, need_w, need_b = need
    gx = torch.empty(xc.shape, dtype=dtype, memory_format=torch.channels_last) if need_x else x.new_empty(0)
    gw = torch.empty(cout, kh, kw, cin) if need_w else x.new_empty(0)
    gb = torch.empty(cout) if need_b else x.new_empty(0)
    rc = lib.pl_conv_pool_backward(
        n, hx, wx, cin, cout, kh, kw, pool[0], pool[1], top, bottom, left, right, int(bf16),
        ptr(xc), ptr(wt), ptr(g), ptr(arg), scale, ptr(gx) if need_x else None, ptr(gw) if need_w else None,
        ptr(gb) if need_b else None, torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native conv-block backward failed (code {rc}) for input {tuple(xc.shape)}")
    gw = gw.permute(0, 3, 1, 2).clone(memory_format=torch.channels_last) if need_w else gw
    return gx.to(x.dtype) if need_x else gx, gw, gb


@_conv_pool_backward.register_fake
def _(
    x: Tensor,
    weight: Tensor,
    grad: Tensor,
    arg: Tensor,
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bf16: bool,
    need: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    cl = torch.channels_last
    gx = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=cl) if need[0] else x.new_empty(0)
    gw = torch.empty(weight.shape, device=x.device, memory_format=cl) if need[1] else x.new_empty(0)
    gb = x.new_empty((weight.shape[0],), dtype=torch.float32) if need[2] else x.new_empty(0)
    return gx, gw, gb


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, weight, bias, _, pool, border, _, scale, bf16, save = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(x, weight, output[1])
    ctx.pool, ctx.border, ctx.scale, ctx.bf16, ctx.saved, ctx.has_bias = (
        list(pool),
        list(border),
        scale,
        bf16,
        save,
        (bias is not None),
    )


def _backward(ctx: Any, grad: Tensor, _grad_arg: Tensor | None) -> tuple[Tensor | None, ...]:
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    none = (None,) * 7
    if not (need_x or need_w or need_b):
        return None, None, None, *none
    if not ctx.saved:
        raise RuntimeError("paraling::conv_pool_block was called with save=False; no backward pass")
    x, weight, arg = ctx.saved_tensors
    gx, gw, gb = _conv_pool_backward(
        x, weight, grad, arg, ctx.pool, ctx.border, ctx.scale, ctx.bf16, [need_x, need_w, need_b]
    )
    return gx if need_x else None, gw if need_w else None, gb if need_b else None, *none


torch.library.register_autograd("paraling::conv_pool_block", _backward, setup_context=_setup)


def native_conv_pool(
    x: Tensor,
    conv: torch.nn.Conv2d,
    pool: tuple[int, int],
    p: float,
    training: bool,
    border: Border = NO_BORDER,
    rnd: Tensor | None = None,
) -> Tensor:
    """``dropout(relu(max_pool2d(conv(x), pool)), p)`` with ``conv`` run "valid" (check :func:`conv_pool_applies`).

    Args:
        x: ``(batch, in_channels, height, width)`` input that already carries the convolution's zero padding.
        conv: The block's convolution (its ``padding`` is not applied; stride 1).
        pool: Max-pooling size and stride ``(ph, pw)``.
        p: Dropout probability (training mode only).
        training: Whether dropout is active.
        border: Zero border written around the output (the next convolution's padding).
        rnd: The mask's random bytes (``None``: drawn here, :func:`~paraling.ops.pool.dropout_bytes`).

    Returns:
        ``(batch, out_channels, pooled height + border, pooled width + border)``, channels-last.
    """
    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    if rnd is None:
        shape = (x.shape[0], conv.out_channels, *_conv_shape(x, conv.weight)[2:])
        rnd = dropout_bytes(shape, pool, threshold, x.device)
    params = (conv.weight, conv.bias) if conv.bias is not None else (conv.weight,)
    save = torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in params))
    bf16 = compute_dtype(x) == torch.bfloat16
    out, _ = _conv_pool(x, conv.weight, conv.bias, rnd, list(pool), list(border), threshold, scale, bf16, save)
    return out
