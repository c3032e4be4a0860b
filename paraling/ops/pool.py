"""``paraling::pool_bias_relu_dropout``: fused max-pool → bias → ReLU → dropout by the native CPU kernel.

For conv blocks and FC layers. Compared with the torch reference (:mod:`paraling.ops.reference`) the forward pass
writes one byte per output instead of int64 pooling indices and a separate mask, and the backward pass writes each
input-gradient value once instead of zero-filling the gradient and scattering into it. The preceding convolution's
bias can be passed in and is then added after pooling (``max(a + b) = max(a) + b``), so its gradient is summed over
the pooled map, not the full one. float32 and bfloat16 maps; values are computed in float32 and rounded once. The
dropout bytes are an input (:func:`paraling.ops.random.random_bytes`), so the op itself is deterministic. Kernel:
``csrc/pool.c``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from paraling.ops.border import NO_BORDER, Border
from paraling.ops.build import MAX_POOL, load_library, padded_channels, ptr

__all__ = [
    "dropout_bytes",
    "kernel_empty",
    "kernel_outputs",
    "native_pool",
    "pool_applies",
    "pool_forward",
    "pooled_shapes",
]

_DTYPES = (torch.float32, torch.bfloat16)


def pool_applies(x: Tensor, pool: tuple[int, int] = (1, 1)) -> bool:
    """Whether the kernel takes ``x``: CPU float32/bfloat16, 2-d (no pooling) or 4-d, pooling it can handle."""
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.dim() not in (2, 4) or x.numel() == 0:
        return False
    if x.dim() == 2 and pool != (1, 1):
        return False
    return x.dim() == 2 or (pool[0] * pool[1] <= MAX_POOL and x.shape[2] >= pool[0] and x.shape[3] >= pool[1])


def pooled_shapes(
    shape: Sequence[int], pool: Sequence[int], border: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(output, winner bytes)`` shapes of a ``(n, c, h, w)`` map pooled by ``pool`` and framed by ``border``
    (``(n, c)``: both unchanged)."""
    if len(shape) == 2:
        return tuple(shape), tuple(shape)
    n, c, h, w = shape
    ho, wo = h // pool[0], w // pool[1]
    top, bottom, left, right = border
    return (n, c, top + ho + bottom, left + wo + right), (n, c, ho, wo)


