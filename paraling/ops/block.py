"""What the CNN calls: one conv block and one FC activation, each by its native kernel or its torch reference.

One selection rule (:func:`select_kernels`): the native kernels run where the model allows them (``kernels="auto"``,
the default; ``trainer.native=false`` sets ``"reference"``), on the CPU, with the library built
(:func:`~paraling.ops.build.load_library`); then each kernel still checks that it handles the tensors (its
``*_applies``: dtype, sizes) and leaves the rest to its reference. Everywhere else -- on CUDA, without a C compiler,
with ``PARALING_NATIVE=0`` -- the torch reference of :mod:`paraling.ops.reference` runs, with the same results up to
float rounding. ``"plain"`` is the textbook sequence of torch modules, kept as the benchmarks' naive baseline.

Dropout masks are random bytes drawn here, once per call, laid out as the kernels read them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from paraling.ops.border import NO_BORDER, Border
from paraling.ops.build import load_library
from paraling.ops.conv_pool import conv_pool_applies, native_conv_pool
from paraling.ops.first_block import first_block_applies, native_first_block
from paraling.ops.pool import native_pool, pool_applies
from paraling.ops.reference import conv_block as reference_block
from paraling.ops.reference import plain_conv_block, pool_relu_dropout

__all__ = ["Kernels", "conv_block", "relu_dropout", "select_kernels"]

Kernels = Literal["auto", "native", "reference", "plain"]


def select_kernels(kernels: Kernels, x: Tensor) -> Kernels:
    """The one rule: ``"native"`` where allowed (``auto``), on the CPU, with the library built; else as asked."""
    if kernels in ("auto", "native"):
        return "native" if x.device.type == "cpu" and load_library() is not None else "reference"
    return kernels


def conv_block(
    x: Tensor,
    conv: torch.nn.Conv2d,
    pad: Border,
    pool: tuple[int, int],
    drop: torch.nn.Dropout,
    training: bool,
    *,
    kernels: Kernels,
    padded: bool = False,
    out_pad: Border = NO_BORDER,
) -> tuple[Tensor, bool]:
    """``dropout(relu(max_pool2d(conv(x), pool)))`` with "same" padding ``pad``.

    Args:
        x: ``(batch, in_channels, height, width)`` maps; with ``padded`` they already carry ``pad``.
        conv: The block's convolution.
        pad: Its "same" padding.
        pool: Max-pooling size and stride.
        drop: The block's dropout (its ``p``; the module itself only in ``"plain"``).
        training: Whether dropout is active.
        kernels: What :func:`select_kernels` chose.
        padded: Whether ``x`` already carries ``pad`` (a native kernel wrote it).
        out_pad: The next convolution's padding, which the native path writes around its output in the same pass.

    Returns:
        The block's output, and whether it carries ``out_pad``.
    """
    if kernels == "plain":
        return plain_conv_block(x, conv, pad, pool, drop), False
    p = drop.p
    if kernels != "native":
        return reference_block(x, conv, pad, pool, p, training), False
    if not padded and first_block_applies(x, conv, pool):
        return native_first_block(x, conv, pad, pool, p, training, out_pad), True
    if not padded and pad:
        x = torch.nn.functional.pad(x, pad.pad_args())
    if conv_pool_applies(x, conv, pool):
        return native_conv_pool(x, conv, pool, p, training, out_pad), True
    y = torch.nn.functional.conv2d(x, conv.weight, None)
    if pool_applies(y, pool):
        return native_pool(y, pool, p, training, conv.bias, out_pad), True
    return pool_relu_dropout(y, pool, p, training, bias=conv.bias, border=out_pad), True


def relu_dropout(x: Tensor, drop: torch.nn.Dropout, training: bool, kernels: Kernels) -> Tensor:
    """``dropout(relu(x))`` of an FC layer's output ``(batch, features)``."""
    if kernels == "plain":
        return drop(torch.relu(x))
    if kernels == "native" and pool_applies(x):
        return native_pool(x, (1, 1), drop.p, training)
    return pool_relu_dropout(x, (1, 1), drop.p, training)
