"""Every native kernel is a registered torch op that passes torch.library.opcheck and equals its torch reference."""

from __future__ import annotations

import pytest
import torch

from paraling.ops import Border, build
from paraling.ops.pool import dropout_bytes
from paraling.ops.random import dropout_threshold
from paraling.ops.reference import conv_block as reference_block
from paraling.ops.reference import pool_relu_dropout

pytestmark = pytest.mark.skipif(build.load_library() is None, reason="no C compiler: no native kernels to check")

#: opcheck's utilities: schema, autograd registration, fake tensors, AOT dispatch with dynamic shapes
CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _cl(*shape: int, dtype: torch.dtype = torch.float32, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_(grad)


@pytest.mark.parametrize("save", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_first_block_opcheck(save: bool, dropout: float) -> None:
    x = torch.randn(6, 1, 12, 9)
    w, b = torch.randn(8, 1, 3, 3, requires_grad=save), torch.randn(8, requires_grad=save)
    thr, scale = dropout_threshold(dropout)
    rnd = dropout_bytes((6, 8, 12, 9), (2, 2), thr, x.device)
    args = (x, w, b, rnd, [1, 1], [2, 2], [1, 1, 0, 1], thr, scale, False, save)
    torch.library.opcheck(torch.ops.paraling.first_block.default, args, test_utils=CHECKS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("two_d", [False, True])
def test_pool_opcheck(dtype: torch.dtype, two_d: bool) -> None:
    x = torch.randn(7, 33, dtype=dtype, requires_grad=True) if two_d else _cl(5, 16, 10, 6, dtype=dtype, grad=True)
    pool, border = ([1, 1], [0, 0, 0, 0]) if two_d else ([2, 2], [1, 0, 1, 1])
    thr, scale = dropout_threshold(0.2)
    rnd = dropout_bytes(x.shape, pool, thr, x.device)
    bias = torch.randn(x.shape[1], requires_grad=True)
    args = (x, bias, rnd, pool, border, thr, scale, True)
    torch.library.opcheck(torch.ops.paraling.pool_bias_relu_dropout.default, args, test_utils=CHECKS)


@pytest.mark.parametrize("kernel", [2, 3])
def test_conv_pool_opcheck(kernel: int) -> None:
    x = _cl(4, 8, 12 + kernel - 1, 7 + kernel - 1, grad=True)
    w = torch.randn(16, 8, kernel, kernel, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    thr, scale = dropout_threshold(0.1)
    rnd = dropout_bytes((4, 16, 12, 7), (2, 2), thr, x.device)
    args = (x, w, b, rnd, [2, 2], [1, 1, 1, 1], thr, scale, False, True)
    torch.library.opcheck(torch.ops.paraling.conv_pool_block.default, args, test_utils=CHECKS)


@pytest.mark.parametrize(("kernel", "in_channels"), [(3, 1), (2, 1), (3, 8), (2, 16)])
@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_native_block_equals_its_reference(kernel: int, in_channels: int, dropout: float) -> None:
    """Same random bytes, same units dropped: the native block and the torch reference agree, gradients included."""
    from paraling.ops import conv_block, same_padding

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(in_channels, 12, kernel)
    pad, pool = same_padding(kernel), (2, 2)
    x = torch.randn(9, in_channels, 16, 11)
    drop = torch.nn.Dropout(dropout)
    thr, _ = dropout_threshold(dropout)
    state = torch.get_rng_state()
    native, padded = conv_block(x, conv, pad, pool, drop, True, kernels="native")
    assert padded  # the native path ran
    grads_native = torch.autograd.grad(native.float().square().sum(), [conv.weight, conv.bias])
    torch.set_rng_state(state)  # the reference draws the same bytes in the same layout
    rnd = dropout_bytes((9, 12, 16, 11), pool, thr, x.device)
    reference = reference_block(x, conv, pad, pool, dropout, True, rnd)
    grads_reference = torch.autograd.grad(reference.square().sum(), [conv.weight, conv.bias])
    torch.testing.assert_close(native.float(), reference, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_native, grads_reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_fc_dropout_equals_its_reference() -> None:
    from paraling.ops import relu_dropout

    x = torch.randn(64, 40, requires_grad=True)
    drop = torch.nn.Dropout(0.5)
    thr, _ = dropout_threshold(0.5)
    state = torch.get_rng_state()
    native = relu_dropout(x, drop, True, "native")
    (g_native,) = torch.autograd.grad(native.sum(), [x])
    torch.set_rng_state(state)
    reference = pool_relu_dropout(x, (1, 1), 0.5, True, rnd=dropout_bytes(x.shape, (1, 1), thr, x.device))
    (g_reference,) = torch.autograd.grad(reference.sum(), [x])
    assert torch.equal(native, reference) and torch.equal(g_native, g_reference)


def test_one_border_order() -> None:
    b = Border(top=1, bottom=2, left=3, right=4)
    assert b.pad_args() == (3, 4, 1, 2) and not Border() and b


@pytest.mark.parametrize(
    "name",
    [
        "first_block",
        "first_block_backward",
        "pool_bias_relu_dropout",
        "pool_bias_relu_dropout_backward",
        "conv_pool_block",
        "conv_pool_block_backward",
    ],
)
def test_native_ops_are_registered_for_the_cpu_only(name: str) -> None:
    """A kernel registered for every device (CompositeExplicitAutograd) would be handed CUDA tensors and read GPU
    memory as host memory; registered for the CPU, a CUDA tensor finds no kernel and fails clearly."""
    op = getattr(torch.ops.paraling, name).default
    assert op.has_kernel_for_dispatch_key("CPU")
    assert not op.has_kernel_for_dispatch_key("CompositeExplicitAutograd")
    assert not op.has_kernel_for_dispatch_key("CUDA")
