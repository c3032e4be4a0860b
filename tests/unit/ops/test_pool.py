"""The native fused max-pool → bias → ReLU → dropout equals the torch ops in float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch

from paraling.ops import Border, build
from paraling.ops.pool import native_pool, pool_applies
from paraling.ops.random import dropout_threshold
from paraling.ops.reference import pool_relu_dropout as reference

pytestmark = pytest.mark.skipif(
    build.load_library() is None, reason="no C compiler: the native kernels cannot be built here"
)


def pool_relu_dropout(
    x: torch.Tensor,
    pool: tuple[int, int],
    p: float,
    training: bool,
    bias: torch.Tensor | None = None,
    border: Border = Border(),
) -> torch.Tensor:
    """The kernel where it applies (every map of these tests but the float64 one), else the torch reference."""
    if pool_applies(x, pool):
        return native_pool(x, pool, p, training, bias, border)
    return reference(x, pool, p, training, bias, border)


def _reference(x: torch.Tensor, pool: tuple[int, int], bias: torch.Tensor | None) -> torch.Tensor:
    """The plain ops, with the bias added after pooling in float32 (as the kernel does; the same as before pooling,
    except for which of two bfloat16 values that round to a tie wins)."""
    if pool != (1, 1):
        x = torch.nn.functional.max_pool2d(x, pool)
    if bias is not None:
        x = (x.float() + bias.view(1, -1, *([1] * (x.dim() - 2)))).to(x.dtype)
    return torch.relu(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("shape", "pool"),
    [((6, 32, 20, 5), (2, 2)), ((5, 20, 7, 9), (3, 2)), ((3, 7, 4, 1), (2, 1)), ((9, 500), (1, 1))],
)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_torch_ops(
    dtype: torch.dtype, shape: tuple[int, ...], pool: tuple[int, int], with_bias: bool, channels_last: bool
) -> None:
    """Output, input gradient and bias gradient, with odd remainders (rows/columns the pooling drops)."""
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    bias = torch.randn(shape[1]) * 0.3 if with_bias else None
    assert pool_applies(x, pool)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ba = bias.clone().requires_grad_() if bias is not None else None
    bb = bias.clone().requires_grad_() if bias is not None else None
    ref = _reference(a, pool, ba)
    out = pool_relu_dropout(b, pool, 0.0, True, bias=bb)
    assert out.dtype == dtype and out.shape == ref.shape
    tol = {"rtol": 1e-2, "atol": 1e-2} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(out, ref, **tol)
    w = torch.randn(ref.shape).to(dtype)
    (ref.float() * w.float()).sum().backward()
    (out.float() * w.float()).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, **tol)
    if bias is not None:
        torch.testing.assert_close(bb.grad, ba.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("border", [Border(0, 1, 0, 1), Border(2, 0, 1, 2)])
def test_output_padding_written_in_place(dtype: torch.dtype, border: Border) -> None:
    """With a border the kernel returns the padded map F.pad would give, and takes the padded map's gradient."""
    torch.manual_seed(2)
    x = torch.randn(4, 20, 9, 7).to(dtype)
    bias = torch.randn(20) * 0.3
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = torch.nn.functional.pad(_reference(a, (2, 2), bias), border.pad_args())
    out = pool_relu_dropout(b, (2, 2), 0.0, True, bias=bias, border=border)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    w = torch.randn(ref.shape).to(dtype)
    (ref.float() * w.float()).sum().backward()
    (out.float() * w.float()).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_rate_scale_and_mask(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    x = (torch.rand(200, 64, 8, 8) + 0.1).to(dtype).requires_grad_()
    y = pool_relu_dropout(x, (2, 2), 0.3, True)
    t, scale = dropout_threshold(0.3)
    assert abs((y != 0).float().mean().item() - (1 - t / 256)) < 0.01
    pooled = torch.nn.functional.max_pool2d(x.detach(), 2)
    torch.testing.assert_close(y[y != 0], (pooled[y != 0].float() * scale).to(dtype))
    y.float().sum().backward()
    kept_grad = torch.nn.functional.max_pool2d(x.grad.float(), 2)  # each kept output sends scale to one input
    expected = torch.tensor(scale).to(dtype).float()  # the scale as the gradient's dtype holds it
    torch.testing.assert_close(kept_grad[y != 0], expected.expand_as(kept_grad[y != 0]))
    assert int((x.grad != 0).sum()) == int((y != 0).sum())


def test_seeded_eval_and_no_grad() -> None:
    x = torch.randn(4, 16, 6, 6)
    torch.manual_seed(5)
    a = pool_relu_dropout(x, (2, 2), 0.5, True)
    torch.manual_seed(5)
    b = pool_relu_dropout(x, (2, 2), 0.5, True)
    assert torch.equal(a, b)
    with torch.no_grad():
        torch.testing.assert_close(pool_relu_dropout(x, (2, 2), 0.5, False), _reference(x, (2, 2), None))


def test_nan_passes_like_torch() -> None:
    x = torch.randn(2, 16, 4, 4)
    x[0, 3, 1, 1] = float("nan")
    y = pool_relu_dropout(x, (2, 2), 0.0, False)
    assert torch.equal(torch.isnan(y), torch.isnan(_reference(x, (2, 2), None)))


def test_what_it_leaves_to_torch() -> None:
    assert not pool_applies(torch.randn(2, 3, 4, 4, dtype=torch.float64), (2, 2))
    assert not pool_applies(torch.randn(2, 3), (2, 2))
    assert not pool_applies(torch.randn(2, 3, 1, 4), (2, 2))  # smaller than the pool
    out = pool_relu_dropout(torch.randn(2, 3, 4, 4, dtype=torch.float64), (2, 2), 0.0, False)
    assert out.dtype == torch.float64
