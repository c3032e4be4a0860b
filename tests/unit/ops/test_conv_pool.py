"""The native conv block (torch conv forward, sparse native backward) equals the torch ops, with and without dropout."""

from __future__ import annotations

import copy

import pytest
import torch

from paraling.models.cnn import WindowCNN
from paraling.ops import Border, build
from paraling.ops.conv_pool import conv_pool_applies, native_conv_pool

pytestmark = pytest.mark.skipif(
    build.load_library() is None, reason="no C compiler: the native kernels cannot be built here"
)


def conv_pool_block(
    x: torch.Tensor,
    conv: torch.nn.Conv2d,
    pool: tuple[int, int],
    p: float,
    training: bool,
    out_pad: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> torch.Tensor:
    """The kernel, with the border given in ``torch.nn.functional.pad``'s order (as the reference pads)."""
    left, right, top, bottom = out_pad
    return native_conv_pool(x, conv, pool, p, training, Border(top, bottom, left, right))


def _inputs(n: int, cin: int, cout: int, k: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.nn.Conv2d]:
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(cin, cout, k)
    torch.nn.init.normal_(conv.bias, 0.0, 0.3)
    x = torch.randn(n, cin, h, w).contiguous(memory_format=torch.channels_last)
    return x, conv


def _reference(x: torch.Tensor, conv: torch.nn.Conv2d, pool: tuple[int, int], pad: tuple[int, int, int, int]):
    y = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x, conv.weight), pool)
    return torch.nn.functional.pad(torch.relu(y + conv.bias.view(1, -1, 1, 1)), pad)


def _grads(out: torch.Tensor, x: torch.Tensor, conv: torch.nn.Conv2d, w: torch.Tensor) -> list[torch.Tensor]:
    (out.float() * w).sum().backward()
    grads = [x.grad, conv.weight.grad, conv.bias.grad]
    x.grad = conv.weight.grad = conv.bias.grad = None
    return grads


