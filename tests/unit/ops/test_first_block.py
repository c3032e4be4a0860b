"""The native first block equals the torch ops it replaces, drops at the right rate, and falls back cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from paraling.atomic import atomic_path
from paraling.models.cnn import WindowCNN
from paraling.ops import Border
from paraling.ops import build as native
from paraling.ops.first_block import first_block_applies, native_first_block
from paraling.ops.random import dropout_threshold, random_bytes

requires_native = pytest.mark.skipif(
    native.load_library() is None, reason="no C compiler: the native kernels cannot be built here"
)


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Forget the loaded library before and after a test that changes how it is found or built."""
    native.load_library.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    native.load_library.cache_clear()


def first_block(
    x: torch.Tensor,
    conv: torch.nn.Conv2d,
    pads: tuple[int, int],
    pool: tuple[int, int],
    p: float,
    training: bool,
    out_pad: tuple[int, int, int, int] | None = None,
) -> torch.Tensor | None:
    """The kernel on ``x``, or ``None`` where it leaves the block to torch; ``pads`` = (top, left), ``out_pad`` in
    ``torch.nn.functional.pad``'s order (as the reference pads)."""
    if native.load_library() is None or not first_block_applies(x, conv, pool):
        return None
    left, right, top, bottom = out_pad or (0, 0, 0, 0)
    pad = Border(pads[0], 0, pads[1], 0)
    return native_first_block(x, conv, pad, pool, p, training, Border(top, bottom, left, right))


def _model(kernel: int, channels: int, width: int, pool: int = 2) -> WindowCNN:
    torch.manual_seed(0)
    return WindowCNN(16, width, 3, [channels, 8], [kernel, 2], [0.0, 0.0], [12], 0.0, pool_size=pool)


