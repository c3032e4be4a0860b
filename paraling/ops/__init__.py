"""paraling's CNN ops: native CPU kernels registered as torch custom ops, each with its torch reference path.

Modules: :mod:`~paraling.ops.build` (compiling and loading ``csrc/*.c`` safely), :mod:`~paraling.ops.cpu` (what
the CPU is), :mod:`~paraling.ops.random` (dropout bytes), :mod:`~paraling.ops.border` (the one border order),
one module per kernel -- :mod:`~paraling.ops.first_block` (``paraling::first_block``), :mod:`~paraling.ops.pool`
(``paraling::pool_bias_relu_dropout``), :mod:`~paraling.ops.conv_pool` (``paraling::conv_pool_block``), each with
its backward op, fake (meta) implementation and autograd formula, checked with ``torch.library.opcheck`` --
:mod:`~paraling.ops.reference` (the torch path of all of them) and :mod:`~paraling.ops.block` (the one selection
rule and what the CNN calls).
"""

from paraling.ops.block import Kernels, conv_block, relu_dropout, select_kernels
from paraling.ops.border import NO_BORDER, Border, same_padding
from paraling.ops.build import load_library
from paraling.ops.random import dropout_threshold, random_bytes

__all__ = [
    "NO_BORDER",
    "Border",
    "Kernels",
    "conv_block",
    "dropout_threshold",
    "load_library",
    "random_bytes",
    "relu_dropout",
    "same_padding",
    "select_kernels",
]