@pytest.mark.parametrize(
    ("cin", "cout", "k", "h", "w", "pool"),
    [
        (32, 64, 2, 21, 6, (2, 2)),  # the default second block: a column left over by the pooling
        (64, 128, 2, 11, 3, (2, 2)),  # the default third block
        (20, 33, 3, 12, 9, (2, 2)),  # channels that are not whole vectors, odd kernel, a row left over
        (7, 5, 3, 11, 8, (3, 2)),
        (16, 16, 1, 6, 4, (2, 1)),
    ],
)
@pytest.mark.parametrize("out_pad", [(0, 0, 0, 0), (0, 1, 0, 1)])
def test_matches_torch_ops(
    cin: int, cout: int, k: int, h: int, w: int, pool: tuple[int, int], out_pad: tuple[int, int, int, int]
) -> None:
    """Output and the input, weight and bias gradients equal conv -> max-pool -> +bias -> ReLU (fp32)."""
    x, conv = _inputs(9, cin, cout, k, h, w)
    assert conv_pool_applies(x, conv, pool)
    ref_conv = copy.deepcopy(conv)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = _reference(xa, ref_conv, pool, out_pad)
    out = conv_pool_block(xb, conv, pool, 0.0, True, out_pad)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(ref.shape)
    for got, want in zip(_grads(out, xb, conv, g), _grads(ref, xa, ref_conv, g), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_matches_torch_ops() -> None:
    """Under bf16 autocast the convolution runs in bfloat16; gradients come from torch's convolution backward."""
    x, conv = _inputs(6, 32, 64, 2, 21, 6)
    ref_conv = copy.deepcopy(conv)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _reference(xa, ref_conv, (2, 2), (0, 0, 0, 0))
        out = conv_pool_block(xb, conv, (2, 2), 0.0, True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    g = torch.randn(ref.shape)
    for got, want in zip(_grads(out, xb, conv, g), _grads(ref, xa, ref_conv, g), strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2)


def test_dropout_gradient_follows_the_mask() -> None:
    """With dropout, the gradients are those of ReLU(pooled) x mask x scale, the mask read off the output."""
    x, conv = _inputs(16, 32, 64, 2, 21, 6, seed=3)
    ref_conv = copy.deepcopy(conv)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = conv_pool_block(xb, conv, (2, 2), 0.3, True)
    pooled = _reference(xa, ref_conv, (2, 2), (0, 0, 0, 0))
    kept = (out != 0).float()
    dropped = 1 - kept[pooled > 0].mean().item()
    assert 0.25 < dropped < 0.35
    scale = 256 / (256 - round(0.3 * 256))
    ref = pooled * kept * scale
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)
    g = torch.randn(ref.shape)
    for got, want in zip(_grads(out, xb, conv, g), _grads(ref, xa, ref_conv, g), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_frozen_weights_and_input_without_gradient() -> None:
    """Only the gradients asked for are computed, and they do not change with what else is asked for."""
    x, conv = _inputs(5, 16, 32, 2, 9, 7)
    g = torch.randn(5, 32, 4, 3)
    xa = x.clone().requires_grad_()
    full = _grads(conv_pool_block(xa, conv, (2, 2), 0.0, True), xa, conv, g)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    xb = x.clone().requires_grad_()
    (conv_pool_block(xb, conv, (2, 2), 0.0, True) * g).sum().backward()
    torch.testing.assert_close(xb.grad, full[0], rtol=0, atol=0)
    conv.weight.requires_grad_(True)
    conv.bias.requires_grad_(True)
    (conv_pool_block(x, conv, (2, 2), 0.0, True) * g).sum().backward()
    torch.testing.assert_close(conv.weight.grad, full[1], rtol=0, atol=0)
    torch.testing.assert_close(conv.bias.grad, full[2], rtol=0, atol=0)


def test_repeatable_and_thread_count_close() -> None:
    """The same inputs give bit-identical gradients run after run; another thread count only reorders sums."""
    x, conv = _inputs(70, 32, 64, 2, 21, 6, seed=5)
    g = torch.randn(70, 64, 10, 2)
    runs = []
    threads = torch.get_num_threads()
    try:
        for t in (threads, threads, 1):
            torch.set_num_threads(t)
            xa = x.clone().requires_grad_()
            runs.append(_grads(conv_pool_block(xa, conv, (2, 2), 0.0, True), xa, conv, g))
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(*runs, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kernels", "channels"), [([3, 2, 2], [32, 64, 128]), ([3, 3, 3], [8, 20, 24])])
def test_whole_cnn_matches_torch_path(kernels: list[int], channels: list[int]) -> None:
    """The CNN on the native kernels gives the torch path's logits and gradients (no dropout), odd kernels too."""
    torch.manual_seed(0)
    model = WindowCNN(40, 11, 5, channels, kernels, [0.0, 0.0, 0.0], [50], 0.0)
    for name in model.conv_names:
        torch.nn.init.normal_(getattr(model, name).bias, 0.0, 0.3)
    ref = copy.deepcopy(model)
    ref.kernels = "reference"
    x = torch.randn(23, 1, 40, 11)
    a, b = model(x), ref(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    w = torch.randn(a.shape)
    (a * w).sum().backward()
    (b * w).sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_input_gradient_of_the_whole_cnn() -> None:
    """Saliency maps: with the input requiring its gradient, the first block too runs as a native conv block (one
    input channel, a weight row shorter than a vector) and the input gradient equals the torch path's."""
    torch.manual_seed(1)
    model = WindowCNN(40, 11, 4, [32, 64, 128], [3, 2, 2], [0.1, 0.2, 0.3], [50], 0.5).eval()
    ref = copy.deepcopy(model)
    ref.kernels = "reference"
    x = torch.randn(6, 1, 40, 11)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    model(a)[:, 2].sum().backward()
    ref(b)[:, 2].sum().backward()
    assert a.grad is not None and b.grad is not None and b.grad.abs().max() > 0
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_what_it_leaves_to_torch() -> None:
    """Strides, dilation, groups, float64 and maps smaller than the pool go to torch ops."""
    x, conv = _inputs(2, 8, 8, 2, 9, 7)
    assert conv_pool_applies(x, conv, (2, 2))
    assert not conv_pool_applies(x.double(), conv, (2, 2))
    assert not conv_pool_applies(x, torch.nn.Conv2d(8, 8, 2, stride=2), (2, 2))
    assert not conv_pool_applies(x, torch.nn.Conv2d(8, 8, 2, dilation=2), (2, 2))
    assert not conv_pool_applies(x, torch.nn.Conv2d(8, 8, 2, groups=2), (2, 2))
    assert not conv_pool_applies(x[:, :, :2, :2], conv, (2, 2))  # a 1x1 conv output cannot be pooled 2x2