def kernel_empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised tensor laid out as the kernels write it: channels-last when 4-d."""
    if len(shape) == 4:
        return torch.empty(shape, dtype=dtype, device=device, memory_format=torch.channels_last)
    return torch.empty(shape, dtype=dtype, device=device)


def kernel_outputs(
    shape: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    save: bool,
) -> tuple[Tensor, Tensor]:
    """The ``(out, arg)`` a pooling kernel fills for a map of ``shape``; ``arg`` is empty unless ``save``."""
    out_shape, arg_shape = pooled_shapes(shape, pool, border)
    return kernel_empty(out_shape, dtype, device), kernel_empty(arg_shape if save else (0,), torch.uint8, device)


def pool_forward(
    x: Tensor,
    bias: Tensor | None,
    rnd: Tensor | None,
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    save: bool,
) -> tuple[Tensor, Tensor]:
    """The forward kernel: ``(out, arg)``; ``arg`` holds the winner bytes (255 where zeroed), empty unless ``save``."""
    lib = load_library()
    assert lib is not None, "pool_applies() and load_library() first"
    ph, pw = pool
    top, bottom, left, right = border
    xc = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.contiguous()
    n, c, h, w = (*xc.shape, 1, 1) if xc.dim() == 2 else xc.shape
    out, arg = kernel_outputs(xc.shape, pool, border, x.dtype, x.device, save)
    b = bias.detach().float().contiguous() if bias is not None else None
    rc = lib.pl_pool_forward(
        n, h, w, c, ph, pw, top, bottom, left, right, int(x.dtype == torch.bfloat16),
        ptr(xc), ptr(b), ptr(rnd), threshold, scale, ptr(out), ptr(arg) if save else None, torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native pool forward failed (code {rc}) for shape {tuple(x.shape)}, pool {tuple(pool)}")
    return out, arg


@torch.library.custom_op("paraling::pool_bias_relu_dropout", mutates_args=(), device_types="cpu")
def _pool(
    x: Tensor,
    bias: Tensor | None,
    rnd: Tensor | None,
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    save: bool,
) -> tuple[Tensor, Tensor]:
    return pool_forward(x, bias, rnd, pool, border, threshold, scale, save)


@_pool.register_fake
def _(
    x: Tensor,
    bias: Tensor | None,
    rnd: Tensor | None,
    pool: Sequence[int],
    border: Sequence[int],
    threshold: int,
    scale: float,
    save: bool,
) -> tuple[Tensor, Tensor]:
    return kernel_outputs(x.shape, pool, border, x.dtype, x.device, save)


@torch.library.custom_op("paraling::pool_bias_relu_dropout_backward", mutates_args=(), device_types="cpu")
def _pool_backward(
    grad: Tensor,
    arg: Tensor,
    shape: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bias_grad: bool,
) -> tuple[Tensor, Tensor]:
    lib = load_library()
    assert lib is not None
    ph, pw = pool
    top, bottom, left, right = border
    n, c, h, w = (*shape, 1, 1) if len(shape) == 2 else shape
    dtype = grad.dtype
    g = grad.contiguous(memory_format=torch.channels_last) if len(shape) == 4 else grad.contiguous()
    gx = kernel_empty(shape, dtype, grad.device)
    gb = torch.empty(padded_channels(c) if bias_grad else 0)
    rc = lib.pl_pool_backward(
        n, h, w, c, ph, pw, top, bottom, left, right, int(dtype == torch.bfloat16),
        ptr(g), ptr(arg), scale, ptr(gx), ptr(gb) if bias_grad else None, torch.get_num_threads(),
    )  # fmt: skip
    if rc:
        raise RuntimeError(f"native pool backward failed (code {rc})")
    return gx, gb[:c].clone() if bias_grad else gb


@_pool_backward.register_fake
def _(
    grad: Tensor,
    arg: Tensor,
    shape: Sequence[int],
    pool: Sequence[int],
    border: Sequence[int],
    scale: float,
    bias_grad: bool,
) -> tuple[Tensor, Tensor]:
    c = shape[1]
    return kernel_empty(shape, grad.dtype, grad.device), grad.new_empty((c if bias_grad else 0,), dtype=torch.float32)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, bias, _, pool, border, _, scale, save = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])
    ctx.shape, ctx.pool, ctx.border, ctx.scale, ctx.dtype = list(x.shape), list(pool), list(border), scale, x.dtype
    ctx.has_bias, ctx.saved = bias is not None, save


def _backward(ctx: Any, grad: Tensor, _grad_arg: Tensor | None) -> tuple[Tensor | None, ...]:
    (arg,) = ctx.saved_tensors
    if not ctx.saved:
        raise RuntimeError("paraling::pool_bias_relu_dropout was called with save=False; no backward pass")
    bias_grad = ctx.has_bias and ctx.needs_input_grad[1]
    gx, gb = _pool_backward(grad.to(ctx.dtype), arg, ctx.shape, ctx.pool, ctx.border, ctx.scale, bias_grad)
    return gx if ctx.needs_input_grad[0] else None, gb if bias_grad else None, None, None, None, None, None, None


torch.library.register_autograd("paraling::pool_bias_relu_dropout", _backward, setup_context=_setup)


def native_pool(
    x: Tensor,
    pool: tuple[int, int],
    p: float,
    training: bool,
    bias: Tensor | None = None,
    border: Border = NO_BORDER,
    rnd: Tensor | None = None,
) -> Tensor:
    """``dropout(relu(max_pool2d(x, pool) + bias), p)`` by the kernel (check :func:`pool_applies` first).

    Args:
        x: ``(batch, channels, height, width)`` maps (any memory format; the output is channels-last), or
            ``(batch, features)`` with ``pool=(1, 1)``.
        pool: Max-pooling size and stride.
        p: Dropout probability (training mode only).
        training: Whether dropout is active.
        bias: ``(channels,)`` added after pooling, or ``None``.
        border: Zero border written around a 4-d output.
        rnd: The mask's random bytes (``None``: drawn here, :func:`dropout_bytes`).
    """
    from paraling.ops.random import dropout_threshold

    threshold, scale = dropout_threshold(p) if training else (0, 1.0)
    if rnd is None:
        rnd = dropout_bytes(x.shape, pool, threshold, x.device)
    save = torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad))
    out, _ = _pool(x, bias, rnd, list(pool), list(border), threshold, scale, save)
    return out


def dropout_bytes(shape: Sequence[int], pool: Sequence[int], threshold: int, device: torch.device) -> Tensor | None:
    """Random bytes for the dropout mask of a map of ``shape`` pooled by ``pool``, laid out as the kernels read them.

    ``None`` without dropout (``threshold`` 0).
    """
    if not threshold:
        return None
    from paraling.ops.random import random_bytes

    _, pooled = pooled_shapes(shape, pool, (0, 0, 0, 0))
    return random_bytes(kernel_empty(pooled, torch.uint8, device))
