"""Fused pool → ReLU → dropout equals the plain ops (p = 0) and drops units at the right rate (p > 0), on the
torch reference and on the native kernel alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from paraling.ops import build
from paraling.ops.pool import native_pool, pool_applies
from paraling.ops.random import dropout_threshold
from paraling.ops.reference import pool_relu_dropout as reference

Impl = Callable[..., torch.Tensor]


@pytest.fixture(params=["native", "torch"])
def pool_relu_dropout(request: pytest.FixtureRequest) -> Impl:
    """Every test runs on the native kernel (where it builds and applies) and on the torch reference."""
    if request.param == "torch":
        return reference
    if build.load_library() is None:
        pytest.skip("no C compiler: no native kernel")

    def native(x: torch.Tensor, pool: tuple[int, int], p: float, training: bool) -> torch.Tensor:
        return native_pool(x, pool, p, training) if pool_applies(x, pool) else reference(x, pool, p, training)

    return native


@pytest.fixture()
def relu_dropout(pool_relu_dropout: Impl) -> Impl:
    return lambda x, p, training: pool_relu_dropout(x, (1, 1), p, training)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("pool", [(2, 2), (2, 1), (1, 1)])
def test_equals_plain_ops_without_dropout(pool: tuple[int, int], channels_last: bool, pool_relu_dropout: Impl) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 10, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    ref = torch.relu(torch.nn.functional.max_pool2d(a, pool) if pool != (1, 1) else a)
    out = pool_relu_dropout(b, pool, 0.0, True)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(b.grad, a.grad)


def test_dropout_rate_scale_and_gradient_mask(relu_dropout: Impl) -> None:
    torch.manual_seed(1)
    x = (torch.rand(200, 64, 8, 8) + 0.1).requires_grad_()  # all positive: only dropout zeroes units
    y = relu_dropout(x, 0.3, True)
    t, scale = dropout_threshold(0.3)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - t / 256)) < 0.01
    torch.testing.assert_close(y[y != 0], x[y != 0] * scale)
    assert abs(y.mean().item() - x.mean().item()) < 0.01  # expectation preserved
    y.sum().backward()
    assert torch.equal(x.grad != 0, y != 0)


def test_eval_mode_and_nan_propagate(pool_relu_dropout: Impl) -> None:
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(
        pool_relu_dropout(x, (2, 2), 0.5, False), torch.relu(torch.nn.functional.max_pool2d(x, 2))
    )
    x[0, 0, 0, 0] = float("nan")
    assert torch.isnan(pool_relu_dropout(x.requires_grad_(), (2, 2), 0.1, True)).any()


def test_masks_follow_the_seed(relu_dropout: Impl) -> None:
    x = torch.rand(64, 100) + 0.1
    torch.manual_seed(5)
    a = relu_dropout(x, 0.5, True)
    torch.manual_seed(5)
    b = relu_dropout(x, 0.5, True)
    assert torch.equal(a, b)