def _forward_backward(model: WindowCNN, x: torch.Tensor, native_on: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.kernels = "auto" if native_on else "reference"
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@requires_native
@pytest.mark.parametrize(
    ("kernel", "channels", "width", "pool"),
    [(3, 32, 11, 2), (2, 32, 11, 2), (5, 20, 9, 2), (3, 16, 1, 2), (3, 7, 6, 3), (4, 48, 13, 2)],
)
@pytest.mark.parametrize("training", [False, True])
def test_matches_torch_ops(kernel: int, channels: int, width: int, pool: int, training: bool) -> None:
    """Outputs and every parameter's gradient agree with the torch path (dropout 0), odd/even kernels, any channels."""
    model = _model(kernel, channels, width, pool).train(training)
    x = torch.randn(37, 1, 16, width)
    out_native, grads_native = _forward_backward(model, x, True)
    out_torch, grads_torch = _forward_backward(model, x, False)
    torch.testing.assert_close(out_native, out_torch, rtol=1e-4, atol=1e-5)
    for g_native, g_torch in zip(grads_native, grads_torch, strict=True):
        torch.testing.assert_close(g_native, g_torch, rtol=1e-4, atol=1e-5)


@requires_native
def test_output_padding_written_in_place() -> None:
    """out_pad gives exactly F.pad of the unpadded output, and the border's gradient is ignored."""
    conv = torch.nn.Conv2d(1, 20, 3, padding=1)
    x = torch.randn(6, 1, 12, 9)
    plain = first_block(x, conv, (1, 1), (2, 2), 0.0, True)
    padded = first_block(x, conv, (1, 1), (2, 2), 0.0, True, out_pad=(0, 1, 2, 1))
    assert plain is not None and padded is not None
    torch.testing.assert_close(padded, torch.nn.functional.pad(plain, (0, 1, 2, 1)), rtol=0, atol=0)
    w = torch.randn(padded.shape)
    (torch.nn.functional.pad(plain, (0, 1, 2, 1)) * w).sum().backward()
    expected = conv.weight.grad.clone()
    conv.weight.grad = None
    (padded * w).sum().backward()
    torch.testing.assert_close(conv.weight.grad, expected)


@requires_native
def test_kernel_is_used_and_channels_last() -> None:
    conv = torch.nn.Conv2d(1, 24, 3, padding=1)
    out = first_block(torch.randn(5, 1, 40, 11), conv, (1, 1), (2, 2), 0.0, False)
    assert out is not None and out.shape == (5, 24, 20, 5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert first_block(torch.randn(5, 1, 40, 11, dtype=torch.float64), conv, (1, 1), (2, 2), 0.0, False) is None


@requires_native
def test_dropout_rate_scale_gradient_and_seed() -> None:
    conv = torch.nn.Conv2d(1, 32, 3, padding=1)
    with torch.no_grad():
        conv.bias.fill_(100.0)  # every pre-activation positive: only dropout zeroes units
    x = torch.randn(400, 1, 40, 11)
    torch.manual_seed(3)
    y = first_block(x, conv, (1, 1), (2, 2), 0.3, True)
    t, scale = dropout_threshold(0.3)
    assert y is not None
    assert abs((y != 0).float().mean().item() - (1 - t / 256)) < 0.01
    with torch.no_grad():
        ref = torch.nn.functional.max_pool2d(conv(x), 2).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[y != 0], ref[y != 0] * scale)
    y.sum().backward()
    assert conv.bias.grad is not None
    # the bias gradient counts kept units only, times the dropout scale
    torch.testing.assert_close(conv.bias.grad, (y != 0).sum((0, 2, 3)).float() * scale)
    torch.manual_seed(3)
    again = first_block(x, conv, (1, 1), (2, 2), 0.3, True)
    assert again is not None and torch.equal(again, y)


@requires_native
def test_bfloat16_output_under_autocast() -> None:
    """Under bf16 autocast the block writes the float32 result rounded once, and takes a bfloat16 gradient."""
    conv = torch.nn.Conv2d(1, 20, 3, padding=1)
    x = torch.randn(30, 1, 40, 11)
    torch.manual_seed(4)
    y32 = first_block(x, conv, (1, 1), (2, 2), 0.2, True, (0, 1, 0, 1))
    torch.manual_seed(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = first_block(x, conv, (1, 1), (2, 2), 0.2, True, (0, 1, 0, 1))
    assert y32 is not None and y16 is not None and y16.dtype == torch.bfloat16
    assert torch.equal(y16, y32.to(torch.bfloat16))
    g = torch.randn(y32.shape).to(torch.bfloat16)
    (gw16,) = torch.autograd.grad(y16, [conv.weight], g)
    (gw32,) = torch.autograd.grad(y32, [conv.weight], g.float())
    torch.testing.assert_close(gw16, gw32, rtol=1e-5, atol=1e-5)


@requires_native
def test_nan_passes_like_torch() -> None:
    conv = torch.nn.Conv2d(1, 16, 3, padding=1)
    x = torch.randn(2, 1, 8, 8)
    x[0, 0, 3, 3] = float("nan")
    y = first_block(x, conv, (1, 1), (2, 2), 0.0, False)
    with torch.no_grad():
        ref = torch.relu(torch.nn.functional.max_pool2d(conv(x), 2))
    assert y is not None
    assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.isnan(y).any()


@requires_native
def test_frozen_layer_and_input_gradients() -> None:
    conv = torch.nn.Conv2d(1, 16, 3, padding=1)
    conv.requires_grad_(False)
    y = first_block(torch.randn(3, 1, 8, 8), conv, (1, 1), (2, 2), 0.1, True)
    assert y is not None and not y.requires_grad  # nothing to train: no graph, no saved state
    # an input that needs its gradient (saliency maps) is left to torch, which computes it
    assert first_block(torch.randn(3, 1, 8, 8, requires_grad=True), conv, (1, 1), (2, 2), 0.1, True) is None


@requires_native
def test_random_bytes_uniform_seeded_and_thread_independent() -> None:
    like = torch.empty(1000, 257)
    torch.manual_seed(11)
    a = random_bytes(like)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(11)
        b = random_bytes(like)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b) and a.shape == like.shape
    counts = torch.bincount(a.flatten().long(), minlength=256).float()
    expected = a.numel() / 256
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 400  # 255 degrees of freedom: mean 255, sd 22.6
    assert not torch.equal(random_bytes(like), a)


def test_disabled_by_environment(fresh_library: pytest.MonkeyPatch) -> None:
    fresh_library.setenv("PARALING_NATIVE", "0")
    assert native.load_library() is None
    model = _model(3, 16, 11).train()
    x = torch.randn(4, 1, 16, 11)
    assert first_block(x, model.conv1, (1, 1), (2, 2), 0.1, True) is None
    model(x).sum().backward()  # the torch path trains
    assert model.conv1.weight.grad is not None


def test_failed_build_falls_back_with_a_warning(
    fresh_library: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_library.setenv("PARALING_NATIVE_DIR", str(tmp_path / "native"))
    fresh_library.setenv("CC", "false")
    with caplog.at_level(logging.WARNING, logger="paraling.ops.build"):
        assert native.load_library() is None
    assert "native CPU kernels unavailable" in caplog.text
    assert not list((tmp_path / "native").glob("*"))  # no half-written library left behind
    torch.manual_seed(0)
    y = random_bytes(torch.empty(10, 10))  # the torch generator still serves dropout masks
    assert y.dtype == torch.uint8 and y.shape == (10, 10)


@requires_native
def test_built_once_into_the_cache(fresh_library: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fresh_library.setenv("PARALING_NATIVE_DIR", str(tmp_path))
    assert native.load_library() is not None
    (built,) = tmp_path.glob("paraling-*.so")
    stamp = built.stat().st_mtime_ns
    native.load_library.cache_clear()
    assert native.load_library() is not None
    assert built.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([built.name, built.with_suffix(".sha256").name])


@requires_native
def test_read_only_cache_builds_under_the_temp_folder(fresh_library: pytest.MonkeyPatch, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions
        fresh_library.setattr(native, "atomic_path", _refuse)
    fresh_library.setenv("PARALING_NATIVE_DIR", str(locked / "native"))
    fresh_library.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert native.load_library() is not None
    assert list((tmp_path / "tmp").glob("paraling-native-*/paraling-*.so"))


@contextlib.contextmanager
def _refuse(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    if "locked" in str(path):
        raise PermissionError(f"read-only: {path}")
    with atomic_path(path, suffix) as tmp:
        yield tmp
