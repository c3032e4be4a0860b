"""A light head over a speech encoder's hidden states (``model=ssl_head``), SUPERB style.

Input: windows ``(batch, 1, groups * dim, width)`` of ``features=ssl`` frames, ``groups`` hidden states side by side.
The head learns a softmax-weighted sum of the hidden states (each normalised without parameters first, as s3prl's
``layer_norm`` option does), projects the frames, pools them over the window (``mean``, or ``attentive``: a learned
softmax over frames) and classifies with a small MLP. Windows count encoder frames, so ``windows.width=100`` is two
seconds of a 50-Hz encoder; the utterance decision is the run's vote over its windows, as for the CNN.

With ``finetune_layers=k`` the head also holds a trainable copy of the encoder's top ``k`` layers
(:meth:`~paraling.features.hf_encoder.HFEncoder.top_layers`), run on the cached input of those layers
(``features.layers`` must then be that single hidden state, ``n_layers - k``); they learn at ``encoder_lr_scale``
times the head's rate (:meth:`SslHead.lr_scales`) - the paper's transfer of the first layers, on a modern encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paraling.errors import ConfigError, ModelError

__all__ = ["POOLINGS", "SslHead", "build_model"]

POOLINGS = ("mean", "attentive")


class _AttentivePool(nn.Module):
    """Softmax over frames of a learned score (``v . tanh(W h)``), then the weighted mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.score(h).squeeze(-1).float(), dim=1).to(h.dtype)  # (batch, frames)
        return (h * w.unsqueeze(-1)).sum(1)


class _MeanPool(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(1)


class SslHead(nn.Module):
    """Weighted layer sum → projection → pooling → MLP (see the module docstring).

    Args:
        n_features: Values per frame (``groups * dim``).
        n_classes: Output classes.
        groups: Hidden states per frame.
        pooling: ``mean`` or ``attentive``.
        proj_dim: Width of the frame projection.
        fc_sizes: Hidden layers of the MLP after pooling.
        dropout: Dropout after the projection and each hidden layer.
        layer_norm: Normalise each hidden state (no parameters) before the weighted sum.
        encoder_top: Trainable top layers of the encoder (then ``groups`` must be 1).
        encoder_lr_scale: Their learning rate relative to the head's.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        groups: int = 1,
        pooling: str = "attentive",
        proj_dim: int = 256,
        fc_sizes: tuple[int, ...] = (256,),
        dropout: float = 0.2,
        layer_norm: bool = True,
        encoder_top: nn.Module | None = None,
        encoder_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if groups < 1 or n_features % groups:
            raise ModelError(f"ssl_head: {n_features} features per frame do not split into {groups} hidden states")
        if pooling not in POOLINGS:
            raise ModelError(f"model.pooling must be one of {list(POOLINGS)}, not {pooling!r}")
        if encoder_top is not None and groups != 1:
            raise ConfigError(
                f"model.finetune_layers needs the one hidden state below the fine-tuned layers as input, but the "
                f"features hold {groups}; set features.layers to that index"
            )
        self.groups, self.dim, self.n_classes = groups, n_features // groups, n_classes
        self.encoder_lr_scale = float(encoder_lr_scale)
        self.encoder = encoder_top
        self.layer_weights = nn.Parameter(torch.zeros(groups))
        self.norm = nn.LayerNorm(self.dim, elementwise_affine=False) if layer_norm else nn.Identity()
        self.proj = nn.Linear(self.dim, proj_dim)
        self.pool = _AttentivePool(proj_dim) if pooling == "attentive" else _MeanPool()
        self.drop = nn.Dropout(dropout)
        self.fc_names = [f"fc{i + 1}" for i in range(len(fc_sizes))]
        d = proj_dim
        for name, size in zip(self.fc_names, fc_sizes, strict=True):
            setattr(self, name, nn.Linear(d, size))
            d = size
        self.embed_dim = d
        self.out = nn.Linear(d, n_classes)

    @property
    def layer_names(self) -> list[str]:
        """Top-level parameter names, input to output (transfer and freezing select by them)."""
        return [
            *(["encoder"] if self.encoder is not None else []),
            "layer_weights",
            "proj",
            "pool",
            *self.fc_names,
            "out",
        ]

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate factors by top-level name (the fine-tuned encoder layers learn slower)."""
        return {"encoder": self.encoder_lr_scale} if self.encoder is not None else {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding ``(batch, embed_dim)`` of windows ``(batch, 1, groups * dim, width)``."""
        b, _, _, width = x.shape
        h = x.reshape(b, self.groups, self.dim, width).permute(0, 3, 1, 2)  # (batch, frames, groups, dim)
        if self.encoder is not None:
            h = self.encoder(h[:, :, 0]).unsqueeze(2)
        h = self.norm(h)
        weights = torch.softmax(self.layer_weights.float(), dim=0).to(h.dtype)
        h = (h * weights[:, None]).sum(2)  # (batch, frames, dim)
        h = self.drop(torch.relu(self.proj(h)))
        h = self.pool(h)
        for name in self.fc_names:
            h = self.drop(torch.relu(getattr(self, name)(h)))
        return h

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of embeddings."""
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)``."""
        return self.classify(self.features(x))


def build_model(cfg: Any, n_features: int, width: int, n_classes: int, frontend: Any = None) -> SslHead:
    """The head a ``model`` node (``kind=ssl_head``) describes, over ``frontend``'s frames.

    Raises:
        ConfigError: Fine-tuning without a ``features=ssl`` front-end, or an input layer that does not match.
        ModelError: Sizes that do not fit.
    """
    groups = int(getattr(frontend, "groups", 1))
    k = int(getattr(cfg, "finetune_layers", 0) or 0)
    top = None
    if k:
        if frontend is None or not hasattr(frontend, "encoder") or frontend.backend != "transformers":
            raise ConfigError("model.finetune_layers needs features=ssl with a transformers encoder")
        enc = frontend.encoder()
        want = enc.n_states - 1 - k
        if frontend.selected != [want]:
            raise ConfigError(
                f"model.finetune_layers={k} fine-tunes layers {want + 1}..{enc.n_layers} of {frontend.model}: set "
                f"features.layers={want} (their input), not {frontend.layers!r}"
            )
        top = enc.top_layers(k)
    fc = [int(v) for v in cfg.fc_sizes]
    if any(v < 1 for v in fc) or int(cfg.proj_dim) < 1:
        raise ModelError(f"model.proj_dim and model.fc_sizes must be >= 1, got {cfg.proj_dim}, {fc}")
    return SslHead(
        n_features,
        n_classes,
        groups,
        str(cfg.pooling),
        int(cfg.proj_dim),
        tuple(fc),
        float(cfg.dropout),
        bool(cfg.layer_norm),
        top,
        float(getattr(cfg, "encoder_lr_scale", 0.1)),
    )
