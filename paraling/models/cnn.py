"""The windowed CNN of Milde & Biemann (2015): conv+pool blocks, then fully-connected layers.

Input ``(batch, 1, n_mels, width)``; output logits ``(batch, n_classes)``. Layers are named ``conv1..convN``,
``fc1..fcM`` and ``out`` so that transfer learning can pick them by name. Each block is conv → max-pool → ReLU →
dropout; ReLU after max-pool gives identical outputs to ReLU before it (both are monotone, max commutes with ReLU) at a
fraction of the memory traffic. Convolutions use "same" padding and pooling is clamped to the current feature-map size,
so any depth works with any window width (a dimension of size 1 is no longer pooled).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from paraling.errors import ModelError
from paraling.ops import Kernels, conv_block, relu_dropout, same_padding, select_kernels

__all__ = ["MAX_PARAMETERS", "WindowCNN", "build_model", "count_parameters"]

#: The most weights a CNN may have (4 GiB of float32): a model file asking for more is damaged, not a big model.
MAX_PARAMETERS = 2**30


def _whole(name: str, values: list[object], low: int = 1) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ModelError(f"{name} must hold whole numbers >= {low}, got {v!r}")
        out.append(v)
    return out


def count_parameters(
    n_mels: int,
    width: int,
    n_classes: int,
    channels: list[int],
    kernel_sizes: list[int],
    fc_sizes: list[int],
    pool_size: int = 2,
) -> int:
    """Weights and biases of the :class:`WindowCNN` these sizes describe, counted without building it.

    Raises:
        ModelError: A size that is not a whole number >= 1.
    """
    (n_mels, width, pool_size), n_classes = (
        _whole("n_mels, width and pool_size", [n_mels, width, pool_size]),
        int(n_classes),
    )
    channels, kernel_sizes = _whole("channels", list(channels)), _whole("kernel_sizes", list(kernel_sizes))
    fc_sizes = _whole("fc_sizes", list(fc_sizes))
    total, h, w, c_in = 0, n_mels, width, 1
    for c, k in zip(channels, kernel_sizes, strict=False):
        total += c * c_in * k * k + c
        h, w, c_in = h // min(pool_size, h), w // min(pool_size, w), c
    d_in = c_in * h * w
    for d in [*fc_sizes, n_classes]:
        total += d_in * d + d
        d_in = d
    return total


class WindowCNN(nn.Module):
    """A local CNN over log-mel windows.

    Args:
        n_mels: Feature bands (input height).
        width: Window width in frames (input width).
        n_classes: Output classes.
        channels: Output channels of each conv block.
        kernel_sizes: Square kernel size of each conv block (paper: 3, 2, 2).
        dropout_conv: Dropout after each conv block.
        fc_sizes: Hidden fully-connected layer sizes (paper: 500, 500).
        dropout_fc: Dropout after each hidden FC layer.
        pool_size: Max-pooling size (clamped per dimension to the feature-map size).
    """

    def __init__(
        self,
        n_mels: int,
        width: int,
        n_classes: int,
        channels: list[int],
        kernel_sizes: list[int],
        dropout_conv: list[float],
        fc_sizes: list[int],
        dropout_fc: float = 0.5,
        pool_size: int = 2,
    ) -> None:
        super().__init__()
        if not (len(channels) == len(kernel_sizes) == len(dropout_conv)) or not channels:
            raise ModelError(
                f"channels, kernel_sizes and dropout_conv need one entry per block, got {len(channels)}, "
                f"{len(kernel_sizes)}, {len(dropout_conv)}"
            )
        if n_classes < 2:
            raise ModelError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
        n_params = count_parameters(n_mels, width, n_classes, channels, kernel_sizes, fc_sizes, pool_size)
        if n_params > MAX_PARAMETERS:
            raise ModelError(
                f"the CNN would have {n_params:.3g} weights (more than {MAX_PARAMETERS:.3g}): model.channels "
                f"{channels}, model.fc_sizes {fc_sizes} on {n_mels}x{width} windows; lower them"
            )
        for p in [*dropout_conv, dropout_fc]:
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
                raise ModelError(f"dropout rates must be numbers in [0, 1), got {p!r}")
        self.n_mels, self.width, self.n_classes = n_mels, width, n_classes
        #: Which ops run the blocks (:mod:`paraling.ops.block`): ``auto`` = native CPU kernels where they apply,
        #: ``reference`` = torch ops with fused byte-mask dropout, ``plain`` = the textbook torch modules.
        self.kernels: Kernels = "auto"
        self.conv_names: list[str] = []
        self.fc_names: list[str] = []
        self._pools: list[tuple[int, int]] = []
        self._pads = []  # each convolution's "same" padding (paraling.ops.Border)
        self._drops = nn.ModuleList()
        h, w, c_in = n_mels, width, 1
        for i, (c, k, p) in enumerate(zip(channels, kernel_sizes, dropout_conv, strict=True), 1):
            # "same" padding, applied by the ops (an even kernel pads one more on the right/bottom)
            conv = nn.Conv2d(c_in, c, kernel_size=k)
            self._pads.append(same_padding(k))
            name = f"conv{i}"
            self.add_module(name, conv)
            self.conv_names.append(name)
            ph, pw = min(pool_size, h), min(pool_size, w)
            self._pools.append((ph, pw))
            h, w, c_in = h // ph, w // pw, c
            self._drops.append(nn.Dropout(p))
        self.flat_dim = c_in * h * w
        d_in = self.flat_dim
        self._fc_drop = nn.Dropout(dropout_fc)
        for j, d in enumerate(fc_sizes, 1):
            name = f"fc{j}"
            self.add_module(name, nn.Linear(d_in, d))
            self.fc_names.append(name)
            d_in = d
        self.embed_dim = d_in
        self.out = nn.Linear(d_in, n_classes)
        self.reset_parameters()

    @property
    def layer_names(self) -> list[str]:
        """Names of the weight layers in order: ``conv1..``, ``fc1..``, ``out``."""
        return [*self.conv_names, *self.fc_names, "out"]

    def reset_parameters(self, names: list[str] | None = None) -> None:
        """He (Kaiming normal, fan-in, ReLU) initialisation of the named layers (all when ``None``); zero biases."""
        for name in names or self.layer_names:
            layer = getattr(self, name)
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (the embedding), ``(batch, embed_dim)``."""
        kernels = select_kernels(self.kernels, x)
        padded = False  # whether x already carries the next convolution's padding (written by a native kernel)
        next_pads = [*self._pads[1:], same_padding(1)]
        for name, pad, out_pad, pool, drop in zip(
            self.conv_names, self._pads, next_pads, self._pools, self._drops, strict=True
        ):
            x, padded = conv_block(
                x,
                getattr(self, name),
                pad,
                pool,
                cast(nn.Dropout, drop),  # _drops holds nn.Dropout only
                self.training,
                kernels=kernels,
                padded=padded,
                out_pad=out_pad,
            )
        x = torch.flatten(x, 1)
        # The fully connected layers always run in float32, also under bf16 autocast: they are ~15% of a step, and
        # in bfloat16 they cost UAR (docs/performance.md, (g)), while bf16 convolutions did not.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            for name in self.fc_names:
                x = relu_dropout(getattr(self, name)(x), self._fc_drop, self.training, kernels)
        return x

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` from embeddings :meth:`features` returned (float32, outside autocast)."""
        with torch.autocast(h.device.type, enabled=False):
            return self.out(h.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` for windows ``(batch, 1, n_mels, width)``."""
        return self.classify(self.features(x))


def build_model(model_cfg: object, n_mels: int, width: int, n_classes: int) -> WindowCNN:
    """Build a :class:`WindowCNN` from a ``model`` config node (first ``n_blocks`` entries of the lists).

    Raises:
        ModelError: A missing, mistyped or out-of-range key (a damaged model file as much as a bad config).
    """
    try:
        n = model_cfg.n_blocks  # type: ignore[attr-defined]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ModelError(f"model.n_blocks must be a whole number >= 1, got {n!r}")
        return WindowCNN(
            n_mels=n_mels,
            width=width,
            n_classes=n_classes,
            channels=list(model_cfg.channels)[:n],  # type: ignore[attr-defined]
            kernel_sizes=list(model_cfg.kernel_sizes)[:n],  # type: ignore[attr-defined]
            dropout_conv=list(model_cfg.dropout_conv)[:n],  # type: ignore[attr-defined]
            fc_sizes=list(model_cfg.fc_sizes),  # type: ignore[attr-defined]
            dropout_fc=float(model_cfg.dropout_fc),  # type: ignore[attr-defined]
            pool_size=int(model_cfg.pool_size),  # type: ignore[attr-defined]
        )
    except ModelError:
        raise
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot build the CNN from model config: {exc}") from None
